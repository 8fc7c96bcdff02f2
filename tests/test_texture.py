import warnings

import cv2
import numpy as np
import pytest
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

from features.context import ImageContext
from features.texture import (GLCM_PROPERTIES, TIE_TOLERANCE, glcm, lbp_code_map, lbp_mapping,
                              lbp_patterns, shrunk_channel, texture)


def skimage_lbp(image_uint8, radius, method):
    """scikit-image's LBP of the interior pixels (those with all neighbours inside the image)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codes = local_binary_pattern(image_uint8, 8, radius, method)
    return codes[radius:-radius, radius:-radius].astype(int)


def skimage_uniform_histogram(image_uint8, radius):
    """Normalised histogram of scikit-image's 10 uniform LBP codes (P = 8) of the interior."""
    reference = skimage_lbp(image_uint8, radius, "uniform")
    return np.bincount(reference.ravel(), minlength=10) / reference.size


def whole_image_histogram(features, described, radius):
    """The family's whole-image uniform histogram of one channel (and scale) and radius."""
    return [features[f"{described}_r{radius}_uniform__cell_1x1_0_0__bin_{code}"]
            for code in range(10)]


def random_rgb(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3)).astype(np.uint8)


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_constant_image_is_all_uniform_code_p(radius):
    image = np.full((12, 15), 77, np.float32)
    patterns = lbp_patterns(image, radius)
    assert patterns.shape == (12 - 2 * radius, 15 - 2 * radius)
    table, _ = lbp_mapping("uniform")
    assert set(table[patterns].ravel()) == {8}  # all neighbours >= centre: P ones


def test_horizontal_edge_gives_the_hand_computed_pattern():
    # Bright row above, equal left/right, dark row below. Neighbours counter-clockwise from the
    # right: right (5 >= 5), up-right (interpolates 9, 9, 5, 5: 7.8), up (9), up-left (7.8),
    # left (5 >= 5) are set; down-left (0.29 * 5 + 0.71 * 0 = 1.5), down (0), down-right unset.
    image = np.array([[9, 9, 9], [5, 5, 5], [0, 0, 0]], np.float32)
    assert lbp_patterns(image, 1)[0, 0] == 0b00011111
    assert lbp_mapping("uniform")[0][0b00011111] == 5          # 5 ones, 2 transitions
    assert lbp_mapping("uniform")[0][0b00100101] == 9          # non-uniform: P + 1
    assert lbp_mapping("nri_uniform")[0][0b00011111] == 1 + 4 * 8  # n_ones=5, no rotation


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_exact_ties_on_a_diagonal_ramp_count_as_greater_or_equal(radius):
    # x = row + col: neighbour p differs from the centre by R (cos - sin)(2 pi p / 8): +R at the
    # right (p=0) and below (p=6), 0 (a tie, however the interpolation rounds) at p=1 and p=5,
    # positive at p=7, negative at p=2, 3, 4. Set bits: 0, 1, 5, 6, 7.
    rows, cols = np.indices((15, 17))
    patterns = lbp_patterns((rows + cols).astype(np.float32), radius)
    assert set(patterns.ravel()) == {0b11100011}


@pytest.mark.parametrize("radius", [1, 2, 3])
@pytest.mark.parametrize("method", ["uniform", "nri_uniform"])
def test_codes_match_scikit_image(radius, method):
    image = np.random.default_rng(radius).integers(0, 256, (64, 72)).astype(np.uint8)
    table, n_codes = lbp_mapping(method)
    codes = table[lbp_patterns(image.astype(np.float32), radius)]
    reference = skimage_lbp(image, radius, method)
    np.testing.assert_array_equal(codes, reference)
    np.testing.assert_array_equal(np.bincount(codes.ravel(), minlength=n_codes),
                                  np.bincount(reference.ravel(), minlength=n_codes))


def test_rotation_invariant_codes_number_skimage_ror_patterns():
    image = np.random.default_rng(5).integers(0, 256, (40, 50)).astype(np.uint8)
    table, n_codes = lbp_mapping("ri")
    assert n_codes == 36  # distinct 8-bit patterns up to rotation
    # Code k is the k-th smallest of the patterns that are their own smallest rotation.
    patterns = np.arange(256)
    canonical = [p for p in patterns
                 if all(p <= ((p >> k | p << (8 - k)) & 255) for k in range(8))]
    codes = table[lbp_patterns(image.astype(np.float32), 1)]
    np.testing.assert_array_equal(np.array(canonical)[codes], skimage_lbp(image, 1, "ror"))


def test_family_histogram_equals_skimage_histogram_of_luma():
    rgb = random_rgb((48, 56), seed=3)
    ctx = ImageContext(rgb)
    features = texture(ctx, channels=["y"], radii=[2])
    expected = skimage_uniform_histogram(ctx.channel("y").astype(np.uint8), 2)
    np.testing.assert_allclose(whole_image_histogram(features, "y", 2), expected, atol=1e-12)


