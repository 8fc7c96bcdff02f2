import numpy as np
import pytest

from models import metrics


def test_auc_counts_ties_as_half():
    # Pairs (pos, neg): scores pos [0.8, 0.4], neg [0.4, 0.1]
    # pairs: (0.8>0.4)=1, (0.8>0.1)=1, (0.4=0.4)=0.5, (0.4>0.1)=1 -> 3.5/4
    y = [1, 1, 0, 0]
    s = [0.8, 0.4, 0.4, 0.1]
    assert metrics.auc(y, s) == pytest.approx(3.5 / 4)


def test_auc_perfect_and_inverted():
    assert metrics.auc([0, 0, 1], [0.1, 0.2, 0.9]) == 1.0
    assert metrics.auc([0, 0, 1], [0.9, 0.8, 0.1]) == 0.0


def test_tpr_at_fpr_hand_computed():
    # 10 negatives, 4 positives. Negatives 0.0..0.9; positives 0.95, 0.85, 0.55, 0.05.
    neg = np.arange(10) / 10
    pos = np.array([0.95, 0.85, 0.55, 0.05])
    y = np.r_[np.zeros(10), np.ones(4)].astype(int)
    s = np.r_[neg, pos]
    # FPR <= 0.1 allows threshold 0.85 (one negative, 0.9, above): TPR 2/4.
    r = metrics.tpr_at_fpr(y, s, 0.1)
    assert r.tpr == pytest.approx(0.5)
    assert r.fpr_reached == pytest.approx(0.1)
    assert r.n_negatives == 10 and not r.reliable
    # FPR <= 0.05 allows only thresholds above every negative: TPR 1/4 at FPR 0.
    r = metrics.tpr_at_fpr(y, s, 0.05)
    assert r.tpr == pytest.approx(0.25) and r.fpr_reached == 0.0


def test_tpr_at_fpr_tie_between_classes_is_one_point():
    # A positive tied with the top negative cannot be counted without that negative.
    y = np.array([0] * 4 + [1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.9, 0.9, 0.5])
    r = metrics.tpr_at_fpr(y, s, 0.2)
    # Thresholds: >0.9 gives (0,0); =0.9 gives FPR .25 > .2 -> only TPR 0 allowed.
    assert r.tpr == 0.0 and r.fpr_reached == 0.0


def test_reliability_needs_ten_over_fpr_negatives():
    y = np.r_[np.zeros(1000), np.ones(10)].astype(int)
    s = np.r_[np.linspace(0, 0.5, 1000), np.linspace(0.6, 1, 10)]
    summary = metrics.summary(y, s)
    assert summary["tpr_at_fpr"]["0.01"]["reliable"] is True
    assert summary["tpr_at_fpr"]["0.001"]["reliable"] is False
    warnings = metrics.unreliable_warnings(summary)
    assert len(warnings) == 1 and "1000 negatives" in warnings[0]


@pytest.mark.parametrize("y, s, message", [
    ([0, 0], [0.1, 0.2], "both classes"),
    ([0, 2], [0.1, 0.2], "only 0"),
    ([0, 1], [0.1, np.nan], "NaN"),
    ([0, 1, 1], [0.1, 0.2], "equal length"),
])
def test_bad_inputs_are_clear_errors(y, s, message):
    with pytest.raises(ValueError, match=message):
        metrics.auc(y, s)
