"""DCT family ``dct``: the global DCT spectrum, JPEG-grid block DCT statistics and Benford's law.

Three views of the grey image (luma Y in 0..255) in the DCT domain, all with the orthonormal
DCT-II:

* the log-magnitude spectrum of the whole image (Frank et al., ICML 2020), where up-sampling
  leaves a grid of peaks, averaged over a fixed grid of frequency zones;
* per frequency of the 8x8 block DCT on the JPEG grid, the mean, the Laplacian scale and the
  standard deviation of the coefficients (Giudice et al., J. Imaging 2021);
* the first-digit histogram of the block DCT AC coefficients and its distance from Benford's law
  (Fu et al., SPIE 2007; Bonettini et al., ICPR 2020).

Caution: on decoded JPEG images the block statistics and the digit histogram also reflect the
quantisation table (coefficients cluster at multiples of its steps); check them on data where both
classes share one compression pipeline.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import scipy.fft

from features.histogram import code_counts
from features.logarithm import natural_log
from features.registry import register

BLOCK = 8
# DCT basis of an 8x8 block: for a row-major flattened block b, (b @ BLOCK_KRON.T) is the
# row-major flattened D b D^T, D the orthonormal 8-point DCT-II matrix.
_DCT8 = scipy.fft.dct(np.eye(BLOCK), norm="ortho", axis=0)
BLOCK_KRON_T = np.kron(_DCT8, _DCT8).T.astype(np.float32)
# JPEG zigzag scan: flat indices u * 8 + v ordered by anti-diagonal u + v, alternating direction.
ZIGZAG = np.array(sorted(range(BLOCK * BLOCK), key=lambda i: (
    i // BLOCK + i % BLOCK, i // BLOCK if (i // BLOCK + i % BLOCK) % 2 else i % BLOCK)))
BENFORD = np.log10(1.0 + 1.0 / np.arange(1, 10))
# |coefficient| floor of the log spectrum: far below the 8-bit rounding noise of an orthonormal
# coefficient (std 0.29), so it only keeps log(0) away on flat images.
LOG_EPS = 1e-3
# Orthonormal 8x8 DCT coefficients of values in [0, 255] are at most 8 * 255 in magnitude;
# _FIRST_DIGIT[n] is the first digit of each integer magnitude n up to that bound (0 for n = 0).
_MAX_ROUNDED = BLOCK * 255 + 1
_FIRST_DIGIT = np.array([0] + [int(str(n)[0]) for n in range(1, _MAX_ROUNDED + 1)], np.intp)


def block_dct(gray: np.ndarray) -> np.ndarray:
    """Orthonormal DCT-II of the 8x8 blocks of the JPEG grid, as (n_blocks, 64) row-major (u, v).

    The image is cropped to a multiple of 8 from the top-left corner, where the JPEG grid starts.
    """
    rows, cols = gray.shape[0] // BLOCK, gray.shape[1] // BLOCK
    blocks = (np.asarray(gray, np.float32)[:rows * BLOCK, :cols * BLOCK]
              .reshape(rows, BLOCK, cols, BLOCK).swapaxes(1, 2).reshape(-1, BLOCK * BLOCK))
    return blocks @ BLOCK_KRON_T


@lru_cache(maxsize=32)
def _zone_indicator(length: int, grid: int) -> np.ndarray:
    """(grid, length) 0/1 matrix: frequency index k belongs to zone floor(k * grid / length)."""
    zone = np.arange(length) * grid // length
    indicator = (zone[None, :] == np.arange(grid)[:, None]).astype(np.float32)
    indicator.setflags(write=False)  # cached and shared between calls
    return indicator


def global_log_dct_zones(gray: np.ndarray, grid: int) -> np.ndarray:
    """Mean of ``ln(|C| + eps)`` over a grid x grid of frequency zones of the full-image DCT-II.

    Zone (i, j) holds the coefficients (u, v) with ``floor(u * grid / H) = i`` and
    ``floor(v * grid / W) = j``; the DC coefficient (brightness) is left out of zone (0, 0).
    Zones without a coefficient (images smaller than the grid) are 0.
    """
    log_abs = scipy.fft.dctn(gray, norm="ortho")
    # In place: each full-size float32 temporary costs as much as the arithmetic on it.
    np.abs(log_abs, out=log_abs)
    log_abs += LOG_EPS
    natural_log(log_abs, out=log_abs)
    log_abs[0, 0] = 0.0
    rows, cols = _zone_indicator(gray.shape[0], grid), _zone_indicator(gray.shape[1], grid)
    sums = rows @ log_abs @ cols.T
    counts = np.outer(rows.sum(axis=1), cols.sum(axis=1))
    counts[0, 0] -= 1
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)


def block_statistics(coefficients: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, mean absolute value and standard deviation of each column of (n_blocks, 64)
    coefficients.

    Sums run in float64 with OpenCV (one vectorised pass each, no temporaries): at these
    magnitudes (below 8 * 255) ``E[c^2] - E[c]^2`` stays accurate to about 1e-12, where NumPy's
    float32 column reductions were off by up to 4e-5 (relative) over the 4,096 blocks of 512 x 512.
    """
    def column_sums(values: np.ndarray, kind: int) -> np.ndarray:
        return cv2.reduce(values, 0, kind, dtype=cv2.CV_64F).ravel()

    count = len(coefficients)
    mean_abs = column_sums(np.abs(coefficients), cv2.REDUCE_SUM) / count
    mean = column_sums(coefficients, cv2.REDUCE_SUM) / count
    variance = column_sums(coefficients, cv2.REDUCE_SUM2) / count - mean ** 2
    return mean, mean_abs, np.sqrt(np.maximum(variance, 0.0))