def test_half_chroma_histogram_is_that_of_the_chroma_stored_at_half_size():
    # Every 2x2 block one colour, as a decoder without interpolation restores 4:2:0 chroma:
    # the half-size chroma is then exactly the chroma of the small image.
    small = random_rgb((30, 26), seed=6)
    ctx = ImageContext(np.repeat(np.repeat(small, 2, axis=0), 2, axis=1))
    features = texture(ctx, channels=["y", "cr"], radii=[1])
    expected = skimage_uniform_histogram(ImageContext(small).plane_8bit("cr"), 1)
    np.testing.assert_allclose(whole_image_histogram(features, "cr_by2", 1), expected,
                               atol=1e-12)
    assert "y_r1_uniform__cell_1x1_0_0__bin_0" in features   # luma stays at full size
    assert not any(name.startswith("cr_r1") for name in features)


def test_full_chroma_sampling_describes_chroma_at_full_size():
    rgb = random_rgb((32, 30), seed=7)
    ctx = ImageContext(rgb)
    features = texture(ctx, channels=["cb"], radii=[1], chroma_sampling="full")
    expected = skimage_uniform_histogram(ctx.plane_8bit("cb"), 1)
    np.testing.assert_allclose(whole_image_histogram(features, "cb", 1), expected, atol=1e-12)
    with pytest.raises(ValueError, match="chroma_sampling"):
        texture(ctx, chroma_sampling="quarter")


def test_shrunk_by_two_a_two_pixel_checkerboard_gives_the_one_pixel_checkerboard_codes():
    # On a one-pixel checkerboard every on-grid neighbour of a bright centre is dark and every
    # interpolated diagonal one is 0.586 bright + 0.414 dark: a bright centre has no bit set
    # (code 0), a dark one all eight (code 8), in equal shares on an even interior.
    rgb = np.repeat(np.repeat(checkerboard(20, 40, 200), 2, axis=0), 2, axis=1)
    features = texture(ImageContext(rgb), channels=["y"], radii=[1], scales=[1, 2])
    shrunk = whole_image_histogram(features, "y_by2", 1)
    assert shrunk == pytest.approx([0.5] + [0.0] * 7 + [0.5, 0.0])
    full = whole_image_histogram(features, "y", 1)
    assert full[0] == 0.0   # at full size every bright pixel has bright neighbours in its square


def test_each_scale_is_the_lbp_of_the_block_means():
    small = random_rgb((12, 10), seed=9)
    ctx = ImageContext(np.repeat(np.repeat(small, 4, axis=0), 4, axis=1))
    features = texture(ctx, channels=["y", "cb"], radii=[2], scales=[4])
    for channel in ("y", "cb"):
        expected = skimage_uniform_histogram(ImageContext(small).plane_8bit(channel), 2)
        np.testing.assert_allclose(whole_image_histogram(features, f"{channel}_by4", 2),
                                   expected, atol=1e-12)
    with pytest.raises(ValueError, match="scales"):
        texture(ctx, scales=[0])


