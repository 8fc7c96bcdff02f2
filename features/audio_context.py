"""The per-recording context of the audio families: one signal, its spectrograms computed once.

``AudioContext`` mirrors ``ImageContext``: families receive it instead of a raw array, and every
short-time transform they share (the STFT magnitude, the power and mel spectrograms, the frame
RMS, a band-limited copy of the signal) is computed once per recording and cached, keyed by its
parameters, so that one STFT serves all families.

Frames: a 32 ms Hann window (``n_fft`` = 512 at 16 kHz) every 10 ms (``hop_length`` = 160), the
usual speech analysis; both scale with the sample rate. Recordings shorter than ``MIN_SECONDS``
are padded with trailing zeros, so every family sees at least 21 frames and its statistics stay
defined.
"""
from __future__ import annotations

from functools import cached_property, lru_cache
from typing import Any, Callable, Sequence

import librosa
import numpy as np
import scipy.fft
import scipy.signal

MIN_SECONDS = 0.2
FRAME_SECONDS = 0.032
HOP_SECONDS = 0.010
STATISTICS = ("mean", "std", "skew", "kurtosis", "min", "max")  # and "pNN", a percentile


class AudioContext:
    """A mono recording and its lazily computed, cached short-time transforms.

    Parameters
    ----------
    y : ndarray of shape (n,)
        The samples, finite floats (float32 after conversion), nominally in [-1, 1].
    sr : sample rate in Hz.
    """

    def __init__(self, y: np.ndarray, sr: int = 16000):
        y = np.asarray(y)
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.number):
            raise ValueError(f"expected a 1-D numeric signal, got {y.dtype} {y.shape}")
        if not np.all(np.isfinite(y)):
            raise ValueError("the signal has non-finite samples")
        minimum = int(np.ceil(MIN_SECONDS * sr))
        y = y.astype(np.float32)
        self.y = np.pad(y, (0, max(0, minimum - y.size)))
        self.sr = int(sr)
        self.n_fft = int(2 ** np.round(np.log2(FRAME_SECONDS * sr)))
        self.hop_length = int(round(HOP_SECONDS * sr))
        self._shared: dict[Any, Any] = {}

    @cached_property
    def frequencies(self) -> np.ndarray:
        """Centre frequency (Hz) of each STFT bin, shape (n_fft // 2 + 1,)."""
        return librosa.fft_frequencies(sr=self.sr, n_fft=self.n_fft)

    def magnitude(self, *, win_length: int | None = None, window: str = "hann",
                  preemphasis: float = 0.0) -> np.ndarray:
        """|STFT|, float32 (n_fft // 2 + 1, frames); frames centred, zero-padded at the ends.

        ``win_length`` (samples, <= n_fft) shortens the window inside the ``n_fft`` transform;
        ``preemphasis`` applies y[n] - a y[n-1] first. The default is the shared 32 ms Hann STFT.
        """
        win_length = win_length or self.n_fft
        key = ("magnitude", win_length, window, preemphasis)

        def compute() -> np.ndarray:
            y = librosa.effects.preemphasis(self.y, coef=preemphasis) if preemphasis else self.y
            return stft_magnitude(y, n_fft=self.n_fft, hop_length=self.hop_length,
                                  win_length=win_length, window=window)

        return self.shared(key, compute)

    def power(self, **stft_options: Any) -> np.ndarray:
        """|STFT|², same options and shape as ``magnitude``."""
        key = ("power", tuple(sorted(stft_options.items())))
        return self.shared(key, lambda: self.magnitude(**stft_options) ** 2)

    def mel_power(self, *, n_mels: int = 40, fmin: float = 0.0,
                  fmax: float | None = None) -> np.ndarray:
        """Mel-band power (n_mels, frames) of the shared STFT (Slaney's mel scale and filters)."""
        fmax = self.sr / 2 if fmax is None else min(fmax, self.sr / 2)
        key = ("mel_power", n_mels, fmin, fmax)
        return self.shared(key, lambda: mel_filters(self.sr, self.n_fft, n_mels, fmin, fmax)
                           @ self.power())

    def band_limited(self, fmax: float) -> np.ndarray:
        """The signal low-passed to ``fmax`` Hz, float32, for time-domain features.

        A zero-phase (centred, linear-phase) Kaiser FIR flat to ``fmax`` - 600 Hz, -6 dB at
        ``fmax`` - 400 Hz and below -75 dB from ``fmax`` on: content between ``fmax`` and the
        Nyquist frequency depends on the file's original sample rate (the resampler's transition
        band), and must not reach a feature.
        """
        if fmax >= self.sr / 2:
            return self.y
        return self.shared(("band_limited", fmax), lambda: scipy.signal.oaconvolve(
            self.y, lowpass_filter(self.sr, fmax), mode="same").astype(np.float32))

    @cached_property
    def frame_rms(self) -> np.ndarray:
        """Root mean square of each frame of the time signal, float32 (frames,)."""
        return librosa.feature.rms(y=self.y, frame_length=self.n_fft,
                                   hop_length=self.hop_length, pad_mode="constant")[0]

    def shared(self, key: Any, compute: Callable[[], Any]) -> Any:
        """Return the cached value for ``key``, computing it once with ``compute()``."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]


def stft_magnitude(y: np.ndarray, *, n_fft: int, hop_length: int, win_length: int,
                   window: str) -> np.ndarray:
    """|STFT| as ``librosa.stft(..., center=True, pad_mode="constant")`` computes it, float32
    (n_fft // 2 + 1, 1 + len(y) // hop_length), with scipy's FFT (several times faster than the
    NumPy FFT that librosa uses by default)."""
    padded = np.pad(y, n_fft // 2)
    frames = librosa.util.frame(padded, frame_length=n_fft, hop_length=hop_length)
    windowed = frames * analysis_window(window, win_length, n_fft)[:, None]
    return np.abs(scipy.fft.rfft(windowed, axis=0)).astype(np.float32, copy=False)


@lru_cache(maxsize=16)
def analysis_window(window: str, win_length: int, n_fft: int) -> np.ndarray:
    """A periodic window of ``win_length`` samples centred in ``n_fft`` zeros, float32."""
    shape = librosa.filters.get_window(window, win_length, fftbins=True)
    return librosa.util.pad_center(shape, size=n_fft).astype(np.float32)


@lru_cache(maxsize=8)
def lowpass_filter(sr: int, fmax: float) -> np.ndarray:
    """Kaiser-window FIR low-pass, -6 dB at ``fmax`` - 400 Hz (129 taps at 16 kHz)."""
    taps = 2 * int(round(64 * sr / 16000)) + 1
    return scipy.signal.firwin(taps, fmax - 400.0, fs=sr, window=("kaiser", 7.0))


@lru_cache(maxsize=32)
def mel_filters(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa's Slaney-normalised mel filter bank, float32 (n_mels, n_fft // 2 + 1), cached."""
    bank = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    return bank.astype(np.float32)