def first_digit_histogram(values: np.ndarray) -> np.ndarray:
    """Share of each first digit 1..9 among ``round(|v|) >= 1`` (all zeros if there are none).

    ``|v|`` must not exceed 8 * 255 + 1, the range of 8x8 orthonormal DCT coefficients of
    8-bit pixels.
    """
    values = np.asarray(values)
    rounded = np.abs(values, dtype=np.result_type(values.dtype, np.float32)).ravel()
    np.rint(rounded, out=rounded)
    if not rounded.size:
        return np.zeros(9)
    if rounded.max() > _MAX_ROUNDED:
        raise ValueError(f"first_digit_histogram expects |values| <= {_MAX_ROUNDED}")
    # Counting each integer magnitude once, then grouping the counts by first digit, is much
    # cheaper than looking up a digit for every coefficient; the zeros (most coefficients) have
    # no first digit and are dropped.
    magnitude_counts = code_counts(rounded.astype(np.uint16), _MAX_ROUNDED + 1)[1:]
    counts = np.bincount(_FIRST_DIGIT[1:], weights=magnitude_counts, minlength=10)[1:]
    total = counts.sum()
    return counts / total if total else np.zeros(9)


def jensen_shannon_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence of two distributions, in bits (0 = equal, 1 = disjoint)."""
    m = (p + q) / 2

    def kl_to_m(a: np.ndarray) -> float:
        nonzero = a > 0
        return float(np.sum(a[nonzero] * np.log2(a[nonzero] / m[nonzero])))
    return (kl_to_m(p) + kl_to_m(q)) / 2


@lru_cache(maxsize=8)
def _feature_names(grid: int, n_ac: int) -> tuple[str, ...]:
    """Names of the ``dct`` features in output order (built once: formatting them per image
    costs more than some of the statistics)."""
    names = [f"global__log_abs__zone_{i}_{j}" for i in range(grid) for j in range(grid)]
    for index in ZIGZAG[1:1 + n_ac]:
        u, v = divmod(int(index), BLOCK)
        names += [f"block__mean__freq_{u}_{v}", f"block__beta__freq_{u}_{v}",
                  f"block__std__freq_{u}_{v}"]
    names += [f"benford__digit_{d}" for d in range(1, 10)]
    return (*names, "benford__js_divergence")


def _check_params(grid: int, n_ac: int) -> None:
    if grid < 1:
        raise ValueError(f"dct: grid must be >= 1, got {grid}")
    if not 0 <= n_ac <= BLOCK * BLOCK - 1:
        raise ValueError(f"dct: n_ac must be in 0..63, got {n_ac}")


@register(name="dct", modality="image", cost="cheap")
def dct(ctx, *, grid: int = 8, n_ac: int = 63) -> dict[str, float]:
    """Global log-DCT zones, block DCT mean, Laplacian scale and spread per frequency, Benford.

    On the luma Y (0..255), with the orthonormal DCT-II:

    * ``global__log_abs__zone_i_j``: mean of ``ln(|C(u, v)| + 1e-3)`` of the full-image DCT over
      the zone ``floor(u * grid / H) = i``, ``floor(v * grid / W) = j`` (DC excluded), a
      size-independent summary of the log spectrum of Frank et al. (ICML 2020).
    * ``block__mean__freq_u_v``, ``block__beta__freq_u_v`` and ``block__std__freq_u_v``: over the
      8x8 blocks of the JPEG grid, for the first ``n_ac`` AC frequencies in zigzag order, the
      mean of the coefficients ``c`` (near 0 for natural images, whose blocks are as often
      bright-to-dark as dark-to-bright; a repeated pattern such as an up-sampling grid keeps
      its sign), ``beta = mean |c|``, the maximum likelihood scale of a zero-mean Laplacian
      ``p(c) = exp(-|c| / beta) / (2 beta)``, and the standard deviation of ``c``. Giudice et
      al. show that generators leave anomalous betas.
    * ``benford__digit_d``: share of first digit ``d`` (1..9) among the rounded magnitudes
      ``round(|c|) >= 1`` of all block AC coefficients, and ``benford__js_divergence``: the
      Jensen-Shannon divergence (bits) of that histogram from Benford's law
      ``P(d) = log10(1 + 1/d)``, which natural images' DCT coefficients follow closely.

    Values are 0 where undefined (no complete 8x8 block, no coefficient >= 1). The block DCT is
    shared as ``ctx.shared(("block_dct8", "y"), ...)`` (n_blocks, 64), row-major (u, v).

    References: J. Frank, T. Eisenhofer, L. Schoenherr, A. Fischer, D. Kolossa, T. Holz,
    "Leveraging Frequency Analysis for Deep Fake Image Recognition", ICML 2020.
    O. Giudice, L. Guarnera, S. Battiato, "Fighting Deepfakes by Detecting GAN DCT Anomalies",
    Journal of Imaging 7(8), 2021. D. Fu, Y. Q. Shi, W. Su, "A generalized Benford's law for
    JPEG coefficients and its applications in image forensics", SPIE Security, Steganography and
    Watermarking of Multimedia Contents IX, 2007. N. Bonettini, P. Bestagini, S. Milani,
    S. Tubaro, "On the use of Benford's law to detect GAN-generated images", ICPR 2020.
    """
    _check_params(grid, n_ac)
    gray = ctx.gray
    zones = global_log_dct_zones(gray, grid)

    coefficients = ctx.shared(("block_dct8", "y"), lambda: block_dct(gray))
    chosen = ZIGZAG[1:1 + n_ac]
    if len(coefficients):
        # Reducing all 64 contiguous columns and then picking is cheaper than picking first.
        means, betas, spreads = (column[chosen] for column in block_statistics(coefficients))
    else:
        means, betas, spreads = np.zeros(n_ac), np.zeros(n_ac), np.zeros(n_ac)

    histogram = first_digit_histogram(coefficients[:, 1:])
    divergence = jensen_shannon_divergence(histogram, BENFORD) if histogram.any() else 0.0
    block = np.column_stack([means, betas, spreads]).ravel()
    values = np.concatenate([zones.ravel(), block, histogram, [divergence]])
    return dict(zip(_feature_names(grid, n_ac), values.tolist()))
