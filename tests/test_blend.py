import math

import cv2
import numpy as np
import pytest

import warnings

from skimage.feature import local_binary_pattern

from features.blend import (REGION_BITS, Rect, blend, chi_square, diagonal_detail, face_regions,
                            grouped_mad, region_channel_moments, region_histograms,
                            region_moments, region_views, window_residual, window_view)
from features.context import ImageContext
from features.face import FaceBox, largest_face
from features.residual import KERNELS

BOX = FaceBox(x=30, y=20, w=50, h=40, fallback=False)   # in a 100 x 120 image


def grey_context(values: np.ndarray, box: FaceBox | None = None) -> ImageContext:
    """An RGB image with R = G = B = values (so Y = values, Cb = Cr = 128), box pre-seeded."""
    pixels = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    ctx = ImageContext(np.dstack([pixels] * 3))
    if box is not None:
        ctx._shared["face"] = box
    return ctx


def full_masks(shape, box, inner_scale=0.7, ring_scale=1.4, band_width=0.1):
    """Each region as a boolean mask over the whole image, from the regions' label map."""
    regions = face_regions(shape, box, inner_scale, ring_scale, band_width)
    y0, y1, x0, x1 = regions.window
    masks = {}
    for name, bit in REGION_BITS.items():
        mask = np.zeros(shape, bool)
        mask[y0:y1, x0:x1] = (regions.labels & bit) > 0
        masks[name] = mask
    return regions, masks


def masked_moments(values, origin, shape, masks):
    """(4, 3) expected moments by NumPy: count, mean, variance, mean |value| over each region's
    mask, with ``values[i, j]`` placed on pixel ``(i + origin[0], j + origin[1])``."""
    on_grid = np.full(shape, np.nan)
    on_grid[origin[0]:origin[0] + values.shape[0], origin[1]:origin[1] + values.shape[1]] = values
    expected = []
    for name in ("inner", "ring", "band"):
        inside = on_grid[masks[name] & ~np.isnan(on_grid)]
        expected.append([inside.size, inside.mean(), inside.var(), np.abs(inside).mean()])
    return np.array(expected).T


def two_noise_levels(shape, box, sigma_in, sigma_out, seed=0):
    """Grey 128 plus white noise of std sigma_in inside the box and sigma_out outside."""
    rng = np.random.default_rng(seed)
    sigma = np.full(shape, float(sigma_out))
    sigma[box.y:box.y + box.h, box.x:box.x + box.w] = sigma_in
    return 128 + sigma * rng.standard_normal(shape)


def test_regions_cover_the_hand_computed_pixels():
    _, masks = full_masks((100, 120), BOX)
    # Centre (40, 55). Inner: 0.7 of 40 x 50 -> rows [26, 54), columns [37.5, 72.5) -> [38, 73).
    expected_inner = np.zeros((100, 120), bool)
    expected_inner[26:54, 38:73] = True
    np.testing.assert_array_equal(masks["inner"], expected_inner)
    # Ring: 1.4 x -> rows [12, 68), columns [20, 90): 56 * 70 minus the 40 * 50 box.
    assert masks["ring"].sum() == 56 * 70 - 40 * 50
    assert not masks["ring"][20:60, 30:80].any()
    # Band: half width round(0.1 * (50 + 40) / 4) = 2 pixels on each side of the box's edge.
    assert masks["band"].sum() == 44 * 54 - 36 * 46
    assert not (masks["inner"] & masks["ring"]).any()
    assert not (masks["inner"] & masks["band"]).any()


def test_band_straddles_the_box_edge():
    _, masks = full_masks((100, 120), BOX)
    band_column = masks["band"][:, 55]            # a column through the top and bottom edges
    np.testing.assert_array_equal(np.flatnonzero(band_column), [18, 19, 20, 21, 58, 59, 60, 61])
    band_row = masks["band"][40, :]               # a row through the left and right edges
    np.testing.assert_array_equal(np.flatnonzero(band_row), [28, 29, 30, 31, 78, 79, 80, 81])
    # The outer half of the band is part of the ring, the inner half part of the box.
    assert masks["ring"][18, 55] and masks["ring"][19, 55] and not masks["ring"][20, 55]


