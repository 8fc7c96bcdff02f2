"""Linear-frequency cepstral coefficients, the front end of the ASVspoof 2019 LFCC-GMM baseline.

LFCCs are MFCCs with linearly spaced filters: they keep the high-frequency resolution that the mel
scale discards, which is where vocoders and synthesisers leave most of their artefacts; they were
the best of many features compared for synthetic speech detection by Sahidullah et al. (2015).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import scipy.fft

from features.audio_context import AudioContext
from features.mfcc import cepstral_streams
from features.registry import register

PREEMPHASIS = 0.97
POWER_FLOOR = 1e-10  # log floor of a filter's power: below 16-bit quantisation noise


@lru_cache(maxsize=16)
def linear_filters(sr: int, n_fft: int, n_filters: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular filters, peak 1, with edges equally spaced on [fmin, fmax]; (n_filters, bins).

    Filter i rises from edge i to edge i + 1 and falls to edge i + 2, like MATLAB's ``trimf``
    in the ASVspoof baseline.
    """
    freqs = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    edges = np.linspace(fmin, fmax, n_filters + 2)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    return np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32)


@register(name="lfcc", modality="audio", cost="cheap")
def lfcc(ctx: AudioContext, *, n_filters: int = 20, n_lfcc: int = 20,
         frame_seconds: float = 0.020, fmin: float = 0.0, fmax: float = 7400.0,
         delta_width: int = 3, stats: Sequence[str] = ("mean", "std"),
         delta_stats: Sequence[str] = ("std",)) -> dict[str, float]:
    """LFCC, ΔLFCC and ΔΔLFCC (ASVspoof 2019 baseline front end) summarised over frames.

    Definition (the baseline's ``extract_lfcc``): pre-emphasis y[n] - 0.97 y[n-1]; Hamming
    windows of ``frame_seconds`` (20 ms) every 10 ms, zero-padded to the 512-point FFT at 16 kHz;
    power spectrum; ``n_filters`` triangular filters linearly spaced on [``fmin``, ``fmax``];
    log10 (floored at ``POWER_FLOOR``); orthonormal DCT-II keeping ``n_lfcc`` coefficients
    (c0 included); Δ and ΔΔ over ``delta_width`` = 3 frames, ΔΔ being the Δ of Δ. Differences
    from the baseline: frames are centred (librosa), and ``fmax`` defaults to 7.4 kHz instead of
    the Nyquist frequency, below the 16 kHz resampler's transition band, so that a file's
    original sample rate cannot show in the top filter. Streams are summarised over all frames
    by ``stats`` (static) and ``delta_stats`` (Δ, ΔΔ).

    Keys: ``static_{stat}__coef_{i}``, ``delta_{stat}__coef_{i}``, ``delta2_{stat}__coef_{i}``.

    References
    ----------
    M. Sahidullah, T. Kinnunen and C. Hanilçi, "A comparison of features for synthetic speech
    detection", Proc. Interspeech 2015. M. Todisco et al., "ASVspoof 2019: Future horizons in
    spoofed and fake audio detection", Proc. Interspeech 2019 (the LFCC-GMM baseline).
    """
    win_length = min(int(round(frame_seconds * ctx.sr)), ctx.n_fft)
    power = ctx.power(win_length=win_length, window="hamming", preemphasis=PREEMPHASIS)
    bank = linear_filters(ctx.sr, ctx.n_fft, n_filters, fmin, min(fmax, ctx.sr / 2))
    log_energy = np.log10(np.maximum(bank @ power, POWER_FLOOR))
    cepstrum = scipy.fft.dct(log_energy, type=2, norm="ortho", axis=0)[:n_lfcc]
    return cepstral_streams(cepstrum, delta_width=delta_width, stats=stats,
                            delta_stats=delta_stats)
