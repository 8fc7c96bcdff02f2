"""MFCC: the cepstrum of a tone describes a log-mel spectrum peaking at the tone's band; Δ
measures change; keys depend only on parameters; degenerate inputs give finite values."""
import librosa
import numpy as np
import pytest
import scipy.fft

from features.audio_context import AudioContext
from features.mfcc import mfcc

SR = 16000
T = np.arange(SR) / SR


def degenerate_signals():
    return {"silent": np.zeros(SR), "short": 0.1 * np.random.default_rng(0).standard_normal(800),
            "clipped": np.clip(5 * np.sin(2 * np.pi * 300 * T), -1, 1)}


@pytest.mark.parametrize("tone_hz", [300.0, 1000.0, 3500.0])
def test_tone_energy_sits_in_the_mel_band_of_the_tone(tone_hz):
    n_mels = 40
    out = mfcc(AudioContext(0.5 * np.sin(2 * np.pi * tone_hz * T), SR), n_mfcc=n_mels,
               n_mels=n_mels, fmax=8000.0)
    cepstrum = np.array([out[f"static_mean__coef_{i}"] for i in range(n_mels)])
    log_mel = scipy.fft.idct(cepstrum, type=2, norm="ortho")  # all coefficients: invertible
    centres = librosa.mel_frequencies(n_mels=n_mels + 2, fmin=0.0, fmax=8000.0)[1:-1]
    assert np.argmax(log_mel) == np.argmin(np.abs(centres - tone_hz))


def test_c0_grows_with_level():
    quiet = mfcc(AudioContext(0.01 * np.sin(2 * np.pi * 500 * T), SR))
    loud = mfcc(AudioContext(0.5 * np.sin(2 * np.pi * 500 * T), SR))
    # c0 = sum of the log-mel values / sqrt(n_mels): 34 dB more in every band.
    expected = 20 * np.log10(50) * 40 / np.sqrt(40)
    assert loud["static_mean__coef_0"] - quiet["static_mean__coef_0"] == pytest.approx(
        expected, rel=0.02)


def test_deltas_are_zero_for_a_steady_tone_and_not_for_a_changing_one():
    t = np.arange(4 * SR) / SR
    tone = 0.5 * np.sin(2 * np.pi * 500 * t)
    steady = mfcc(AudioContext(tone, SR), delta_stats=("p50", "std"))
    pulsing = mfcc(AudioContext(tone * (t * 4 % 1 < 0.5), SR), delta_stats=("p50", "std"))
    # Away from the two ends of the recording a steady tone's cepstrum does not move.
    assert max(abs(v) for k, v in steady.items() if k.startswith("delta_p50")) < 1e-3
    assert pulsing["delta_std__coef_0"] > 3 * steady["delta_std__coef_0"]


def test_keys_depend_only_on_parameters():
    short = mfcc(AudioContext(np.random.default_rng(1).standard_normal(3000), SR), n_mfcc=13)
    long = mfcc(AudioContext(np.random.default_rng(2).standard_normal(5 * SR), SR), n_mfcc=13)
    assert list(short) == list(long)
    assert len(short) == 13 * (2 + 1 + 1)
    assert "static_mean__coef_12" in short and "delta2_std__coef_12" in short


@pytest.mark.parametrize("name", ["silent", "short", "clipped"])
def test_degenerate_inputs_give_finite_values(name):
    values = np.array(list(mfcc(AudioContext(degenerate_signals()[name], SR)).values()))
    assert np.all(np.isfinite(values))
