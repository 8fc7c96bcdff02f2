"""Spatial layout of colour, sharpness and noise: where on the (aligned) face each statistic sits.

Face datasets are roughly aligned, and generators do not spread their traces evenly: backgrounds
come out smoother or noisier than a camera's, hair and skin get their own texture and colour. A
whole-image statistic averages such differences away; the same statistic kept per cell of a
``grid x grid`` partition keeps them (spatial pooling, Lazebnik et al. 2006). Local noise and
sharpness maps are the classic splicing and synthesis cues (Pan, Zhang & Lyu 2012); saturation and
chroma the GAN colour cues of McCloskey & Albright (2019).
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from features.context import ImageContext
from features.registry import register

MAPS = ("y", "cb", "cr", "s", "sharpness", "noise")


def sharpness_map(gray: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """|Laplacian| of the luma: local edge and detail strength (into ``out`` if given)."""
    laplacian = cv2.Laplacian(gray, cv2.CV_32F, dst=out, ksize=1)
    return np.abs(laplacian, out=laplacian)


def noise_map(gray: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Squared residual of the luma after a 3x3 box filter: local high-frequency (noise) energy.

    Computed in place in ``out`` (if given): no full-size temporaries.
    """
    energy = cv2.blur(gray, (3, 3), dst=out, borderType=cv2.BORDER_REFLECT)
    cv2.subtract(gray, energy, dst=energy)
    return cv2.multiply(energy, energy, dst=energy)


def cell_mean_std(values: np.ndarray, grid: int,
                  scratch: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of ``values`` over each cell of a grid x grid partition.

    ``cv2.resize`` with INTER_AREA averages each output pixel's exact (fractional) footprint, so a
    cell mean is an area-weighted mean even when the side is not a multiple of ``grid``; the
    standard deviation follows from the means of the values and of their squares. ``scratch``,
    optional, is a float32 buffer of ``values``' shape for the squares (reused across maps).
    """
    values = np.ascontiguousarray(values, dtype=np.float32)
    if min(values.shape) < grid:  # tiny image: upsample so every cell holds at least a pixel
        values = cv2.resize(values, (grid, grid), interpolation=cv2.INTER_NEAREST)
        scratch = None
    squares = cv2.multiply(values, values, dst=scratch)
    mean = cv2.resize(values, (grid, grid), interpolation=cv2.INTER_AREA).astype(np.float64)
    square = cv2.resize(squares, (grid, grid), interpolation=cv2.INTER_AREA)
    std = np.sqrt(np.maximum(square - mean * mean, 0.0))
    return mean, std


def layout_map(ctx: ImageContext, name: str, out: np.ndarray | None = None) -> np.ndarray:
    """One of ``MAPS``: a channel (shared through the context), or the sharpness or noise map,
    which no other family reads, computed into ``out`` (if given) and not kept."""
    if name == "sharpness":
        return sharpness_map(ctx.gray, out)
    if name == "noise":
        return noise_map(ctx.gray, out)
    return ctx.channel(name)


@register(name="layout", modality="image", cost="cheap")
def layout(ctx: ImageContext, *, grid: int = 16, maps=MAPS) -> dict[str, float]:
    """Per-cell mean and standard deviation of colour, sharpness and noise maps on a grid.

    For each map M in ``maps`` (Y, Cb, Cr in [0, 255]; HSV saturation S in [0, 1];
    ``sharpness`` = |∇²Y| with the 3x3 Laplacian; ``noise`` = (Y - box3(Y))²) and each cell c of
    a ``grid`` x ``grid`` partition of the image:

        M__mean__cell_r_c = mean_{p in c} M(p),   M__std__cell_r_c = std_{p in c} M(p)

    Names do not depend on the image size: cells are fractions of the image.

    References
    ----------
    S. Lazebnik, C. Schmid, J. Ponce, "Beyond Bags of Features: Spatial Pyramid Matching for
    Recognizing Natural Scene Categories", CVPR 2006.
    X. Pan, X. Zhang, S. Lyu, "Exposing image splicing with inconsistent local noise variances",
    ICCP 2012.
    S. McCloskey, M. Albright, "Detecting GAN-generated imagery using saturation cues", ICIP 2019.
    """
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    unknown = [m for m in maps if m not in MAPS]
    if unknown:
        raise ValueError(f"unknown layout maps {unknown}; known: {MAPS}")
    maps = tuple(maps)
    # Two buffers serve all maps: the derived map being summarised and the squares of values.
    derived, squares = np.empty(ctx.shape, np.float32), np.empty(ctx.shape, np.float32)
    statistics = np.empty((len(maps), 2, grid * grid))
    for i, name in enumerate(maps):
        mean, std = cell_mean_std(layout_map(ctx, name, derived), grid, squares)
        statistics[i] = mean.ravel(), std.ravel()
    return dict(zip(_names(grid, maps), statistics.ravel().tolist()))


@lru_cache(maxsize=16)
def _names(grid: int, maps: tuple[str, ...]) -> tuple[str, ...]:
    """``{map}__{mean|std}__cell_{row}_{col}`` in the order of the statistics array."""
    return tuple(f"{name}__{stat}__cell_{row}_{col}" for name in maps for stat in ("mean", "std")
                 for row in range(grid) for col in range(grid))
