"""Eye-pair consistency: do the two eyes look like one person's, lit by one scene?

Both eyes of a real face share an iris colour and mirror the same light sources: the corneal
highlights sit at the same place in each iris, with the same shape. Generators draw the eyes
without enforcing this (irises of different colours, highlights of different shapes or places:
Matern, Riess & Stamminger 2019; Hu, Li & Lyu 2021), and a composite that pastes one eye from
another face breaks it too.

The eyes are looked for at fixed fractions of the largest face box (``features.face``, shared with
the other face families, so no extra detector runs): where the eyes of FFHQ-aligned faces fall in
the Haar cascade's box (medians over 257 ``stylegan140k_small`` images: x 0.31 and 0.68 of the
box width, taken symmetric as 0.31 and 0.69; y 0.38 of its height; iris radius about 3 % of
the width). Each guess is refined to
the darkest blob near it, the iris and pupil. Each eye is then described in a small window around
its iris, resampled to one size so the two compare pixel by pixel, in CIELAB so colour distances
are perceptual (ΔE*ab).
"""
from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from features.colour import plane_correlations
from features.context import ImageContext
from features.face import largest_face
from features.registry import register

EYE_CENTRES = ((0.31, 0.38), (0.69, 0.38))  # (x, y) of each eye, as fractions of the face box
IRIS_RADIUS = 0.03   # iris radius as a fraction of the face box width
SEARCH_RADII = 3.0   # the iris is searched within this many radii of each expected eye centre
WINDOW_RADII = 1.6   # an eye window reaches this many radii from its iris centre
WINDOW_SIZE = 24     # eye windows are resampled to this many pixels a side
IRIS_DISC = 0.75     # the iris colour is read within this fraction of the radius: clear of lids
HIGHLIGHT_SHARE = 0.1   # the brightest tenth of the iris disc is left out of its colour
HIGHLIGHT_LEVEL = 0.6   # highlight pixels: above median + 0.6 (max - median) of the window
NOISE_FLOOR = 0.04   # CIELAB L units (a tenth of an 8-bit step) added before the noise's log
SHARPNESS_FLOOR = 1e-3  # added to the Laplacian's variance before its log

STATISTICS = ("iris_l", "iris_a", "iris_b", "highlight_peak", "highlight_x", "highlight_y",
              "highlight_area", "sharpness", "noise", "spread")
PAIR_STATISTICS = ("colour_distance", "highlight_offset", "highlight_iou", "ncc", "ncc_laplacian")


def iris_centre(gray: np.ndarray, guess: tuple[float, float], radius: float) -> tuple[int, int]:
    """The darkest point of ``gray`` blurred at the iris scale, within ``SEARCH_RADII`` radii of
    ``guess`` (x, y). A grey-level erosion over about one radius first fills bright spots
    smaller than that with their dark surround, so a corneal highlight cannot pull the point off
    the pupil (erosion widens the dark disc evenly, which leaves its centre in place)."""
    height, width = gray.shape
    reach = max(1, int(round(SEARCH_RADII * radius)))
    cx = min(max(int(round(guess[0])), 0), width - 1)
    cy = min(max(int(round(guess[1])), 0), height - 1)
    x0, y0 = max(cx - reach, 0), max(cy - reach, 0)
    window = gray[y0:min(cy + reach + 1, height), x0:min(cx + reach + 1, width)]
    side = 2 * int(round(radius / 2)) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    eroded = cv2.erode(window.astype(np.float32), kernel, borderType=cv2.BORDER_REPLICATE)
    blurred = cv2.GaussianBlur(eroded, (0, 0), max(0.7 * radius, 0.8))
    row, col = np.unravel_index(np.argmin(blurred), blurred.shape)
    return x0 + int(col), y0 + int(row)


