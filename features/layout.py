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

from features.compiled import compiled
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


def cell_mean_std(values: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of ``values`` over each cell of a grid x grid partition.

    Cell (r, c) covers rows [r H / grid, (r + 1) H / grid) and the same fraction of the columns;
    a pixel on a cell boundary counts with the fraction of it inside the cell (an area-weighted
    mean, as ``cv2.resize`` with INTER_AREA), so cells need not hold whole pixels. The standard
    deviation follows from the means of the values and of their squares, summed in float64.
    """
    values = np.ascontiguousarray(values)
    if min(values.shape) < grid:  # tiny image: upsample so every cell holds at least a pixel
        values = cv2.resize(values.astype(np.float32), (grid, grid),
                            interpolation=cv2.INTER_NEAREST)
    height, width = values.shape
    sums, square_sums = np.zeros((grid, grid)), np.zeros((grid, grid))
    _cell_sums(values, *_coverage(height, grid), *_coverage(width, grid), sums, square_sums)
    area = (height / grid) * (width / grid)
    mean = sums / area
    return mean, np.sqrt(np.maximum(square_sums / area - mean * mean, 0.0))


@lru_cache(maxsize=32)
def _coverage(length: int, grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell along one axis: its first and past-the-end pixel, and each pixel's covered
    fraction (grid, length), 1 inside the cell and less on a boundary it straddles."""
    edges = np.arange(grid + 1) * (length / grid)
    pixels = np.arange(length)
    weights = np.clip(np.minimum(pixels + 1, edges[1:, None])
                      - np.maximum(pixels, edges[:-1, None]), 0.0, 1.0)
    first = np.floor(edges[:-1]).astype(np.int64)
    stop = np.minimum(np.ceil(edges[1:]).astype(np.int64), length)
    for array in (first, stop, weights):
        array.setflags(write=False)
    return first, stop, weights


@compiled
def _cell_sums(values, row_first, row_stop, row_weights, col_first, col_stop, col_weights,
               sums, square_sums):  # pragma: no cover
    # One pass over the image, a cell row at a time: its rows are added into two row-long
    # accumulators (vectorised), which are then summed per cell column.
    width = values.shape[1]
    row_sum, row_square_sum = np.empty(width), np.empty(width)
    for r in range(sums.shape[0]):
        row_sum[:] = 0.0
        row_square_sum[:] = 0.0
        for i in range(row_first[r], row_stop[r]):
            weight, row = row_weights[r, i], values[i]
            for x in range(width):
                value = np.float64(row[x])
                row_sum[x] += weight * value
                row_square_sum[x] += weight * value * value
        for c in range(sums.shape[1]):
            for x in range(col_first[c], col_stop[c]):
                sums[r, c] += col_weights[c, x] * row_sum[x]
                square_sums[r, c] += col_weights[c, x] * row_square_sum[x]


def layout_map(ctx: ImageContext, name: str, out: np.ndarray | None = None) -> np.ndarray:
    """One of ``MAPS``: a channel (shared through the context; its 8-bit plane where it has one,
    which holds the same values in a quarter of the memory), or the sharpness or noise map,
    which no other family reads, computed into ``out`` (if given) and not kept."""
    if name == "sharpness":
        return sharpness_map(ctx.gray, out)
    if name == "noise":
        return noise_map(ctx.gray, out)
    plane = ctx.plane_8bit(name)
    return ctx.channel(name) if plane is None else plane


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
    derived = np.empty(ctx.shape, np.float32)  # one buffer serves the derived maps in turn
    statistics = np.empty((len(maps), 2, grid * grid))
    for i, name in enumerate(maps):
        mean, std = cell_mean_std(layout_map(ctx, name, derived), grid)
        statistics[i] = mean.ravel(), std.ravel()
    return dict(zip(_names(grid, maps), statistics.ravel().tolist()))


@lru_cache(maxsize=16)
def _names(grid: int, maps: tuple[str, ...]) -> tuple[str, ...]:
    """``{map}__{mean|std}__cell_{row}_{col}`` in the order of the statistics array."""
    return tuple(f"{name}__{stat}__cell_{row}_{col}" for name in maps for stat in ("mean", "std")
                 for row in range(grid) for col in range(grid))