def test_regions_are_clipped_at_the_image_border():
    _, masks = full_masks((100, 120), FaceBox(0, 0, 50, 40, False))
    # Grown box: rows [-8, 48) and columns [-10, 60), clipped to [0, 48) x [0, 60).
    assert masks["ring"].sum() == 48 * 60 - 40 * 50
    assert masks["band"].sum() == 42 * 52 - 36 * 46


def test_pieces_and_label_map_describe_the_same_regions():
    regions, masks = full_masks((100, 120), BOX)
    for name, pieces in regions.pieces.items():
        from_pieces = np.zeros((100, 120), int)
        for y0, y1, x0, x1 in pieces:
            from_pieces[y0:y1, x0:x1] += 1
        assert from_pieces.max() == 1                 # the pieces are disjoint
        np.testing.assert_array_equal(from_pieces == 1, masks[name])


@pytest.mark.parametrize("origin", [(0, 0), (1, 1), (0, 1)])
def test_region_moments_match_numpy_over_the_mask(origin):
    regions, masks = full_masks((100, 120), BOX)
    rng = np.random.default_rng(1)
    values = rng.normal(3.0, 2.0, (100 - 2, 120 - 1)).astype(np.float32)
    np.testing.assert_allclose(region_moments(values, origin, regions),
                               masked_moments(values, origin, (100, 120), masks), rtol=1e-5)


def test_region_histograms_count_the_codes_of_each_region():
    regions, masks = full_masks((100, 120), BOX)
    codes = np.random.default_rng(2).integers(0, 10, (98, 118)).astype(np.uint8)
    histograms = region_histograms(codes, (1, 1), regions, 10)
    for row, name in enumerate(("inner", "ring", "band")):
        np.testing.assert_array_equal(histograms[row],
                                      np.bincount(codes[masks[name][1:-1, 1:-1]], minlength=10))


def test_grouped_mad_of_hand_made_histograms():
    # All of one value: spread over one unit bin around it, the MAD is a quarter unit.
    assert grouped_mad(np.array([0, 0, 7, 0])) == pytest.approx(0.25)
    # Counts 1, 2, 1 of 0, 1, 2: median 1; half the mass lies within +-1/2 of it.
    assert grouped_mad(np.array([1, 2, 1])) == pytest.approx(0.5)
    assert grouped_mad(np.zeros(5)) == 0.0


def test_grouped_mad_estimates_the_std_of_rounded_gaussian_noise():
    samples = np.rint(np.random.default_rng(3).normal(50, 5, 200_000)).astype(int)
    assert grouped_mad(np.bincount(samples)) / 0.6745 == pytest.approx(5.0, rel=0.02)


