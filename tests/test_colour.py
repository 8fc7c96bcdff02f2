import cv2
import numpy as np
import pytest

from features.colour import (colour, histogram_correlation, histogram_moments,
                             histogram_percentiles, laplacian, plane_correlations)
from features.context import ImageContext


def _image(pixels) -> ImageContext:
    return ImageContext(np.ascontiguousarray(pixels, dtype=np.uint8))


def test_grey_image_has_no_saturation_nor_chroma_and_perfectly_correlated_channels():
    levels = np.random.default_rng(0).integers(0, 256, (48, 64))
    features = colour(_image(np.dstack([levels] * 3)))
    saturation = [v for k, v in features.items() if k.startswith("saturation__")]
    assert saturation == [0.0] * 7
    chroma = [v for k, v in features.items() if k.startswith(("cb__", "cr__", "cb_cr"))]
    assert chroma == [0.0] * len(chroma)
    for pair in ("r_g", "r_b", "g_b"):
        assert features[f"correlation__{pair}"] == pytest.approx(1.0)
        assert features[f"residual_correlation__{pair}"] == pytest.approx(1.0)


def test_pure_colours_are_fully_saturated():
    rng = np.random.default_rng(1)
    pixels = np.zeros((32, 32, 3), np.uint8)
    channel = rng.integers(0, 3, (32, 32))
    pixels[np.arange(32)[:, None], np.arange(32)[None, :], channel] = rng.integers(1, 256, (32, 32))
    features = colour(_image(pixels))
    assert features["saturation__mean"] == pytest.approx(1.0)
    assert features["saturation__percentile_5"] == 1.0


def test_saturation_percentiles_of_a_uniform_ramp():
    # max = 255 and min = 0..255 gives S = 1 - min / 255: 256 evenly spaced values in [0, 1].
    ramp = np.arange(256, dtype=np.uint8).repeat(4).reshape(32, 32)
    features = colour(_image(np.dstack([np.full_like(ramp, 255), ramp, ramp])))
    for q in (5, 25, 50, 75, 95):
        assert features[f"saturation__percentile_{q}"] == pytest.approx(q / 100, abs=1 / 255)
    assert features["saturation__mean"] == pytest.approx(0.5, abs=1e-6)
    assert features["saturation__std"] == pytest.approx(np.std(np.arange(256) / 255), abs=1e-6)


def test_histogram_percentiles_follow_the_inverted_cdf():
    counts = np.zeros(256)
    counts[[10, 20, 30, 40]] = 1
    # Inverted CDF: the 0th and 25th percentiles are the first value, the 26th the second, the
    # 100th the last.
    levels = histogram_percentiles(counts, [0, 25, 26, 50, 100])
    assert levels.tolist() == [10, 10, 20, 20, 40]


def test_exposure_fractions_count_clipped_pixels():
    pixels = np.full((10, 10, 3), 128, np.uint8)
    pixels[0] = (255, 255, 255)   # 10 % all channels clipped high
    pixels[1] = (255, 40, 40)     # 10 % one channel clipped high
    pixels[2] = (253, 253, 253)   # 10 % within 4 of white but not clipped
    pixels[3] = (0, 0, 0)         # 10 % black
    pixels[4] = (0, 90, 3)        # 10 % one channel at 0, one within 4 of it
    features = colour(_image(pixels), clip_margins=(0, 4))
    assert features["overexposed_any__margin_0"] == pytest.approx(0.2)
    assert features["overexposed_all__margin_0"] == pytest.approx(0.1)
    assert features["overexposed_any__margin_4"] == pytest.approx(0.3)
    assert features["overexposed_all__margin_4"] == pytest.approx(0.2)
    assert features["underexposed_any__margin_0"] == pytest.approx(0.2)
    assert features["underexposed_all__margin_0"] == pytest.approx(0.1)
    assert features["underexposed_all__margin_4"] == pytest.approx(0.1)


