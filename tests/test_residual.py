import cv2
import numpy as np
import pytest
from scipy import stats

from features.context import ImageContext
from features.residual import (KERNELS, colour_residual, neighbour_codes, quantise, residual,
                               residual_map, residual_statistics)

PAIR_ZERO_ZERO = 2 * 5 + 2  # with t = 2 a quantised value v has code v + 2; the pair (0, 0)


def random_rgb(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3)).astype(np.uint8)


def linear_ramp(height=20, width=30):
    rows, cols = np.indices((height, width))
    return (3.0 * rows + 2.0 * cols + 7.0).astype(np.float32)


@pytest.mark.parametrize("kernel", ["o2", "o3", "kb", "kv"])
@pytest.mark.parametrize("direction", ["h", "v"])
def test_higher_order_residuals_of_a_linear_ramp_are_zero(kernel, direction):
    residuals = residual_map(linear_ramp(), kernel, direction)
    assert residuals.size > 0
    np.testing.assert_array_equal(residuals, 0)


def test_first_order_residual_is_the_slope_along_its_direction():
    np.testing.assert_array_equal(residual_map(linear_ramp(), "o1", "h"), 2)
    np.testing.assert_array_equal(residual_map(linear_ramp(), "o1", "v"), 3)
    np.testing.assert_array_equal(residual_map(np.array([[0, 3, 7]], np.float32), "o1", "h"),
                                  [[3, 4]])


def test_valid_residual_sizes_and_impulse_response():
    impulse = np.zeros((5, 5), np.float32)
    impulse[2, 2] = 1
    # Symmetric kernels: the response to an impulse is the kernel itself.
    np.testing.assert_array_equal(residual_map(impulse, "kb", "h"),
                                  [[-1, 2, -1], [2, -4, 2], [-1, 2, -1]])
    np.testing.assert_array_equal(residual_map(impulse, "kv", "h"), [[-12]])
    # x[j-1] - 3 x[j] + 3 x[j+1] - x[j+2] of a row with a single 1 at column 2.
    np.testing.assert_array_equal(residual_map(impulse[2:3], "o3", "h"), [[3, -3]])
    assert residual_map(impulse, "o3", "v").shape == (2, 5)


def test_quantisation_rounds_halves_away_from_zero_and_truncates():
    values = np.array([[-100, -2.5, -1.5, -1.4, -0.5, -0.4, 0, 0.4, 0.5, 1.4, 1.5, 2.5, 100]],
                      np.float32)
    # round():        -100  -3    -2    -1    -1    0     0  0    1    1    2    3    100
    # clip to [-2, 2] and shift by 2:
    np.testing.assert_array_equal(quantise(values, 1.0, 2),
                                  [[0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4]])
    np.testing.assert_array_equal(quantise(np.array([[1, 2, 3, -1]], np.float32), 2.0, 2),
                                  [[3, 3, 4, 1]])  # 0.5 -> 1, 1 -> 1, 1.5 -> 2, -0.5 -> -1
    np.testing.assert_array_equal(quantise(np.array([[-9, 9]], np.float32), 1.0, 3), [[0, 6]])


def test_neighbour_codes_pair_and_triple():
    codes = np.array([[0, 4, 2], [1, 1, 3]], np.uint8)
    np.testing.assert_array_equal(neighbour_codes(codes, 5, 2, "h"), [[4, 22], [6, 8]])
    np.testing.assert_array_equal(neighbour_codes(codes, 5, 3, "h"), [[22], [33]])
    np.testing.assert_array_equal(neighbour_codes(codes, 5, 2, "v"), [[1, 21, 13]])
    assert neighbour_codes(codes, 7, 3, "h").dtype == np.uint16  # 343 codes


def test_constant_image_puts_every_pair_in_the_zero_zero_code():
    features = residual(ImageContext(np.full((16, 16, 3), 100, np.uint8)))
    histograms = {name: value for name, value in features.items() if "_pair__" in name}
    assert len(histograms) == len(KERNELS) * 2 * 25
    for name, value in histograms.items():
        assert value == (1.0 if name.endswith(f"__bin_{PAIR_ZERO_ZERO}") else 0.0), name
    moments = {name: value for name, value in features.items() if "_pair__" not in name}
    assert moments and all(value == 0 for value in moments.values())


def test_strong_edges_are_clipped_to_the_extreme_codes():
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[:, 4:] = 255  # one vertical edge: o1_h residual is 255 at column 3, else 0
    features = residual(ImageContext(rgb), kernels=["o1"])
    # Rows have 6 pairs: (0,0) x 4 (codes 2,2), (0,+255) -> (2, 4) once, (+255,0) -> (4, 2) once.
    assert features["y_o1_h_pair__cell_1x1_0_0__bin_12"] == pytest.approx(4 / 6)
    assert features["y_o1_h_pair__cell_1x1_0_0__bin_14"] == pytest.approx(1 / 6)
    assert features["y_o1_h_pair__cell_1x1_0_0__bin_22"] == pytest.approx(1 / 6)


