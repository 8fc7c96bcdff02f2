"""AudioContext: the shared STFT is librosa's, cached once; short inputs are padded; statistics
over frames have their textbook values."""
import librosa
import numpy as np
import pytest
from scipy import stats as scipy_stats

from features.audio_context import (MIN_SECONDS, AudioContext, frame_statistics,
                                    named_statistics)

SR = 16000


def test_magnitude_matches_librosa_stft():
    y = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    context = AudioContext(y, SR)
    expected = np.abs(librosa.stft(y, n_fft=512, hop_length=160, pad_mode="constant"))
    np.testing.assert_allclose(context.magnitude(), expected, atol=1e-4)
    hamming = np.abs(librosa.stft(y, n_fft=512, hop_length=160, win_length=320,
                                  window="hamming", pad_mode="constant"))
    np.testing.assert_allclose(context.magnitude(win_length=320, window="hamming"), hamming,
                               atol=1e-4)


def test_frame_parameters_scale_with_the_sample_rate():
    context = AudioContext(np.zeros(22050, dtype=np.float32), 22050)
    assert (context.n_fft, context.hop_length) == (512, 220)  # 2 ** round(log2(705.6)), 10 ms
    assert AudioContext(np.zeros(SR), SR).n_fft == 512


def test_transforms_are_computed_once():
    context = AudioContext(np.random.default_rng(1).standard_normal(SR), SR)
    assert context.magnitude() is context.magnitude()
    assert context.power() is context.power()
    assert context.mel_power(n_mels=40) is context.mel_power(n_mels=40)
    assert context.mel_power(n_mels=40) is not context.mel_power(n_mels=64)


def test_mel_power_puts_a_tone_in_the_band_around_it():
    t = np.arange(SR) / SR
    context = AudioContext(np.sin(2 * np.pi * 2000 * t), SR)
    band = context.mel_power(n_mels=40, fmax=8000).mean(axis=1).argmax()
    centres = librosa.mel_frequencies(n_mels=42, fmin=0, fmax=8000)[1:-1]
    assert abs(centres[band] - 2000) < 0.5 * (centres[band + 1] - centres[band - 1])


def test_short_input_is_padded_and_long_input_kept():
    assert AudioContext(np.ones(10), SR).y.size == int(MIN_SECONDS * SR)
    assert AudioContext(np.ones(SR), SR).y.size == SR


def test_rejects_non_finite_and_multichannel_input():
    with pytest.raises(ValueError):
        AudioContext(np.array([0.0, np.nan]), SR)
    with pytest.raises(ValueError):
        AudioContext(np.zeros((2, 100)), SR)


def test_band_limited_removes_content_above_fmax_and_keeps_below():
    t = np.arange(SR) / SR
    context = AudioContext(np.sin(2 * np.pi * 7700 * t) + np.sin(2 * np.pi * 3000 * t), SR)
    filtered = context.band_limited(7400.0)[1000:-1000]
    np.testing.assert_allclose(filtered, np.sin(2 * np.pi * 3000 * t)[1000:-1000], atol=1e-3)


def test_frame_statistics_match_scipy():
    values = np.random.default_rng(2).gamma(2.0, size=(3, 500))
    table = frame_statistics(values, ["mean", "std", "skew", "kurtosis", "p10", "p50", "min",
                                      "max"])
    np.testing.assert_allclose(table[0], values.mean(axis=1))
    np.testing.assert_allclose(table[1], values.std(axis=1))
    np.testing.assert_allclose(table[2], scipy_stats.skew(values, axis=1))
    np.testing.assert_allclose(table[3], scipy_stats.kurtosis(values, axis=1))
    np.testing.assert_allclose(table[4], np.percentile(values, 10, axis=1))
    np.testing.assert_allclose(table[5], np.median(values, axis=1))
    np.testing.assert_allclose(table[6:], [values.min(axis=1), values.max(axis=1)])


def test_frame_statistics_of_degenerate_rows_are_finite():
    assert np.all(frame_statistics(np.full((2, 7), 3.0), ["skew", "kurtosis"]) == 0)
    assert np.all(frame_statistics(np.zeros((4, 0)), ["mean", "p90"]) == 0)
    with pytest.raises(ValueError):
        frame_statistics(np.zeros(5), ["median"])


def test_named_statistics_keys():
    out = named_statistics(np.arange(6.0).reshape(2, 3), ["mean", "p50"], "static",
                           ["coef_0", "coef_1"])
    assert out == {"static_mean__coef_0": 1.0, "static_mean__coef_1": 4.0,
                   "static_p50__coef_0": 1.0, "static_p50__coef_1": 4.0}
    assert named_statistics(np.arange(3.0), ["std"], "zcr") == {"zcr_std": pytest.approx(
        np.sqrt(2 / 3))}

