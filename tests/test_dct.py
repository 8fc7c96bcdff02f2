import numpy as np
import pytest
import scipy.fft

from features.context import ImageContext
from features.dct import (BENFORD, ZIGZAG, block_dct, block_statistics, dct,
                          first_digit_histogram, global_log_dct_zones, jensen_shannon_divergence)


def _grey(image: np.ndarray) -> ImageContext:
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return ImageContext(np.dstack([pixels] * 3))


def _basis_block(u: int, v: int) -> np.ndarray:
    """The 8x8 orthonormal DCT-II basis image of frequency (u, v), from its textbook formula."""
    def cosines(k: int) -> np.ndarray:
        scale = np.sqrt(1 / 8) if k == 0 else np.sqrt(2 / 8)
        return scale * np.cos(np.pi * (2 * np.arange(8) + 1) * k / 16)
    return np.outer(cosines(u), cosines(v))


def test_zigzag_matches_the_jpeg_scan():
    assert ZIGZAG[:16].tolist() == [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5]
    assert ZIGZAG[-4:].tolist() == [47, 55, 62, 63]
    assert sorted(ZIGZAG.tolist()) == list(range(64))


def test_block_dct_is_the_orthonormal_dct_of_each_jpeg_block():
    image = np.random.default_rng(0).uniform(0, 255, (16, 24)).astype(np.float32)
    expected = [scipy.fft.dctn(image[r:r + 8, c:c + 8], norm="ortho").ravel()
                for r in range(0, 16, 8) for c in range(0, 24, 8)]
    np.testing.assert_allclose(block_dct(image), expected, atol=1e-3)


def test_block_dct_crops_to_the_grid_from_the_top_left():
    image = np.random.default_rng(1).uniform(0, 255, (21, 19)).astype(np.float32)
    assert block_dct(image).shape == (2 * 2, 64)
    np.testing.assert_allclose(block_dct(image)[0], block_dct(image[:8, :8])[0], atol=1e-3)


def test_repeated_basis_function_puts_all_energy_in_its_coefficient():
    amplitude = 400.0  # the basis image peaks at 1/4, so pixels stay within 128 +- 100
    image = 128 + amplitude * np.tile(_basis_block(2, 3), (8, 8))
    features = dct(_grey(image))
    betas = {k: v for k, v in features.items() if k.startswith("block__beta")}
    assert len(betas) == 63
    # 8-bit rounding moves each pixel by at most 1/2, hence (Parseval) each coefficient by at most
    # the norm of that error, 8 * 1/2 = 4: the pattern's coefficient stays, all others stay small.
    assert betas.pop("block__beta__freq_2_3") == pytest.approx(amplitude, abs=4.0)
    assert max(betas.values()) < 4.0
    # Every block is the same, so no frequency varies from block to block and the pattern's
    # coefficient keeps its sign: its mean is the amplitude too.
    assert max(v for k, v in features.items() if k.startswith("block__std")) < 1e-3
    assert features["block__mean__freq_2_3"] == pytest.approx(amplitude, abs=4.0)


def test_block_mean_cancels_when_the_pattern_alternates_sign():
    amplitude = 400.0
    signs = np.where(np.add.outer(np.arange(8), np.arange(8)) % 2 == 0, 1.0, -1.0)
    image = 128 + amplitude * np.kron(signs, _basis_block(2, 3))   # a checkerboard of +-pattern
    features = dct(_grey(image))
    assert features["block__mean__freq_2_3"] == pytest.approx(0.0, abs=4.0)
    assert features["block__beta__freq_2_3"] == pytest.approx(amplitude, abs=4.0)
    assert features["block__std__freq_2_3"] == pytest.approx(amplitude, abs=4.0)


def test_laplacian_scale_and_std_of_laplacian_coefficients():
    rng = np.random.default_rng(2)
    beta = 40.0  # large enough that 8-bit rounding of the pixels hardly matters
    coefficients = np.zeros((10000, 64))
    coefficients[:, 1] = rng.laplace(0, beta, 10000)  # frequency (0, 1), first in zigzag order
    # Pixel blocks by the inverse DCT, arranged as an 800 x 800 image of 100 x 100 blocks.
    blocks = scipy.fft.idctn(coefficients.reshape(-1, 8, 8), axes=(1, 2), norm="ortho") + 128
    picture = blocks.reshape(100, 100, 8, 8).swapaxes(1, 2).reshape(800, 800)
    features = dct(_grey(picture))
    assert features["block__beta__freq_0_1"] == pytest.approx(beta, rel=0.03)
    # Zero-mean coefficients: the mean of 10,000 has a standard error of sqrt(2) * 40 / 100.
    assert features["block__mean__freq_0_1"] == pytest.approx(0.0, abs=2.5)
    # A Laplacian of scale beta has standard deviation sqrt(2) * beta.
    assert features["block__std__freq_0_1"] == pytest.approx(np.sqrt(2) * beta, rel=0.03)


def test_first_digits_of_known_values():
    values = np.array([0.4, -1.2, 19.0, 250.0, 3.7, -999.0, 1000.0, 2040.0, 0.0])
    # round(|v|) >= 1: 1, 19, 250, 4, 999, 1000, 2040 -> first digits 1, 1, 2, 4, 9, 1, 2.
    expected = np.bincount([1, 1, 2, 4, 9, 1, 2], minlength=10)[1:] / 7
    np.testing.assert_allclose(first_digit_histogram(values), expected)


