"""Texture families: local binary patterns (``texture``) and grey-level co-occurrence (``glcm``).

Generators synthesise texture (skin pores, hair, background) rather than record it, and face
swaps blend and resample it; both change the local micro-structure that LBP and GLCM summarise.
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple, Sequence

import cv2
import numpy as np

from features.compiled import compiled
from features.context import ImageContext
from features.histogram import joint_code_counts
from features.pyramid import check_levels, pool_codes, pyramid_names
from features.registry import register

N_NEIGHBOURS = 8                       # P: the codes of 8 neighbours fit in one byte
LBP_MAPPINGS = ("uniform", "nri_uniform", "ri")
# Comparisons tolerate this much rounding (in 8-bit grey steps): a neighbour that interpolates to
# exactly the centre value (flat areas, ramps) must count as ">=", whatever float rounding says.
TIE_TOLERANCE = 1e-4


def neighbour_offsets(radius: float) -> np.ndarray:
    """(P, 2) (row, col) offsets of the circular neighbours, counter-clockwise from the right.

    Neighbour p sits at angle 2*pi*p/P: (-R sin, R cos), rounded to 5 decimals as in
    scikit-image so that on-grid neighbours are exactly on the grid.
    """
    angles = 2 * np.pi * np.arange(N_NEIGHBOURS) / N_NEIGHBOURS
    return np.round(np.stack([-radius * np.sin(angles), radius * np.cos(angles)], axis=1), 5) + 0.0


class _Sampling(NamedTuple):
    """Per neighbour p: the (row, col) offset of the top-left pixel it is read from (the pixel
    itself on the grid, else the top-left of the 2x2 pixels around it) and its 2x2 bilinear
    weights (zeros on the grid). With an integer radius, neighbours 0, 2, 4 and 6 (at 0, 90,
    180 and 270 degrees) lie on the grid and 1, 3, 5 and 7 (at R / sqrt(2) along each axis)
    between pixels."""

    tops: np.ndarray
    lefts: np.ndarray
    weights: np.ndarray


ON_GRID = (True, False) * (N_NEIGHBOURS // 2)  # which neighbours an integer radius puts on it


@lru_cache(maxsize=None)
def _sampling(radius: int) -> _Sampling:
    tops, lefts = np.zeros(N_NEIGHBOURS, np.int64), np.zeros(N_NEIGHBOURS, np.int64)
    weights = np.zeros((N_NEIGHBOURS, 2, 2), np.float32)
    for p, (dy, dx) in enumerate(neighbour_offsets(radius)):
        tops[p], lefts[p] = np.floor(dy), np.floor(dx)
        fy, fx = dy - tops[p], dx - lefts[p]
        if (fy == 0 and fx == 0) != ON_GRID[p]:  # the compiled loop relies on this layout
            raise AssertionError(f"LBP neighbour {p} of radius {radius} is not where expected")
        if not ON_GRID[p]:
            weights[p] = np.outer([1 - fy, fy], [1 - fx, fx])
    sampling = _Sampling(tops, lefts, weights)
    for array in sampling:
        array.setflags(write=False)
    return sampling


def lbp_patterns(image: np.ndarray, radius: int) -> np.ndarray:
    """8-bit LBP patterns (bit p set when neighbour p >= centre) of an image's interior pixels.

    Only the ``(H - 2R, W - 2R)`` pixels whose whole circle of neighbours lies inside the image
    get a code, as in Ojala et al.; off-grid neighbours are bilinearly interpolated (not rounded
    to the nearest pixel) in float32. ``image`` is on the 8-bit scale; interpolated values within
    ``TIE_TOLERANCE`` below the centre count as ties (bit set), so exact ties are kept whatever
    the float rounding.
    """
    if int(radius) != radius or radius < 1:
        raise ValueError(f"LBP radius must be a positive integer, got {radius!r}")
    radius = int(radius)
    height, width = image.shape[0] - 2 * radius, image.shape[1] - 2 * radius
    # Not zeroed: the compiled loop stores every pattern whole.
    patterns = np.empty((max(height, 0), max(width, 0)), np.uint8)
    if patterns.size:
        _lbp_rows(np.ascontiguousarray(image, dtype=np.float32), radius, *_sampling(radius),
                  np.float32(TIE_TOLERANCE), patterns)
    return patterns


@compiled
def _at_least(value, centre):  # pragma: no cover
    return np.int32(value >= centre)


@compiled
def _bilinear(upper, lower, j, weights):  # pragma: no cover
    return (weights[0, 0] * upper[j] + weights[0, 1] * upper[j + 1] + weights[1, 0] * lower[j]
            + weights[1, 1] * lower[j + 1])


@compiled
def _lbp_rows(image, radius, tops, lefts, weights, tolerance, patterns):  # pragma: no cover
    # Row by row, all 8 neighbours of a pixel in one branch-free inner loop, which is
    # vectorised, and one store of its pattern: 15-20 % less time than a pass over the row per
    # neighbour, and half that of OpenCV calls over the whole image (a 2x2 filter and a
    # comparison per neighbour). Interpolation is the only rounding, so the tie tolerance is
    # added to the interpolated values alone.
    height, width = patterns.shape
    for i in range(height):
        row = radius + i

        def neighbour(p, below=0):  # the row neighbour p is read from, from its left pixel on
            return image[row + tops[p] + below, radius + lefts[p]:]

        n0, n1, n2, n3 = neighbour(0), neighbour(1), neighbour(2), neighbour(3)
        n4, n5, n6, n7 = neighbour(4), neighbour(5), neighbour(6), neighbour(7)
        l1, l3, l5, l7 = neighbour(1, 1), neighbour(3, 1), neighbour(5, 1), neighbour(7, 1)
        w1, w3, w5, w7 = weights[1], weights[3], weights[5], weights[7]
        centre, out = image[row, radius:radius + width], patterns[i]
        for j in range(width):
            g = centre[j]
            out[j] = (_at_least(n0[j], g)
                      | _at_least(_bilinear(n1, l1, j, w1) + tolerance, g) << 1
                      | _at_least(n2[j], g) << 2
                      | _at_least(_bilinear(n3, l3, j, w3) + tolerance, g) << 3
                      | _at_least(n4[j], g) << 4
                      | _at_least(_bilinear(n5, l5, j, w5) + tolerance, g) << 5
                      | _at_least(n6[j], g) << 6
                      | _at_least(_bilinear(n7, l7, j, w7) + tolerance, g) << 7)


@lru_cache(maxsize=None)
def lbp_mapping(mapping: str) -> tuple[np.ndarray, int]:
    """Look-up table from the 256 8-bit patterns to the mapping's codes, and the code count.

    - ``uniform`` (riu2, P + 2 = 10 codes): the number of set bits for patterns with at most two
      circular 0/1 transitions, P + 1 for all others (rotation invariant).
    - ``nri_uniform`` (P(P-1) + 3 = 59 codes): each uniform pattern its own code, all others one
      code, numbered as scikit-image does.
    - ``ri`` (36 codes): patterns equal up to rotation share a code, numbered by their smallest
      rotation.
    """
    table, n_codes = _mapping_table(mapping)
    table = table.astype(np.uint8)
    table.setflags(write=False)
    return table, n_codes


def _mapping_table(mapping: str) -> tuple[np.ndarray, int]:
    patterns = np.arange(256)
    bits = (patterns[:, None] >> np.arange(N_NEIGHBOURS)) & 1
    ones = bits.sum(axis=1)
    uniform = (bits != np.roll(bits, -1, axis=1)).sum(axis=1) <= 2
    if mapping == "uniform":
        return np.where(uniform, ones, N_NEIGHBOURS + 1), N_NEIGHBOURS + 2
    if mapping == "nri_uniform":
        first_one, first_zero = bits.argmax(axis=1), (1 - bits).argmax(axis=1)
        rotation = np.where(first_one == 0, ones - first_zero, N_NEIGHBOURS - first_one)
        n_codes = N_NEIGHBOURS * (N_NEIGHBOURS - 1) + 3
        codes = np.select([~uniform, ones == 0, ones == N_NEIGHBOURS],
                          [n_codes - 1, 0, n_codes - 2],
                          1 + (ones - 1) * N_NEIGHBOURS + rotation)
        return codes, n_codes
    if mapping == "ri":
        rotations = [(patterns >> k | patterns << (N_NEIGHBOURS - k)) & 255
                     for k in range(N_NEIGHBOURS)]
        canonical, codes = np.unique(np.min(rotations, axis=0), return_inverse=True)
        return codes, canonical.size
    raise ValueError(f"unknown LBP mapping {mapping!r}; known: {LBP_MAPPINGS}")


@lru_cache(maxsize=None)
def lbp_bin_merge(mapping: str) -> np.ndarray:
    """(256, n_codes) 0/1 matrix taking a histogram of raw 8-bit patterns to one of the mapping's
    codes: counting the raw patterns and merging their bins is cheaper than mapping every pixel
    to its code first."""
    table, n_codes = lbp_mapping(mapping)
    merge = np.eye(n_codes)[table]
    merge.setflags(write=False)
    return merge


# Channels that 4:2:0 JPEG, the usual format of face photographs, stores at half resolution.
SUBSAMPLED_CHANNELS = ("cb", "cr")
CHROMA_SAMPLINGS = ("full", "half")


def shrunk_channel(ctx: ImageContext, channel: str, step: int) -> np.ndarray:
    """A channel on the 8-bit scale as float32, shrunk by ``step`` (area averaging, size rounded
    up; a channel with an 8-bit plane is shrunk as 8 bits, so its means are rounded to whole
    steps); shared. ``step`` 1 is the channel itself (``channel_8bit``).
    """
    if step == 1:
        return ctx.channel_8bit(channel)

    def compute() -> np.ndarray:
        height, width = ctx.shape
        size = (-(-width // step), -(-height // step))
        plane = ctx.plane_8bit(channel)
        if plane is None:
            return cv2.resize(ctx.channel_8bit(channel), size, interpolation=cv2.INTER_AREA)
        sums = block_sums(ctx, channel, step)
        if sums is None:
            return cv2.resize(plane, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        return rounded_block_means(sums, step)

    return ctx.shared(("shrunk", channel, step), compute)


def block_sums(ctx: ImageContext, channel: str, step: int) -> np.ndarray | None:
    """int32 sums of the ``step`` x ``step`` blocks of a channel's 8-bit plane, shared; None
    unless ``step`` is a power of two dividing both sides.

    Each level is the 2 x 2 sums of the one below, so shrinking by 2, 4 and 8 reads the image
    once: one ``cv2.resize`` per factor reads it whole each time, and costs twice as much.
    """
    height, width = ctx.shape
    if step < 2 or step & (step - 1) or height % step or width % step:
        return None

    def compute() -> np.ndarray:
        finer = ctx.plane_8bit(channel) if step == 2 else block_sums(ctx, channel, step // 2)
        sums = np.empty((finer.shape[0] // 2, finer.shape[1] // 2), np.int32)
        _pair_sums(finer, sums)
        return sums

    return ctx.shared(("block_sums", channel, step), compute)


def rounded_block_means(sums: np.ndarray, step: int) -> np.ndarray:
    """Means of ``step`` x ``step`` blocks of 8-bit pixels from their sums, rounded to whole
    steps exactly as ``cv2.resize(..., INTER_AREA)`` rounds them, as float32.

    OpenCV rounds 2 x 2 means half up and larger ones (a float32 product with 1 / step²) half
    to even; keeping its rounding keeps the features, and the models trained on them, unchanged.
    """
    if step == 2:
        return ((sums + 2) >> 2).astype(np.float32)
    return np.rint(sums.astype(np.float32) * np.float32(1 / step ** 2))


@compiled
def _pair_sums(values, sums):  # pragma: no cover
    # Sums of the 2 x 2 blocks of ``values`` into ``sums`` (int32, half the size each way).
    for i in range(sums.shape[0]):
        upper, lower = values[2 * i], values[2 * i + 1]
        for j in range(sums.shape[1]):
            sums[i, j] = (np.int32(upper[2 * j]) + upper[2 * j + 1]
                          + lower[2 * j] + lower[2 * j + 1])


def lbp_code_map(ctx: ImageContext, channel: str, radius: int, mapping: str,
                 step: int = 1) -> np.ndarray:
    """LBP codes of a channel's interior pixels, shared through ``ctx.shared``.

    ``mapping`` is one of ``LBP_MAPPINGS`` or ``"default"`` for the raw 8-bit patterns;
    ``step`` > 1 takes them on the channel shrunk by that factor (``shrunk_channel``).
    """
    if mapping == "default":
        return ctx.shared(("lbp", channel, radius, mapping, step),
                          lambda: lbp_patterns(shrunk_channel(ctx, channel, step), radius))
    table = lbp_mapping(mapping)[0]
    return ctx.shared(("lbp", channel, radius, mapping, step),
                      lambda: cv2.LUT(lbp_code_map(ctx, channel, radius, "default", step), table))


def channel_steps(channel: str, scales: Sequence[int], chroma_sampling: str) -> list[int]:
    """The shrink factors at which ``texture`` describes a channel: ``scales``, for chroma
    sampled at ``"half"`` never finer than 2 (duplicates dropped, order kept)."""
    floor = 2 if chroma_sampling == "half" and channel in SUBSAMPLED_CHANNELS else 1
    return list(dict.fromkeys(max(int(scale), floor) for scale in scales))


def _check_texture_params(scales: Sequence[int], chroma_sampling: str) -> None:
    if chroma_sampling not in CHROMA_SAMPLINGS:
        raise ValueError(f"texture: chroma_sampling must be one of {CHROMA_SAMPLINGS}, "
                         f"got {chroma_sampling!r}")
    if not scales or any(not isinstance(s, (int, float)) or isinstance(s, bool) or int(s) != s
                         or s < 1 for s in scales):
        raise ValueError(f"texture: scales must be positive integers, got {list(scales)}")


@register(name="texture", modality="image", cost="moderate")
def texture(ctx: ImageContext, *, channels: Sequence[str] = ("y", "cb", "cr"),
            radii: Sequence[int] = (1, 2), mapping: str = "uniform",
            levels: Sequence[int] = (1,), scales: Sequence[int] = (1, 2, 4, 8),
            chroma_sampling: str = "half") -> dict[str, float]:
    """Histograms of local binary patterns per channel, scale and radius, pooled over a pyramid.

    Each interior pixel gets the pattern of signs s(g_p - g_c), p = 0..7, of its 8 neighbours
    g_p on a circle of radius R (bilinearly interpolated off the grid) against the centre g_c,
    s(x) = 1 for x >= 0. The ``uniform`` mapping (riu2) turns the pattern into the number of its
    set bits when it has at most two circular 0/1 transitions (spots, edges, corners, flat areas)
    and P + 1 otherwise, 10 codes that do not change under rotation or monotonic grey changes.
    Features are the normalised code histograms of each pyramid cell (``levels``; ``(1,)`` for the
    whole image), named ``{channel}[_by{f}]_r{R}_{mapping}__cell_{L}x{L}_{row}_{col}__bin_{code}``.
    Computing them on chroma as well as luma (colour texture) catches the colour artefacts of
    generators that grey texture misses.

    Multi-scale: each channel is also described shrunk by each factor f in ``scales`` (f x f
    area means, see ``shrunk_channel``; ``_by{f}`` in the name), as in the pyramid LBP of Qian
    et al. (Ojala et al. widen the radius instead, at full cost per pixel). A circle of radius 1
    or 2 then spans 2f or 4f pixels of the image: the scale of pores, hair strands and the
    upsampling structure of generators, which full-size circles alone miss. With
    ``chroma_sampling="half"`` (the default) Cb and Cr are never described finer than shrunk by
    2: 4:2:0 JPEG, the usual format of face photographs, stores chroma at that resolution and
    the decoder interpolates it back, so at full size a small circle mostly sees the decoder's
    interpolation (at four times the cost); ``"full"`` keeps the scales as given for every
    channel.

    Out-of-fold AUC with plain LightGBM and the previous default preset's other families
    (benchmarks/RESULTS.md, "Multi-scale texture"): full-size chroma against half-size, one scale,
    stylegan140k_small 0.884 / 0.886, yonsei_rff 0.688 / 0.687, lfw_faceswap laundered
    0.978 / 0.978; scales 1, 2, 4, 8 then gave stylegan140k_small 0.883 -> 0.890 (mean of fold
    seeds 0-2) and yonsei_rff 0.687 -> 0.710 (seeds 0-4).

    References
    ----------
    T. Ojala, M. Pietikäinen, T. Mäenpää, "Multiresolution gray-scale and rotation invariant
    texture classification with local binary patterns", IEEE TPAMI 24(7), 2002.
    X. Qian, X.-S. Hua, P. Chen, L. Ke, "PLBP: An effective local binary patterns texture
    descriptor with pyramid representation", Pattern Recognition 44(10-11), 2011.
    Z. Boulkenafet, J. Komulainen, A. Hadid, "Face anti-spoofing based on color texture
    analysis", ICIP 2015.
    """
    levels = check_levels(levels)
    _check_texture_params(scales, chroma_sampling)
    n_codes = lbp_mapping(mapping)[1]
    merge = lbp_bin_merge(mapping)
    features: dict[str, float] = {}
    for channel in channels:
        for step in channel_steps(channel, scales, chroma_sampling):
            described = channel if step == 1 else f"{channel}_by{step}"
            for radius in radii:
                patterns = lbp_code_map(ctx, channel, radius, "default", step)
                histograms = pool_codes(patterns, 256, levels) @ merge
                names = pyramid_names(f"{described}_r{radius}_{mapping}", n_codes, levels)
                features.update(zip(names, histograms.ravel().tolist()))
    return features


GLCM_PROPERTIES = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "asm")
GLCM_ANGLES = (0, 45, 90, 135)


def glcm_offsets(distance: int) -> list[tuple[int, int]]:
    """(row, col) offsets at 0, 45, 90 and 135 degrees, as ``skimage.feature.graycomatrix``."""
    return [(int(round(np.sin(np.deg2rad(a)) * distance)),
             int(round(np.cos(np.deg2rad(a)) * distance))) for a in GLCM_ANGLES]


def cooccurrence_matrix(levels_image: np.ndarray, offset: tuple[int, int],
                        n_levels: int) -> np.ndarray:
    """Symmetric, normalised grey-level co-occurrence matrix P(i, j) for one pixel offset.

    Counts pairs (x[r, c], x[r + dy, c + dx]) with both pixels inside the image, adds the
    transpose (pairs in both directions) and divides by the total (all zeros when no pair fits).
    """
    dy, dx = offset
    height, width = levels_image.shape
    rows, cols = height - abs(dy), width - abs(dx)
    if rows <= 0 or cols <= 0:
        return np.zeros((n_levels, n_levels))
    first = levels_image[max(-dy, 0):max(-dy, 0) + rows, max(-dx, 0):max(-dx, 0) + cols]
    second = levels_image[max(dy, 0):max(dy, 0) + rows, max(dx, 0):max(dx, 0) + cols]
    counts = joint_code_counts(first, second, n_levels, n_levels)
    counts += counts.T
    return counts / counts.sum()


def glcm_properties(matrices: np.ndarray) -> dict[str, np.ndarray]:
    """Haralick properties of normalised co-occurrence matrices (..., L, L), as graycoprops.

    contrast = sum P (i-j)^2, dissimilarity = sum P |i-j|, homogeneity = sum P / (1 + (i-j)^2),
    asm = sum P^2, energy = sqrt(asm), correlation = sum P (i-mu_i)(j-mu_j) / (sigma_i sigma_j),
    defined as 1 when a standard deviation is 0 (a constant image).
    """
    i, j = np.indices(matrices.shape[-2:])

    def total(values: np.ndarray) -> np.ndarray:
        return values.sum(axis=(-2, -1))

    mean_i, mean_j = total(matrices * i), total(matrices * j)
    centred_i = i - mean_i[..., None, None]
    centred_j = j - mean_j[..., None, None]
    std_i = np.sqrt(total(matrices * centred_i ** 2))
    std_j = np.sqrt(total(matrices * centred_j ** 2))
    covariance = total(matrices * centred_i * centred_j)
    degenerate = (std_i < 1e-15) | (std_j < 1e-15)
    asm = total(matrices ** 2)
    return {
        "contrast": total(matrices * (i - j) ** 2),
        "dissimilarity": total(matrices * np.abs(i - j)),
        "homogeneity": total(matrices / (1.0 + (i - j) ** 2)),
        "energy": np.sqrt(asm),
        "correlation": np.divide(covariance, std_i * std_j, out=np.ones_like(covariance),
                                 where=~degenerate),
        "asm": asm,
    }


@register(name="glcm", modality="image", cost="cheap")
def glcm(ctx: ImageContext, *, distances: Sequence[int] = (1, 2),
         n_levels: int = 32) -> dict[str, float]:
    """Haralick texture properties of the grey-level co-occurrence matrix of the luma.

    Y is quantised to ``n_levels`` grey levels (floor(Y * n_levels / 256)); for each distance d
    and angle 0, 45, 90, 135 degrees the symmetric co-occurrence matrix P(i, j) is the frequency
    of grey levels i and j at pixels d apart in that direction. From each P: contrast,
    dissimilarity, homogeneity, energy, correlation and angular second moment (ASM), named
    ``{property}__d_{d}_a_{angle}``. They summarise how often and how strongly neighbouring grey
    levels differ: the smoothness, periodicity and directionality of texture.

    References
    ----------
    R. M. Haralick, K. Shanmugam, I. Dinstein, "Textural Features for Image Classification",
    IEEE Transactions on Systems, Man, and Cybernetics 3(6), 1973.
    """
    if not 2 <= n_levels <= 256 or not distances or min(distances) < 1:
        raise ValueError(f"need 2 <= n_levels <= 256 and distances >= 1, "
                         f"got n_levels={n_levels}, distances={distances}")
    quantised = ctx.shared(("grey_levels", n_levels),
                           lambda: (ctx.gray * np.float32(n_levels / 256)).astype(np.uint8))
    pairs = [(distance, angle, offset) for distance in distances
             for angle, offset in zip(GLCM_ANGLES, glcm_offsets(distance))]
    properties = glcm_properties(np.stack([cooccurrence_matrix(quantised, offset, n_levels)
                                           for _, _, offset in pairs]))
    return {f"{name}__d_{distance}_a_{angle}": float(properties[name][k])
            for k, (distance, angle, _) in enumerate(pairs) for name in GLCM_PROPERTIES}
