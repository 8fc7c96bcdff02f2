"""Colour family ``colour``: saturation, exposure, chroma moments and channel correlations.

McCloskey & Albright observed that a generator's final normalisation and its learned colour
mixing make it behave unlike a camera: it rarely clips to full white or full black (saturated or
under-exposed pixels are common in photographs), and its colour channels are mixed with
overlapping weights. This family measures both cues, plus the distribution of HSV saturation and
of the chroma channels and how strongly R, G and B, and their high-pass residuals (where camera
demosaicing couples the channels), move together.
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from features.compiled import compiled
from features.histogram import code_counts, joint_code_counts
from features.registry import register

PAIRS = ((0, 1), (0, 2), (1, 2))  # channel pairs (R, G), (R, B), (G, B) and their names
PAIR_NAMES = ("r_g", "r_b", "g_b")


def histogram_correlation(joint: np.ndarray, first_levels: np.ndarray,
                          second_levels: np.ndarray) -> float:
    """Pearson correlation of two variables from the counts ``joint[i, j]`` of the value pairs
    ``(first_levels[i], second_levels[j])`` (0 if one of them is constant)."""
    first_counts, second_counts = joint.sum(axis=1), joint.sum(axis=0)
    total = first_counts.sum()
    # Centred sums: a constant variable gets a variance of exactly 0.
    first_centred = first_levels - first_counts @ first_levels / total
    second_centred = second_levels - second_counts @ second_levels / total
    first_variance = first_counts @ first_centred ** 2 / total
    second_variance = second_counts @ second_centred ** 2 / total
    if first_variance <= 1e-12 or second_variance <= 1e-12:
        return 0.0
    covariance = first_centred @ joint @ second_centred / total
    return float(covariance / (first_variance * second_variance) ** 0.5)


def histogram_percentiles(counts: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """Levels at the given percentiles of the distribution with bin ``counts`` (inverted CDF).

    The q-th percentile is the first level whose cumulative count reaches ``q / 100`` of all
    counts, and at least one count (so the 0-th percentile is the minimum).
    """
    cumulative = np.cumsum(counts)
    wanted = np.maximum(np.ceil(np.asarray(percentiles) / 100.0 * cumulative[-1] - 1e-9), 1)
    return np.minimum(np.searchsorted(cumulative, wanted), counts.size - 1).astype(np.float64)


def histogram_moments(counts: np.ndarray, levels: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, standard deviation, skewness and excess kurtosis of ``levels`` weighted by ``counts``
    (skewness and kurtosis are 0 when the spread is 0)."""
    weights = counts / counts.sum()
    mean = float(weights @ levels)
    centred = levels - mean
    variance = float(weights @ centred ** 2)
    if variance <= 1e-12:
        return mean, 0.0, 0.0, 0.0
    skewness = float(weights @ centred ** 3) / variance ** 1.5
    kurtosis = float(weights @ centred ** 4) / variance ** 2 - 3.0
    return mean, variance ** 0.5, skewness, kurtosis


# Integer planes correlated exactly (``_pair_sums`` squares them in int32).
EXACT_DTYPES = (np.uint8, np.int8, np.int16)


def plane_correlations(planes: Sequence[np.ndarray], pairs: Sequence[tuple[int, int]]
                       ) -> list[float]:
    """Pearson correlation of the given pairs of equally shaped planes (0 if one is constant).

    Planes of 8-bit or int16 values (channels, their residuals) are correlated exactly: each
    pair's sums of values, squares and products are integers, taken in one compiled pass, and
    ``n^2 cov = n sum(xy) - sum(x) sum(y)`` and the variances are formed in Python's unbounded
    integers, so only the final division rounds. Other planes take ``cv2.norm``'s double sums.
    """
    if all(plane.dtype in EXACT_DTYPES for plane in planes):
        return [_integer_correlation(planes[first], planes[second]) for first, second in pairs]
    return _float_correlations(planes, pairs)


def _integer_correlation(first: np.ndarray, second: np.ndarray) -> float:
    x_sum, y_sum, x_squares, y_squares, products = _pair_sums(first, second).tolist()
    size = first.size
    x_spread, y_spread = size * x_squares - x_sum * x_sum, size * y_squares - y_sum * y_sum
    if x_spread == 0 or y_spread == 0:
        return 0.0
    return (size * products - x_sum * y_sum) / (math.sqrt(x_spread) * math.sqrt(y_spread))


