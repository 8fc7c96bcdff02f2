"""Long-term average spectrum: the recording's average spectral balance in equal-width bands.

The LTAS averages out the phonetic content and keeps what is constant over the recording: the
speaker's voice quality, the microphone and channel, and a synthesiser's or vocoder's systematic
colouring, notably a deficit or an excess of energy at high frequencies.
"""
from __future__ import annotations

import numpy as np

from features.audio_context import AudioContext
from features.registry import register

DB_FLOOR = -120.0  # relative level given to a band with no energy


def band_powers(spectrum: np.ndarray, freqs: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Sum of ``spectrum`` (bins, ...) over each band [edges[i], edges[i+1]), (bands, ...)."""
    lower, upper = np.asarray(edges[:-1])[:, None], np.asarray(edges[1:])[:, None]
    membership = ((freqs >= lower) & (freqs < upper)).astype(spectrum.dtype)
    return membership @ spectrum


@register(name="ltas", modality="audio", cost="cheap")
def ltas(ctx: AudioContext, *, n_bands: int = 16, fmax: float = 7400.0,
         split_hz: float = 4000.0) -> dict[str, float]:
    """Long-term average power spectrum in ``n_bands`` equal bands, relative to the total, and
    the share of energy above ``split_hz``.

    Definition: P(f) = mean over all frames of |X_t(f)|² (32 ms Hann, 10 ms hop); band b covers
    [b, b + 1) · ``fmax`` / ``n_bands``; ``level_db__band_{b}`` = 10 log10(P_b / Σ_b P_b),
    floored at ``DB_FLOOR`` (so the values do not depend on the recording's loudness);
    ``high_ratio`` = Σ_{split_hz <= f < fmax} P(f) / Σ_{f < fmax} P(f), in [0, 1], 0 for
    silence. Neural vocoders and band-limited synthesisers leave their clearest traces above
    4 kHz. ``fmax`` (7.4 kHz) stays below the 16 kHz resampler's transition band, so that a
    file's original sample rate cannot show.

    References
    ----------
    A. Löfqvist, "The long-time-average spectrum as a tool in voice research", J. Phonetics
    14(3-4), 1986. High-frequency sub-bands for spoofing detection: H. Tak, J. Patino,
    A. Nautsch, N. Evans and M. Todisco, "Spoofing attack detection using the non-linear fusion
    of sub-band classifiers", Proc. Interspeech 2020.
    """
    fmax = min(fmax, ctx.sr / 2)
    average = ctx.power().mean(axis=1)
    edges = np.linspace(0.0, fmax, n_bands + 1)
    bands = band_powers(average, ctx.frequencies, edges)
    total = bands.sum()
    relative = 10.0 * np.log10(np.maximum(bands / total, 10 ** (DB_FLOOR / 10))) if total > 0 \
        else np.full(n_bands, DB_FLOOR)
    out = {f"level_db__band_{b}": float(v) for b, v in enumerate(relative)}
    high = band_powers(average, ctx.frequencies, np.array([split_hz, fmax]))[0]
    out["high_ratio"] = float(high / total) if total > 0 else 0.0
    return out
