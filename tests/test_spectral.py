"""Spectral shape: a tone's centroid and roll-off are its frequency; white noise is flat (the
flatness of an exponential power spectrum is e^-γ); contrast separates tones from noise; flux
measures change; librosa agrees; degenerate inputs give finite values."""
import librosa
import numpy as np
import pytest

from features.audio_context import AudioContext
from features.spectral import centroid_and_bandwidth, rolloff, spectral, spectral_flux

SR = 16000
T = np.arange(2 * SR) / SR
EULER_GAMMA = 0.5772156649


@pytest.mark.parametrize("tone_hz", [440.0, 1500.0, 5000.0])
def test_centroid_and_rolloff_of_a_tone_are_its_frequency(tone_hz):
    out = spectral(AudioContext(0.5 * np.sin(2 * np.pi * tone_hz * T), SR))
    assert out["centroid_p50"] == pytest.approx(tone_hz, rel=0.02)
    assert out["rolloff_p50"] == pytest.approx(tone_hz, abs=2 * SR / 512)
    assert out["bandwidth_p50"] < 100  # the Hann main lobe only


def test_white_noise_flatness_is_e_to_minus_gamma_and_a_tone_is_near_zero():
    noise = spectral(AudioContext(np.random.default_rng(0).standard_normal(4 * SR), SR))
    tone = spectral(AudioContext(np.sin(2 * np.pi * 1000 * T), SR))
    # |X(f)|² of Gaussian noise is exponential: E[log] - log E = -γ.
    assert noise["flatness_p50"] == pytest.approx(np.exp(-EULER_GAMMA), rel=0.05)
    assert noise["centroid_p50"] == pytest.approx(3700, rel=0.03)  # the middle of 0..7.4 kHz
    assert tone["flatness_p50"] < 1e-3


def test_contrast_is_high_for_a_tone_in_its_band_and_low_for_noise():
    tone = spectral(AudioContext(np.sin(2 * np.pi * 1200 * T), SR))  # band 1: 925-1850 Hz
    noise = spectral(AudioContext(np.random.default_rng(1).standard_normal(2 * SR), SR))
    assert tone["contrast_p50__band_1"] > 60
    assert all(10 < noise[f"contrast_p50__band_{b}"] < 30 for b in range(8))


def test_flux_is_zero_for_a_steady_tone_and_positive_at_changes():
    steady = np.abs(librosa.stft(np.sin(2 * np.pi * 1000 * T), n_fft=512, hop_length=160))
    assert np.median(spectral_flux(steady)) < 1e-6
    switching = np.where(T % 0.5 < 0.25, np.sin(2 * np.pi * 1000 * T), np.sin(2 * np.pi * 3000 * T))
    magnitude = np.abs(librosa.stft(switching, n_fft=512, hop_length=160))
    flux = spectral_flux(magnitude)
    changing = (np.flatnonzero(flux > 1e-6) + 0.5) * 0.010  # time between the two frames
    assert flux.max() > 0.05
    # Only frames whose 32 ms window straddles a switch (every 0.25 s) or an end change.
    assert np.all(np.abs(changing - np.round(changing / 0.25) * 0.25) < 0.032)


def test_vectorised_descriptors_match_librosa():
    y = np.random.default_rng(2).standard_normal(SR) * np.linspace(0, 1, SR)
    magnitude = np.abs(librosa.stft(y, n_fft=512, hop_length=160))
    freqs = librosa.fft_frequencies(sr=SR, n_fft=512)
    centroid, bandwidth = centroid_and_bandwidth(magnitude, freqs)
    np.testing.assert_allclose(centroid, librosa.feature.spectral_centroid(S=magnitude,
                                                                           freq=freqs)[0])
    np.testing.assert_allclose(bandwidth, librosa.feature.spectral_bandwidth(
        S=magnitude, freq=freqs)[0], rtol=1e-4)
    np.testing.assert_allclose(rolloff(magnitude, freqs, 0.85), librosa.feature.spectral_rolloff(
        S=magnitude, freq=freqs, roll_percent=0.85)[0])


def test_keys_depend_only_on_parameters():
    short = spectral(AudioContext(np.ones(100), SR), n_contrast_bands=4, stats=("mean",))
    long = spectral(AudioContext(np.random.default_rng(3).standard_normal(3 * SR), SR),
                    n_contrast_bands=4, stats=("mean",))
    assert list(short) == list(long)
    assert len(long) == 5 + 4


@pytest.mark.parametrize("signal", [np.zeros(SR), 0.1 * np.ones(300),
                                    np.clip(5 * np.sin(2 * np.pi * 300 * T), -1, 1)],
                         ids=["silent", "short_constant", "clipped"])
def test_degenerate_inputs_give_finite_values(signal):
    assert np.all(np.isfinite(list(spectral(AudioContext(signal, SR)).values())))
