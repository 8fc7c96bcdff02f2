"""Counts of small non-negative integer codes (LBP patterns, 8-bit channels, residual codes).

Several families reduce a map to how often each code occurs: LBP histograms (``texture``, via
``pyramid``), saturation and chroma histograms (``colour``), region histograms of LBP and
wavelet codes (``blend``). They are counted here in one compiled pass over the map's rows, in
any strides, so views need no copy. On a 2-core AMD EPYC (AVX2) this took 0.12 ms per 510 x 510
LBP map against 0.18 ms for ``cv2.calcHist``, 0.42 against 0.73 ms for the 256 x 256 joint
chroma histogram and 0.28 against 0.47 ms for ``dct``'s 262,144 rounded coefficient
magnitudes (uint16 conversion included); on a 300 x 70 view, where call overhead weighs most,
the two were about even (``benchmarks/bench_histograms.py``; benchmarks/RESULTS.md, "Compiled
histograms"). One mechanism serves every family, and its counts are exact integers, so every
feature built on them is the same to the bit as with OpenCV's float32 counts.
"""
from __future__ import annotations

import numpy as np

from features.compiled import compiled

# Dtypes counted by the compiled loops: unsigned, so that no code is below bin 0.
COUNTED_DTYPES = (np.uint8, np.uint16)


def code_counts(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """How many entries of a code map hold each code ``0 .. n_codes - 1``, float64 ``(n_codes,)``.

    A ValueError names the range found if some code lies outside ``[0, n_codes)``. uint8 and
    uint16 maps are counted in one compiled pass; other integer dtypes by ``np.bincount``.
    """
    codes = np.asarray(codes)
    _check_n_codes(n_codes)
    if codes.dtype not in COUNTED_DTYPES:
        check_code_range(codes, n_codes)
        return np.bincount(codes.ravel(), minlength=n_codes).astype(np.float64)
    counts = _tallies(_rows(codes), n_codes)
    if counts[n_codes]:  # the last bin gathers codes beyond the range
        check_code_range(codes, n_codes)
    return counts[:n_codes]


def joint_code_counts(first: np.ndarray, second: np.ndarray, n_first: int, n_second: int,
                      names: tuple[str, str] = ("first", "second")) -> np.ndarray:
    """How many positions hold each code pair ``(first, second)``, float64 ``(n_first, n_second)``.

    ``first`` and ``second`` are equally shaped uint8 or uint16 maps, e.g. two channels of one
    interleaved image (``image[..., 1]``, ``image[..., 2]``) with no copy. A ValueError names the
    map (by ``names``) and the range found if a code lies outside its range.
    """
    first, second = np.asarray(first), np.asarray(second)
    if first.shape != second.shape:
        raise ValueError(f"code maps differ in shape: {first.shape} and {second.shape}")
    for name, codes, n_codes in ((names[0], first, n_first), (names[1], second, n_second)):
        _check_n_codes(n_codes)
        if codes.dtype not in COUNTED_DTYPES:
            raise ValueError(f"{name} code map must be uint8 or uint16, got {codes.dtype}")
    counts = np.zeros((n_first + 1, n_second + 1), np.int64)
    _count_pairs(_rows(first), _rows(second), counts)
    for name, codes, n_codes, spill in ((names[0], first, n_first, counts[n_first].sum()),
                                        (names[1], second, n_second, counts[:, n_second].sum())):
        if spill:
            check_code_range(codes, n_codes, name)
    return counts[:n_first, :n_second].astype(np.float64)


def check_code_range(codes: np.ndarray, n_codes: int, name: str = "codes") -> None:
    """A ValueError naming the range found unless every code lies in ``[0, n_codes)``."""
    if codes.size and (codes.min() < 0 or codes.max() >= n_codes):
        raise ValueError(f"{name} must lie in [0, {n_codes}), found {codes.min()}..{codes.max()}")


def _check_n_codes(n_codes: int) -> None:
    if int(n_codes) != n_codes or n_codes < 0:
        raise ValueError(f"the number of codes must be a whole number >= 0, got {n_codes!r}")


def _rows(codes: np.ndarray) -> np.ndarray:
    """The map as 2-D rows for the compiled loops (a view where the strides allow)."""
    if codes.ndim == 2:
        return codes
    return codes.reshape(1, -1) if codes.ndim < 2 else codes.reshape(-1, codes.shape[-1])


@compiled
def _tallies(codes, n_codes):  # pragma: no cover
    # The counts of codes 0 .. n_codes - 1 and, last, of those beyond, as float64 (exact):
    # allocated and summed here, as NumPy's calls for that cost more than counting a small map.
    counts = np.zeros((4, n_codes + 1), np.int64)
    _count_rows(codes, counts)
    total = np.empty(n_codes + 1, np.float64)
    for k in range(n_codes + 1):
        total[k] = counts[0, k] + counts[1, k] + counts[2, k] + counts[3, k]
    return total


@compiled
def _count_rows(codes, counts):  # pragma: no cover
    # Four tallies taken in turn: runs of one code (flat areas) would otherwise wait on the
    # previous increment of the same counter. Codes beyond the range land in the last bin.
    top = counts.shape[1] - 1
    for i in range(codes.shape[0]):
        row = codes[i]
        width = row.shape[0]
        grouped = width - width % 4
        for j in range(0, grouped, 4):
            counts[0, min(row[j], top)] += 1
            counts[1, min(row[j + 1], top)] += 1
            counts[2, min(row[j + 2], top)] += 1
            counts[3, min(row[j + 3], top)] += 1
        for j in range(grouped, width):
            counts[0, min(row[j], top)] += 1


@compiled
def _count_pairs(first, second, counts):  # pragma: no cover
    top_first, top_second = counts.shape[0] - 1, counts.shape[1] - 1
    for i in range(first.shape[0]):
        row_first, row_second = first[i], second[i]
        for j in range(row_first.shape[0]):
            counts[min(row_first[j], top_first), min(row_second[j], top_second)] += 1
