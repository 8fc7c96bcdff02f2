"""The ``face_crop`` family: image families on the crop around the largest face."""
import numpy as np
import pytest

from features.context import ImageContext
from features.extractor import FeatureExtractor
from features.face import FaceBox, largest_face
from features.face_crop import face_crop
from features.registry import FeatureConfig, FeatureConfigError, get_family


def noise_image(height=200, width=300, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def context_with_box(rgb: np.ndarray, box: FaceBox) -> ImageContext:
    ctx = ImageContext(rgb)
    ctx.shared("face", lambda: box)
    return ctx


def test_crop_is_the_box_grown_about_its_centre_with_its_origin_on_the_8_pixel_grid():
    rgb = noise_image()
    # Box rows 45..125, columns 101..161; x1.5 about its centre (85, 131): rows [25, 145),
    # columns [86, 176); the origin moves up-left to (24, 80).
    crop = face_crop(context_with_box(rgb, FaceBox(101, 45, 60, 80, False)), 1.5)
    np.testing.assert_array_equal(crop.rgb, rgb[24:145, 80:176])
    assert largest_face(crop) == FaceBox(21, 21, 60, 80, False)


def test_crop_without_a_face_is_the_central_fallback_square_grown():
    rgb = noise_image()
    ctx = ImageContext(rgb)
    assert largest_face(ctx).fallback          # noise holds no face
    # Fallback: side 0.6 * 200 = 120 at (90, 40); x1.5: rows [10, 190), columns [60, 240);
    # origin snapped to (8, 56).
    np.testing.assert_array_equal(face_crop(ctx, 1.5).rgb, rgb[8:190, 56:240])


def test_crop_is_clipped_to_the_image():
    rgb = noise_image()
    # x6 about (85, 131): rows [-155, 325), columns [-49, 311), beyond every side.
    crop = face_crop(context_with_box(rgb, FaceBox(101, 45, 60, 80, False)), 6.0)
    np.testing.assert_array_equal(crop.rgb, rgb)


def test_family_gives_each_listed_family_on_the_crop_under_its_own_prefix():
    rgb = noise_image()
    box = FaceBox(101, 45, 60, 80, False)
    families = {"texture": {"scales": [1]}, "colour": None}
    values = get_family("face_crop").compute(context_with_box(rgb, box),
                                             {"margin": 1.5, "families": families})
    expected = {}
    for name in ("colour", "texture"):                  # name order
        family = get_family(name)
        on_crop = family.compute(ImageContext(rgb[24:145, 80:176]),
                                 family.resolve_params(families[name]))
        expected.update({f"face_crop__{key}": value for key, value in on_crop.items()})
    assert list(values) == list(expected)
    np.testing.assert_allclose(list(values.values()), list(expected.values()), rtol=1e-6)


def test_face_and_blend_on_the_crop_use_the_image_detection():
    rgb = noise_image()
    values = get_family("face_crop").compute(
        context_with_box(rgb, FaceBox(101, 45, 60, 80, False)),
        {"margin": 1.5, "families": {"face": {}}})
    # The box (21, 21, 60, 80) in the 121 x 96 crop.
    assert values["face_crop__face__found"] == 1.0
    assert values["face_crop__face__width"] == pytest.approx(60 / 96)
    assert values["face_crop__face__height"] == pytest.approx(80 / 121)
    assert values["face_crop__face__centre_x"] == pytest.approx(51 / 96 - 0.5)


def test_config_with_nested_families_round_trips_and_ignores_their_order():
    one = FeatureConfig.from_mapping(
        "image", {"face_crop": {"families": {"texture": {"scales": [1, 2]}, "colour": {}}}})
    other = FeatureConfig.from_mapping(
        "image", {"face_crop": {"families": {"colour": {}, "texture": {"scales": [1, 2]}}}})
    assert one == other and hash(one) == hash(other)
    assert one.fingerprint() == other.fingerprint()
    assert FeatureConfig.from_mapping("image", one.to_mapping()) == one
    assert one.to_mapping()["face_crop"]["families"] == {"colour": {},
                                                          "texture": {"scales": [1, 2]}}
    changed = FeatureConfig.from_mapping(
        "image", {"face_crop": {"families": {"colour": {}, "texture": {"scales": [1]}}}})
    assert changed.fingerprint() != one.fingerprint()


@pytest.mark.parametrize("families, named", [
    ({"mfcc": {}}, "'mfcc'"),
    ({"face_crop": {}}, "'face_crop'"),
    ({"no_such_family": {}}, "'no_such_family'"),
    ({"texture": {"no_such_option": 1}}, "no_such_option"),
    ({"texture": [1]}, "'texture'"),
    ({1: {}, "colour": {}}, "family 1"),
    (["texture"], "must map image family names"),
])
def test_bad_inner_family_is_a_config_error_naming_it(families, named):
    config = FeatureConfig.from_mapping("image", {"face_crop": {"families": families}})
    with pytest.raises(FeatureConfigError, match=f"face_crop's families.*{named}"):
        FeatureExtractor(config)       # the probe runs before any file is read


def test_margin_below_one_is_an_error_naming_the_option():
    config = FeatureConfig.from_mapping("image", {"face_crop": {"margin": 0.5}})
    with pytest.raises(ValueError, match="margin must be at least 1, got 0.5"):
        FeatureExtractor(config)