def test_moments_match_scipy():
    ctx = ImageContext(random_rgb((40, 50), seed=2))
    features = residual(ctx, kernels=["kb"])
    r = residual_map(ctx.channel("y"), "kb", "h").ravel().astype(np.float64) / 4
    assert features["y_kb__std"] == pytest.approx(r.std(), rel=1e-5)
    assert features["y_kb__mean_abs"] == pytest.approx(np.abs(r).mean(), rel=1e-5)
    assert features["y_kb__kurtosis"] == pytest.approx(stats.kurtosis(r), rel=1e-4, abs=1e-6)


def test_moments_of_laplace_noise_have_excess_kurtosis_three():
    noise = np.random.default_rng(3).laplace(0, 10, (400, 400)).astype(np.float32)
    assert residual_statistics(noise)["kurtosis"] == pytest.approx(3.0, abs=0.2)


def test_pyramid_cells_separate_flat_and_noisy_halves():
    rgb = np.full((32, 32, 3), 90, np.uint8)
    rgb[:, :16] = random_rgb((32, 16), seed=5)
    features = residual(ImageContext(rgb), kernels=["o1"], levels=[1, 2])
    flat_right = features[f"y_o1_h_pair__cell_2x2_0_1__bin_{PAIR_ZERO_ZERO}"]
    noisy_left = features[f"y_o1_h_pair__cell_2x2_0_0__bin_{PAIR_ZERO_ZERO}"]
    assert flat_right > 0.9 and noisy_left < 0.1


def test_colour_residual_of_a_grey_image_is_all_zero_zero_pairs():
    grey = random_rgb((24, 24), seed=6)[..., :1].repeat(3, axis=2)  # r = g = b: no colour
    features = colour_residual(ImageContext(grey))
    for channel in ("cb", "cr", "r_g", "g_b"):
        for direction in ("h", "v"):
            assert features[f"{channel}_o1_{direction}_pair__cell_1x1_0_0__bin_12"] == 1.0


def test_residual_maps_are_shared_through_the_context():
    ctx = ImageContext(random_rgb((20, 20)))
    residual(ctx, kernels=["o2"])
    cached = ctx.shared(("residual", "y", "o2", "v"), lambda: pytest.fail("not cached"))
    np.testing.assert_array_equal(cached, residual_map(ctx.channel("y"), "o2", "v"))


@pytest.mark.parametrize("family", [residual, colour_residual])
def test_names_do_not_depend_on_image_size(family):
    params = dict(order=3, t=3, levels=[1, 2, 4])
    small = family(ImageContext(random_rgb((64, 64))), **params)
    large = family(ImageContext(random_rgb((333, 517))), **params)
    assert list(small) == list(large)


@pytest.mark.parametrize("shape", [(8, 8), (3, 3), (1, 1)])
def test_finite_on_tiny_images(shape):
    features = residual(ImageContext(random_rgb(shape)), order=3, levels=[1, 2, 4])
    assert len(features) == len(KERNELS) * 2 * 125 * 21 + (3 * 2 + 2) * 3
    assert np.isfinite(list(features.values())).all()


def test_invalid_parameters_are_errors():
    ctx = ImageContext(random_rgb((10, 10)))
    with pytest.raises(ValueError):
        residual(ctx, kernels=["sobel"])
    for bad in (dict(order=4), dict(t=0), dict(t=20, order=3), dict(q=0)):
        with pytest.raises(ValueError):
            residual(ctx, **bad)


def test_first_difference_of_fractional_values_is_the_float32_difference():
    image = np.random.default_rng(4).normal(100, 30, (9, 11)).astype(np.float32)
    np.testing.assert_array_equal(residual_map(image, "o1", "h"), image[:, 1:] - image[:, :-1])
    np.testing.assert_array_equal(residual_map(image, "o1", "v"), image[1:] - image[:-1])


def test_moments_of_a_map_taller_than_one_block_match_numpy():
    # 700 x 300 values span several row blocks of the moment computation, the last one partial.
    values = np.random.default_rng(6).standard_t(5, (700, 300)).astype(np.float32) * 3 + 0.5
    expected = values.astype(np.float64) / 2
    got = residual_statistics(values, 2.0)
    assert got["std"] == pytest.approx(expected.std(), rel=1e-6)
    assert got["mean_abs"] == pytest.approx(np.abs(expected).mean(), rel=1e-6)
    assert got["kurtosis"] == pytest.approx(stats.kurtosis(expected.ravel()), rel=1e-5)


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("direction", ["h", "v"])
def test_int16_residuals_of_an_8bit_image_are_the_float_residuals(kernel, direction):
    image = np.random.default_rng(3).integers(0, 256, (23, 31)).astype(np.uint8)
    image[0, :5] = 255  # the largest residuals fit too
    exact = residual_map(image, kernel, direction, cv2.CV_16S)
    assert exact.dtype == np.int16
    np.testing.assert_array_equal(exact, residual_map(image.astype(np.float32), kernel, direction))


def test_int16_residuals_need_an_8bit_image():
    with pytest.raises(ValueError, match="uint8"):
        residual_map(np.zeros((5, 5), np.float32), "kb", "h", cv2.CV_16S)
