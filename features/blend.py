"""Blending-boundary family ``blend``: does the face match its surroundings?

A face swap pastes a face from another photograph into the target and blends it in along a
boundary near the face's outline. The pasted face keeps traces of its own history (camera noise,
blur, resampling, colour) that differ from the rest of the image, and the blending leaves a seam
(Li et al., "Face X-ray", CVPR 2020). The family compares three regions around the face box of
``features.face.largest_face`` (shared as ``ctx.shared("face", ...)``):

* ``inner``: the box shrunk about its centre to ``inner_scale`` of its width and height, the face
  itself without its outline;
* ``ring``: the box grown about its centre to ``ring_scale`` of its size, minus the box: the
  surroundings (hair, neck, background);
* ``band``: the pixels within ``band_width / 2`` of the box's mean side of its edge, on both
  sides: where a blending seam would lie.

Regions are clipped to the image. Each is a union of at most four disjoint rectangles, so its
moments and histograms are sums of OpenCV sums and histograms over array views, without masks.
A statistic's value at a pixel belongs to the pixel its kernel is anchored at; pixels whose
kernel would leave the image have no value and count in no region.

Maps shared through ``ctx.shared``: the raw 8-bit LBP patterns ``("lbp", "y", 1, "default", 1)``
(full size) of ``features.texture.lbp_code_map`` (the texture family computes the same map) and
the regions ``("face_regions", inner_scale, ring_scale, band_width)``. The other maps (SRM
residuals, Haar details, Laplacian) are computed as exact int16 or uint16 integers from the 8-bit
planes, on the regions' window alone: the default preset has no other family that reads them
over the whole image.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import cv2
import numpy as np

from features.colour import laplacian
from features.context import YCRCB_PLANES, ImageContext
from features.face import FaceBox, largest_face
from features.histogram import code_counts
from features.registry import register
from features.residual import KERNELS, residual_map
from features.texture import lbp_bin_merge, lbp_code_map, lbp_mapping

REGIONS = ("inner", "ring", "band")
REGION_BITS = {"inner": 1, "ring": 2, "band": 4}
BLEND_CHANNELS = ("y", "cb", "cr")   # integer-valued channels: the noise histogram needs that
LOG_EPS = 1e-2                       # keeps log ratios of flat regions finite (grey levels)
MAD_TO_SIGMA = 0.6745                # median |z| of a standard normal z
HH_OFFSET = 510                      # |x00 - x01 - x10 + x11| <= 2 * 255 for 8-bit values
LBP_RADIUS = 1


class Rect(NamedTuple):
    """A half-open pixel rectangle [y0, y1) x [x0, x1) in image coordinates."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def empty(self) -> bool:
        return self.y1 <= self.y0 or self.x1 <= self.x0

    def clip(self, height: int, width: int) -> "Rect":
        return Rect(max(self.y0, 0), min(self.y1, height), max(self.x0, 0), min(self.x1, width))

    def shift(self, dy: int, dx: int) -> "Rect":
        return Rect(self.y0 + dy, self.y1 + dy, self.x0 + dx, self.x1 + dx)


class FaceRegions(NamedTuple):
    """The regions as disjoint rectangles, and the window (image coordinates) that holds them."""

    pieces: dict[str, tuple[Rect, ...]]
    window: Rect

    @property
    def labels(self) -> np.ndarray:
        """uint8 (window height, window width) bit-flag label map: OR of ``REGION_BITS``.

        The regions pixel by pixel (ring and band overlap), for inspection and masks; the
        features themselves are computed on the rectangles.
        """
        y0, y1, x0, x1 = self.window
        labels = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), np.uint8)
        for name, rects in self.pieces.items():
            for top, bottom, left, right in (rect.shift(-y0, -x0) for rect in rects):
                labels[top:bottom, left:right] |= REGION_BITS[name]
        return labels


def _round(value: float) -> int:
    return math.floor(value + 0.5)


