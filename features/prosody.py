"""Prosody and voice quality: loudness dynamics, pitch (YIN) and voicing, cepstral peak
prominence, and the zero-crossing rate.

Text-to-speech and voice conversion produce intonation, pauses and loudness contours that are
smoother and more regular than read or spontaneous speech, and vocoders blur the harmonic
structure of voiced speech; these features measure both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.fft
import soxr

from features.audio_context import AudioContext, frame_statistics
from features.logarithm import natural_log
from features.registry import register

PITCH_SR = 8000  # pitch up to 500 Hz needs no more; a quarter of the work of 16 kHz
RMS_FLOOR = 1e-5  # -100 dBFS: the level given to digital silence
LOUD_PERCENTILE = 95.0
DB_PER_NEPER = 20.0 / math.log(10.0)  # 20 log10(x) = this * ln(x), x an amplitude


@dataclass(frozen=True)
class PitchTrack:
    """Per-frame YIN output: f0 in Hz (NaN when unvoiced), aperiodicity d'(τ*) and voicing."""

    f0: np.ndarray
    aperiodicity: np.ndarray
    voiced: np.ndarray


def yin(y: np.ndarray, sr: int, *, fmin: float, fmax: float, hop_length: int,
        threshold: float, floor_db: float, n_frames: int | None = None) -> PitchTrack:
    """YIN pitch estimation (de Cheveigné & Kawahara, 2002), steps 1 to 5, on centred frames.

    With an integration window of W = ceil(sr / fmin) samples (one longest period) and lags
    τ = 0 .. W: the difference d(τ) = Σ_{j<W} (x_j - x_{j+τ})² (step 2), computed through
    an FFT cross-correlation; the cumulative mean normalised difference d'(τ) = d(τ) τ /
    Σ_{k=1..τ} d(k), d'(0) = 1 (step 3); the period τ* is the first local minimum of d' below
    ``threshold`` with τ in [sr / fmax, sr / fmin] (step 4), refined by parabolic interpolation
    (step 5). A frame is voiced when such a minimum exists and its energy is within
    ``floor_db`` of the loudest frame's; d'(τ*) (or the minimum of d' for unvoiced frames) is
    its aperiodicity, 0 for a periodic signal and about 1 for noise or silence. Frame t is
    centred on sample t * ``hop_length``; ``n_frames`` defaults to 1 + len(y) // hop_length.
    """
    window = int(np.ceil(sr / fmin))
    min_period = max(1, int(np.floor(sr / fmax)))
    frame_length = 2 * window + 2
    n_frames = 1 + y.size // hop_length if n_frames is None else n_frames
    # Frame t starts half a window before sample t * hop, so its integration window is centred.
    padded = np.pad(y.astype(np.float32), (window // 2, frame_length + hop_length))
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop_length]
    frames = frames[:n_frames]
    n = 1 << int(np.ceil(np.log2(frame_length + window)))  # no circular wrap-around
    spectrum = scipy.fft.rfft(frames, n=n, axis=1)
    head = scipy.fft.rfft(frames[:, :window], n=n, axis=1)
    cross = scipy.fft.irfft(np.conj(head) * spectrum, n=n, axis=1)[:, :window + 1]
    # Energy of every length-W window of the signal, then of the windows at lags 0 .. W.
    cumulative_power = np.concatenate([[0.0], np.cumsum(padded.astype(np.float64) ** 2)])
    sliding = (cumulative_power[window:] - cumulative_power[:-window]).astype(np.float32)
    lagged_energy = np.lib.stride_tricks.sliding_window_view(sliding, window + 1)[::hop_length]
    lagged_energy = lagged_energy[:n_frames]
    frame_energy = lagged_energy[:, 0]
    difference = np.maximum(frame_energy[:, None] + lagged_energy[:, 1:] - 2 * cross[:, 1:], 0.0)
    cumulative = np.cumsum(difference, axis=1)  # lags 1 .. W
    periodic_part = cumulative > 1e-6 * (1e-12 + cumulative[:, -1:])
    normalised = difference * np.arange(1, window + 1, dtype=np.float32) / np.where(
        periodic_part, cumulative, 1.0)
    # Where nothing differs yet (silence, a constant) there is no periodicity: d' = 1.
    cmnd = np.where(periodic_part, normalised, 1.0)

    search = cmnd[:, min_period - 1:window - 1]  # candidate lags min_period .. window - 1
    is_minimum = (search[:, 1:-1] <= search[:, :-2]) & (search[:, 1:-1] <= search[:, 2:])
    candidates = is_minimum & (search[:, 1:-1] < threshold)
    found = candidates.any(axis=1)
    first = np.where(found, candidates.argmax(axis=1), search[:, 1:-1].argmin(axis=1)) + 1
    rows = np.arange(n_frames)
    left, mid, right = search[rows, first - 1], search[rows, first], search[rows, first + 1]
    curvature = left - 2 * mid + right
    shift = np.where(curvature > 0, 0.5 * (left - right) / np.where(curvature > 0, curvature, 1),
                     0.0)
    period = min_period + first + np.clip(shift, -0.5, 0.5)

    loud = (frame_energy > 0) & (frame_energy >= frame_energy.max() * 10 ** (-floor_db / 10))
    voiced = found & loud
    return PitchTrack(f0=np.where(voiced, sr / period, np.nan), aperiodicity=mid,
                      voiced=voiced)


def pitch_track(ctx: AudioContext, *, fmin: float, fmax: float, threshold: float,
                floor_db: float) -> PitchTrack:
    """``yin`` on the context's signal resampled to ``PITCH_SR``, one frame per frame of the
    shared STFT, cached for every family that asks for it."""
    def compute() -> PitchTrack:
        rate = min(ctx.sr, PITCH_SR)
        y = soxr.resample(ctx.y, ctx.sr, rate, quality="HQ") if rate != ctx.sr else ctx.y
        return yin(y, rate, fmin=fmin, fmax=fmax, hop_length=round(ctx.hop_length * rate / ctx.sr),
                   threshold=threshold, floor_db=floor_db,
                   n_frames=1 + ctx.y.size // ctx.hop_length)  # the frames of the shared STFT

    return ctx.shared(("yin", fmin, fmax, threshold, floor_db), compute)


def cepstral_peak_prominence(magnitude: np.ndarray, bin_hz: float, *, fmin: float,
                             fmax: float) -> np.ndarray:
    """Cepstral peak prominence (dB) of each frame of a magnitude spectrogram (bins, frames).

    The bins are 0, ``bin_hz``, 2 ``bin_hz``, ... (possibly a low band of a wider spectrum).
    The power cepstrum C(q) = 10 log10 |DFT(10 log10 |X(f)|²)|² (Hillenbrand et al., 1994),
    the log spectrum taken as one period of an even sequence, so that quefrency index i is
    i / (2 (bins - 1) ``bin_hz``) seconds; a least-squares line is fitted to C over quefrencies
    1 ms .. 1 / ``fmin``; CPP = C(q*) minus the line at q*, q* the cepstral peak between
    1 / ``fmax`` and 1 / ``fmin``. High for a clear harmonic structure, near 0 for noise.
    """
    length = 2 * (magnitude.shape[0] - 1)
    # 20 log10 |X| = 10 log10 |X|²
    log_power = DB_PER_NEPER * natural_log(np.maximum(magnitude, 1e-5, dtype=np.float32))
    # The DFT of the even extension of the log spectrum is its DCT-I.
    cepstrum = DB_PER_NEPER * natural_log(np.abs(scipy.fft.dct(log_power, type=1, axis=0)) + 1e-5)
    quefrency = np.arange(cepstrum.shape[0]) / (length * bin_hz)
    longest = min(1.0 / fmin, quefrency[-1])
    fitted = (quefrency >= 0.001) & (quefrency <= longest)
    q = quefrency[fitted] - quefrency[fitted].mean()
    slope = (q @ cepstrum[fitted]) / (q @ q)
    intercept = cepstrum[fitted].mean(axis=0) - slope * quefrency[fitted].mean()
    searched = np.flatnonzero((quefrency >= 1.0 / fmax) & (quefrency <= longest))
    peak = searched[cepstrum[searched].argmax(axis=0)]
    frames = np.arange(cepstrum.shape[1])
    return cepstrum[peak, frames] - (slope * quefrency[peak] + intercept)


def zero_crossing_rate(y: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """Fraction of sign changes (0 counted as positive) in centred frames, (1 + len(y) // hop,).

    The same definition as ``librosa.feature.zero_crossing_rate`` without its per-frame copies.
    """
    changes = np.concatenate([[0], np.cumsum(np.signbit(y[1:]) != np.signbit(y[:-1]))])
    centres = np.arange(1 + y.size // hop_length) * hop_length
    start = np.clip(centres - frame_length // 2, 0, y.size - 1)
    stop = np.clip(centres + frame_length // 2 - 1, 0, y.size - 1)
    return (changes[stop] - changes[start]) / frame_length


def semitones(f0_hz: np.ndarray) -> np.ndarray:
    """Pitch in semitones relative to 100 Hz, so that spreads are independent of the voice."""
    return 12.0 * np.log2(f0_hz / 100.0)


@register(name="prosody", modality="audio", cost="moderate")
def prosody(ctx: AudioContext, *, fmin: float = 50.0, fmax: float = 500.0,
            yin_threshold: float = 0.2, voicing_floor_db: float = 40.0,
            quiet_db: float = 30.0, band_fmax: float = 7400.0,
            stats: Sequence[str] = ("mean", "std", "p10", "p50", "p90")) -> dict[str, float]:
    """Loudness dynamics, YIN pitch and voicing, cepstral peak prominence, and ZCR.

    Loudness: the frame RMS (32 ms frames, 10 ms hop) in dBFS, floored at -100 dB.
    ``level_loud_db`` is its ``LOUD_PERCENTILE`` (95th) percentile, the level of loud speech;
    ``level_mean_rel_db`` and ``level_std_db`` the mean (relative to the loud level) and standard
    deviation; ``dynamic_range_db`` the 95th minus the 5th percentile; ``quiet_fraction`` the
    share of frames more than ``quiet_db`` below the loud level (pauses).

    Pitch: YIN (``yin`` on the signal resampled to 8 kHz; search range ``fmin``..``fmax``,
    absolute threshold ``yin_threshold``, energy gate ``voicing_floor_db`` below the loudest
    frame). ``voiced_ratio`` is the share of voiced frames; ``f0_mean_hz`` the mean f0 over
    voiced frames; ``f0_st_{stat}`` the statistics ``stats`` of f0 in semitones re 100 Hz;
    ``f0_step_st`` the mean absolute change of pitch between consecutive voiced frames
    (micro-prosody, jitter-like); ``aperiodicity_voiced`` the mean d'(τ*) over voiced frames
    (lower = more periodic, related to the harmonics-to-noise ratio) and ``aperiodicity_all``
    the median over all frames. Without voiced frames the pitch values are 0.

    Voice quality: ``cpp_voiced_{stat}``, the statistics of the cepstral peak prominence
    (``cepstral_peak_prominence`` of the shared 32 ms STFT below ``band_fmax``) over voiced
    frames: how clearly the harmonics stand out of the noise, which vocoders blur.

    Zero-crossing rate: the fraction of successive samples changing sign in each frame of the
    signal low-passed to ``band_fmax`` (``AudioContext.band_limited``: what lies above depends on
    the original sample rate), ``zcr_mean`` and ``zcr_std``.

    References
    ----------
    A. de Cheveigné and H. Kawahara, "YIN, a fundamental frequency estimator for speech and
    music", J. Acoustical Society of America 111(4), 2002. ZCR and loudness dynamics as in
    G. Tzanetakis and P. Cook, "Musical genre classification of audio signals", IEEE Trans.
    Speech and Audio Processing 10(5), 2002. J. Hillenbrand, R. A. Cleveland and R. L. Erickson,
    "Acoustic correlates of breathy vocal quality", J. Speech and Hearing Research 37(4), 1994
    (cepstral peak prominence).
    """
    level = 20.0 * np.log10(np.maximum(ctx.frame_rms, RMS_FLOOR))
    p5, loud = np.percentile(level, [5.0, LOUD_PERCENTILE])
    out = {"level_loud_db": loud, "level_mean_rel_db": level.mean() - loud,
           "level_std_db": level.std(), "dynamic_range_db": loud - p5,
           "quiet_fraction": np.mean(level < loud - quiet_db)}

    track = pitch_track(ctx, fmin=fmin, fmax=fmax, threshold=yin_threshold,
                        floor_db=voicing_floor_db)
    f0 = track.f0[track.voiced]
    pitch = semitones(f0)
    steps = np.abs(np.diff(semitones(track.f0)))  # NaN wherever a neighbour is unvoiced
    steps = steps[np.isfinite(steps)]
    out["voiced_ratio"] = track.voiced.mean()
    out["f0_mean_hz"] = f0.mean() if f0.size else 0.0
    for stat, value in zip(stats, frame_statistics(pitch, stats)[:, 0]):
        out[f"f0_st_{stat}"] = value
    out["f0_step_st"] = steps.mean() if steps.size else 0.0
    out["aperiodicity_voiced"] = track.aperiodicity[track.voiced].mean() if f0.size else 1.0
    out["aperiodicity_all"] = np.median(track.aperiodicity)
    n_bins = int(np.searchsorted(ctx.frequencies, min(band_fmax, ctx.sr / 2), side="right"))
    cpp = cepstral_peak_prominence(ctx.magnitude()[:n_bins], ctx.sr / ctx.n_fft,
                                   fmin=fmin, fmax=fmax)
    for stat, value in zip(stats, frame_statistics(cpp[track.voiced], stats)[:, 0]):
        out[f"cpp_voiced_{stat}"] = value

    zcr = zero_crossing_rate(ctx.band_limited(band_fmax), ctx.n_fft, ctx.hop_length)
    out["zcr_mean"], out["zcr_std"] = zcr.mean(), zcr.std()
    return {key: float(value) for key, value in out.items()}
