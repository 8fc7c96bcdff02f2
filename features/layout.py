"""Spatial layout of colour, sharpness and noise: where on the (aligned) face each statistic sits.

Face datasets are roughly aligned, and generators do not spread their traces evenly: backgrounds
come out smoother or noisier than a camera's, hair and skin get their own texture and colour. A
whole-image statistic averages such differences away; the same statistic kept per cell of a
``grid x grid`` partition keeps them (spatial pooling, Lazebnik et al. 2006). Local noise and
sharpness maps are the classic splicing and synthesis cues (Pan, Zhang & Lyu 2012); saturation and
chroma the GAN colour cues of McCloskey & Albright (2019).
"""
from __future__ import annotations

import cv2
import numpy as np

from features.context import ImageContext
from features.registry import register

MAPS = ("y", "cb", "cr", "s", "sharpness", "noise")


def sharpness_map(ctx: ImageContext) -> np.ndarray:
    """|Laplacian| of the luma: local edge and detail strength."""
    return ctx.shared(("laplacian_abs", "y"),
                      lambda: np.abs(cv2.Laplacian(ctx.gray, cv2.CV_32F, ksize=1)))


def noise_map(ctx: ImageContext) -> np.ndarray:
    """Squared residual of the luma after a 3x3 box filter: local high-frequency (noise) energy."""
    def compute() -> np.ndarray:
        residual = ctx.gray - cv2.blur(ctx.gray, (3, 3), borderType=cv2.BORDER_REFLECT)
        return residual * residual
    return ctx.shared(("box3_residual_energy", "y"), compute)


def cell_mean_std(values: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of ``values`` over each cell of a grid x grid partition.

    ``cv2.resize`` with INTER_AREA averages each output pixel's exact (fractional) footprint, so a
    cell mean is an area-weighted mean even when the side is not a multiple of ``grid``; the
    standard deviation follows from the means of the values and of their squares.
    """
    values = np.ascontiguousarray(values, dtype=np.float32)
    if min(values.shape) < grid:  # tiny image: upsample so every cell holds at least a pixel
        values = cv2.resize(values, (grid, grid), interpolation=cv2.INTER_NEAREST)
    mean = cv2.resize(values, (grid, grid), interpolation=cv2.INTER_AREA).astype(np.float64)
    square = cv2.resize(values * values, (grid, grid), interpolation=cv2.INTER_AREA)
    std = np.sqrt(np.maximum(square - mean * mean, 0.0))
    return mean, std


def layout_map(ctx: ImageContext, name: str) -> np.ndarray:
    if name == "sharpness":
        return sharpness_map(ctx)
    if name == "noise":
        return noise_map(ctx)
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
    rows, cols = np.divmod(np.arange(grid * grid), grid)
    cells = [f"cell_{r}_{c}" for r, c in zip(rows, cols)]
    out: dict[str, float] = {}
    for name in maps:
        mean, std = cell_mean_std(layout_map(ctx, name), grid)
        for stat, values in (("mean", mean), ("std", std)):
            out.update(zip((f"{name}__{stat}__{cell}" for cell in cells), values.ravel().tolist()))
    return out