def scaled_rect(box: FaceBox, scale: float) -> Rect:
    """The box scaled by ``scale`` about its centre (unclipped)."""
    cy, cx = box.y + box.h / 2, box.x + box.w / 2
    half_h, half_w = scale * box.h / 2, scale * box.w / 2
    return Rect(_round(cy - half_h), _round(cy + half_h), _round(cx - half_w), _round(cx + half_w))


def frame(outer: Rect, hole: Rect) -> tuple[Rect, ...]:
    """Disjoint rectangles covering ``outer`` minus ``hole``: top, bottom, left and right."""
    hole = Rect(max(hole.y0, outer.y0), min(hole.y1, outer.y1),
                max(hole.x0, outer.x0), min(hole.x1, outer.x1))
    if hole.empty:
        return () if outer.empty else (outer,)
    pieces = (Rect(outer.y0, hole.y0, outer.x0, outer.x1),
              Rect(hole.y1, outer.y1, outer.x0, outer.x1),
              Rect(hole.y0, hole.y1, outer.x0, hole.x0),
              Rect(hole.y0, hole.y1, hole.x1, outer.x1))
    return tuple(piece for piece in pieces if not piece.empty)


def face_regions(shape: tuple[int, int], box: FaceBox, inner_scale: float, ring_scale: float,
                 band_width: float) -> FaceRegions:
    """The inner, ring and band regions of a face box in an image of ``shape`` (see module)."""
    height, width = shape
    face_rect = Rect(box.y, box.y + box.h, box.x, box.x + box.w).clip(height, width)
    half_band = max(1, _round(band_width * (box.w + box.h) / 4))
    band_outer = Rect(face_rect.y0 - half_band, face_rect.y1 + half_band,
                      face_rect.x0 - half_band, face_rect.x1 + half_band).clip(height, width)
    band_inner = Rect(face_rect.y0 + half_band, face_rect.y1 - half_band,
                      face_rect.x0 + half_band, face_rect.x1 - half_band)
    inner = scaled_rect(box, inner_scale).clip(height, width)
    grown = scaled_rect(box, ring_scale).clip(height, width)
    pieces = {"inner": () if inner.empty else (inner,),
              "ring": frame(grown, face_rect),
              "band": frame(band_outer, band_inner)}
    window = Rect(min(grown.y0, band_outer.y0), max(grown.y1, band_outer.y1),
                  min(grown.x0, band_outer.x0), max(grown.x1, band_outer.x1))
    return FaceRegions(pieces, window)


def region_views(values: np.ndarray, origin: tuple[int, int], rects: Sequence[Rect]
                 ) -> list[np.ndarray]:
    """Views of a map over the non-empty parts of ``rects`` (image coordinates) it covers.

    ``values[i, j]`` belongs to image pixel ``(i + origin[0], j + origin[1])``.
    """
    (top, left), (height, width) = origin, values.shape[:2]
    views = []
    for y0, y1, x0, x1 in rects:  # Rect.shift and Rect.clip, unrolled: called per map and region
        y0, y1, x0, x1 = max(y0 - top, 0), min(y1 - top, height), max(x0 - left, 0), \
            min(x1 - left, width)
        if y0 < y1 and x0 < x1:
            views.append(values[y0:y1, x0:x1])
    return views


def window_view(values: np.ndarray, origin: tuple[int, int], window: Rect
                ) -> tuple[np.ndarray, tuple[int, int]]:
    """The view of a map over ``window`` (image coordinates, clipped to the map), and its origin.

    ``values[i, j]`` belongs to image pixel ``(i + origin[0], j + origin[1])``, and so does
    ``view[i, j]`` to pixel ``(i + view_origin[0], j + view_origin[1])``.
    """
    y0, y1, x0, x1 = window.shift(-origin[0], -origin[1]).clip(*values.shape[:2])
    return values[y0:y1, x0:x1], (origin[0] + y0, origin[1] + x0)


