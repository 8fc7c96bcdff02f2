"""Ranking metrics of the challenge: ROC AUC, and TPR at a fixed low FPR.

Convention for TPR@FPR (documented once, used everywhere): among the points of the full ROC curve
(every distinct score is a threshold, ties form one point), take the largest TPR whose FPR is at
most the target. The FPR actually reached is reported beside it, with the number of negatives: with
``n`` negatives the smallest non-zero FPR is ``1/n``, so FPR = 1e-3 cannot be measured reliably
below 10 / 1e-3 = 10,000 negatives.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import norm, rankdata
from sklearn.metrics import roc_auc_score, roc_curve

TARGET_FPRS = (1e-3, 1e-2)


@dataclass(frozen=True)
class TprAtFpr:
    target_fpr: float
    tpr: float
    fpr_reached: float
    threshold: float
    n_negatives: int
    reliable: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _check(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.shape != y_score.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_score must be 1-D of equal length, got "
                         f"{y_true.shape} and {y_score.shape}")
    if not set(np.unique(y_true)) <= {0, 1}:
        raise ValueError("y_true must contain only 0 (real) and 1 (fake)")
    if len(np.unique(y_true)) < 2:
        raise ValueError("both classes are needed to compute a ROC metric")
    if not np.all(np.isfinite(y_score)):
        raise ValueError("y_score contains NaN or infinite values")
    return y_true.astype(int), y_score


def auc(y_true, y_score) -> float:
    """ROC AUC; tied scores count one half (the Mann-Whitney statistic)."""
    y_true, y_score = _check(y_true, y_score)
    return float(roc_auc_score(y_true, y_score))


def tpr_at_fpr(y_true, y_score, target_fpr: float) -> TprAtFpr:
    """Largest TPR among ROC points whose FPR is at most ``target_fpr`` (see module docstring)."""
    if not 0.0 < target_fpr < 1.0:
        raise ValueError(f"target_fpr must be in (0, 1), got {target_fpr}")
    y_true, y_score = _check(y_true, y_score)
    fpr, tpr, thresholds = roc_curve(y_true, y_score, drop_intermediate=False)
    allowed = fpr <= target_fpr + 1e-12
    best = int(np.flatnonzero(allowed)[np.argmax(tpr[allowed])])
    n_negatives = int(np.sum(y_true == 0))
    return TprAtFpr(target_fpr=float(target_fpr), tpr=float(tpr[best]),
                    fpr_reached=float(fpr[best]), threshold=float(thresholds[best]),
                    n_negatives=n_negatives, reliable=n_negatives >= 10.0 / target_fpr)


def summary(y_true, y_score, target_fprs=TARGET_FPRS) -> dict:
    """AUC and TPR@FPR for each target, as a JSON-ready dict."""
    y_true, y_score = _check(y_true, y_score)
    return {
        "auc": auc(y_true, y_score),
        "n": int(len(y_true)),
        "n_positives": int(np.sum(y_true == 1)),
        "n_negatives": int(np.sum(y_true == 0)),
        "tpr_at_fpr": {f"{t:g}": tpr_at_fpr(y_true, y_score, t).as_dict() for t in target_fprs},
    }


def unreliable_warnings(metrics: dict) -> list[str]:
    """Human-readable warnings for every TPR@FPR that has too few negatives to be trusted."""
    warnings = []
    for key, item in metrics["tpr_at_fpr"].items():
        if not item["reliable"]:
            warnings.append(
                f"TPR@FPR={key} rests on {item['n_negatives']} negatives (fewer than "
                f"{10 / item['target_fpr']:.0f}); the FPR actually reached is "
                f"{item['fpr_reached']:.4g}, so this number is not reliable")
    return warnings


def delong_auc_variance(y_true, y_score) -> tuple[float, float]:
    """ROC AUC and its DeLong variance, computed from midranks in O(n log n).

    DeLong's structural components are V10_i = mean_j psi(x_i, y_j) for each positive score x_i
    and V01_j = mean_i psi(x_i, y_j) for each negative score y_j, with psi = 1 if x > y, 1/2 on a
    tie, 0 otherwise; AUC = mean(V10) and Var(AUC) = S10 / m + S01 / n, where S10 and S01 are the
    sample variances (ddof=1) of the components over the m positives and n negatives. The
    components are read off midranks: V10_i = (rank of x_i among all - rank among positives) / n.

    References: E. R. DeLong, D. M. DeLong, D. L. Clarke-Pearson, "Comparing the areas under two
    or more correlated receiver operating characteristic curves: a nonparametric approach",
    Biometrics, 1988; X. Sun, W. Xu, "Fast implementation of DeLong's algorithm for comparing the
    areas under correlated receiver operating characteristic curves", IEEE Signal Processing
    Letters, 2014.
    """
    v10, v01 = delong_components(y_true, y_score)
    return float(np.mean(v10)), _components_variance(v10, v01)


def delong_difference(y_true, score_a, score_b) -> tuple[float, float]:
    """AUC(a) - AUC(b) of two scores of the same rows, and the DeLong variance of the difference.

    The difference of the structural components of the two scores, row by row, gives the
    variance of the paired difference (DeLong et al. 1988, as in :func:`delong_auc_variance`).
    """
    a10, a01 = delong_components(y_true, score_a)
    b10, b01 = delong_components(y_true, score_b)
    return float(np.mean(a10) - np.mean(b10)), _components_variance(a10 - b10, a01 - b01)


def delong_components(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components V10 (per positive) and V01 (per negative), from midranks."""
    y_true, y_score = _check(y_true, y_score)
    positives, negatives = y_score[y_true == 1], y_score[y_true == 0]
    m, n = len(positives), len(negatives)
    if m < 2 or n < 2:
        raise ValueError("the DeLong variance needs at least 2 positives and 2 negatives")
    combined_ranks = rankdata(np.concatenate([positives, negatives]))
    v10 = (combined_ranks[:m] - rankdata(positives)) / n
    v01 = 1.0 - (combined_ranks[m:] - rankdata(negatives)) / m
    return v10, v01