def test_histogram_moments_of_a_two_point_distribution():
    counts, levels = np.array([50.0, 50.0]), np.array([-3.0, 5.0])
    mean, spread, skewness, kurtosis = histogram_moments(counts, levels)
    # Symmetric two-point law around 1 with half-width 4: skewness 0, excess kurtosis 1 - 3.
    assert (mean, spread, skewness, kurtosis) == pytest.approx((1.0, 4.0, 0.0, -2.0))


def test_chroma_moments_of_two_colours():
    pixels = np.zeros((20, 20, 3), np.uint8)
    pixels[:, :10] = (200, 60, 60)   # reddish: Cr > 128
    pixels[:, 10:] = (60, 60, 200)   # bluish: Cb > 128
    features = colour(_image(pixels))
    assert features["cb__skewness"] == pytest.approx(0.0, abs=1e-6)
    assert features["cb__kurtosis"] == pytest.approx(-2.0, abs=1e-6)
    # Cb rises exactly where Cr falls.
    assert features["cb_cr__correlation"] == pytest.approx(-1.0)
    # BT.601: Cr - 128 = 0.5 R - 0.4187 G - 0.0813 B = 70 and -11.4; Cb - 128 = -0.1687 R
    # - 0.3313 G + 0.5 B = -23.6 and 70 (each rounded to 8 bits by the conversion).
    assert features["cr__mean"] == pytest.approx((70 - 11.4) / 2, abs=0.5)
    assert features["cb__std"] == pytest.approx((70 + 23.6) / 2, abs=0.5)


def test_channel_correlation_sign_and_independence():
    rng = np.random.default_rng(2)
    red = rng.integers(0, 256, (128, 128))
    green = rng.integers(0, 256, (128, 128))
    features = colour(_image(np.dstack([red, 255 - red, green])))
    assert features["correlation__r_g"] == pytest.approx(-1.0)
    assert features["residual_correlation__r_g"] == pytest.approx(-1.0)
    assert abs(features["correlation__r_b"]) < 0.05
    assert abs(features["residual_correlation__r_b"]) < 0.05


