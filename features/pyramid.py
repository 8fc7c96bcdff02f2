"""Spatial-pyramid pooling: per-cell normalised histograms of a per-pixel code map.

Level ``L`` of the pyramid cuts the code map into an ``L x L`` grid; pixel row ``i`` of ``H`` rows
falls in grid row ``i * L // H`` (likewise for columns), so cell boundaries come from integer
division of the map size. Each cell gets the histogram of the codes inside it, normalised to sum
to 1 (all zeros for an empty cell). Face data sets are roughly aligned and generators leave their
traces unevenly over the face, so pooling one code map over 1x1, 2x2 and 4x4 cells keeps where a
code occurs, not only how often.

Reference: S. Lazebnik, C. Schmid, J. Ponce, "Beyond Bags of Features: Spatial Pyramid Matching
for Recognizing Natural Scene Categories", CVPR 2006.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple, Sequence

import numpy as np

from features.histogram import COUNTED_DTYPES, check_code_range, code_counts, joint_code_counts

PYRAMID_LEVELS = (1, 2, 4)

_NAME = re.compile(r"^(?P<prefix>[a-z0-9_]+)__cell_(?P<level>\d+)x(?P=level)"
                   r"_(?P<row>\d+)_(?P<col>\d+)__bin_(?P<bin>\d+)$")


def check_levels(levels: Sequence[int]) -> tuple[int, ...]:
    """The pyramid levels as a tuple of distinct positive ints, or a ValueError."""
    levels = tuple(levels)
    if not levels or any(not isinstance(level, (int, np.integer)) or level < 1 for level in levels):
        raise ValueError(f"pyramid levels must be positive integers, got {levels!r}")
    if len(set(levels)) != len(levels):
        raise ValueError(f"pyramid levels must be distinct, got {levels!r}")
    return tuple(int(level) for level in levels)


@lru_cache(maxsize=256)
def pyramid_names(prefix: str, n_codes: int,
                  levels: Sequence[int] = PYRAMID_LEVELS) -> tuple[str, ...]:
    """Feature names ``{prefix}__cell_{L}x{L}_{row}_{col}__bin_{b}`` in ``pool_codes`` order."""
    return tuple(f"{prefix}__cell_{level}x{level}_{row}_{col}__bin_{code}"
                 for level in check_levels(levels)
                 for row in range(level) for col in range(level) for code in range(n_codes))


def parse_pyramid_name(name: str) -> tuple[str, int, int, int, int]:
    """Split a ``pyramid_names`` name back into ``(prefix, level, row, col, bin)``."""
    match = _NAME.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a spatial-pyramid feature name")
    return (match["prefix"], int(match["level"]), int(match["row"]), int(match["col"]),
            int(match["bin"]))


def pool_codes(codes: np.ndarray, n_codes: int,
               levels: Sequence[int] = PYRAMID_LEVELS) -> np.ndarray:
    """Normalised code histograms of every pyramid cell, shape ``(sum(L*L), n_codes)``.

    Rows follow ``pyramid_names``: levels in the given order, cells row-major. One pass counts
    the codes in the blocks of the common refinement of all levels' grids (for levels
    1, 2, 4: the 4x4 grid); each level's cells are then sums of whole blocks.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"expected a 2-D code map, got shape {codes.shape}")
    levels = check_levels(levels)
    if levels == (1,):  # the whole map: the common case, kept free of the array calls below
        counts = code_counts(codes, n_codes)
        total = counts.sum()
        return (counts / total if total > 0 else np.zeros(n_codes))[None]
    layout = _layout(codes.shape, levels)
    n_row_blocks, n_col_blocks = layout.row_cells.shape[1], layout.col_cells.shape[1]
    blocks = _block_counts(codes, n_codes, levels, layout).reshape(
        n_row_blocks, n_col_blocks, n_codes)
    histograms = np.concatenate([
        np.einsum("ra,cb,rcn->abn", _one_hot(layout.row_cells[i], level),
                  _one_hot(layout.col_cells[i], level), blocks).reshape(-1, n_codes)
        for i, level in enumerate(levels)])
    totals = histograms.sum(axis=1, keepdims=True)
    return np.divide(histograms, totals, out=np.zeros_like(histograms), where=totals > 0)


def _block_counts(codes: np.ndarray, n_codes: int, levels: tuple[int, ...],
                  layout: "_Layout") -> np.ndarray:
    """Code counts per block of the common refinement, shape ``(n_blocks * n_codes,)``."""
    n_blocks = layout.row_cells.shape[1] * layout.col_cells.shape[1]
    block_map = _block_map(codes.shape, levels)
    if codes.dtype in COUNTED_DTYPES and block_map.dtype in COUNTED_DTYPES:
        return joint_code_counts(block_map, codes, n_blocks, n_codes,
                                 names=("blocks", "codes")).ravel()
    check_code_range(codes, n_codes)
    joint = codes.ravel() if layout.block_offsets is None else (
        _scaled_offsets(codes.shape, levels, n_codes) + codes.ravel())
    return np.bincount(joint, minlength=n_blocks * n_codes).astype(np.float64)


@lru_cache(maxsize=32)
def _block_map(shape: tuple[int, int], levels: tuple[int, ...]) -> np.ndarray:
    offsets = _layout(shape, levels).block_offsets
    block_map = np.zeros(shape, np.uint8) if offsets is None else \
        offsets.reshape(shape).astype(np.min_scalar_type(int(offsets.max())))
    block_map.setflags(write=False)
    return block_map


class _Layout(NamedTuple):
    """How the common refinement of the levels' grids cuts an ``(H, W)`` map."""

    row_cells: np.ndarray             # (n_levels, n_row_blocks): each block's cell row per level
    col_cells: np.ndarray             # (n_levels, n_col_blocks)
    block_offsets: np.ndarray | None  # (H*W,): block index of each pixel; None for a single block


def _axis_blocks(size: int, levels: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Block index of each position along one axis, and each block's cell at every level."""
    cells = np.arange(size)[None, :] * np.array(levels)[:, None] // max(size, 1)
    starts = np.ones(size, dtype=bool)
    starts[1:] = (np.diff(cells, axis=1) != 0).any(axis=0)
    return np.cumsum(starts) - 1, cells[:, starts]


@lru_cache(maxsize=32)
def _layout(shape: tuple[int, int], levels: tuple[int, ...]) -> _Layout:
    (row_block, row_cells), (col_block, col_cells) = (_axis_blocks(n, levels) for n in shape)
    if row_cells.shape[1] * col_cells.shape[1] <= 1:
        return _Layout(row_cells, col_cells, None)
    offsets = (row_block[:, None] * col_cells.shape[1] + col_block[None, :]).ravel()
    offsets.setflags(write=False)
    return _Layout(row_cells, col_cells, offsets)


@lru_cache(maxsize=32)
def _scaled_offsets(shape: tuple[int, int], levels: tuple[int, ...], n_codes: int) -> np.ndarray:
    # Cached per code-alphabet size so that pooling costs one addition and one bincount; in
    # the narrowest type that holds every joint index, as narrow arrays add and count faster.
    offsets = _layout(shape, levels).block_offsets * n_codes
    offsets = offsets.astype(np.min_scalar_type(int(offsets.max()) + n_codes - 1))
    offsets.setflags(write=False)
    return offsets


def _one_hot(indices: np.ndarray, size: int) -> np.ndarray:
    return (indices[:, None] == np.arange(size)[None, :]).astype(np.float64)