def test_chi_square_distances_by_hand():
    assert chi_square(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(2.0)
    assert chi_square(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == pytest.approx(
        0.25 / 1.5 + 0.25 / 0.5)
    assert chi_square(np.array([0.2, 0.8, 0.0]), np.array([0.2, 0.8, 0.0])) == 0.0


def test_twice_the_noise_in_the_face_gives_a_noise_ratio_of_two():
    box = FaceBox(60, 50, 100, 100, False)
    features = blend(grey_context(two_noise_levels((200, 220), box, 8.0, 4.0), box))
    assert math.exp(features["y_noise__log_inner_over_ring"]) == pytest.approx(2.0, rel=0.1)
    # Donoho's estimate is the noise std itself (8-bit rounding adds little at these levels).
    assert features["y_noise__ring"] == pytest.approx(4.0, rel=0.1)
    assert features["y_noise__inner"] == pytest.approx(8.0, rel=0.1)
    # Linear residuals of white noise scale with it too.
    assert math.exp(features["y_kb_std__log_inner_over_ring"]) == pytest.approx(2.0, rel=0.1)


def test_without_a_face_the_central_fallback_box_is_compared():
    shape = (200, 200)
    box = FaceBox(40, 40, 120, 120, True)          # the fallback: centred, 60% of the side
    ctx = grey_context(two_noise_levels(shape, box, 8.0, 4.0, seed=4))
    assert largest_face(ctx) == box
    features = blend(ctx)
    assert math.exp(features["y_noise__log_inner_over_ring"]) == pytest.approx(2.0, rel=0.1)


def test_brighter_face_shows_in_the_mean_differences():
    values = np.full((100, 120), 100.0)
    values[BOX.y:BOX.y + BOX.h, BOX.x:BOX.x + BOX.w] = 130.0
    features = blend(grey_context(values, BOX))
    assert features["y_mean__inner"] == pytest.approx(130.0)
    assert features["y_mean__ring"] == pytest.approx(100.0)
    assert features["y_mean__inner_minus_ring"] == pytest.approx(30.0)
    # The band has 2000 - 36 * 46 = 344 pixels inside the box and 44 * 54 - 2000 = 376 outside.
    band_mean = (344 * 130 + 376 * 100) / 720
    assert features["y_mean__inner_minus_band"] == pytest.approx(130 - band_mean)
    assert features["cb_mean__inner_minus_ring"] == pytest.approx(0.0)
    assert features["y_std__inner"] == pytest.approx(0.0)
    # Flat inner region: every LBP code is P = 8 (all neighbours equal the centre).
    assert features["y_lbp__inner_bin_8"] == pytest.approx(1.0)


def test_blurred_face_is_less_sharp_than_its_surroundings():
    rng = np.random.default_rng(5)
    values = 128 + 20 * rng.standard_normal((100, 120))
    blurred = cv2.GaussianBlur(values, (0, 0), 1.5)
    values[BOX.y:BOX.y + BOX.h, BOX.x:BOX.x + BOX.w] = blurred[BOX.y:BOX.y + BOX.h,
                                                               BOX.x:BOX.x + BOX.w]
    features = blend(grey_context(values, BOX))
    assert features["y_laplacian_var__log_inner_over_ring"] < -1.0
    # Smoothing turns noise speckle (non-uniform codes) into smooth ramps (uniform codes).
    assert features["y_lbp__inner_bin_9"] < features["y_lbp__ring_bin_9"]


def test_face_filling_the_image_has_an_empty_ring_and_zero_contrasts():
    rng = np.random.default_rng(6)
    box = FaceBox(0, 0, 64, 64, False)
    features = blend(grey_context(128 + 10 * rng.standard_normal((64, 64)), box))
    assert features["y_noise__ring"] == 0.0
    assert features["y_noise__log_inner_over_ring"] == 0.0
    assert features["y_lbp__chi2_inner_ring"] == 0.0
    assert features["y_noise__inner"] > 5.0


def test_names_do_not_depend_on_the_image_size():
    rng = np.random.default_rng(7)
    small = blend(ImageContext(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    large = blend(ImageContext(rng.integers(0, 256, (400, 300, 3), dtype=np.uint8)))
    assert list(small) == list(large)
    assert all(name.replace("_", "").isalnum() and name == name.lower() for name in small)


@pytest.mark.parametrize("value", [None, 0, 255])
def test_tiny_and_constant_images_give_finite_features(value):
    rng = np.random.default_rng(8)
    pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) if value is None \
        else np.full((8, 8, 3), value, np.uint8)
    features = blend(ImageContext(pixels))
    assert np.all(np.isfinite(list(features.values())))


def test_parameters_are_validated():
    ctx = grey_context(np.full((32, 32), 9.0))
    with pytest.raises(ValueError):
        blend(ctx, channels=("h",))
    with pytest.raises(ValueError):
        blend(ctx, kernels=("nope",))
    with pytest.raises(ValueError):
        blend(ctx, ring_scale=0.9)


def test_region_views_are_the_rectangles_in_map_coordinates_clipped_to_the_map():
    # values[i, j] = 100 i + j belongs to image pixel (i + 1, j + 2).
    values = np.add.outer(100 * np.arange(10), np.arange(12))
    views = region_views(values, (1, 2), [Rect(0, 4, 0, 5), Rect(3, 5, 6, 8), Rect(20, 30, 0, 5)])
    # Rows 0..3 and columns 0..4 of the image: map rows 0..2 (row -1 is off the map), columns
    # 0..2; the last rectangle lies wholly off the map and gives no view.
    assert len(views) == 2
    np.testing.assert_array_equal(views[0], [[0, 1, 2], [100, 101, 102], [200, 201, 202]])
    np.testing.assert_array_equal(views[1], [[204, 205], [304, 305]])


def test_window_view_crops_the_map_and_moves_the_origin():
    values = np.add.outer(100 * np.arange(20), np.arange(30))
    view, origin = window_view(values, (1, 1), Rect(5, 12, 8, 40))
    # Image rows 5..11 are map rows 4..10; image columns 8..39 are map columns 7..29 (clipped).
    assert view.shape == (7, 23) and origin == (5, 8)
    assert view[0, 0] == 407 and view[-1, -1] == 1029


@pytest.mark.parametrize("kernel, direction", [("o1", "h"), ("o1", "v"), ("o2", "v"), ("kb", "h")])
@pytest.mark.parametrize("window", [Rect(10, 30, 20, 50), Rect(0, 40, 0, 7), Rect(25, 40, 40, 60)])
def test_window_residual_holds_the_residual_of_every_window_pixel(kernel, direction, window):
    # The kernel's sum by hand on the whole plane (int64), wherever the kernel lies inside it.
    plane = np.random.default_rng(12).integers(0, 256, (40, 60)).astype(np.uint8)
    weights, (row, col), _, directional = KERNELS[kernel]
    if directional and direction == "v":
        weights, (row, col) = weights.T, (col, row)
    values, (top, left) = window_residual(plane, window, kernel, direction)
    assert values.dtype == np.int16
    for y in range(window.y0, window.y1):
        for x in range(window.x0, window.x1):
            y0, x0 = y - row, x - col
            inside = (y0 >= 0 and x0 >= 0 and y0 + weights.shape[0] <= plane.shape[0]
                      and x0 + weights.shape[1] <= plane.shape[1])
            i, j = y - top, x - left
            on_map = 0 <= i < values.shape[0] and 0 <= j < values.shape[1]
            assert on_map == inside, (y, x)
            if inside:
                patch = plane[y0:y0 + weights.shape[0], x0:x0 + weights.shape[1]].astype(np.int64)
                assert values[i, j] == (patch * weights).sum()


def test_diagonal_detail_codes_by_hand():
    plane = np.array([[10, 20, 0], [30, 255, 7]], np.uint8)
    # x00 - x01 - x10 + x11 + 510 of each 2 x 2 block.
    np.testing.assert_array_equal(diagonal_detail(plane),
                                  [[10 - 20 - 30 + 255 + 510, 20 - 0 - 255 + 7 + 510]])
    assert diagonal_detail(plane).dtype == np.uint16
    np.testing.assert_array_equal(diagonal_detail(np.array([[0, 255], [255, 0]], np.uint8)), [[0]])


def test_region_channel_moments_match_numpy_per_channel():
    regions, masks = full_masks((100, 120), BOX)
    image = np.random.default_rng(9).integers(0, 256, (100, 120, 3)).astype(np.uint8)
    counts, means, variances = region_channel_moments(image, regions)
    for column, name in enumerate(("inner", "ring", "band")):
        inside = image[masks[name]].astype(float)          # (pixels, 3)
        assert counts[column] == masks[name].sum()
        np.testing.assert_allclose(means[:, column], inside.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(variances[:, column], inside.var(axis=0), rtol=1e-9)


def test_region_histograms_of_16_bit_codes():
    regions, masks = full_masks((100, 120), BOX)
    codes = np.random.default_rng(10).integers(0, 1021, (99, 119)).astype(np.uint16)
    histograms = region_histograms(codes, (0, 0), regions, 1021)
    for row, name in enumerate(("inner", "ring", "band")):
        np.testing.assert_array_equal(histograms[row],
                                      np.bincount(codes[masks[name][:-1, :-1]], minlength=1021))


def test_lbp_histograms_equal_skimage_uniform_codes_per_region():
    rng = np.random.default_rng(11)
    values = cv2.GaussianBlur(rng.uniform(0, 255, (100, 120)), (0, 0), 1.0)
    ctx = grey_context(values, BOX)
    features = blend(ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codes = local_binary_pattern(ctx.rgb[..., 0], 8, 1, "uniform").astype(int)
    _, masks = full_masks((100, 120), BOX)
    for name in ("inner", "ring", "band"):
        interior = masks[name].copy()                 # pixels with all neighbours in the image
        interior[[0, -1], :] = interior[:, [0, -1]] = False
        expected = np.bincount(codes[interior], minlength=10) / interior.sum()
        got = [features[f"y_lbp__{name}_bin_{code}"] for code in range(10)]
        np.testing.assert_allclose(got, expected, atol=1e-12)
