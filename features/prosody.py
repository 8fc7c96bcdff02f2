"""Prosody: loudness dynamics, pitch (YIN) and voicing, and the zero-crossing rate.

Text-to-speech and voice conversion produce intonation, pauses and loudness contours that are
smoother and more regular than read or spontaneous speech; these features measure them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import librosa
import numpy as np
import scipy.fft

from features.audio_context import AudioContext, frame_statistics
from features.registry import register

RMS_FLOOR = 1e-5  # -100 dBFS: the level given to digital silence
LOUD_PERCENTILE = 95.0


@dataclass(frozen=True)
class PitchTrack:
    """Per-frame YIN output: f0 in Hz (NaN when unvoiced), aperiodicity d'(τ*) and voicing."""

    f0: np.ndarray
    aperiodicity: np.ndarray
    voiced: np.ndarray


def yin(y: np.ndarray, sr: int, *, fmin: float, fmax: float, hop_length: int,
        threshold: float, floor_db: float) -> PitchTrack:
    """YIN pitch estimation (de Cheveigné & Kawahara, 2002), steps 1 to 5, on centred frames.

    With an integration window of W = ceil(sr / fmin) samples (one longest period) and lags
    τ = 0 .. W: the difference d(τ) = Σ_{j<W} (x_j - x_{j+τ})² (step 2), computed through
    an FFT cross-correlation; the cumulative mean normalised difference d'(τ) = d(τ) τ /
    Σ_{k=1..τ} d(k), d'(0) = 1 (step 3); the period τ* is the first local minimum of d' below
    ``threshold`` with τ in [sr / fmax, sr / fmin] (step 4), refined by parabolic interpolation
    (step 5). A frame is voiced when such a minimum exists and its energy is within
    ``floor_db`` of the loudest frame's; d'(τ*) (or the minimum of d' for unvoiced frames) is
    its aperiodicity, 0 for a periodic signal and about 1 for noise or silence.
    """
    window = int(np.ceil(sr / fmin))
    min_period = max(1, int(np.floor(sr / fmax)))
    frame_length = 2 * window + 2  # even, so the centred framing matches librosa's frame count
    padded = np.pad(y.astype(np.float64), frame_length // 2)
    frames = librosa.util.frame(padded, frame_length=frame_length, hop_length=hop_length).T
    n = scipy.fft.next_fast_len(frame_length + window)
    spectrum = scipy.fft.rfft(frames, n=n, axis=1)
    head = scipy.fft.rfft(frames[:, :window], n=n, axis=1)
    cross = scipy.fft.irfft(np.conj(head) * spectrum, n=n, axis=1)[:, :window + 1]
    energy = np.cumsum(np.pad(frames ** 2, ((0, 0), (1, 0))), axis=1)
    lagged_energy = energy[:, window:2 * window + 1] - energy[:, :window + 1]
    difference = np.maximum(energy[:, window:window + 1] + lagged_energy - 2 * cross, 0.0)
    cumulative = np.cumsum(difference[:, 1:], axis=1)
    lags = np.arange(1, window + 1)
    scale = np.where(cumulative > 1e-12 * (1 + cumulative[:, -1:]), cumulative, np.inf)
    cmnd = np.concatenate([np.ones((len(frames), 1)), difference[:, 1:] * lags / scale], axis=1)
    cmnd[~np.isfinite(cmnd)] = 1.0
    cmnd[scale[:, -1] == np.inf] = 1.0  # a silent frame: no periodicity at all

    search = cmnd[:, min_period:window]  # candidate lags min_period .. window - 1
    is_minimum = (search[:, 1:-1] <= search[:, :-2]) & (search[:, 1:-1] <= search[:, 2:])
    candidates = is_minimum & (search[:, 1:-1] < threshold)
    found = candidates.any(axis=1)
    first = np.where(found, candidates.argmax(axis=1), search[:, 1:-1].argmin(axis=1)) + 1
    rows = np.arange(len(frames))
    left, mid, right = search[rows, first - 1], search[rows, first], search[rows, first + 1]
    curvature = left - 2 * mid + right
    shift = np.where(curvature > 0, 0.5 * (left - right) / np.where(curvature > 0, curvature, 1),
                     0.0)
    period = min_period + first + np.clip(shift, -0.5, 0.5)

    frame_energy = energy[:, window]
    loud = frame_energy >= frame_energy.max() * 10 ** (-floor_db / 10) if frame_energy.max() > 0 \
        else np.zeros(len(frames), dtype=bool)
    voiced = found & loud
    return PitchTrack(f0=np.where(voiced, sr / period, np.nan), aperiodicity=mid,
                      voiced=voiced)


def pitch_track(ctx: AudioContext, *, fmin: float, fmax: float, threshold: float,
                floor_db: float) -> PitchTrack:
    """``yin`` on the context's signal and hop, cached for every family that asks for it."""
    key = ("yin", fmin, fmax, threshold, floor_db)
    return ctx.shared(key, lambda: yin(ctx.y, ctx.sr, fmin=fmin, fmax=fmax,
                                       hop_length=ctx.hop_length, threshold=threshold,
                                       floor_db=floor_db))


def semitones(f0_hz: np.ndarray) -> np.ndarray:
    """Pitch in semitones relative to 100 Hz, so that spreads are independent of the voice."""
    return 12.0 * np.log2(f0_hz / 100.0)


@register(name="prosody", modality="audio", cost="moderate")
def prosody(ctx: AudioContext, *, fmin: float = 50.0, fmax: float = 500.0,
            yin_threshold: float = 0.2, voicing_floor_db: float = 40.0,
            quiet_db: float = 30.0,
            stats: Sequence[str] = ("mean", "std", "p10", "p50", "p90")) -> dict[str, float]:
    """Loudness dynamics, YIN pitch statistics over voiced frames, voicing ratio and ZCR.

    Loudness: the frame RMS (32 ms frames, 10 ms hop) in dBFS, floored at -100 dB.
    ``level_loud_db`` is its ``LOUD_PERCENTILE`` (95th) percentile, the level of loud speech;
    ``level_mean_rel_db`` and ``level_std_db`` the mean (relative to the loud level) and standard
    deviation; ``dynamic_range_db`` the 95th minus the 5th percentile; ``quiet_fraction`` the
    share of frames more than ``quiet_db`` below the loud level (pauses).

    Pitch: YIN (``yin``; search range ``fmin``..``fmax``, absolute threshold ``yin_threshold``,
    energy gate ``voicing_floor_db`` below the loudest frame). ``voiced_ratio`` is the share of
    voiced frames; ``f0_mean_hz`` the mean f0 over voiced frames; ``f0_st_{stat}`` the statistics
    ``stats`` of f0 in semitones re 100 Hz; ``f0_step_st`` the mean absolute change of pitch
    between consecutive voiced frames (micro-prosody, jitter-like); ``aperiodicity_voiced`` the
    mean d'(τ*) over voiced frames (lower = more periodic, related to the harmonics-to-noise
    ratio) and ``aperiodicity_all`` the median over all frames. Without voiced frames the pitch
    values are 0.

    Zero-crossing rate: the fraction of successive samples changing sign in each frame,
    ``zcr_mean`` and ``zcr_std``.

    References
    ----------
    A. de Cheveigné and H. Kawahara, "YIN, a fundamental frequency estimator for speech and
    music", J. Acoustical Society of America 111(4), 2002. ZCR and loudness dynamics as in
    G. Tzanetakis and P. Cook, "Musical genre classification of audio signals", IEEE Trans.
    Speech and Audio Processing 10(5), 2002.
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

    zcr = librosa.feature.zero_crossing_rate(ctx.y, frame_length=ctx.n_fft,
                                             hop_length=ctx.hop_length)[0]
    out["zcr_mean"], out["zcr_std"] = zcr.mean(), zcr.std()
    return {key: float(value) for key, value in out.items()}