def test_shrunk_means_are_rounded_as_opencv_rounds_8bit_area_means():
    # Block means exactly half-way between two steps: OpenCV rounds 2 x 2 means half up and
    # larger blocks' half to even (2 x 2 sums 2 and 6 give 0.5 and 1.5; 4 x 4 sums 8 and 24 too).
    plane = np.zeros((8, 16), np.uint8)
    plane[0, 0] = plane[0, 1] = 1                      # 2x2 block (0, 0) sums to 2: mean 0.5
    plane[2:4, 2] = 3                                  # 2x2 block (1, 1) sums to 6: mean 1.5
    plane[:, 8:] = np.tile([[1, 0], [0, 0]], (4, 4))   # 4x4 blocks sum to 4: mean 0.25
    plane[:4, 8:12] += np.uint8([[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
    rgb = np.repeat(plane[..., None], 3, axis=2)       # grey: Y is the plane itself
    ctx = ImageContext(rgb)
    assert np.array_equal(ctx.plane_8bit("y"), plane)
    by2, by4 = shrunk_channel(ctx, "y", 2), shrunk_channel(ctx, "y", 4)
    assert by2[0, 0] == 1.0 and by2[1, 1] == 2.0       # 0.5 and 1.5 up
    assert by4[0, 2] == 1.0                            # (4 + 8) / 16 = 0.75
    assert by4[1, 2] == 0.0 and by4[0, 0] == 0.0       # 4 / 16 = 0.25 and 8 / 16 = 0.5 to even
    plane[:4, :4] = 1
    plane[0, :2] = 2                                   # 4x4 block sums to 18: 1.125
    plane[4:, :4] = np.uint8([[2, 2, 2, 2], [2, 2, 2, 2], [1, 1, 1, 1], [1, 1, 1, 1]])  # 1.5
    ctx = ImageContext(np.repeat(plane[..., None], 3, axis=2))
    assert shrunk_channel(ctx, "y", 4)[:, 0].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("shape", [(64, 64), (48, 80), (40, 24), (50, 50), (37, 29), (8, 8)])
def test_shrunk_channels_match_opencv_area_resize(shape):
    # The shrinks chain 2 x 2 block sums where the sides allow it and call cv2.resize otherwise:
    # either way the result is cv2.resize's INTER_AREA of the 8-bit plane, size rounded up.
    ctx = ImageContext(random_rgb(shape, seed=sum(shape)))
    for channel in ("y", "cb", "r"):
        plane = ctx.plane_8bit(channel)
        for step in (2, 3, 4, 8):
            size = (-(-shape[1] // step), -(-shape[0] // step))
            expected = cv2.resize(plane, size, interpolation=cv2.INTER_AREA)
            shrunk = shrunk_channel(ctx, channel, step)
            assert shrunk.dtype == np.float32
            np.testing.assert_array_equal(shrunk, expected)


def test_pyramid_separates_noisy_left_half_from_flat_right_half():
    rgb = np.full((40, 40, 3), 120, np.uint8)
    rgb[:, :18] = random_rgb((40, 18), seed=4)  # flat from column 18: codes from 19 on
    features = texture(ImageContext(rgb), channels=["y"], radii=[1], levels=[1, 2])
    right = [features[f"y_r1_uniform__cell_2x2_{row}_1__bin_8"] for row in (0, 1)]
    left = [features[f"y_r1_uniform__cell_2x2_{row}_0__bin_8"] for row in (0, 1)]
    assert right == [1.0, 1.0]          # flat: every pattern is all ones
    assert max(left) < 0.5
    whole = whole_image_histogram(features, "y", 1)
    assert sum(whole) == pytest.approx(1.0)


def test_code_maps_are_shared_through_the_context():
    ctx = ImageContext(random_rgb((20, 20)))
    texture(ctx, channels=["cb"], radii=[1], chroma_sampling="full")
    assert lbp_code_map(ctx, "cb", 1, "default") is lbp_code_map(ctx, "cb", 1, "default")
    np.testing.assert_array_equal(lbp_code_map(ctx, "cb", 1, "uniform"),
                                  lbp_mapping("uniform")[0][lbp_code_map(ctx, "cb", 1, "default")])


def test_channels_on_the_8bit_scale():
    rgb = random_rgb((6, 7), seed=8)
    ctx = ImageContext(rgb)
    r, g, b = (rgb[..., k].astype(np.float32) for k in range(3))
    np.testing.assert_array_equal(ctx.channel_8bit("r_g"), r - g)
    np.testing.assert_array_equal(ctx.channel_8bit("b_r"), b - r)
    np.testing.assert_allclose(ctx.channel_8bit("v"), rgb.max(axis=2), atol=1e-3)
    np.testing.assert_array_equal(ctx.channel_8bit("y"), ctx.channel("y"))


def test_names_do_not_depend_on_image_size():
    params = dict(channels=["y", "cb", "s"], radii=[1, 3], mapping="nri_uniform", levels=[1, 2, 4])
    small = texture(ImageContext(random_rgb((64, 64))), **params)
    large = texture(ImageContext(random_rgb((333, 517))), **params)
    assert list(small) == list(large)
    # y and s at scales 1, 2, 4, 8; cb, stored at half size, at 2, 4, 8.
    assert len(small) == (4 + 3 + 4) * 2 * 59 * 21


def test_finite_on_tiny_image():
    features = texture(ImageContext(random_rgb((8, 8))), radii=[1, 2, 3], levels=[1, 2, 4])
    assert np.isfinite(list(features.values())).all()


def test_unknown_mapping_and_bad_radius_are_errors():
    with pytest.raises(ValueError):
        lbp_mapping("ror")
    with pytest.raises(ValueError):
        lbp_patterns(np.zeros((9, 9), np.float32), 0)


def checkerboard(size, dark=0, bright=255):
    rows, cols = np.indices((size, size))
    grey = np.where((rows + cols) % 2 == 0, dark, bright).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def test_glcm_of_checkerboard_has_the_hand_computed_values():
    features = glcm(ImageContext(checkerboard(16)), distances=[1, 2])
    # 0 and 255 quantise to levels 0 and 31: horizontal/vertical neighbours always differ by 31,
    # diagonal neighbours and pixels two apart are always equal.
    for angle in (0, 90):
        assert features[f"contrast__d_1_a_{angle}"] == pytest.approx(31 ** 2)
        assert features[f"dissimilarity__d_1_a_{angle}"] == pytest.approx(31)
        assert features[f"homogeneity__d_1_a_{angle}"] == pytest.approx(1 / (1 + 31 ** 2))
        assert features[f"correlation__d_1_a_{angle}"] == pytest.approx(-1)
    for name in ("contrast__d_1_a_45", "contrast__d_1_a_135", "contrast__d_2_a_0",
                 "contrast__d_2_a_45"):
        assert features[name] == 0
    assert features["correlation__d_2_a_0"] == pytest.approx(1)
    assert features["asm__d_1_a_0"] == pytest.approx(0.5)  # P(0,31) = P(31,0) = 1/2
    assert features["energy__d_1_a_0"] == pytest.approx(np.sqrt(0.5))


def test_glcm_matches_skimage_graycoprops():
    ctx = ImageContext(random_rgb((45, 61), seed=7))
    features = glcm(ctx, distances=[1, 3], n_levels=16)
    levels = (ctx.gray * 16 / 256).astype(np.uint8)
    matrix = graycomatrix(levels, [1, 3], np.deg2rad([0, 45, 90, 135]), levels=16,
                          symmetric=True, normed=True)
    for prop in GLCM_PROPERTIES:
        expected = graycoprops(matrix, prop.upper() if prop == "asm" else prop)
        for d_index, distance in enumerate([1, 3]):
            for a_index, angle in enumerate([0, 45, 90, 135]):
                assert features[f"{prop}__d_{distance}_a_{angle}"] == pytest.approx(
                    expected[d_index, a_index], rel=1e-9, abs=1e-12)


def test_glcm_of_constant_image_is_defined():
    features = glcm(ImageContext(np.full((8, 8, 3), 90, np.uint8)))
    assert features["contrast__d_1_a_0"] == 0
    assert features["energy__d_2_a_135"] == pytest.approx(1)
    assert features["correlation__d_1_a_45"] == 1


def test_glcm_names_do_not_depend_on_image_size_and_are_finite_on_tiny_images():
    small = glcm(ImageContext(random_rgb((8, 8))))
    large = glcm(ImageContext(random_rgb((333, 517))))
    assert list(small) == list(large)
    assert len(small) == len(GLCM_PROPERTIES) * 2 * 4
    assert np.isfinite(list(small.values())).all()


def exact_tie_lbp(image, radius):
    """Raw LBP patterns in float64 by the documented definition: neighbour offsets rounded to 5
    decimals as in scikit-image, a neighbour within ``TIE_TOLERANCE`` below the centre counting
    as equal (scikit-image's double rounding can put an exact tie just below it)."""
    image = image.astype(np.float64)
    height, width = image.shape[0] - 2 * radius, image.shape[1] - 2 * radius
    rows, cols = np.indices((height, width)) + radius
    patterns = np.zeros((height, width), int)
    for p in range(8):
        dy = np.round(-radius * np.sin(2 * np.pi * p / 8), 5)
        dx = np.round(radius * np.cos(2 * np.pi * p / 8), 5)
        y, x = rows + dy, cols + dx
        top, left = np.floor(y + 1e-9).astype(int), np.floor(x + 1e-9).astype(int)
        fy, fx = np.clip(y - top, 0, 1), np.clip(x - left, 0, 1)
        bottom = np.minimum(top + 1, image.shape[0] - 1)
        right = np.minimum(left + 1, image.shape[1] - 1)
        value = ((1 - fy) * (1 - fx) * image[top, left] + (1 - fy) * fx * image[top, right]
                 + fy * (1 - fx) * image[bottom, left] + fy * fx * image[bottom, right])
        patterns |= (value >= image[rows, cols] - TIE_TOLERANCE).astype(int) << p
    return patterns


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_raw_patterns_match_float64_references_on_plateaus_and_noise(radius):
    # Plateaus make many exact ties, on and off the grid, which must count as ">="; noise
    # exercises every bilinear weight, where scikit-image (double precision) agrees.
    rng = np.random.default_rng(radius)
    plateaus = (rng.integers(0, 4, (30, 33)) * 60).astype(np.uint8)
    noise = rng.integers(0, 256, (40, 44)).astype(np.uint8)
    np.testing.assert_array_equal(lbp_patterns(plateaus.astype(np.float32), radius),
                                  exact_tie_lbp(plateaus, radius))
    np.testing.assert_array_equal(lbp_patterns(noise.astype(np.float32), radius),
                                  skimage_lbp(noise, radius, "default"))
    np.testing.assert_array_equal(exact_tie_lbp(noise, radius),
                                  skimage_lbp(noise, radius, "default"))


def test_patterns_of_an_image_with_no_interior_are_empty():
    assert lbp_patterns(np.zeros((4, 9), np.float32), 2).shape == (0, 5)