def test_histogram_correlation_by_hand_and_against_numpy():
    levels = np.arange(2.0)
    assert histogram_correlation(np.array([[2.0, 0], [0, 2]]), levels, levels) == pytest.approx(1)
    assert histogram_correlation(np.array([[0.0, 1], [1, 0]]), levels, levels) == pytest.approx(-1)
    assert histogram_correlation(np.array([[3.0, 1], [0, 0]]), levels, levels) == 0.0  # constant
    rng = np.random.default_rng(6)
    first = rng.integers(0, 256, 5000)
    second = np.clip(first // 2 + rng.integers(0, 100, 5000), 0, 255)
    joint = np.zeros((256, 256))
    np.add.at(joint, (first, second), 1)
    assert histogram_correlation(joint, np.arange(256.0), np.arange(256.0)) == pytest.approx(
        np.corrcoef(first, second)[0, 1], abs=1e-12)


def test_plane_correlations_match_numpy_and_handle_constant_planes():
    rng = np.random.default_rng(5)
    base = rng.integers(0, 200, (300, 200))
    planes = [base.astype(np.uint8), (base // 2 + rng.integers(0, 50, base.shape)).astype(np.uint8),
              np.full(base.shape, 77, np.uint8), (rng.random(base.shape) < 1e-4).astype(np.uint8)]
    correlations = plane_correlations(planes, [(0, 1), (0, 2), (0, 3)])
    assert correlations[0] == pytest.approx(np.corrcoef(planes[0].ravel(), planes[1].ravel())[0, 1],
                                            abs=1e-9)
    assert correlations[1] == 0.0  # a constant plane has no defined correlation
    # A plane with only a few non-zero pixels is not constant.
    assert correlations[2] == pytest.approx(np.corrcoef(planes[0].ravel(), planes[3].ravel())[0, 1],
                                            abs=1e-9)


def test_residual_correlation_ignores_shared_smooth_shading():
    # One smooth gradient in R and G plus independent fine noise: channels correlate, residuals not.
    rng = np.random.default_rng(3)
    gradient = np.tile(np.linspace(20, 220, 128), (128, 1))
    red = gradient + rng.integers(-8, 9, (128, 128))
    green = gradient + rng.integers(-8, 9, (128, 128))
    features = colour(_image(np.dstack([red, green, np.full_like(red, 90)])))
    assert features["correlation__r_g"] > 0.9
    assert abs(features["residual_correlation__r_g"]) < 0.05


def test_names_do_not_depend_on_image_size_and_values_are_finite():
    rng = np.random.default_rng(4)
    names = None
    for pixels in [rng.integers(0, 256, (64, 64, 3)), rng.integers(0, 256, (333, 517, 3)),
                   rng.integers(0, 256, (8, 8, 3)), np.full((16, 16, 3), 37)]:
        features = colour(_image(pixels), percentiles=(10, 90), clip_margins=(0, 2, 8))
        assert names is None or list(features) == names
        names = list(features)
        assert np.isfinite(list(features.values())).all()
    assert len(names) == 2 + 2 + 4 * 3 + 9 + 6
    assert "saturation__percentile_90" in names and "underexposed_all__margin_8" in names


@pytest.mark.parametrize("params", [dict(percentiles=(101,)), dict(percentiles=(2.5,)),
                                    dict(clip_margins=(-1,)), dict(clip_margins=(300,))])
def test_invalid_parameters_are_rejected(params):
    with pytest.raises(ValueError):
        colour(_image(np.zeros((8, 8, 3))), **params)


def test_laplacian_by_hand_with_the_edge_pixel_repeated_at_the_borders():
    plane = np.array([[1, 2, 4],
                      [8, 16, 32]], np.uint8)
    # (0, 0): up = itself 1, down 8, left = itself 1, right 2 -> 1 + 8 + 1 + 2 - 4 = 8.
    # (1, 1): up 2, down = itself 16, left 8, right 32 -> 2 + 16 + 8 + 32 - 64 = -6.
    # (0, 2): up = itself 4, down 32, left 2, right = itself 4 -> 42 - 16 = 26.
    # (1, 2): up 4, down = itself 32, left 16, right = itself 32 -> 84 - 128 = -44.
    expected = np.array([[8, 15, 26],
                         [1, -6, -44]], np.int16)
    assert laplacian(plane).dtype == np.int16
    np.testing.assert_array_equal(laplacian(plane), expected)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (2, 2), (31, 17), (64, 64)])
def test_laplacian_matches_opencv_with_reflected_borders(shape):
    rng = np.random.default_rng(sum(shape))
    plane = rng.integers(0, 256, shape).astype(np.uint8)
    plane[0, 0] = 255  # an extreme corner: 4 * 255 must not wrap
    expected = cv2.Laplacian(plane, cv2.CV_16S, ksize=1, borderType=cv2.BORDER_REFLECT)
    np.testing.assert_array_equal(laplacian(plane), expected)


def test_laplacian_rejects_non_8bit_planes():
    with pytest.raises(ValueError, match="uint8"):
        laplacian(np.zeros((4, 4), np.float32))


def test_plane_correlations_of_signed_residuals_match_numpy():
    rng = np.random.default_rng(7)
    first = rng.integers(-1020, 1021, (90, 70)).astype(np.int16)
    second = (first // 3 + rng.integers(-300, 301, first.shape)).astype(np.int16)
    expected = np.corrcoef(first.ravel(), second.ravel())[0, 1]
    assert plane_correlations([first, second], [(0, 1)])[0] == pytest.approx(expected, abs=1e-12)


def test_plane_correlations_of_fractional_float_planes_match_numpy():
    # Values below 1 in magnitude: truncating them to integers would make every plane constant.
    rng = np.random.default_rng(8)
    first = rng.random((40, 30)).astype(np.float32)
    second = (0.5 * first + 0.3 * rng.random(first.shape)).astype(np.float32)
    expected = np.corrcoef(first.ravel().astype(np.float64), second.ravel())[0, 1]
    assert plane_correlations([first, second], [(0, 1)])[0] == pytest.approx(expected, abs=1e-6)
