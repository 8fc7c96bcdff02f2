"""Fourier spectrum family ``fft``: the radial (azimuthally averaged) power spectrum and its shape.

Up-sampling layers of generators leave a tell-tale excess or deficit of power at high spatial
frequencies, which the 1-D azimuthal average of the 2-D spectrum makes visible whatever the
image content (Durall et al., CVPR 2020). Besides that profile the family gives the share of
energy in a few annular bands, the high-frequency share and the spectral slope (natural images
follow a power law ``P(f) ~ f^-alpha`` with ``alpha`` near 2).

Conventions shared by every feature here:

* Frequencies are in units of the Nyquist frequency along each axis, so the normalised radius
  ``r = hypot(fy / f_ny, fx / f_ny)`` runs from 0 (DC) to 1 (Nyquist) whatever the image size,
  and names never depend on the size. Only the disc ``0 < r < 1`` is used: the corners beyond it
  exist along the diagonals only, so they would make the profile anisotropic.
* The image is tapered with a periodic 2-D Hann window before the FFT, so the jump between
  opposite borders (the DFT treats the image as periodic) does not leak a cross of spurious power
  into every frequency. Its window-weighted mean is removed first, so the window does not spread
  the brightness (DC) into the lowest frequencies and a constant image has no AC energy at all.
* Power is ``|F|^2 / sum(w^2)``: white noise of variance ``s^2`` has power ``s^2`` at every
  frequency. The spectrum is centred only conceptually: radii are computed from the unshifted
  frequency grid, which gives the same azimuthal average as the ``fftshift``-ed image.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import cv2
import numpy as np
import scipy.sparse

from features.logarithm import natural_log
from features.registry import register

SPECTRUM_CHANNELS = ("y", "cb", "cr", "r", "g", "b")
REGIONS = ("full", "crop")  # the whole image, and a centred square
# Power floor in grey levels^2 per frequency: far below the 8-bit rounding noise (1/12), so it only
# keeps log(0) away; total AC energy below it counts as none (float round-off of a flat image).
POWER_FLOOR = 1e-4


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)  # cached and shared between calls: nobody may modify it
    return array


@lru_cache(maxsize=16)
def _hann_window(height: int, width: int) -> np.ndarray:
    """Separable periodic Hann window ``w[n] = sin^2(pi n / N)``, float32 (H, W)."""
    def hann(n: int) -> np.ndarray:
        return np.sin(np.pi * np.arange(n) / n) ** 2
    return _read_only(np.outer(hann(height), hann(width)).astype(np.float32))


@lru_cache(maxsize=16)
def _hann_window_sums(height: int, width: int) -> tuple[float, float]:
    """``sum(w)`` and ``sum(w^2)`` of ``_hann_window(height, width)``."""
    window = _hann_window(height, width)
    return float(window.sum()), float(np.vdot(window, window))


def _packed_column_power(squares: np.ndarray) -> np.ndarray:
    """Power at each ``fy`` of a real column sequence packed like OpenCV's CCS, from the squares
    of its packed values: row 0 holds ``fy = 0``, rows ``2k - 1`` and ``2k`` the real and
    imaginary parts of ``fy = k``, and, for an even length, the last row ``fy = length / 2``."""
    length = squares.size
    power = np.empty(length, np.float32)
    power[0] = squares[0]
    half = (length - 1) // 2
    power[1:half + 1] = squares[1:2 * half:2] + squares[2:2 * half + 1:2]
    power[length - half:] = power[half:0:-1]  # a real sequence: |F(-fy)| = |F(fy)|
    if length % 2 == 0:
        power[length // 2] = squares[-1]
    return power


def packed_dft_power(packed: np.ndarray) -> np.ndarray:
    """``|F|^2`` in ``rfft2`` layout (H, W // 2 + 1) from ``cv2.dft``'s packed (CCS) spectrum
    (H, W) of a real image. ``packed`` is squared in place.

    OpenCV stores the real and imaginary parts of ``fx = k`` (0 < k < W / 2) for every ``fy`` in
    columns ``2k - 1`` and ``2k``; the columns of ``fx = 0`` and (even W) ``fx = W / 2``, real
    sequences along ``fy`` after the row transforms, are packed the same way along ``fy`` in
    columns 0 and W - 1 (see ``_packed_column_power``).
    """
    height, width = packed.shape
    squares = np.square(packed, out=packed)
    power = np.empty((height, width // 2 + 1), np.float32)
    n_pairs = (width - 1) // 2
    np.add(squares[:, 1:2 * n_pairs:2], squares[:, 2:2 * n_pairs + 1:2],
           out=power[:, 1:n_pairs + 1])
    power[:, 0] = _packed_column_power(squares[:, 0])
    if width % 2 == 0 and width > 1:
        power[:, -1] = _packed_column_power(squares[:, -1])
    return power


def hann_power_spectrum(image: np.ndarray) -> np.ndarray:
    """Half-plane power spectrum of the DC-free, Hann-windowed image (``rfft2`` layout).

    Returns ``|F|^2 / sum(w^2)`` of ``w * (x - sum(w x) / sum(w))``, shape (H, W // 2 + 1).
    """
    window = _hann_window(*image.shape)
    window_sum, window_energy = _hann_window_sums(*image.shape)
    weighted_mean = float(np.vdot(image, window)) / window_sum
    # In place: each full-size float32 temporary costs as much as the arithmetic on it.
    tapered = image - np.float32(weighted_mean)
    tapered *= window
    # OpenCV's real FFT with its packed output takes about half the time of scipy.fft.rfft2.
    power = packed_dft_power(cv2.dft(tapered))
    power /= np.float32(window_energy)
    return power


@lru_cache(maxsize=16)
def _half_plane_weight(height: int, width: int) -> np.ndarray:
    """Weight of each ``rfft2`` frequency in a full-plane average, flattened float32."""
    # The half plane stores fx >= 0 only; each column except fx = 0 and the even-width Nyquist
    # column also stands for its mirror image, so it counts twice.
    column_weight = np.full(width // 2 + 1, 2.0, dtype=np.float32)
    column_weight[0] = 1.0
    if width % 2 == 0:
        column_weight[-1] = 1.0
    return _read_only(np.broadcast_to(column_weight, (height, column_weight.size)).ravel().copy())


@lru_cache(maxsize=16)
def _normalised_radius(height: int, width: int) -> np.ndarray:
    """Radius ``hypot(fy, fx)`` of each ``rfft2`` frequency in Nyquist units, flattened."""
    fy = np.fft.fftfreq(height) * 2.0
    fx = np.fft.rfftfreq(width) * 2.0
    return _read_only(np.hypot(fy[:, None], fx[None, :]).ravel())


@lru_cache(maxsize=32)
def _rings(height: int, width: int, n_rings: int) -> tuple[scipy.sparse.csr_matrix, np.ndarray]:
    """Ring-sum operator of the ``rfft2`` frequencies and the weighted number of frequencies per
    ring.

    Row ``k`` of the sparse (n_rings, H * (W // 2 + 1)) matrix holds the half-plane weight of
    each frequency of the ring ``k / n_rings <= r < (k + 1) / n_rings`` of the disc ``0 < r < 1``,
    so ``matrix @ values.ravel()`` gives the full-plane sum of ``values`` over each ring, in
    float64. (A product with this precomputed matrix is about three times faster than a weighted
    ``np.bincount`` over a ring index map, and adds the same terms in the same order.)
    """
    radius = _normalised_radius(height, width)
    inside = np.flatnonzero((radius > 0) & (radius < 1))
    ring = np.minimum(radius[inside] * n_rings, n_rings - 1).astype(np.intp)
    weight = _half_plane_weight(height, width)[inside].astype(np.float64)
    matrix = scipy.sparse.csr_matrix((weight, (ring, inside)), shape=(n_rings, radius.size))
    for array in (matrix.data, matrix.indices, matrix.indptr):
        _read_only(array)
    return matrix, _read_only(np.bincount(ring, weights=weight, minlength=n_rings))


@lru_cache(maxsize=16)
def _slope_weights(height: int, width: int) -> np.ndarray:
    """Vector ``a`` with ``a . log10(P)`` = least-squares slope of ``log10 P`` on ``log10 r``.

    The fit runs over every frequency of the disc ``0 < r < 1`` (mirror images counted too);
    ``a`` is 0 when the disc holds no frequency.
    """
    radius = _normalised_radius(height, width)
    weight = np.where((radius > 0) & (radius < 1), _half_plane_weight(height, width), 0.0)
    log_radius = np.log10(np.where(weight > 0, radius, 1.0))
    deviation = log_radius - weight @ log_radius / max(weight.sum(), 1.0)
    spread = weight @ deviation ** 2
    slope_weights = weight * deviation / spread if spread > 0 else np.zeros_like(weight)
    return _read_only(slope_weights.astype(np.float32))


def log_power_features(power: np.ndarray, shape: tuple[int, int], n_bins: int
                       ) -> tuple[np.ndarray, float]:
    """Azimuthal profile of ``10 log10(P + floor)`` over ``n_bins`` rings, and the spectral slope.

    The profile is the mean dB value in each equal ring of normalised radius 0..1; rings holding
    no frequency of a small image are interpolated linearly from their neighbours. The slope is
    the least-squares slope of ``log10(P + floor)`` against ``log10 r`` over all frequencies.
    """
    rings, size = _rings(*shape, n_bins)
    log_power = power.ravel() + np.float32(POWER_FLOOR)
    natural_log(log_power, out=log_power)  # not np.log10: scalar code on CPUs without AVX-512
    log_power *= np.float32(1 / math.log(10))
    slope = float(np.dot(_slope_weights(*shape), log_power))
    ring_sum = rings @ log_power
    filled = size > 0
    if not filled.any():
        return np.zeros(n_bins), slope
    centres = (np.arange(n_bins) + 0.5) / n_bins
    return 10.0 * np.interp(centres, centres[filled], ring_sum[filled] / size[filled]), slope


def band_energy_fractions(power: np.ndarray, shape: tuple[int, int], n_bands: int
                          ) -> tuple[np.ndarray, float]:
    """Shares of the AC energy (disc ``0 < r < 1``) in ``n_bands`` equal annuli and at
    ``r >= 1/2``."""
    n_rings = math.lcm(n_bands, 2)  # fine enough to sum into both the bands and the two halves
    rings, size = _rings(*shape, n_rings)
    energy = rings @ power.ravel()
    total = energy.sum()
    if total <= POWER_FLOOR * size.sum():
        return np.zeros(n_bands), 0.0
    bands = energy.reshape(n_bands, -1).sum(axis=1) / total
    return bands, float(energy[n_rings // 2:].sum() / total)


@lru_cache(maxsize=16)
def _spectrum_names(n_bins: int, n_bands: int) -> tuple[str, ...]:
    """Names of ``spectrum_values``, built once (formatting them per image is not free)."""
    return (*(f"azimuthal__bin_{k}" for k in range(n_bins)),
            *(f"band_energy__band_{k}" for k in range(n_bands)), "hf_ratio", "spectral_slope")


def spectrum_values(power: np.ndarray, shape: tuple[int, int], n_bins: int, n_bands: int
                    ) -> np.ndarray:
    """Centred profile, band shares, high-frequency share and slope of one half-plane power
    spectrum, in the order of ``_spectrum_names``."""
    profile, slope = log_power_features(power, shape, n_bins)
    bands, high_share = band_energy_fractions(power, shape, n_bands)
    # Subtracting the profile's mean removes overall brightness/contrast, leaving only its shape.
    return np.concatenate([profile - profile.mean(), bands, [high_share, slope]])


def centred_square(shape: tuple[int, int], crop: float) -> tuple[int, int, int]:
    """``(top, left, side)`` of the centred square whose side is ``crop`` times the short side."""
    height, width = shape
    side = min(max(2, int(round(crop * min(height, width)))), height, width)
    return (height - side) // 2, (width - side) // 2, side


@lru_cache(maxsize=16)
def _feature_names(channels: tuple[str, ...], n_bins: int, n_bands: int) -> tuple[str, ...]:
    """Names of the ``fft`` features in output order: channel, then region, then feature."""
    return tuple(f"{channel}_{region}__{name}" for channel in channels for region in REGIONS
                 for name in _spectrum_names(n_bins, n_bands))


def _check_params(channels: Sequence[str], n_bins: int, n_bands: int, crop: float) -> None:
    unknown = [c for c in channels if c not in SPECTRUM_CHANNELS]
    if unknown or not channels:
        raise ValueError(f"fft: channels must be a non-empty subset of {SPECTRUM_CHANNELS}, "
                         f"got {list(channels)}")
    if n_bins < 2 or n_bands < 1:
        raise ValueError(f"fft: need n_bins >= 2 and n_bands >= 1, got {n_bins}, {n_bands}")
    if not 0 < crop <= 1:
        raise ValueError(f"fft: crop must be in (0, 1], got {crop}")


@register(name="fft", modality="image", cost="cheap")
def fft(ctx, *, channels: Sequence[str] = ("y",), n_bins: int = 32, n_bands: int = 4,
        crop: float = 0.5) -> dict[str, float]:
    """Azimuthally averaged log power spectrum, band energy shares and spectral slope.

    For each channel and for two regions, ``full`` (the whole image) and ``crop`` (a centred
    square, ``crop`` times the short side), on the power spectrum ``P`` of the Hann-windowed,
    mean-free channel (see the module docstring):

    * ``azimuthal__bin_k``: the mean of ``10 log10(P + 1e-4)`` (decibels, i.e. ``20 log10 |F|``)
      over the ring ``k / n_bins <= r < (k + 1) / n_bins`` of normalised radius ``r`` (1 =
      Nyquist), minus the mean of all ``n_bins`` ring values, so brightness and contrast do not
      dominate and only the shape of the profile remains.
    * ``band_energy__band_k``: the share of AC energy (``0 < r < 1``) in the annulus
      ``k / n_bands <= r < (k + 1) / n_bands``; the ``n_bands`` shares sum to 1.
    * ``hf_ratio``: the share of that energy above half the Nyquist frequency (``r >= 1/2``).
    * ``spectral_slope``: the least-squares slope of ``log10 P`` against ``log10 r`` over all
      frequencies of the disc, i.e. ``-alpha`` of a ``1/f^alpha`` power law: 0 for white noise,
      about -2 for natural images.

    Energy features are 0 for an image without AC energy (constant). Names read
    ``{channel}_{full|crop}__{feature}``, e.g. ``y_full__azimuthal__bin_17``. The power spectra are
    shared through ``ctx.shared(("fft_power", channel, top, left, height, width), ...)``.

    Reference: R. Durall, M. Keuper, J. Keuper, "Watch your Up-Convolution: CNN Based Generative
    Deep Neural Networks are Failing to Reproduce Spectral Distributions", CVPR 2020.
    """
    _check_params(channels, n_bins, n_bands, crop)
    height, width = ctx.shape
    if min(height, width) < 2:  # a one-pixel Hann window is 0: no spectrum to describe
        raise ValueError(f"fft: the image must be at least 2 x 2 pixels, got {height} x {width}")
    top, left, side = centred_square((height, width), crop)
    regions = [(0, 0, height, width), (top, left, side, side)]  # in the order of REGIONS
    values = []
    for channel in channels:
        for y0, x0, h, w in regions:
            power = ctx.shared(
                ("fft_power", channel, y0, x0, h, w),
                lambda: hann_power_spectrum(ctx.channel(channel)[y0:y0 + h, x0:x0 + w]))
            values.append(spectrum_values(power, (h, w), n_bins, n_bands))
    return dict(zip(_feature_names(tuple(channels), n_bins, n_bands),
                    np.concatenate(values).tolist()))