def frame_statistics(values: np.ndarray, stats: Sequence[str]) -> np.ndarray:
    """Summary statistics over frames (last axis) of ``values`` (rows, frames) or (frames,).

    ``stats`` names from ``STATISTICS`` or ``"pNN"`` (the NN-th percentile, 0 <= NN <= 100).
    Skewness and excess kurtosis are 0 for a constant row. Returns shape (len(stats), rows).
    An empty frame axis (e.g. no voiced frame) gives zeros.
    """
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    if values.shape[1] == 0 or not stats:
        return np.zeros((len(stats), values.shape[0]))
    mean = values.mean(axis=1)
    centred = values - mean[:, None]
    std = np.sqrt(np.mean(centred ** 2, axis=1))
    safe_std = np.where(std > 1e-12 * (1 + np.abs(mean)), std, np.inf)
    percentiles = [_percentile_of(name) for name in stats if name.startswith("p")]
    quantiles = dict(zip(percentiles, np.percentile(values, percentiles, axis=1))) \
        if percentiles else {}
    rows = []
    for name in stats:
        if name == "mean":
            rows.append(mean)
        elif name == "std":
            rows.append(std)
        elif name == "skew":
            rows.append(np.mean(centred ** 3, axis=1) / safe_std ** 3)
        elif name == "kurtosis":
            kurtosis = np.mean(centred ** 4, axis=1) / safe_std ** 4
            rows.append(np.where(np.isfinite(safe_std), kurtosis - 3.0, 0.0))
        elif name == "min":
            rows.append(values.min(axis=1))
        elif name == "max":
            rows.append(values.max(axis=1))
        else:
            rows.append(quantiles[_percentile_of(name)])
    return np.stack(rows)


def _percentile_of(name: str) -> int:
    if not (name[1:].isdigit() and 0 <= int(name[1:]) <= 100):
        raise ValueError(f"unknown statistic {name!r}; known: {STATISTICS} and pNN")
    return int(name[1:])


def named_statistics(values: np.ndarray, stats: Sequence[str], feature: str,
                     labels: Sequence[str] | None = None) -> dict[str, float]:
    """``frame_statistics`` as an ordered dict: ``{feature}_{stat}``, or with row labels
    ``{feature}_{stat}__{label}`` (e.g. ``static_mean__coef_3``), statistic-major."""
    table = frame_statistics(values, stats)
    if labels is None:
        return {f"{feature}_{stat}": float(table[s, 0]) for s, stat in enumerate(stats)}
    return {f"{feature}_{stat}__{label}": float(table[s, r])
            for s, stat in enumerate(stats) for r, label in enumerate(labels)}
