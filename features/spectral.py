"""Frame-wise spectral shape descriptors: centroid, bandwidth, roll-off, flatness, contrast, flux.

Each is a scalar (or, for contrast, one value per frequency band) per STFT frame, summarised over
the recording. Together they describe where the energy sits, how peaky or noise-like the spectrum is,
and how fast it changes, all of which synthetic speech reproduces imperfectly (over-smoothed
spectra, missing noise between harmonics, too regular transitions). Centroid, bandwidth, roll-off
and flatness are vectorised here over the shared STFT (librosa's general versions cost several
times more).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from features.audio_context import AudioContext, named_statistics
from features.logarithm import natural_log
from features.registry import register


def spectral_flux(magnitude: np.ndarray) -> np.ndarray:
    """Squared L2 distance between successive sum-normalised magnitude spectra, (frames - 1,).

    A frame with no energy normalises to zeros, so silence has zero flux.
    """
    return np.sum(np.diff(sum_normalised(magnitude), axis=1) ** 2, axis=0)


def sum_normalised(magnitude: np.ndarray) -> np.ndarray:
    """Each frame (column) divided by its sum; silent frames stay zero."""
    totals = magnitude.sum(axis=0, keepdims=True)
    return magnitude / np.where(totals > 0, totals, 1.0)


def centroid_and_bandwidth(magnitude: np.ndarray, freqs: np.ndarray) -> tuple[np.ndarray, ...]:
    """First moment and square root of the second central moment of each frame's spectrum."""
    weights = sum_normalised(magnitude.astype(np.float64))
    centroid = freqs @ weights
    variance = (freqs ** 2) @ weights - centroid ** 2
    return centroid, np.sqrt(np.maximum(variance, 0.0))


def rolloff(magnitude: np.ndarray, freqs: np.ndarray, fraction: float) -> np.ndarray:
    """Lowest frequency with ``fraction`` of the frame's magnitude sum at or below it;
    0 for a silent frame."""
    cumulative = np.cumsum(magnitude, axis=0, dtype=np.float64)
    reached = cumulative >= fraction * cumulative[-1:]
    return np.where(cumulative[-1] > 0, freqs[reached.argmax(axis=0)], 0.0)


def band_contrast(magnitude: np.ndarray, freqs: np.ndarray, edges: np.ndarray,
                  alpha: float) -> np.ndarray:
    """Spectral contrast (bands, frames): peak minus valley level, in dB, within each band.

    Peak and valley are the mean magnitude of the ``alpha`` largest and smallest fraction of the
    band's bins (at least one bin each), floored at 1e-10 before the logarithm; a band narrower
    than one bin has contrast 0.
    """
    rows = []
    for lower, upper in zip(edges[:-1], edges[1:]):
        band = np.sort(magnitude[(freqs >= lower) & (freqs < upper)], axis=0)
        if not band.shape[0]:
            rows.append(np.zeros(magnitude.shape[1]))
            continue
        count = max(1, int(round(alpha * band.shape[0])))
        peak, valley = band[-count:].mean(axis=0), band[:count].mean(axis=0)
        rows.append(20.0 * np.log10(np.maximum(peak, 1e-10) / np.maximum(valley, 1e-10)))
    return np.array(rows)


def flatness(power: np.ndarray, floor: float = 1e-10) -> np.ndarray:
    """Geometric over arithmetic mean of each frame's power spectrum, the power floored at
    ``floor``."""
    floored = np.maximum(power, floor)
    return np.exp(np.mean(natural_log(floored), axis=0)) / np.mean(floored, axis=0)


@register(name="spectral", modality="audio", cost="moderate")
def spectral(ctx: AudioContext, *, fmax: float = 7400.0, rolloff_percent: float = 0.85,
             n_contrast_bands: int = 8, contrast_alpha: float = 0.1,
             stats: Sequence[str] = ("mean", "std", "p10", "p50", "p90")) -> dict[str, float]:
    """Spectral centroid, bandwidth, roll-off, flatness, band contrast and flux over frames.

    Definitions, on the magnitude STFT |X_t(f)| (32 ms Hann, 10 ms hop) restricted to f <=
    ``fmax`` (7.4 kHz, below the 16 kHz resampler's transition band):

    - centroid_t = Σ f |X_t(f)| / Σ |X_t(f)|, in Hz (0 for a silent frame);
    - bandwidth_t = (Σ |X_t(f)| (f - centroid_t)² / Σ |X_t(f)|)^½, in Hz;
    - roll-off_t = the lowest frequency below which ``rolloff_percent`` of Σ |X_t(f)| lies;
    - flatness_t = geometric mean / arithmetic mean of |X_t(f)|² (Wiener entropy; 1 for a flat
      spectrum, e^-γ ≈ 0.56 for a frame of white noise, near 0 for a tone), with librosa's floor
      of 1e-10 on the power;
    - contrast_t,b = 20 log10(peak / valley), peak and valley the mean of the largest and the
      smallest fraction ``contrast_alpha`` of |X_t(f)| in band b; the bands are
      ``n_contrast_bands`` equal-width bands up to ``fmax``. Jiang et al. use octave bands and
      α = 0.02; equal bands resolve the high frequencies, where vocoders blur the harmonics, and
      α = 0.1 (3 of the 30 bins of a 925 Hz band) keeps the valley from being one bin that
      quantisation noise decides;
    - flux_t = Σ_f (N_t(f) - N_{t-1}(f))², N_t = |X_t| / Σ_f |X_t(f)|.

    Each is summarised by ``stats`` over all frames. Keys: ``{descriptor}_{stat}`` and
    ``contrast_{stat}__band_{b}``.

    References
    ----------
    G. Tzanetakis and P. Cook, "Musical genre classification of audio signals", IEEE Trans.
    Speech and Audio Processing 10(5), 2002 (centroid, roll-off, flux). J. D. Johnston,
    "Transform coding of audio signals using perceptual noise criteria", IEEE J. Selected Areas
    in Communications 6(2), 1988 (spectral flatness). D.-N. Jiang, L. Lu, H.-J. Zhang, J.-H. Tao
    and L.-H. Cai, "Music type classification by spectral contrast feature", Proc. IEEE ICME
    2002 (spectral contrast).
    """
    n_bins = int(np.searchsorted(ctx.frequencies, min(fmax, ctx.sr / 2), side="right"))
    magnitude = ctx.magnitude()[:n_bins]
    freqs = ctx.frequencies[:n_bins]
    centroid, bandwidth = centroid_and_bandwidth(magnitude, freqs)
    edges = np.linspace(0.0, min(fmax, ctx.sr / 2), n_contrast_bands + 1)
    contrast = band_contrast(magnitude, freqs, edges, contrast_alpha)
    out: dict[str, float] = {}
    for name, values in (("centroid", centroid), ("bandwidth", bandwidth),
                         ("rolloff", rolloff(magnitude, freqs, rolloff_percent)),
                         ("flatness", flatness(ctx.power()[:n_bins])),
                         ("flux", spectral_flux(magnitude))):
        out.update(named_statistics(values, stats, name))
    out.update(named_statistics(contrast, stats, "contrast",
                                [f"band_{b}" for b in range(n_contrast_bands)]))
    return out
