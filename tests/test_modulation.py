"""Modulation spectrum: a tone amplitude-modulated at 6 Hz puts its envelope energy in the 4-8 Hz
band of its acoustic band; modulation depth is m / sqrt(2) for A(1 + m sin); silence is zero."""
import numpy as np
import pytest

from features.audio_context import AudioContext
from features.modulation import modulation

SR = 16000
T = np.arange(4 * SR) / SR


@pytest.mark.parametrize("rate_hz, band", [(6.0, "4_8"), (2.0, "0p5_4"), (12.0, "8_16"),
                                           (24.0, "16_32")])
def test_am_tone_peaks_in_its_modulation_band(rate_hz, band):
    carrier = np.sin(2 * np.pi * 1500 * T)  # acoustic band 1: 1-2 kHz
    out = modulation(AudioContext(0.4 * (1 + 0.8 * np.sin(2 * np.pi * rate_hz * T)) * carrier,
                                  SR))
    fractions = {k.split("__mod_")[1]: v for k, v in out.items()
                 if k.startswith("fraction__band_1__")}
    assert max(fractions, key=fractions.get) == band
    assert fractions[band] > 0.9


def test_modulation_depth_of_an_am_tone():
    carrier = np.sin(2 * np.pi * 1500 * T)
    out = modulation(AudioContext(0.4 * (1 + 0.5 * np.sin(2 * np.pi * 6 * T)) * carrier, SR))
    assert out["depth__band_1"] == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    steady = modulation(AudioContext(0.4 * carrier, SR))
    assert steady["depth__band_1"] < 0.05  # only the two half-empty end frames vary


def test_silence_and_short_inputs_give_zeros_or_finite_values():
    silent = modulation(AudioContext(np.zeros(SR), SR))
    assert all(v == 0.0 for v in silent.values())
    short = modulation(AudioContext(0.2 * np.random.default_rng(0).standard_normal(500), SR))
    assert np.all(np.isfinite(list(short.values())))
    assert list(short) == list(silent)


def test_clipped_input_is_finite():
    clipped = np.clip(5 * np.sin(2 * np.pi * 300 * T), -1, 1)
    assert np.all(np.isfinite(list(modulation(AudioContext(clipped, SR)).values())))


def test_keys_follow_the_band_edges():
    out = modulation(AudioContext(np.ones(SR), SR), acoustic_edges_hz=(0, 4000, 8000),
                     modulation_edges_hz=(0.5, 4, 16))
    assert list(out) == ["fraction__band_0__mod_0p5_4", "fraction__band_0__mod_4_16",
                         "fraction__band_1__mod_0p5_4", "fraction__band_1__mod_4_16",
                         "depth__band_0", "depth__band_1"]