def _components_variance(v10: np.ndarray, v01: np.ndarray) -> float:
    return float(np.var(v10, ddof=1) / len(v10) + np.var(v01, ddof=1) / len(v01))


def auc_ci(y_true, y_score, confidence: float = 0.95) -> dict:
    """AUC with its DeLong standard error and normal (Wald) interval, clipped to [0, 1]."""
    value, variance = delong_auc_variance(y_true, y_score)
    std = float(np.sqrt(variance))
    z = float(norm.ppf(0.5 + confidence / 2))
    return {"auc": value, "std": std, "ci_low": max(0.0, value - z * std),
            "ci_high": min(1.0, value + z * std), "confidence": confidence,
            "method": "DeLong (Sun & Xu fast midrank algorithm)"}


def _tpr_at_fpr_fast(positives: np.ndarray, negatives: np.ndarray, target_fpr: float) -> float:
    """TPR@FPR by the module's convention, without building the ROC curve.

    The allowed thresholds are those above the (k+1)-th largest negative score, k being the most
    negatives the FPR budget admits; the lowest of them keeps every positive scored above it.
    """
    k = int(np.floor((target_fpr + 1e-12) * len(negatives)))
    if k >= len(negatives):
        return 1.0
    cutoff = np.partition(negatives, len(negatives) - 1 - k)[len(negatives) - 1 - k]
    return float(np.mean(positives > cutoff))


def tpr_at_fpr_bootstrap_ci(y_true, y_score, target_fprs=TARGET_FPRS, *,
                            n_bootstrap: int = 1000, confidence: float = 0.95,
                            seed: int = 0) -> dict[str, tuple[float, float]]:
    """Stratified percentile-bootstrap interval of TPR@FPR for each target.

    Positives and negatives are resampled separately (with replacement, keeping both class sizes),
    so every replicate has the class balance and the FPR resolution of the original sample. The
    generator is seeded, so the interval is reproducible. Returns ``{f"{target:g}": (low, high)}``.

    Reference: B. Efron, R. Tibshirani, "An Introduction to the Bootstrap", Chapman & Hall, 1993
    (percentile interval, stratified resampling).
    """
    y_true, y_score = _check(y_true, y_score)
    positives, negatives = y_score[y_true == 1], y_score[y_true == 0]
    rng = np.random.default_rng(seed)
    replicates = np.empty((n_bootstrap, len(target_fprs)))
    for b in range(n_bootstrap):
        pos_b = positives[rng.integers(0, len(positives), len(positives))]
        neg_b = negatives[rng.integers(0, len(negatives), len(negatives))]
        replicates[b] = [_tpr_at_fpr_fast(pos_b, neg_b, t) for t in target_fprs]
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha], axis=0)
    return {f"{t:g}": (float(lo), float(hi)) for t, lo, hi in zip(target_fprs, low, high)}


def eer(y_true, y_score) -> float:
    """Equal error rate: the FPR at which FPR equals the miss rate 1 - TPR on the ROC curve.

    Along the ROC curve (every distinct score a threshold) FNR - FPR never increases; the EER is
    where it crosses zero, interpolated linearly between the two ROC points around the crossing.
    """
    y_true, y_score = _check(y_true, y_score)
    fpr, tpr, _ = roc_curve(y_true, y_score, drop_intermediate=False)
    gap = (1.0 - tpr) - fpr
    i = int(np.argmax(gap <= 0))
    if gap[i] == 0:
        return float(fpr[i])
    weight = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(fpr[i - 1] + weight * (fpr[i] - fpr[i - 1]))


def full_summary(y_true, y_score, seed: int = 0, *, target_fprs=TARGET_FPRS,
                 n_bootstrap: int = 1000, confidence: float = 0.95) -> dict:
    """Everything reported for one score vector, as a JSON-ready dict.

    A superset of :func:`summary` (so :func:`unreliable_warnings` applies): adds ``auc_ci``
    (DeLong), a stratified bootstrap interval (``ci_low``/``ci_high``) in each TPR@FPR entry,
    and ``eer``.
    """
    result = summary(y_true, y_score, target_fprs)
    result["auc_ci"] = auc_ci(y_true, y_score, confidence)
    intervals = tpr_at_fpr_bootstrap_ci(y_true, y_score, target_fprs, n_bootstrap=n_bootstrap,
                                        confidence=confidence, seed=seed)
    for key, (low, high) in intervals.items():
        result["tpr_at_fpr"][key].update(ci_low=low, ci_high=high)
    result["bootstrap"] = {"n_bootstrap": n_bootstrap, "seed": seed, "confidence": confidence,
                           "method": "stratified percentile bootstrap"}
    result["eer"] = eer(y_true, y_score)
    return result
