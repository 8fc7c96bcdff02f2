"""Long-term average spectrum: the share of energy above 4 kHz of a tone is 1 above and 0 below;
white noise spreads evenly over equal bands; silence is defined."""
import numpy as np
import pytest

from features.audio_context import AudioContext
from features.ltas import DB_FLOOR, band_powers, ltas

SR = 16000
T = np.arange(2 * SR) / SR


@pytest.mark.parametrize("tone_hz, expected", [(6000.0, 1.0), (1000.0, 0.0)])
def test_high_ratio_of_a_tone(tone_hz, expected):
    out = ltas(AudioContext(0.5 * np.sin(2 * np.pi * tone_hz * T), SR))
    assert out["high_ratio"] == pytest.approx(expected, abs=1e-3)


def test_tone_lands_in_its_band():
    out = ltas(AudioContext(np.sin(2 * np.pi * 2500 * T), SR), n_bands=8, fmax=8000.0)
    levels = [out[f"level_db__band_{b}"] for b in range(8)]
    assert np.argmax(levels) == 2  # 2000-3000 Hz
    assert levels[2] == pytest.approx(0.0, abs=0.01)  # nearly all of the energy


def test_white_noise_spreads_evenly():
    noise = np.random.default_rng(0).standard_normal(8 * SR)
    out = ltas(AudioContext(noise, SR), n_bands=16, fmax=7400.0)
    levels = np.array([out[f"level_db__band_{b}"] for b in range(16)])
    # The first band loses half of its first bin's Hann main lobe to DC: allow 0.5 dB.
    np.testing.assert_allclose(levels, 10 * np.log10(1 / 16), atol=0.5)
    assert out["high_ratio"] == pytest.approx(3400 / 7400, rel=0.03)


def test_band_powers_sums_bins_per_band():
    freqs = np.array([0.0, 10.0, 20.0, 30.0])
    spectrum = np.array([1.0, 2.0, 4.0, 8.0])
    np.testing.assert_array_equal(band_powers(spectrum, freqs, np.array([0.0, 15.0, 40.0])),
                                  [3.0, 12.0])


def test_silence_and_very_short_inputs_are_defined():
    silent = ltas(AudioContext(np.zeros(SR), SR))
    assert all(silent[f"level_db__band_{b}"] == DB_FLOOR for b in range(16))
    assert silent["high_ratio"] == 0.0
    short = ltas(AudioContext(0.3 * np.random.default_rng(1).standard_normal(400), SR))
    assert np.all(np.isfinite(list(short.values())))
    assert list(short) == list(silent)


def test_clipping_adds_high_frequency_energy():
    tone = np.sin(2 * np.pi * 1000 * T)
    clean = ltas(AudioContext(0.5 * tone, SR))
    clipped = ltas(AudioContext(np.clip(5 * tone, -1, 1), SR))  # odd harmonics at 5, 7 kHz
    assert clean["high_ratio"] < 1e-3 < clipped["high_ratio"]
