"""Orientation coherence: how ordered the local gradients are, and where on the face.

The structure tensor J = G_σ * (∇Y ∇Yᵀ) summarises the gradients around each pixel; with its
eigenvalues λ1 >= λ2, the coherence (λ1 - λ2) / (λ1 + λ2) is 1 where all gradients share one
orientation (a hair strand, an eyelash, a straight edge) and 0 where they point every way (skin
pores, noise, flat areas). Generators draw hair, eyelashes and background textures with an order
of their own, so a grid of cell means keeps where that order differs from a camera's, the way the
``layout`` family does for colour, sharpness and noise.

The coherence is taken on a copy of the luma shrunk (area averaging) so that its longest side is
at most ``side`` pixels, so the integration scales σ (in pixels of that copy) cover the same part
of a face at every image size. On full-size 600-pixel ``yonsei_rff`` images, with σ scaled to
the image instead, out-of-fold AUC fell where this copy raised it (benchmarks/RESULTS.md,
"Coherence and eyes"). Scales of 2 pixels or more are integrated on a half-size copy of the
gradient products, with the same total smoothing: 0.64 ms less per 512x512 image, cell means
within 0.003 of the full-size integration on average (per-cell correlation 0.9997 on four data
sets) and the same out-of-fold AUCs (benchmarks/RESULTS.md, "Coherence integrated at half size").
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import cv2
import numpy as np

from features.context import ImageContext
from features.registry import register

EPSILON = 1e-3  # added to λ1 + λ2 (squared 8-bit gradient units), so flat areas give 0
# From this integration scale on, the gradient products are integrated on a copy at half size,
# at a quarter of the pixels and half the kernel's taps: a Gaussian of σ >= 2 pixels leaves next
# to nothing above a quarter of the sampling rate, the band that a 2x coarser grid would alias.
HALF_SIZE_SIGMA = 2.0


def shrunk_luma(ctx: ImageContext, side: int) -> np.ndarray:
    """The 8-bit luma shrunk by area averaging so its longest side is at most ``side``."""
    plane = ctx.plane_8bit("y")
    height, width = plane.shape
    scale = side / max(height, width)
    if scale >= 1:
        return plane
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(plane, size, interpolation=cv2.INTER_AREA)


def coherence_maps(gray: np.ndarray, sigmas: Sequence[float], min_side: int = 1
                   ) -> list[np.ndarray]:
    """Structure-tensor coherence (λ1 - λ2) / (λ1 + λ2 + ε) of ``gray`` at each integration σ.

    Gradients are 3x3 Sobel derivatives; λ1 - λ2 = sqrt((Jxx - Jyy)² + (2 Jxy)²) and
    λ1 + λ2 = Jxx + Jyy, so no eigen-decomposition is needed. The gradient products are
    computed once and smoothed at every σ. From σ = ``HALF_SIZE_SIGMA`` on, and while the
    half-size copy keeps at least ``min_side`` pixels a side, they are shrunk by 2 (2 x 2 means,
    which smooth with a variance of 1/4 pixel² per axis) and smoothed there with
    σ' = sqrt(σ² - 1/4) / 2, which gives the same total smoothing: that map is half the size.
    """
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    products = (cv2.multiply(gx, gx), cv2.multiply(gy, gy), cv2.multiply(gx, gy, scale=2.0))
    height, width = gray.shape
    halved = None
    maps = []
    for sigma in sigmas:
        if sigma >= HALF_SIZE_SIGMA and min(height, width) // 2 >= min_side:
            if halved is None:
                halved = [cv2.resize(p, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
                          for p in products]
            tensor = [cv2.GaussianBlur(p, (0, 0), math.sqrt(sigma ** 2 - 0.25) / 2)
                      for p in halved]
        else:
            tensor = [cv2.GaussianBlur(p, (0, 0), sigma) for p in products]
        maps.append(_coherence(*tensor))
    return maps


def _coherence(jxx: np.ndarray, jyy: np.ndarray, jxy2: np.ndarray) -> np.ndarray:
    # NumPy's correctly rounded square root, not cv2.magnitude, whose SIMD and scalar paths
    # differ in the last bit with the buffers' alignment: tables must not depend on it.
    difference = cv2.subtract(jxx, jyy)
    difference = np.sqrt(cv2.add(cv2.multiply(difference, difference), cv2.multiply(jxy2, jxy2)))
    trace = cv2.add(jxx, jyy)
    trace += EPSILON
    return cv2.divide(difference, trace)


@register(name="coherence", modality="image", cost="cheap")
def coherence(ctx: ImageContext, *, grid: int = 16, sigmas: Sequence[float] = (1.0, 3.0),
              side: int = 256) -> dict[str, float]:
    """Cell means of the luma's structure-tensor coherence at two scales on a grid.

    For each integration scale σ in ``sigmas`` (pixels of the luma shrunk to a longest side of
    at most ``side``) and each cell c of a ``grid`` x ``grid`` partition of the image:

        s{i}__cell_r_c = mean_{p in c} (λ1(p) - λ2(p)) / (λ1(p) + λ2(p) + ε)

    where λ1 >= λ2 are the eigenvalues of the structure tensor G_σ * (∇Y ∇Yᵀ) and i is the
    scale's index in ``sigmas``. Values lie in [0, 1]: 1 for gradients of one orientation, 0 for
    a flat area or gradients of every orientation in equal measure. Names do not depend on the
    image size.

    References
    ----------
    J. Bigün, G. H. Granlund, "Optimal orientation detection of linear symmetry", ICCV 1987.
    M. Kass, A. Witkin, "Analyzing oriented patterns", CVGIP 37(3), 1987.
    """
    if grid < 1 or side < 1:
        raise ValueError(f"grid and side must be >= 1, got grid={grid}, side={side}")
    if not sigmas or min(sigmas) <= 0:
        raise ValueError(f"sigmas must be positive integration scales, got {list(sigmas)}")
    small = shrunk_luma(ctx, side)
    if min(small.shape) < grid:  # tiny image: upsample so every cell holds at least a pixel
        small = cv2.resize(small, (max(grid, small.shape[1]), max(grid, small.shape[0])),
                           interpolation=cv2.INTER_NEAREST)
    # A half-size map is kept only while every cell still holds at least a pixel of it.
    means = [cv2.resize(m, (grid, grid), interpolation=cv2.INTER_AREA).ravel()
             for m in coherence_maps(small, sigmas, min_side=grid)]
    return dict(zip(_names(grid, len(sigmas)), np.concatenate(means).tolist()))


@lru_cache(maxsize=16)
def _names(grid: int, n_sigmas: int) -> tuple[str, ...]:
    """``s{i}__cell_{row}_{col}`` in the order of the concatenated cell means."""
    return tuple(f"s{i}__cell_{row}_{col}" for i in range(n_sigmas)
                 for row in range(grid) for col in range(grid))
