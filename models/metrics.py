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
