"""Prosody: YIN recovers the F0 of harmonic tones within 2 %, noise is unvoiced, loudness and
pause statistics follow from the construction, ZCR of a sine is 2 f / sr; degenerate inputs are
defined."""
import librosa
import numpy as np
import pytest

from features.audio_context import AudioContext
from features.prosody import cepstral_peak_prominence, pitch_track, prosody, yin, \
    zero_crossing_rate

SR = 16000
T = np.arange(2 * SR) / SR


def harmonic_tone(f0: float, t: np.ndarray = T, n: int = 10) -> np.ndarray:
    return 0.3 * sum(np.sin(2 * np.pi * k * f0 * t + k) / k for k in range(1, n + 1)
                     if k * f0 < 7000)


@pytest.mark.parametrize("f0", [70.0, 110.0, 196.0, 262.0, 440.0])
def test_yin_recovers_the_f0_of_a_harmonic_tone_within_2_percent(f0):
    noise = 0.005 * np.random.default_rng(0).standard_normal(T.size)
    out = prosody(AudioContext(harmonic_tone(f0) + noise, SR))
    assert out["f0_mean_hz"] == pytest.approx(f0, rel=0.02)
    assert out["voiced_ratio"] > 0.95
    assert out["aperiodicity_voiced"] < 0.1


def test_yin_agrees_with_librosa_on_a_gliding_tone():
    f0 = 120 * 2 ** (T / 2)  # one octave up over 2 s
    y = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / SR) + 0.1 * np.sin(4 * np.pi * np.cumsum(f0) / SR)
    track = yin(y, SR, fmin=50, fmax=500, hop_length=160, threshold=0.2, floor_db=40)
    reference = librosa.yin(y, fmin=50, fmax=500, sr=SR, frame_length=1024, hop_length=160)
    inner = slice(10, -10)
    np.testing.assert_allclose(track.f0[inner], reference[inner], rtol=0.01)


def test_pitch_spread_in_semitones_of_a_glide():
    f0 = 100 * 2 ** (T / 2)  # 0 .. 12 semitones re 100 Hz, uniformly over time
    y = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / SR)
    out = prosody(AudioContext(y, SR))
    assert out["f0_st_mean"] == pytest.approx(6.0, abs=0.3)
    assert out["f0_st_std"] == pytest.approx(12 / np.sqrt(12), rel=0.05)  # uniform on [0, 12]
    assert out["f0_step_st"] == pytest.approx(12 / 200, rel=0.1)  # 12 st over 200 frames


def test_noise_is_unvoiced_and_has_low_cepstral_peak():
    noise = 0.1 * np.random.default_rng(1).standard_normal(T.size)
    out = prosody(AudioContext(noise, SR))
    assert out["voiced_ratio"] < 0.05
    assert out["aperiodicity_all"] > 0.5
    context = AudioContext(noise, SR)
    tone = AudioContext(harmonic_tone(150.0, n=40) + 0.005 * noise, SR)
    noise_cpp = cepstral_peak_prominence(context.magnitude(), SR / 512, fmin=50, fmax=500)
    tone_cpp = cepstral_peak_prominence(tone.magnitude(), SR / 512, fmin=50, fmax=500)
    assert np.median(tone_cpp) > np.median(noise_cpp) + 10


def test_loudness_dynamics_of_a_tone_with_pauses():
    t = np.arange(4 * SR) / SR
    gate = (t % 2) < 1  # 1 s of sound, 1 s of silence, twice
    y = 0.5 * np.sin(2 * np.pi * 300 * t) * gate
    out = prosody(AudioContext(y, SR))
    assert out["level_loud_db"] == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.2)
    # Half of the frames are silent, less those whose 32 ms window reaches into a tone.
    assert out["quiet_fraction"] == pytest.approx(0.5, abs=0.03)
    assert out["dynamic_range_db"] == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)) + 100,
                                                    abs=0.5)  # silence sits at -100 dB


def test_zero_crossing_rate_of_a_sine_is_twice_its_frequency_over_the_rate():
    y = np.sin(2 * np.pi * 1000 * T + 0.1)
    zcr = zero_crossing_rate(y, 512, 160)
    assert np.median(zcr) == pytest.approx(2 * 1000 / SR, rel=0.02)
    out = prosody(AudioContext(y, SR))
    assert out["zcr_mean"] == pytest.approx(2 * 1000 / SR, rel=0.05)


def test_zero_crossing_rate_matches_librosa():
    y = np.random.default_rng(2).standard_normal(SR)
    expected = librosa.feature.zero_crossing_rate(y, frame_length=512, hop_length=160)[0]
    np.testing.assert_allclose(zero_crossing_rate(y, 512, 160), expected)


def test_content_above_the_analysis_band_does_not_change_zcr():
    tone = np.sin(2 * np.pi * 1000 * T)
    with_top = tone + 0.3 * np.sin(2 * np.pi * 7800 * T)  # between 7.4 kHz and Nyquist
    assert prosody(AudioContext(with_top, SR))["zcr_mean"] == pytest.approx(
        prosody(AudioContext(tone, SR))["zcr_mean"], rel=0.01)


def test_pitch_track_is_cached_and_aligned_with_the_stft():
    context = AudioContext(harmonic_tone(200.0), SR)
    first = pitch_track(context, fmin=50, fmax=500, threshold=0.2, floor_db=40)
    assert first is pitch_track(context, fmin=50, fmax=500, threshold=0.2, floor_db=40)
    assert first.f0.size == context.magnitude().shape[1]


@pytest.mark.parametrize("signal", [np.zeros(SR), 0.2 * np.ones(700),
                                    np.clip(5 * np.sin(2 * np.pi * 200 * T), -1, 1)],
                         ids=["silent", "short_constant", "clipped"])
def test_degenerate_inputs_give_finite_values(signal):
    out = prosody(AudioContext(signal, SR))
    assert np.all(np.isfinite(list(out.values())))
    assert list(out) == list(prosody(AudioContext(harmonic_tone(150.0), SR)))


def test_silence_has_no_pitch():
    out = prosody(AudioContext(np.zeros(SR), SR))
    assert out["voiced_ratio"] == 0.0 and out["f0_mean_hz"] == 0.0
    assert out["level_loud_db"] == pytest.approx(-100.0)