def test_benford_sample_has_near_zero_divergence_and_uniform_digits_do_not():
    rng = np.random.default_rng(3)
    # 10**U with U uniform over whole decades is Benford distributed (log-uniform mantissa).
    benford_sample = 10 ** rng.uniform(1, 3, 200000)
    histogram = first_digit_histogram(benford_sample)
    np.testing.assert_allclose(histogram, BENFORD, atol=0.005)
    assert jensen_shannon_divergence(histogram, BENFORD) < 1e-3
    uniform_digits = first_digit_histogram(rng.integers(1, 10, 9000))
    np.testing.assert_allclose(uniform_digits, 1 / 9, atol=0.02)
    assert jensen_shannon_divergence(uniform_digits, BENFORD) > 0.02


def test_first_digits_round_halves_to_even():
    # np.rint semantics: 0.5 -> 0 (not counted), 1.5 -> 2, 2.5 -> 2, -2.5 -> 2, 9.5 -> 10.
    histogram = first_digit_histogram(np.array([0.5, 1.5, 2.5, -2.5, 9.5], np.float32))
    np.testing.assert_allclose(histogram, np.bincount([2, 2, 2, 1], minlength=10)[1:] / 4)


def test_first_digits_reject_magnitudes_beyond_the_dct_range():
    with pytest.raises(ValueError, match="2041"):
        first_digit_histogram(np.array([3.0, -2042.0]))


def test_block_statistics_by_hand():
    coefficients = np.zeros((4, 64), np.float32)
    coefficients[:, 5] = [1, -3, 5, -7]
    mean, mean_abs, spread = block_statistics(coefficients)
    # Mean |c| = 16 / 4; mean -1, deviations 2, -2, 6, -6: variance 80 / 4.
    assert mean[5] == pytest.approx(-1.0)
    assert mean_abs[5] == pytest.approx(4.0)
    assert spread[5] == pytest.approx(np.sqrt(20.0))
    assert np.count_nonzero(mean) == np.count_nonzero(mean_abs) == np.count_nonzero(spread) == 1


def test_jensen_shannon_divergence_by_hand():
    p = np.array([1.0, 0.0])
    q = np.array([0.5, 0.5])
    # m = (0.75, 0.25): KL(p||m) = log2(4/3); KL(q||m) = 0.5 log2(2/3) + 0.5 log2(2).
    expected = (np.log2(4 / 3) + 0.5 * np.log2(2 / 3) + 0.5) / 2
    assert jensen_shannon_divergence(p, q) == pytest.approx(expected)
    assert jensen_shannon_divergence(q, q) == 0.0
    assert jensen_shannon_divergence(p, p[::-1]) == pytest.approx(1.0)


def test_global_zones_locate_a_single_full_image_cosine():
    height, width = 64, 96
    coefficients = np.zeros((height, width))
    coefficients[20, 70] = 5000.0
    image = scipy.fft.idctn(coefficients, norm="ortho")
    zones = global_log_dct_zones(image, grid=8)
    # (20, 70) is in zone (floor(20 * 8 / 64), floor(70 * 8 / 96)) = (2, 5), of 8 x 12 coefficients.
    expected = (np.log(5000 + 1e-3) + 95 * np.log(1e-3)) / 96
    assert zones[2, 5] == pytest.approx(expected, abs=1e-3)
    others = np.delete(zones.ravel(), 2 * 8 + 5)
    np.testing.assert_allclose(others, np.log(1e-3), atol=1e-3)


def test_global_zones_leave_out_the_dc_coefficient():
    bright, dark = (global_log_dct_zones(np.full((32, 32), level), grid=4) for level in (200, 10))
    np.testing.assert_allclose(bright, dark)


def test_names_do_not_depend_on_image_size_and_values_are_finite():
    rng = np.random.default_rng(4)
    names = None
    for shape in [(64, 64, 3), (333, 517, 3), (8, 8, 3), (5, 5, 3)]:
        features = dct(ImageContext(rng.integers(0, 256, shape, dtype=np.uint8)), grid=4, n_ac=9)
        assert names is None or list(features) == names
        names = list(features)
        assert np.isfinite(list(features.values())).all()
    assert len(names) == 16 + 3 * 9 + 10
    assert "global__log_abs__zone_3_3" in names and "block__std__freq_2_1" in names
    assert "benford__digit_9" in names and "benford__js_divergence" in names


def test_constant_image_has_no_ac_content():
    features = dct(ImageContext(np.full((64, 64, 3), 90, np.uint8)))
    block = [v for k, v in features.items() if k.startswith("block__")]
    np.testing.assert_allclose(block, 0.0, atol=1e-4)  # float32 round-off only
    benford = [v for k, v in features.items() if k.startswith("benford__")]
    assert benford == [0.0] * 10
    zones = [v for k, v in features.items() if k.startswith("global__")]
    np.testing.assert_allclose(zones, np.log(1e-3), atol=1e-3)


def test_block_dct_is_shared_through_the_context():
    ctx = ImageContext(np.random.default_rng(5).integers(0, 256, (32, 40, 3), dtype=np.uint8))
    dct(ctx)
    assert ctx._shared[("block_dct8", "y")].shape == (4 * 5, 64)


@pytest.mark.parametrize("params", [dict(grid=0), dict(n_ac=64), dict(n_ac=-1)])
def test_invalid_parameters_are_rejected(params):
    with pytest.raises(ValueError):
        dct(ImageContext(np.zeros((16, 16, 3), np.uint8)), **params)
