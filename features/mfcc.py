"""Mel-frequency cepstral coefficients with their first and second time derivatives.

MFCCs describe the smoothed spectral envelope on a perceptual (mel) frequency scale; their
statistics over a recording summarise its timbre, and their derivatives its spectral dynamics,
both of which speech synthesisers and vocoders reproduce imperfectly.
"""
from __future__ import annotations

from typing import Sequence

import librosa
import numpy as np

from features.audio_context import AudioContext, named_statistics
from features.registry import register

TOP_DB = 80.0  # log-mel floor below each recording's peak, so digital silence stays finite


def cepstral_streams(cepstrum: np.ndarray, *, delta_width: int,
                     stats: Sequence[str], delta_stats: Sequence[str]) -> dict[str, float]:
    """Statistics over frames of cepstra (coefs, frames), of their Δ and of their ΔΔ.

    Δ is the least-squares slope over ``delta_width`` frames (librosa.feature.delta, edge frames
    repeated), ΔΔ the same slope of Δ; the mean of Δ is close to zero by construction, which is
    why Δ and ΔΔ get their own, usually dispersion-only, ``delta_stats``.
    """
    delta = librosa.feature.delta(cepstrum, width=delta_width, order=1, mode="nearest")
    delta2 = librosa.feature.delta(delta, width=delta_width, order=1, mode="nearest")
    labels = [f"coef_{i}" for i in range(cepstrum.shape[0])]
    return {**named_statistics(cepstrum, stats, "static", labels),
            **named_statistics(delta, delta_stats, "delta", labels),
            **named_statistics(delta2, delta_stats, "delta2", labels)}


@register(name="mfcc", modality="audio", cost="cheap")
def mfcc(ctx: AudioContext, *, n_mfcc: int = 20, n_mels: int = 40, fmin: float = 0.0,
         fmax: float = 7400.0, delta_width: int = 5, stats: Sequence[str] = ("mean", "std"),
         delta_stats: Sequence[str] = ("std",)) -> dict[str, float]:
    """MFCC, ΔMFCC and ΔΔMFCC summarised over frames.

    Definition: the power STFT (32 ms Hann, 10 ms hop) is pooled by ``n_mels`` triangular mel
    filters between ``fmin`` and ``fmax`` (Slaney's area-normalised filters), converted to dB
    (floored ``TOP_DB`` below the recording's maximum), and decorrelated with an orthonormal
    DCT-II, keeping coefficients 0 .. ``n_mfcc`` - 1 (c0 is the log energy). Δ and ΔΔ are
    regression slopes over ``delta_width`` frames (HTK's ±2 frames by default). Each coefficient
    stream is summarised by ``stats`` (static) or ``delta_stats`` (Δ, ΔΔ) over all frames.
    ``fmax`` defaults to 7.4 kHz, below the 16 kHz resampler's transition band, so that a file's
    original sample rate cannot show in the top filter.

    Keys: ``static_{stat}__coef_{i}``, ``delta_{stat}__coef_{i}``, ``delta2_{stat}__coef_{i}``.

    References
    ----------
    S. B. Davis and P. Mermelstein, "Comparison of parametric representations for monosyllabic
    word recognition in continuously spoken sentences", IEEE Trans. Acoustics, Speech, and Signal
    Processing 28(4), 1980. Δ coefficients: S. Furui, "Speaker-independent isolated word
    recognition using dynamic features of speech spectrum", IEEE Trans. ASSP 34(1), 1986.
    """
    mel_db = librosa.power_to_db(ctx.mel_power(n_mels=n_mels, fmin=fmin, fmax=fmax),
                                 ref=1.0, amin=1e-10, top_db=TOP_DB)
    cepstrum = librosa.feature.mfcc(S=mel_db, n_mfcc=n_mfcc, dct_type=2, norm="ortho")
    return cepstral_streams(cepstrum, delta_width=delta_width, stats=stats,
                            delta_stats=delta_stats)
