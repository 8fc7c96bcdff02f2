"""Noise-residual families: co-occurrences of quantised high-pass residuals (SRM style).

A residual is what a local predictor fails to explain: ``(kernel * x)`` with a high-pass kernel
that cancels smooth content. Cameras leave sensor noise and demosaicking traces there;
generators and blending leave upsampling and smoothing traces. Quantising the residual and
counting which values its neighbours take together (co-occurrences) captures that noise.

Reference: J. Fridrich, J. Kodovský, "Rich Models for Steganalysis of Digital Images", IEEE
Transactions on Information Forensics and Security 7(3), 2012.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import cv2
import numpy as np

from features.context import ImageContext
from features.pyramid import check_levels, pool_codes, pyramid_names
from features.registry import register


class Kernel(NamedTuple):
    """A residual kernel (cross-correlation, horizontal form), its anchor and scale c."""

    weights: np.ndarray   # integer coefficients, the anchor pixel's being -c
    anchor: tuple[int, int]  # (row, col) of the pixel the residual belongs to
    scale: int            # c, the central coefficient's magnitude: the SRM quantisation unit
    directional: bool     # True: also used transposed, along columns


KERNELS = {
    # x[i, j+1] - x[i, j]
    "o1": Kernel(np.array([[-1, 1]]), (0, 0), 1, True),
    # x[i, j-1] - 2 x[i, j] + x[i, j+1]
    "o2": Kernel(np.array([[1, -2, 1]]), (0, 1), 2, True),
    # x[i, j-1] - 3 x[i, j] + 3 x[i, j+1] - x[i, j+2]
    "o3": Kernel(np.array([[1, -3, 3, -1]]), (0, 1), 3, True),
    # KB: 3x3 "SQUARE" kernel
    "kb": Kernel(np.array([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]]), (1, 1), 4, False),
    # KV: 5x5 "SQUARE" kernel
    "kv": Kernel(np.array([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2],
                           [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]]), (2, 2), 12, False),
}
DIRECTIONS = ("h", "v")
_BLOCK_SIZE = 65536  # float32 values per block of the moment computation: 256 KiB
_ORDER_NAMES = {2: "pair", 3: "triple"}


def residual_map(image: np.ndarray, kernel: str, direction: str,
                 depth: int = cv2.CV_32F) -> np.ndarray:
    """Residual ``kernel * image`` (float32; int16 for ``depth`` ``cv2.CV_16S``) where the kernel
    lies wholly inside the image.

    Directional kernels (o1, o2, o3) are transposed for ``direction == "v"``; square ones are
    the same in both directions. Integer images give exact integer residuals; ``depth``
    ``cv2.CV_16S`` gives them as int16, from a uint8 image. The result may be a (row-strided)
    view into the filtered image.
    """
    weights, (row, col), _, directional = KERNELS[kernel]
    if directional and direction == "v":
        weights, (row, col) = weights.T, (col, row)
    height, width = image.shape
    k_height, k_width = weights.shape
    if height < k_height or width < k_width:
        return np.zeros((max(height - k_height + 1, 0), max(width - k_width + 1, 0)),
                        np.int16 if depth == cv2.CV_16S else np.float32)
    if depth == cv2.CV_16S:
        if image.dtype != np.uint8:
            raise ValueError(f"int16 residuals need a uint8 image, got {image.dtype}")
    else:
        image = np.ascontiguousarray(image, np.float32)
    if kernel == "o1":
        # One subtraction of shifted views: the filter's values without filtering the border
        # or copying out the valid part.
        return cv2.subtract(image[:, 1:], image[:, :-1], dtype=depth) if direction == "h" else \
            cv2.subtract(image[1:], image[:-1], dtype=depth)
    filtered = cv2.filter2D(image, depth, weights.astype(np.float32), anchor=(col, row))
    # A view, not a copy: every later step reads row by row, at the same speed.
    return filtered[row:height - (k_height - 1 - row), col:width - (k_width - 1 - col)]


def quantise(residual: np.ndarray, step: float, t: int) -> np.ndarray:
    """Codes 0..2t of ``clip(round(residual / step), -t, t) + t``, rounding halves away from 0.

    Rounding follows SRM (MATLAB ``round``): round(r/step) >= k exactly when r >= (k - 1/2) step.
    """
    codes = np.full(residual.shape, t, np.uint8)
    beyond = np.empty(residual.shape, np.bool_)
    for k in range(1, t + 1):
        edge = np.float32((k - 0.5) * step)
        # Comparisons into one reused mask, added as uint8: no temporary array per threshold.
        codes += np.greater_equal(residual, edge, out=beyond).view(np.uint8)
        codes -= np.less_equal(residual, -edge, out=beyond).view(np.uint8)
    return codes


def neighbour_codes(codes: np.ndarray, n_values: int, order: int, direction: str) -> np.ndarray:
    """Joint code sum_k codes[p + k] * n_values**(order-1-k) of ``order`` consecutive pixels.

    Pixels run along rows for ``direction == "h"`` and along columns for ``"v"``; the map
    shrinks by ``order - 1`` in that direction.
    """
    dtype = np.uint8 if n_values ** order <= 256 else np.uint16
    along_rows = direction == "h"
    length = (codes.shape[1] if along_rows else codes.shape[0]) - order + 1
    if length <= 0:
        shape = (codes.shape[0], 0) if along_rows else (0, codes.shape[1])
        return np.zeros(shape, dtype)
    views = [codes[:, k:k + length] if along_rows else codes[k:k + length] for k in range(order)]
    joint = views[0].astype(dtype)
    for view in views[1:]:
        joint *= n_values
        joint += view
    return joint


def residual_statistics(residual: np.ndarray, scale: float = 1.0) -> dict[str, float]:
    """Standard deviation, mean absolute value and excess kurtosis of ``residual / scale``.

    kurtosis = m4 / m2^2 - 3 with central moments m2, m4; 0 when m2 is 0 (flat residual).
    """
    if residual.size == 0:
        return {"std": 0.0, "mean_abs": 0.0, "kurtosis": 0.0}
    mean, std = (float(v[0, 0]) for v in cv2.meanStdDev(residual))
    # Sum |r| and (r - mean)^4 block by block of rows while each block is in cache, the powers in
    # one small buffer: a fresh full-size temporary costs more (page faults) than the arithmetic.
    block_rows = max(1, _BLOCK_SIZE // residual.shape[1])
    buffer = np.empty((min(block_rows, residual.shape[0]), residual.shape[1]), np.float32)
    absolute_sum = fourth_power_sum = 0.0
    for start in range(0, residual.shape[0], block_rows):
        rows = residual[start:start + block_rows]
        absolute_sum += cv2.norm(rows, cv2.NORM_L1)
        centred = cv2.subtract(rows, mean, dst=buffer[:rows.shape[0]])
        fourth_power_sum += cv2.norm(cv2.multiply(centred, centred, dst=centred), cv2.NORM_L2SQR)
    variance = std * std
    return {
        "std": std / scale,
        "mean_abs": absolute_sum / residual.size / scale,
        "kurtosis": fourth_power_sum / residual.size / variance ** 2 - 3.0
        if variance > 1e-12 else 0.0,
    }


def shared_residual(ctx: ImageContext, channel: str, kernel: str, orientation: str) -> np.ndarray:
    """The residual map of one channel and kernel, computed once per image for every family."""
    return ctx.shared(("residual", channel, kernel, orientation),
                      lambda: residual_map(ctx.channel_8bit(channel), kernel, orientation))


def _residual_features(ctx: ImageContext, channels: Sequence[str], kernels: Sequence[str],
                       q: float, t: int, order: int, levels: Sequence[int]) -> dict[str, float]:
    levels = check_levels(levels)
    unknown = sorted(set(kernels) - set(KERNELS))
    if unknown:
        raise ValueError(f"unknown residual kernel(s) {unknown}; known: {sorted(KERNELS)}")
    n_values = 2 * t + 1
    if order not in _ORDER_NAMES or t < 1 or n_values ** order > 2 ** 16 or q <= 0:
        raise ValueError(f"need order in {sorted(_ORDER_NAMES)}, 1 <= t with (2t+1)^order <= "
                         f"65536, and q > 0; got order={order}, t={t}, q={q}")
    features: dict[str, float] = {}
    for channel in channels:
        for kernel in kernels:
            directional = KERNELS[kernel].directional
            codes_of = {}  # quantised residual per orientation; not kept in the context
            for direction in DIRECTIONS:
                # A square kernel's one residual map serves both co-occurrence directions.
                orientation = direction if directional else "h"
                residual = shared_residual(ctx, channel, kernel, orientation)
                if orientation not in codes_of:
                    codes_of[orientation] = quantise(residual, q * KERNELS[kernel].scale, t)
                joint = neighbour_codes(codes_of[orientation], n_values, order, direction)
                prefix = f"{channel}_{kernel}_{direction}_{_ORDER_NAMES[order]}"
                histograms = pool_codes(joint, n_values ** order, levels)
                features.update(zip(pyramid_names(prefix, n_values ** order, levels),
                                    histograms.ravel().tolist()))
                if directional or direction == DIRECTIONS[0]:
                    name = f"{channel}_{kernel}" + (f"_{direction}" if directional else "")
                    statistics = residual_statistics(residual, KERNELS[kernel].scale)
                    features.update({f"{name}__{key}": value for key, value in statistics.items()})
    return features


@register(name="residual", modality="image", cost="moderate")
def residual(ctx: ImageContext, *, channels: Sequence[str] = ("y",),
             kernels: Sequence[str] = ("o1", "o2", "o3", "kb", "kv"), q: float = 1.0, t: int = 2,
             order: int = 2, levels: Sequence[int] = (1,)) -> dict[str, float]:
    """Co-occurrences and moments of quantised SRM noise residuals, per channel and kernel.

    For each kernel K (``o1``, ``o2``, ``o3``: 1st-, 2nd-, 3rd-order differences along a row,
    and along a column for direction ``v``; ``kb``, ``kv``: the 3x3 and 5x5 "SQUARE" kernels)
    the residual R = K * x (x on the 8-bit scale) is quantised to
    clip(round(R / (q c)), -t, t), c being K's central coefficient (1, 2, 3, 4, 12), so q = 1
    is SRM's finest step, and rounding halves away from zero. Features are the normalised
    histograms of ``order`` (2: pairs, (2t+1)^2 codes; 3: triples) horizontally (``h``) or
    vertically (``v``) adjacent quantised residuals, directional residuals being paired along
    their own direction as in SRM's "spam" submodels, named
    ``{channel}_{kernel}_{direction}_{pair|triple}__cell_{L}x{L}_{row}_{col}__bin_{code}``
    (code = sum_k (value_k + t) (2t+1)^(order-1-k)), pooled over the pyramid ``levels``. They
    are not symmetrised by sign or direction. Also the standard deviation, mean |r| and excess
    kurtosis of r = R / c (``{channel}_{kernel}[_{direction}]__std`` ...).

    Channels: y, cb, cr, r, g, b, h, s, v (scaled to 0..255) and the differences r_g, g_b, b_r.

    References
    ----------
    J. Fridrich, J. Kodovský, "Rich Models for Steganalysis of Digital Images", IEEE
    Transactions on Information Forensics and Security 7(3), 2012.
    """
    return _residual_features(ctx, channels, kernels, q, t, order, levels)


@register(name="colour_residual", modality="image", cost="moderate")
def colour_residual(ctx: ImageContext, *, channels: Sequence[str] = ("cb", "cr", "r_g", "g_b"),
                    kernels: Sequence[str] = ("o1",), q: float = 1.0, t: int = 2, order: int = 2,
                    levels: Sequence[int] = (1,)) -> dict[str, float]:
    """Co-occurrences and moments of quantised residuals of colour-difference channels.

    The ``residual`` family's features (same definitions and names) computed on chrominance
    and inter-channel differences: Cb, Cr and R - G, G - B. Generators synthesise RGB with no
    explicit constraint on how the colour components correlate, so their residuals differ from
    camera images most in these components, while luma residuals mostly reflect content.

    References
    ----------
    H. Li, B. Li, S. Tan, J. Huang, "Identification of deep network generated images using
    disparities in color components", Signal Processing 174, 2020.
    J. Fridrich, J. Kodovský, "Rich Models for Steganalysis of Digital Images", IEEE TIFS 2012.
    """
    return _residual_features(ctx, channels, kernels, q, t, order, levels)