def _float_correlations(planes: Sequence[np.ndarray], pairs: Sequence[tuple[int, int]]
                        ) -> list[float]:
    # cov(x, y) = (var x + var y - var(x - y)) / 2: cv2.norm sums x^2 and (x - y)^2 in double
    # precision in one pass, without temporary product arrays.
    size = planes[0].size
    means = [cv2.mean(plane)[0] for plane in planes]
    squares = [cv2.norm(plane, cv2.NORM_L2SQR) / size for plane in planes]
    # cv2.norm is exact only to double round-off: a variance within that of 0 is a constant plane.
    variances = [square - mean ** 2 if square - mean ** 2 > 1e-12 * square else 0.0
                 for square, mean in zip(squares, means)]
    correlations = []
    for first, second in pairs:
        if variances[first] == 0.0 or variances[second] == 0.0:
            correlations.append(0.0)
            continue
        difference = (cv2.norm(planes[first], planes[second], cv2.NORM_L2SQR) / size
                      - (means[first] - means[second]) ** 2)
        covariance = (variances[first] + variances[second] - difference) / 2
        correlations.append(covariance / (variances[first] * variances[second]) ** 0.5)
    return correlations


@compiled
def _pair_sums(first, second):  # pragma: no cover
    # sum x, sum y, sum x^2, sum y^2, sum xy of two integer planes (values within int16), per row
    # in int32 products and int64 totals.
    totals = np.zeros(5, np.int64)
    for i in range(first.shape[0]):
        x_row, y_row = first[i], second[i]
        x_sum = y_sum = x_squares = y_squares = products = np.int64(0)
        for j in range(x_row.shape[0]):
            x, y = np.int32(x_row[j]), np.int32(y_row[j])
            x_sum += x
            y_sum += y
            x_squares += x * x
            y_squares += y * y
            products += x * y
        totals[0] += x_sum
        totals[1] += y_sum
        totals[2] += x_squares
        totals[3] += y_squares
        totals[4] += products
    return totals


