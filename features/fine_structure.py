"""Spectral fine structure: how the short-time spectrum scatters around its smooth envelope, per
sub-band.

A log power spectrum is a smooth envelope (the vocal tract and the channel) plus a fine structure
(the harmonics of the voice and the randomness of its noise). Gaussian noise has an exponential
power per bin, whose logarithm scatters by a fixed amount around the envelope (π/√6 nepers,
5.57 dB); harmonics scatter more, a spectrally smooth signal (a click, a short burst) less.
Neural vocoders regenerate the fine structure from a mel spectrogram, which does not specify it,
and smooth it at high frequencies (fewer deep valleys between harmonics and in the noise); the
envelope, which the mel spectrogram does carry, they reproduce well.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import scipy.fft

from features.audio_context import AudioContext, named_statistics
from features.logarithm import natural_log
from features.registry import register
from features.spectral import flatness

POWER_FLOOR = 1e-10  # below 16-bit quantisation noise, as in the other families
DB_PER_NEPER_POWER = 10.0 / np.log(10.0)  # 10 log10(x) = this * ln(x)
VALLEY_PERCENTILE = 10.0


def envelope_residual(power: np.ndarray, lifter: int) -> np.ndarray:
    """ln power minus its cepstrally smoothed envelope, in dB, same shape as ``power`` (bins,
    frames).

    The envelope keeps the first ``lifter`` coefficients of the orthonormal DCT-II of the log
    spectrum along frequency (low-quefrency liftering): ripples longer than 2 · bins / ``lifter``
    bins stay in the envelope, shorter ones (the harmonics of any voice above about 60 Hz, at 30
    coefficients over 7.4 kHz) go to the residual.
    """
    log_power = natural_log(np.maximum(power, POWER_FLOOR))
    basis, basis_t = dct_basis(power.shape[0], lifter)
    envelope = basis_t @ (basis @ log_power)  # DCT, zero from ``lifter`` on, inverse DCT
    return DB_PER_NEPER_POWER * (log_power - envelope)


@lru_cache(maxsize=8)
def dct_basis(n_bins: int, lifter: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``lifter`` orthonormal DCT-II basis vectors as rows (lifter, n_bins), float32,
    and their contiguous transpose; two thin products are several times faster than a full DCT
    and its inverse."""
    basis = scipy.fft.dct(np.eye(n_bins), type=2, norm="ortho", axis=0)[:lifter]
    basis = basis.astype(np.float32)
    return basis, np.ascontiguousarray(basis.T)


def active_frames(power: np.ndarray, range_db: float) -> np.ndarray:
    """Frames whose power lies within ``range_db`` of the recording's 95th-percentile frame
    power (boolean, (frames,)); pauses, where only the noise floor is left, are dropped.
    At least the loudest 5 % of frames are kept."""
    level = 10.0 * np.log10(np.maximum(power.sum(axis=0), POWER_FLOOR))
    return level >= np.percentile(level, 95.0) - range_db


@register(name="fine_structure", modality="audio", cost="cheap")
def fine_structure(ctx: AudioContext, *, n_bands: int = 8, fmax: float = 7400.0,
                   lifter: int = 30, range_db: float = 30.0,
                   stats: Sequence[str] = ("mean", "std", "p10", "p50", "p90")) -> dict[str, float]:
    """Per sub-band scatter and valley depth of the log spectrum around its envelope, and
    sub-band flatness, over the active frames.

    Definition, on the power STFT |X_t(f)|² (32 ms Hann, 10 ms hop) restricted to f <= ``fmax``
    (7.4 kHz, below the 16 kHz resampler's transition band, so that a file's original sample
    rate cannot show), floored at 1e-10:

    - residual R_t(f) = 10 log10 |X_t(f)|² minus the envelope E_t(f), E_t the inverse DCT of
      the first ``lifter`` DCT-II coefficients of the log spectrum (``envelope_residual``);
    - ``deviation_{stat}__band_{b}``: per frame, the standard deviation in dB of R_t(f) over the
      bins of band b (``n_bands`` equal bands on [0, ``fmax``)); 5.57 dB less the envelope's
      share for Gaussian noise, more for harmonics, 0 for a spectrally smooth frame;
    - ``valley_db_{stat}__band_{b}``: per frame, the ``VALLEY_PERCENTILE``-th percentile of
      R_t(f) over the bins of band b, in dB: how deep the spectrum dips below its envelope
      (10 log10(-ln 0.9) + γ · 10 / ln 10 = -7.27 dB for independent exponential bins, about
      -6 dB for Gaussian noise, whose Hann-windowed bins are correlated; 0 for a smooth frame;
      far deeper between resolved harmonics);
    - ``flatness_db_{stat}__band_{b}``: per frame, 10 log10 of the geometric over the arithmetic
      mean of |X_t(f)|² over band b (sub-band Wiener entropy: 0 dB flat, -2.5 dB (e^-γ) for
      Gaussian noise, very negative for a tone).

    Frames are kept when their power is within ``range_db`` of the recording's 95th-percentile
    frame (``active_frames``); each descriptor is summarised over them by ``stats`` (those of
    the ``spectral`` family).

    References
    ----------
    A. V. Oppenheim and R. W. Schafer, "Homomorphic analysis of speech", IEEE Trans. Audio and
    Electroacoustics 16(2), 1968 (cepstral separation of envelope and fine structure).
    T. Toda and K. Tokuda, "A speech parameter generation algorithm considering global variance
    for HMM-based speech synthesis", IEICE Trans. Information and Systems E90-D(5), 2007
    (over-smoothed spectra of generated speech). J. D. Johnston, "Transform coding of audio
    signals using perceptual noise criteria", IEEE J. Selected Areas in Communications 6(2),
    1988 (spectral flatness). High-frequency sub-bands for spoofing detection: H. Tak,
    J. Patino, A. Nautsch, N. Evans and M. Todisco, "Spoofing attack detection using the
    non-linear fusion of sub-band classifiers", Proc. Interspeech 2020.
    """
    fmax = min(fmax, ctx.sr / 2)
    n_bins = int(np.searchsorted(ctx.frequencies, fmax, side="right"))
    if not 0 < lifter < n_bins:
        raise ValueError(f"fine_structure: lifter must be in 1..{n_bins - 1}, got {lifter}")
    power = ctx.power()[:n_bins]
    power = power[:, active_frames(power, range_db)]
    residual = envelope_residual(power, lifter)
    freqs = ctx.frequencies[:n_bins]
    edges = np.linspace(0.0, fmax, n_bands + 1)
    deviation, valley, flat_db = [], [], []
    for lower, upper in zip(edges[:-1], edges[1:]):
        in_band = (freqs >= lower) & (freqs < upper)
        if not in_band.any():
            raise ValueError(f"fine_structure: band [{lower:g}, {upper:g}) Hz holds no STFT "
                             f"bin; use fewer than {n_bands} bands")
        deviation.append(residual[in_band].std(axis=0))
        valley.append(np.percentile(residual[in_band], VALLEY_PERCENTILE, axis=0))
        flat_db.append(10.0 * np.log10(flatness(power[in_band], POWER_FLOOR)))
    labels = [f"band_{b}" for b in range(n_bands)]
    return {**named_statistics(np.array(deviation), stats, "deviation", labels),
            **named_statistics(np.array(valley), stats, "valley_db", labels),
            **named_statistics(np.array(flat_db), stats, "flatness_db", labels)}
