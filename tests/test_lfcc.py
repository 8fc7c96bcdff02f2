"""LFCC: the ASVspoof linear filter bank, a tone's cepstrum peaking in the filter of the tone,
the baseline's 20 x 3 coefficient streams, and finite values on degenerate inputs."""
import numpy as np
import pytest
import scipy.fft

from features.audio_context import AudioContext
from features.lfcc import lfcc, linear_filters

SR = 16000
T = np.arange(SR) / SR


def test_linear_filters_are_unit_triangles_that_sum_to_one_inside():
    bank = linear_filters(SR, 512, 20, 0.0, 8000.0)
    freqs = np.linspace(0, 8000, 257)
    centres = np.linspace(0, 8000, 22)[1:-1]
    assert bank.shape == (20, 257)
    np.testing.assert_allclose(bank.max(axis=1), 1.0, atol=0.05)  # peaks fall near a bin
    inside = (freqs >= centres[0]) & (freqs <= centres[-1])
    np.testing.assert_allclose(bank[:, inside].sum(axis=0), 1.0, atol=1e-6)
    peaks = freqs[bank.argmax(axis=1)]
    assert np.all(np.abs(peaks - centres) <= 8000 / 256)


@pytest.mark.parametrize("tone_hz", [800.0, 3000.0, 6000.0])
def test_tone_energy_sits_in_the_linear_filter_of_the_tone(tone_hz):
    out = lfcc(AudioContext(0.5 * np.sin(2 * np.pi * tone_hz * T), SR), fmax=8000.0)
    cepstrum = np.array([out[f"static_mean__coef_{i}"] for i in range(20)])
    log_energy = scipy.fft.idct(cepstrum, type=2, norm="ortho")
    centres = np.linspace(0, 8000, 22)[1:-1]
    assert np.argmax(log_energy) == np.argmin(np.abs(centres - tone_hz))


def test_baseline_layout_has_20_coefficients_and_two_delta_streams():
    out = lfcc(AudioContext(np.random.default_rng(0).standard_normal(SR), SR))
    assert len(out) == 20 * 2 + 20 + 20
    assert list(out)[-1] == "delta2_std__coef_19"


def test_white_noise_has_a_flat_filter_bank_so_only_c0_is_large():
    noise = np.random.default_rng(1).standard_normal(4 * SR)
    out = lfcc(AudioContext(noise, SR), fmin=400.0, fmax=7400.0)
    higher = [abs(out[f"static_mean__coef_{i}"]) for i in range(1, 20)]
    # Pre-emphasis tilts the spectrum: c1 carries the tilt; the rest is close to flat.
    assert max(higher[1:]) < 0.1 * abs(out["static_mean__coef_0"])


@pytest.mark.parametrize("signal", [np.zeros(SR), np.ones(500) * 0.3,
                                    np.clip(5 * np.sin(2 * np.pi * 300 * T), -1, 1)],
                         ids=["silent", "short_constant", "clipped"])
def test_degenerate_inputs_give_finite_values(signal):
    assert np.all(np.isfinite(list(lfcc(AudioContext(signal, SR)).values())))