def laplacian(plane: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian ``up + down + left + right - 4 centre`` of a uint8 plane, int16,
    borders reflected with the edge pixel repeated (``cv2.Laplacian(plane, cv2.CV_16S, ksize=1,
    borderType=cv2.BORDER_REFLECT)``, whose generic filter takes six times as long here)."""
    if plane.dtype != np.uint8 or plane.ndim != 2:
        raise ValueError(f"expected an (H, W) uint8 plane, got {plane.dtype} {plane.shape}")
    residual = np.empty(plane.shape, np.int16)
    if plane.size:
        _laplacian_rows(plane, residual)
    return residual


@compiled
def _laplacian_rows(plane, residual):  # pragma: no cover
    height, width = plane.shape
    for i in range(height):
        above, centre, below = plane[max(i - 1, 0)], plane[i], plane[min(i + 1, height - 1)]
        out = residual[i]
        # The edge columns: the missing neighbour is the edge pixel itself.
        out[0] = (np.int16(above[0]) + below[0] + centre[min(1, width - 1)]
                  - 3 * np.int16(centre[0]))
        for j in range(1, width - 1):
            out[j] = (np.int16(above[j]) + np.int16(below[j]) + np.int16(centre[j - 1])
                      + np.int16(centre[j + 1]) - 4 * np.int16(centre[j]))
        if width > 1:
            out[width - 1] = (np.int16(above[width - 1]) + below[width - 1]
                              + centre[width - 2] - 3 * np.int16(centre[width - 1]))


def exposure_fractions(brightest: np.ndarray, darkest: np.ndarray, margins: Sequence[int]
                       ) -> dict[str, float]:
    """Shares of clipped pixels: any or all of R, G, B within ``margin`` of 255 (over-exposed) or
    of 0 (under-exposed), for each margin, from the per-pixel max and min of R, G, B."""
    # A pixel has any channel >= t iff its brightest channel does, all iff its darkest does.
    high = code_counts(brightest, 256) / brightest.size
    low = code_counts(darkest, 256) / brightest.size
    features = {}
    for margin in margins:
        features[f"overexposed_any__margin_{margin}"] = high[255 - margin:].sum()
        features[f"overexposed_all__margin_{margin}"] = low[255 - margin:].sum()
        features[f"underexposed_any__margin_{margin}"] = low[:margin + 1].sum()
        features[f"underexposed_all__margin_{margin}"] = high[:margin + 1].sum()
    return {name: float(value) for name, value in features.items()}


def _check_params(percentiles: Sequence[float], clip_margins: Sequence[int]) -> None:
    if not all(0 <= q <= 100 and float(q).is_integer() for q in percentiles):
        raise ValueError(f"colour: percentiles must be whole numbers in 0..100, got {percentiles}")
    if not all(isinstance(m, int) and 0 <= m <= 254 for m in clip_margins):
        raise ValueError(f"colour: clip_margins must be integers in 0..254, got {clip_margins}")


@register(name="colour", modality="image", cost="cheap")
def colour(ctx, *, percentiles: Sequence[float] = (5, 25, 50, 75, 95),
           clip_margins: Sequence[int] = (0, 4)) -> dict[str, float]:
    """Saturation and exposure statistics, chroma moments and R, G, B (residual) correlations.

    * ``saturation__mean``, ``saturation__std``, ``saturation__percentile_q``: HSV saturation
      ``S = (max - min) / max`` of R, G, B (0 for black) in [0, 1], rounded to multiples of
      1/255 as 8-bit HSV; percentiles by the inverted CDF.
    * ``overexposed_any__margin_m`` / ``overexposed_all__margin_m``: share of pixels with any /
      all of R, G, B >= 255 - m; ``underexposed_any`` / ``underexposed_all``: any / all <= m.
      McCloskey & Albright's cue: generators rarely produce such clipped pixels.
    * ``cb__mean``, ``cb__std``, ``cb__skewness``, ``cb__kurtosis`` (excess) and the same for
      ``cr``: moments of the BT.601 chroma channels centred on neutral grey (128 -> 0), and
      ``cb_cr__correlation``.
    * ``correlation__r_g``, ``__r_b``, ``__g_b``: Pearson correlation between colour channels,
      and ``residual_correlation__*``: the same between their high-pass residuals (4-neighbour
      Laplacian, borders reflected), where camera demosaicing leaves strongly coupled channels.

    Moments and correlations are 0 where the spread is 0 (e.g. a constant image).

    Reference: S. McCloskey, M. Albright, "Detecting GAN-generated Imagery using Saturation
    Cues", ICIP 2019 (arXiv:1812.08247, "Detecting GAN-generated imagery using color cues", 2018).
    """
    _check_params(percentiles, clip_margins)
    planes = ctx.rgb_planes
    brightest, darkest = ctx.rgb_extremes
    # 8-bit HSV saturation round(255 (max - min) / max); cv2.divide gives 0 where max = 0.
    saturation = code_counts(cv2.divide(cv2.subtract(brightest, darkest), brightest, scale=255),
                             256)
    levels = np.arange(256, dtype=np.float64)
    mean, spread, _, _ = histogram_moments(saturation, levels / 255)
    features = {"saturation__mean": mean, "saturation__std": spread}
    quantiles = histogram_percentiles(saturation, percentiles) / 255
    features.update({f"saturation__percentile_{int(q)}": float(level)
                     for q, level in zip(percentiles, quantiles)})
    features.update(exposure_fractions(brightest, darkest, clip_margins))

    # One pass over the level pairs gives both chroma histograms and their covariance.
    chroma = joint_code_counts(ctx.plane_8bit("cb"), ctx.plane_8bit("cr"), 256, 256)
    for name, counts in (("cb", chroma.sum(axis=1)), ("cr", chroma.sum(axis=0))):
        moments = histogram_moments(counts, levels - 128)
        features.update({f"{name}__{moment}": value for moment, value
                         in zip(("mean", "std", "skewness", "kurtosis"), moments)})
    features["cb_cr__correlation"] = histogram_correlation(chroma, levels, levels)

    residuals = [laplacian(plane) for plane in planes]
    for kind, kind_planes in (("correlation", planes), ("residual_correlation", residuals)):
        correlations = plane_correlations(kind_planes, PAIRS)
        features.update({f"{kind}__{pair}": value for pair, value in zip(PAIR_NAMES, correlations)})
    return features