def region_moments(values: np.ndarray, origin: tuple[int, int], regions: FaceRegions
                   ) -> np.ndarray:
    """(4, 3) array: pixel count, mean, variance and mean |value| of a map in each region.

    ``values[i, j]`` belongs to image pixel ``(i + origin[0], j + origin[1])``. OpenCV sums the
    values, their squares and their absolute values over each rectangle in float64 (exactly,
    for the integer-valued maps of this family); the variance is then sum(x^2) / n - mean^2,
    as ``cv2.meanStdDev`` computes it, clipped at 0. Sums are faster than ``meanStdDev``
    on the tall, narrow rectangles of the ring and band.
    """
    moments = np.zeros((4, len(REGIONS)))
    for column, name in enumerate(REGIONS):
        count = total = squares = absolute = 0.0
        for view in region_views(values, origin, regions.pieces[name]):
            count += view.size
            total += cv2.sumElems(view)[0]
            squares += cv2.norm(view, cv2.NORM_L2SQR)
            absolute += cv2.norm(view, cv2.NORM_L1)
        if count:
            mean = total / count
            moments[:, column] = count, mean, max(squares / count - mean * mean, 0.0), \
                absolute / count
    return moments


def region_channel_moments(image: np.ndarray, regions: FaceRegions
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel count (3,), mean and variance (C, 3) of each channel of an (H, W, C) image per region.

    ``cv2.meanStdDev`` of all channels at once per rectangle (exact sums for 8-bit images),
    pooled over a region's rectangles: variance = sum(x^2) / n - mean^2, clipped at 0.
    """
    n_channels = image.shape[2]
    counts = np.zeros(len(REGIONS))
    means, variances = np.zeros((n_channels, len(REGIONS))), np.zeros((n_channels, len(REGIONS)))
    for column, name in enumerate(REGIONS):
        totals, squares = np.zeros(n_channels), np.zeros(n_channels)
        for view in region_views(image, (0, 0), regions.pieces[name]):
            mean, std = (moment[:, 0] for moment in cv2.meanStdDev(view))
            size = view.shape[0] * view.shape[1]
            counts[column] += size
            totals += size * mean
            squares += size * (std * std + mean * mean)
        if counts[column]:
            means[:, column] = totals / counts[column]
            variances[:, column] = np.maximum(
                squares / counts[column] - means[:, column] ** 2, 0.0)
    return counts, means, variances


def region_histograms(codes: np.ndarray, origin: tuple[int, int], regions: FaceRegions,
                      n_codes: int) -> np.ndarray:
    """(3, n_codes) counts of the integer codes ``0 <= code < n_codes`` of a map in each region.

    ``codes`` is uint8 or uint16; each rectangle's view is counted in place (``code_counts``).
    """
    histograms = np.zeros((len(REGIONS), n_codes))
    for row, name in enumerate(REGIONS):
        for view in region_views(codes, origin, regions.pieces[name]):
            histograms[row] += code_counts(view, n_codes)
    return histograms


def grouped_mad(counts: np.ndarray) -> float:
    """Median absolute deviation from the median of integer data given as counts of 0, 1, ...

    Grouped-data (interpolated) estimates: each integer k stands for values spread uniformly
    over [k - 1/2, k + 1/2], as if the data were a continuous quantity rounded to integers.
    The median m solves F(m) = 1/2 for the piecewise-linear distribution function F, the MAD
    t solves F(m + t) - F(m - t) = 1/2. Unlike the MAD of the integers themselves, which takes
    only a few values for the small residuals of 8-bit images, it varies continuously. Returns
    0 for an empty histogram.
    """
    total = counts.sum()
    if total == 0:
        return 0.0
    # F is 0 below the first and 1 above the last occupied bin, and interpolation clamps to
    # those values: the occupied span of the (mostly empty) histogram gives the same result.
    occupied = np.flatnonzero(counts)
    first, last = occupied[0], occupied[-1]
    edges = np.arange(first, last + 2) - 0.5
    cdf = np.concatenate([[0.0], np.cumsum(counts[first:last + 1]) / total])
    median = float(np.interp(0.5, cdf, edges))  # F is linear within a bin
    # The mass within +-t of the median is piecewise linear in t, with breaks where m +- t
    # crosses a bin edge: evaluate it there and interpolate.
    breaks = np.unique(np.concatenate([[0.0], np.abs(edges - median)]))
    inside = np.interp(median + breaks, edges, cdf) - np.interp(median - breaks, edges, cdf)
    return float(np.interp(0.5, inside, breaks))


def diagonal_detail(channel: np.ndarray) -> np.ndarray:
    """Integer codes ``x[i,j] - x[i,j+1] - x[i+1,j] + x[i+1,j+1] + 510`` of an 8-bit channel.

    Twice the finest diagonal (HH) coefficient of the undecimated orthonormal Haar wavelet
    transform; the code of pixel (i, j), shape (H - 1, W - 1). ``channel`` is a uint8 plane.
    """
    kernel = np.array([[1, -1], [-1, 1]], np.float32)
    detail = cv2.filter2D(channel, cv2.CV_16S, kernel, anchor=(0, 0), delta=HH_OFFSET)
    return detail[:-1, :-1].view(np.uint16)  # codes 0 .. 1020: the same numbers


def window_residual(plane: np.ndarray, window: Rect, kernel: str, direction: str
                    ) -> tuple[np.ndarray, tuple[int, int]]:
    """The int16 residual ``K * x`` of an 8-bit plane at every pixel of ``window`` where the
    kernel lies inside the image, and the image pixel its [0, 0] belongs to.

    Only the window and the kernel's reach around it are filtered: the values are those of the
    whole image's residual map, at a fraction of its cost.
    """
    weights, anchor, _, directional = KERNELS[kernel]
    if directional and direction == "v":
        weights, anchor = weights.T, anchor[::-1]
    reach_y, reach_x = weights.shape
    top, left = max(window.y0 - reach_y, 0), max(window.x0 - reach_x, 0)
    part = plane[top:max(window.y1 + reach_y, top), left:max(window.x1 + reach_x, left)]
    return (residual_map(part, kernel, direction, cv2.CV_16S),
            (top + anchor[0], left + anchor[1]))


def _residual_moments(ctx: ImageContext, channel: str, kernels: Sequence[str],
                      regions: FaceRegions) -> dict[str, np.ndarray]:
    """Moments of each residual ``r = (K * x) / c`` of one channel, keyed by its name."""
    moments = {}
    for kernel in kernels:
        scale, directional = KERNELS[kernel].scale, KERNELS[kernel].directional
        # Count, mean, variance and mean |r| of K * x, in units of r = (K * x) / c.
        units = np.array([[1.0], [scale], [scale ** 2], [scale]])
        for direction in ("h", "v") if directional else ("h",):
            values, origin = window_residual(ctx.plane_8bit(channel), regions.window, kernel,
                                             direction)
            name = f"{channel}_{kernel}_{direction}" if directional else f"{channel}_{kernel}"
            moments[name] = region_moments(values, origin, regions) / units
    return moments


def _contrasts(name: str, values: np.ndarray, counts: np.ndarray, scale: bool
               ) -> dict[str, float]:
    """Region values of a statistic, then inner vs ring and inner vs band.

    Scale statistics (non-negative: spreads, energies) are compared by
    ``log((inner + eps) / (other + eps))``, level statistics (means) by ``inner - other``; a
    comparison with an empty region is 0.
    """
    features = {f"{name}__{region}": float(value) for region, value in zip(REGIONS, values)}
    for other in (1, 2):
        defined = counts[0] > 0 and counts[other] > 0
        if scale:
            value = math.log((values[0] + LOG_EPS) / (values[other] + LOG_EPS)) if defined else 0.0
            features[f"{name}__log_inner_over_{REGIONS[other]}"] = value
        else:
            value = float(values[0] - values[other]) if defined else 0.0
            features[f"{name}__inner_minus_{REGIONS[other]}"] = value
    return features


def chi_square(p: np.ndarray, q: np.ndarray) -> float:
    """Chi-square distance ``sum (p - q)^2 / (p + q)`` of two normalised histograms (0..2)."""
    total = p + q
    nonzero = total > 0
    return float(np.sum((p[nonzero] - q[nonzero]) ** 2 / total[nonzero]))


def _lbp_features(ctx: ImageContext, regions: FaceRegions) -> dict[str, float]:
    n_codes = lbp_mapping("uniform")[1]
    # Count the raw 8-bit patterns (the map the texture family shares), then merge their bins.
    patterns = lbp_code_map(ctx, "y", LBP_RADIUS, "default")
    counts = region_histograms(patterns, (LBP_RADIUS, LBP_RADIUS), regions, 256) \
        @ lbp_bin_merge("uniform")
    totals = counts.sum(axis=1, keepdims=True)
    histograms = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    features = {f"y_lbp__{region}_bin_{code}": float(histograms[r, code])
                for r, region in enumerate(REGIONS) for code in range(n_codes)}
    for first, second in ((0, 1), (0, 2), (1, 2)):
        defined = totals[first, 0] > 0 and totals[second, 0] > 0
        features[f"y_lbp__chi2_{REGIONS[first]}_{REGIONS[second]}"] = \
            chi_square(histograms[first], histograms[second]) if defined else 0.0
    return features


def _check_params(channels: Sequence[str], residual_channels: Sequence[str],
                  kernels: Sequence[str], inner_scale: float, ring_scale: float,
                  band_width: float) -> None:
    if not channels or any(c not in BLEND_CHANNELS for c in [*channels, *residual_channels]):
        raise ValueError(f"blend: channels must be a non-empty subset of {BLEND_CHANNELS} and "
                         f"residual_channels a subset, got {list(channels)}, "
                         f"{list(residual_channels)}")
    unknown = sorted(set(kernels) - set(KERNELS))
    if unknown:
        raise ValueError(f"blend: unknown residual kernel(s) {unknown}; known: {sorted(KERNELS)}")
    if not (0 < inner_scale <= 1 < ring_scale and 0 < band_width < 1):
        raise ValueError("blend: need 0 < inner_scale <= 1 < ring_scale and 0 < band_width < 1, "
                         f"got {inner_scale}, {ring_scale}, {band_width}")


@register(name="blend", modality="image", cost="moderate")
def blend(ctx: ImageContext, *, channels: Sequence[str] = ("y", "cb", "cr"),
          residual_channels: Sequence[str] = ("y",), kernels: Sequence[str] = ("o1", "kb"),
          inner_scale: float = 0.7, ring_scale: float = 1.4, band_width: float = 0.1
          ) -> dict[str, float]:
    """Noise, sharpness, colour and texture of the face against its surroundings and its edge.

    On the regions ``inner``, ``ring`` and ``band`` of the face box (module docstring), for
    channels x among Y, Cb, Cr (0..255 scale):

    * for x in ``residual_channels``, ``{x}_{kernel}[_{h|v}]_std`` and ``..._mean_abs``: the
      standard deviation and mean absolute value of the SRM residual ``r = (K * x) / c`` of each
      kernel in ``kernels`` (``o1``, ``o2`` along rows ``h`` and columns ``v``, ``kb`` the 3x3
      square kernel; c its central coefficient, see ``features.residual``): high-frequency
      energy, i.e. noise and detail;
    * for x in ``residual_channels``, ``{x}_noise``: the robust noise level
      ``sigma = median(|d - median(d)|) / 0.6745`` of the finest diagonal Haar wavelet
      coefficients ``d = (x00 - x01 - x10 + x11) / 2`` (Donoho & Johnstone; grouped-data
      medians of the 8-bit values, see ``grouped_mad``): for white noise of std s, sigma = s
      whatever the smooth content;
    * for x in ``channels``, ``{x}_mean`` and ``{x}_std``: colour moments;

    and ``y_laplacian_var``, the variance of the 4-neighbour Laplacian of Y (sharpness). Each
    statistic S gives ``S__inner``, ``S__ring``, ``S__band`` and, for spreads and energies,
    ``S__log_inner_over_ring`` = log((inner + 0.01) / (ring + 0.01)) and
    ``S__log_inner_over_band``, for means ``S__inner_minus_ring`` and ``S__inner_minus_band``
    (0 when a region is empty, e.g. a face filling the image has no ring). Texture: the
    normalised histograms of uniform rotation-invariant LBP codes (riu2, P = 8, R = 1) of Y in
    each region, ``y_lbp__{region}_bin_{k}``, and their chi-square distances
    ``y_lbp__chi2_{a}_{b}`` = sum (p - q)^2 / (p + q). The face box is the shared
    ``largest_face`` (a central square when no face is found: see the ``face`` family).

    A swapped face carries the noise, blur and colour of its source photograph and a seam
    where it was blended in, so its regions disagree where a real face's agree.

    References
    ----------
    L. Li, J. Bao, T. Zhang, H. Yang, D. Chen, F. Wen, B. Guo, "Face X-ray for More General
    Face Forgery Detection", CVPR 2020.
    S. Lyu, X. Pan, X. Zhang, "Exposing Region Splicing Forgeries with Blind Local Noise
    Estimation", IJCV 110(2), 2014.
    P. Zhou, X. Han, V. I. Morariu, L. S. Davis, "Two-Stream Neural Networks for Tampered Face
    Detection", CVPR Workshops 2017.
    D. L. Donoho, I. M. Johnstone, "Ideal spatial adaptation by wavelet shrinkage",
    Biometrika 81(3), 1994.
    T. Ojala, M. Pietikäinen, T. Mäenpää, "Multiresolution gray-scale and rotation invariant
    texture classification with local binary patterns", IEEE TPAMI 24(7), 2002.
    """
    _check_params(channels, residual_channels, kernels, inner_scale, ring_scale, band_width)
    regions = ctx.shared(("face_regions", inner_scale, ring_scale, band_width),
                         lambda: face_regions(ctx.shape, largest_face(ctx), inner_scale,
                                              ring_scale, band_width))
    window = regions.window
    features: dict[str, float] = {}
    for channel in residual_channels:
        for name, (counts, _, variance, mean_abs) in _residual_moments(
                ctx, channel, kernels, regions).items():
            features.update(_contrasts(f"{name}_std", np.sqrt(variance), counts, True))
            features.update(_contrasts(f"{name}_mean_abs", mean_abs, counts, True))
        # The window and one more row and column: the 2 x 2 details of its last pixels.
        values, origin = window_view(ctx.plane_8bit(channel), (0, 0), Rect(
            window.y0, window.y1 + 1, window.x0, window.x1 + 1))
        histograms = region_histograms(diagonal_detail(values), origin, regions,
                                       2 * HH_OFFSET + 1)
        # Codes count twice the coefficient: half the MAD in codes is the MAD of d.
        noise = np.array([grouped_mad(h) / (2 * MAD_TO_SIGMA) for h in histograms])
        features.update(_contrasts(f"{channel}_noise", noise, histograms.sum(axis=1), True))
    # All three 8-bit planes at once: one pass per rectangle, whichever channels are asked for.
    counts, means, variances = region_channel_moments(ctx.ycrcb8, regions)
    for channel in channels:
        plane = YCRCB_PLANES[channel]
        features.update(_contrasts(f"{channel}_mean", means[plane], counts, False))
        features.update(_contrasts(f"{channel}_std", np.sqrt(variances[plane]), counts, True))
    # The window and a one-pixel margin: the Laplacian of its pixels, anchored at the centre.
    values, (top, left) = window_view(ctx.plane_8bit("y"), (0, 0), Rect(
        window.y0 - 1, window.y1 + 1, window.x0 - 1, window.x1 + 1))
    counts, _, variance, _ = region_moments(laplacian(values)[1:-1, 1:-1], (top + 1, left + 1),
                                            regions)
    features.update(_contrasts("y_laplacian_var", variance, counts, True))
    features.update(_lbp_features(ctx, regions))
    return features