def eye_window(rgb: np.ndarray, centre: tuple[int, int], half: int) -> np.ndarray:
    """The (2 half + 1)² RGB window around ``centre`` (edges replicated), resampled to
    ``WINDOW_SIZE`` a side, as float32 CIELAB (L in [0, 100])."""
    x, y = centre
    height, width = rgb.shape[:2]
    if half <= x < width - half and half <= y < height - half:  # inside: a view, no gather
        window = rgb[y - half:y + half + 1, x - half:x + half + 1]
    else:
        rows = np.clip(np.arange(y - half, y + half + 1), 0, height - 1)
        cols = np.clip(np.arange(x - half, x + half + 1), 0, width - 1)
        window = rgb[np.ix_(rows, cols)]
    window = window.astype(np.float32) * np.float32(1 / 255)
    shrinking = 2 * half + 1 > WINDOW_SIZE
    window = cv2.resize(window, (WINDOW_SIZE, WINDOW_SIZE),
                        interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return cv2.cvtColor(window, cv2.COLOR_RGB2Lab)


@lru_cache(maxsize=1)
def _iris_disc() -> np.ndarray:
    # The window spans 2 WINDOW_RADII radii, so the disc's radius in window pixels follows.
    offsets = np.arange(WINDOW_SIZE) - (WINDOW_SIZE - 1) / 2
    distance = np.hypot(*np.meshgrid(offsets, offsets))
    return distance < IRIS_DISC * WINDOW_SIZE / (2 * WINDOW_RADII)


def row_medians(rows: np.ndarray) -> np.ndarray:
    """``np.median(rows, axis=1)`` of a float32 (k, n) array without NaN, n >= 1: the middle
    value of each row, or the mean of the two middle ones, from one partition. The same values
    as NumPy's, at a tenth of the cost on the eye windows, where NumPy's calls weigh most."""
    half = rows.shape[1] // 2
    if rows.shape[1] % 2:
        return np.partition(rows, half, axis=1)[:, half]
    middle = np.partition(rows, (half - 1, half), axis=1)
    return (middle[:, half - 1] + middle[:, half]) / rows.dtype.type(2)


def row_quantiles(rows: np.ndarray, q: float) -> np.ndarray:
    """``np.quantile(rows, q, axis=1)`` of a float32 (k, n) array without NaN, n >= 1, for a
    Python float ``q`` in [0, 1]: NumPy's default ("linear", Hyndman & Fan's definition 7)
    interpolation between the order statistics around ``(n - 1) q``, in float32 as NumPy
    computes it for a float ``q``, from one partition."""
    virtual = (rows.shape[1] - 1) * q
    below = min(math.floor(virtual), rows.shape[1] - 1)
    above = min(below + 1, rows.shape[1] - 1)
    gamma = virtual - below
    ordered = np.partition(rows, (below, above), axis=1)
    low, high = ordered[:, below], ordered[:, above]
    step = high - low
    # NumPy's lerp: from the nearer end, so that gamma 0 and 1 give the order statistics.
    return high - step * (1 - gamma) if gamma >= 0.5 else low + step * gamma


def eye_statistics(labs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``STATISTICS`` of each eye window of ``labs`` (n, 24, 24, 3), one row per eye; the
    highlight masks, the L planes and their Laplacians, each (n, 24, 24)."""
    # The windows share one size, so each NumPy reduction runs once for all of them: on 24 x 24
    # windows a call's overhead (np.quantile's above all) outweighs its arithmetic.
    lightness = np.ascontiguousarray(labs[..., 0])
    flat = lightness.reshape(len(labs), -1)
    disc = _iris_disc()
    level = row_quantiles(lightness[:, disc], 1 - HIGHLIGHT_SHARE)
    body = disc & (lightness <= level[:, None, None])
    iris_colour = np.array([row_medians(lab[mask].T) for lab, mask in zip(labs, body)])
    median, peak, spread = row_medians(flat), flat.max(axis=1), flat.std(axis=1)
    brightest = [np.unravel_index(np.argmax(cv2.GaussianBlur(plane, (0, 0), 0.7)), plane.shape)
                 for plane in lightness]
    highlight = lightness > (median + HIGHLIGHT_LEVEL * (peak - median))[:, None, None]
    highlight[peak <= median] = False  # a flat window has no highlight
    laplacian = np.array([cv2.Laplacian(plane, cv2.CV_32F) for plane in lightness])
    residual = np.array([plane - cv2.blur(plane, (3, 3)) for plane in lightness])
    noise = row_medians(np.abs(residual).reshape(len(labs), -1))
    centre = (WINDOW_SIZE - 1) / 2
    rows, cols = np.array(brightest, dtype=np.float64).T
    values = np.column_stack([
        iris_colour, (peak - median) / (spread + 1e-3),
        (cols - centre) / WINDOW_SIZE, (rows - centre) / WINDOW_SIZE,
        highlight.reshape(len(labs), -1).mean(axis=1),
        np.log(laplacian.reshape(len(labs), -1).var(axis=1) + SHARPNESS_FLOOR),
        np.log(noise + NOISE_FLOOR), np.log(spread + 1e-3)])
    return values.astype(np.float64), highlight, lightness, laplacian


@register(name="eyes", modality="image", cost="cheap")
def eyes(ctx: ImageContext) -> dict[str, float]:
    """Whether the two eyes agree: iris colour, corneal highlights, sharpness and noise.

    With the face box (x, y, w, h) of ``largest_face``, the iris radius r = 0.03 w and each eye
    expected at (x + 0.31 w, y + 0.38 h) and (x + 0.69 w, y + 0.38 h), the iris centre is the
    darkest point of the luma, eroded over about r and blurred with σ = 0.7 r, within 3 r of the
    expected centre. Each eye's window reaches 1.6 r around it and is resampled to 24 x 24
    pixels in CIELAB (L*, a*, b*). Per eye (the ``STATISTICS``):

    * ``iris_l``, ``iris_a``, ``iris_b``: median L*, a*, b* over the disc of radius 0.75 r,
      leaving out its brightest tenth (the highlight): the iris colour;
    * ``highlight_peak`` = (max L - median L) / std L over the window;
    * ``highlight_x``, ``highlight_y``: where the brightest point (L blurred with σ = 0.7 pixel)
      sits, from the window centre, in window widths;
    * ``highlight_area``: the share of the window above median + 0.6 (max - median);
    * ``sharpness`` = log var(∇²L); ``noise`` = log(median |L - box3(L)| + 0.04);
      ``spread`` = log std L.

    Columns: ``diff__{s}`` = |left - right| and ``mean__{s}`` = (left + right) / 2 for each
    statistic s, and for the pair: ``colour_distance`` = ΔE*ab between the two iris colours;
    ``highlight_offset`` = the distance between the two highlight positions (window widths: the
    same light source puts the highlight at the same place in both corneas); ``highlight_iou``,
    the intersection over union of the two highlight masks (1 when neither eye has one);
    ``ncc`` and ``ncc_laplacian``, the normalised cross-correlation of the two windows' L and of
    their Laplacians.

    References
    ----------
    F. Matern, C. Riess, M. Stamminger, "Exploiting Visual Artifacts to Expose Deepfakes and
    Face Manipulations", WACV Workshops 2019 (eye colour).
    S. Hu, Y. Li, S. Lyu, "Exposing GAN-generated Faces Using Inconsistent Corneal Specular
    Highlights", ICASSP 2021.
    """
    box = largest_face(ctx)
    radius = max(IRIS_RADIUS * box.w, 1.0)
    half = max(1, int(round(WINDOW_RADII * radius)))
    centres = [iris_centre(ctx.gray, (box.x + fx * box.w, box.y + fy * box.h), radius)
               for fx, fy in EYE_CENTRES]
    statistics, masks, planes, laplacians = eye_statistics(
        np.array([eye_window(ctx.rgb, centre, half) for centre in centres]))
    left, right = statistics
    left_mask, right_mask = masks
    union = (left_mask | right_mask).sum()
    colour = slice(0, 3)  # iris_l, iris_a, iris_b
    position = [STATISTICS.index("highlight_x"), STATISTICS.index("highlight_y")]
    pair = (
        float(np.linalg.norm(left[colour] - right[colour])),
        float(np.linalg.norm(left[position] - right[position])),
        float((left_mask & right_mask).sum() / union) if union else 1.0,
        *plane_correlations([*planes, *laplacians], [(0, 1), (2, 3)]),
    )
    values = [*pair, *np.abs(left - right), *(left + right) / 2]
    return dict(zip(_names(), map(float, values)))


@lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    return (PAIR_STATISTICS + tuple(f"diff__{s}" for s in STATISTICS)
            + tuple(f"mean__{s}" for s in STATISTICS))
