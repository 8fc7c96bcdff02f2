"""Spectral fine structure: liftering keeps a low-quefrency log spectrum as the envelope and puts a
high-quefrency ripple in the residual; clicks have no fine structure (flat spectrum); Gaussian
noise scatters by π/√6 nepers (5.57 dB) less the envelope's share, with valleys near the
exponential's 10th percentile and flatness e^-γ; harmonics scatter far more; quiet frames are left out."""
import numpy as np
import pytest

from features.audio_context import AudioContext
from features.fine_structure import active_frames, envelope_residual, fine_structure

SR = 16000
EULER_GAMMA = 0.5772156649
NOISE_DEVIATION_DB = 10 / np.log(10) * np.pi / np.sqrt(6)  # std of 10 log10 of an exponential
# 10th percentile of 10 log10 of an exponential, relative to its mean (ln of the 0.1 quantile
# -ln 0.9, minus E ln = -γ)
NOISE_VALLEY_DB = 10 / np.log(10) * (np.log(-np.log(0.9)) + EULER_GAMMA)


def dct_basis(n_bins: int, k: int) -> np.ndarray:
    """The k-th DCT-II basis vector cos(π k (2i + 1) / 2N) (any scale)."""
    return np.cos(np.pi * k * (2 * np.arange(n_bins) + 1) / (2 * n_bins))


def test_liftering_splits_low_and_high_quefrency_ripples():
    n_bins = 237
    envelope = 3.0 * dct_basis(n_bins, 4)       # slow ripple: in the envelope (lifter 30)
    ripple = 0.5 * dct_basis(n_bins, 80)        # fast ripple: the fine structure
    power = np.exp(envelope + ripple)[:, None]  # ln power = envelope + ripple
    residual = envelope_residual(power, lifter=30)[:, 0]
    np.testing.assert_allclose(residual, 10 / np.log(10) * ripple, atol=1e-4)  # float32 basis
    assert np.abs(envelope_residual(np.exp(envelope)[:, None], lifter=30)).max() < 1e-4


def test_active_frames_keep_the_frames_within_range_of_the_loud_ones():
    levels_db = np.array([0.0] * 50 + [-20.0] * 30 + [-50.0] * 20)
    power = np.tile(10 ** (levels_db / 10) / 4, (4, 1))  # 4 bins; frame power = 10^(dB/10)
    kept = active_frames(power, range_db=30.0)
    np.testing.assert_array_equal(kept, levels_db > -30)


def test_clicks_have_a_flat_spectrum_hence_no_fine_structure():
    y = np.zeros(SR)
    y[400::800] = 0.5  # 50 ms apart: no 32 ms frame holds two clicks
    out = fine_structure(AudioContext(y, SR))
    deviations = [v for k, v in out.items() if k.startswith(("deviation_", "valley_db_"))]
    flatness = [v for k, v in out.items() if k.startswith("flatness_db_")]
    np.testing.assert_allclose(deviations, 0.0, atol=1e-3)
    np.testing.assert_allclose(flatness, 0.0, atol=1e-3)


def test_gaussian_noise_scatters_by_the_exponential_law():
    out = fine_structure(AudioContext(0.1 * np.random.default_rng(0).standard_normal(4 * SR), SR))
    for b in range(8):
        # 30 of 237 DCT coefficients go to the envelope: the residual keeps at most 207/237 of
        # the variance of the i.i.d.-like log spectrum; the std over a band's 29 bins is biased
        # low (ddof 0, skewed log-exponential), and the Hann window correlates adjacent bins.
        deviation = out[f"deviation_mean__band_{b}"]
        assert 0.8 * NOISE_DEVIATION_DB < deviation < np.sqrt(207 / 237) * NOISE_DEVIATION_DB
        # the valleys are shallower by the same causes
        assert NOISE_VALLEY_DB < out[f"valley_db_p50__band_{b}"] < 0.75 * NOISE_VALLEY_DB
        # geometric / arithmetic mean of exponential powers: e^-γ, i.e. -2.51 dB (a little
        # above over 29 bins: the band's arithmetic mean is itself a noisy estimate)
        assert out[f"flatness_db_p50__band_{b}"] == pytest.approx(
            10 * np.log10(np.exp(-EULER_GAMMA)), abs=0.4)


def test_harmonics_scatter_far_more_than_noise():
    t = np.arange(2 * SR) / SR
    harmonics = sum(np.sin(2 * np.pi * 200 * k * t + k ** 2) for k in range(1, 37))  # to 7.2 kHz
    y = harmonics / 36 + 1e-4 * np.random.default_rng(1).standard_normal(t.size)
    out = fine_structure(AudioContext(y, SR))
    for b in range(8):
        assert out[f"deviation_p50__band_{b}"] > 2 * NOISE_DEVIATION_DB
        assert out[f"valley_db_p50__band_{b}"] < 2 * NOISE_VALLEY_DB
        assert out[f"flatness_db_p50__band_{b}"] < -10


def test_keys_depend_on_parameters_only_and_bad_parameters_are_named():
    short = fine_structure(AudioContext(np.zeros(100), SR), n_bands=4, stats=("mean",))
    assert list(short) == [f"{d}_mean__band_{b}" for d in ("deviation", "valley_db", "flatness_db")
                           for b in range(4)]
    assert all(np.isfinite(list(short.values())))
    with pytest.raises(ValueError, match="lifter"):
        fine_structure(AudioContext(np.zeros(SR), SR), lifter=500)
    with pytest.raises(ValueError, match="holds no STFT bin"):
        fine_structure(AudioContext(np.zeros(SR), SR), n_bands=400)
