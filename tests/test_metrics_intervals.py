"""Confidence intervals and EER of models.metrics, against hand-computed and brute-force values."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.metrics import (_tpr_at_fpr_fast, auc, auc_ci, delong_auc_variance,
                            delong_difference, eer, full_summary, tpr_at_fpr, tpr_at_fpr_bootstrap_ci,
                            unreliable_warnings)


def brute_force_delong(positives, negatives):
    """DeLong's variance straight from its definition, with an explicit psi kernel."""
    def psi(x, y):
        return 1.0 if x > y else 0.5 if x == y else 0.0
    v10 = [np.mean([psi(x, y) for y in negatives]) for x in positives]
    v01 = [np.mean([psi(x, y) for x in positives]) for y in negatives]
    m, n = len(positives), len(negatives)
    return np.mean(v10), np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n


def test_delong_variance_of_a_hand_computed_case_with_a_tie():
    # positives 0.9, 0.6, 0.4; negatives 0.6, 0.3, 0.1 (0.6 is tied across classes).
    # V10 (per positive, mean psi against the negatives): 1, (0.5+1+1)/3 = 5/6, 2/3 -> mean 5/6,
    #   S10 = ((1/6)^2 + 0 + (1/6)^2) / 2 = 1/36.
    # V01 (per negative, mean psi of the positives): (1+0.5+0)/3 = 1/2, 1, 1 -> mean 5/6,
    #   S01 = ((1/3)^2 + (1/6)^2 + (1/6)^2) / 2 = 1/12.
    # Var = S10/3 + S01/3 = 1/108 + 1/36 = 1/27.
    y = [1, 1, 1, 0, 0, 0]
    score = [0.9, 0.6, 0.4, 0.6, 0.3, 0.1]
    value, variance = delong_auc_variance(y, score)
    assert value == pytest.approx(5 / 6)
    assert variance == pytest.approx(1 / 27)


def test_delong_variance_matches_the_definition_on_random_tied_scores():
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(40, int), np.zeros(55, int)]
    score = rng.integers(0, 12, size=95) + 3 * y  # many ties within and across classes
    expected_auc, expected_variance = brute_force_delong(score[y == 1], score[y == 0])
    value, variance = delong_auc_variance(y, score)
    assert value == pytest.approx(expected_auc)
    assert value == pytest.approx(auc(y, score))
    assert variance == pytest.approx(expected_variance)


def test_delong_difference_matches_the_definition_on_paired_scores():
    def psi(x, y):
        return 1.0 if x > y else 0.5 if x == y else 0.0

    def components(score):
        positives, negatives = score[y == 1], score[y == 0]
        return (np.array([np.mean([psi(x, v) for v in negatives]) for x in positives]),
                np.array([np.mean([psi(x, v) for x in positives]) for v in negatives]))
    rng = np.random.default_rng(5)
    y = np.r_[np.ones(30, int), np.zeros(35, int)]
    score_a = rng.integers(0, 10, size=65) + 3 * y
    score_b = score_a + rng.integers(-3, 4, size=65)  # correlated with a, as two stacks are
    (a10, a01), (b10, b01) = components(score_a), components(score_b)
    expected_variance = np.var(a10 - b10, ddof=1) / 30 + np.var(a01 - b01, ddof=1) / 35
    difference, variance = delong_difference(y, score_a, score_b)
    assert difference == pytest.approx(auc(y, score_a) - auc(y, score_b))
    assert variance == pytest.approx(expected_variance)
    # Correlated scores: the paired variance is below the sum of the two separate variances.
    assert variance < delong_auc_variance(y, score_a)[1] + delong_auc_variance(y, score_b)[1]
    assert delong_difference(y, score_a, score_a) == (0.0, 0.0)


def test_auc_ci_is_a_normal_interval_around_the_auc():
    y = [1, 1, 1, 0, 0, 0]
    score = [0.9, 0.6, 0.4, 0.6, 0.3, 0.1]
    interval = auc_ci(y, score, confidence=0.95)
    half_width = 1.959963984540054 * np.sqrt(1 / 27)
    assert interval["std"] == pytest.approx(np.sqrt(1 / 27))
    assert interval["ci_low"] == pytest.approx(5 / 6 - half_width)
    assert interval["ci_high"] == 1.0  # 5/6 + 0.377 is clipped to the largest possible AUC


def test_delong_needs_two_of_each_class():
    with pytest.raises(ValueError, match="at least 2"):
        delong_auc_variance([1, 0, 0], [0.9, 0.1, 0.2])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=25),
       st.lists(st.integers(0, 6), min_size=1, max_size=40),
       st.sampled_from([1e-3, 0.05, 0.1, 0.25, 0.5]))
def test_fast_tpr_at_fpr_follows_the_roc_convention(positives, negatives, target):
    y = np.r_[np.ones(len(positives), int), np.zeros(len(negatives), int)]
    score = np.r_[positives, negatives].astype(float)
    expected = tpr_at_fpr(y, score, target).tpr
    assert _tpr_at_fpr_fast(np.array(positives, float), np.array(negatives, float),
                            target) == pytest.approx(expected)


def separable_with_noise(seed=0, n_pos=300, n_neg=2000):
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    return y, rng.normal(size=n_pos + n_neg) + 2.5 * y


def test_bootstrap_interval_contains_the_point_estimate():
    y, score = separable_with_noise()
    intervals = tpr_at_fpr_bootstrap_ci(y, score, (1e-2, 0.1), n_bootstrap=300, seed=1)
    for target, (low, high) in zip((1e-2, 0.1), intervals.values()):
        point = tpr_at_fpr(y, score, target).tpr
        assert low <= point <= high
        assert low < high


def test_bootstrap_interval_is_determined_by_the_seed():
    y, score = separable_with_noise()
    first = tpr_at_fpr_bootstrap_ci(y, score, n_bootstrap=200, seed=7)
    again = tpr_at_fpr_bootstrap_ci(y, score, n_bootstrap=200, seed=7)
    other = tpr_at_fpr_bootstrap_ci(y, score, n_bootstrap=200, seed=8)
    assert first == again
    assert first != other


def test_eer_of_known_curves():
    # Perfect separation: no error at all.
    assert eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.0
    # One score for everybody: the ROC is the diagonal from (0,0) to (1,1), crossing at 1/2.
    assert eer([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)
    # Threshold 0.6 accepts 3 of 4 positives (0.6, 0.7, 0.9) and 1 of 4 negatives (0.8):
    # FPR = FNR = 1/4 exactly at a ROC point.
    y = [1, 1, 1, 1, 0, 0, 0, 0]
    assert eer(y, [0.2, 0.6, 0.7, 0.9, 0.1, 0.3, 0.4, 0.8]) == pytest.approx(0.25)


def test_eer_interpolates_between_roc_points():
    # ROC points: (0,0), (0,1/2) at 0.9, (1/2,1) at the tied 0.5, (1,1). FNR - FPR goes from
    # 1/2 to -1/2 on the segment (0,1/2)-(1/2,1), so it crosses halfway: FPR = FNR = 1/4.
    assert eer([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1]) == pytest.approx(0.25)


def test_full_summary_is_json_ready_and_consistent():
    y, score = separable_with_noise(n_pos=200, n_neg=600)
    result = full_summary(y, score, seed=0, n_bootstrap=100)
    json.dumps(result, allow_nan=False)
    assert result["auc"] == pytest.approx(auc(y, score))
    assert result["auc_ci"]["ci_low"] < result["auc"] < result["auc_ci"]["ci_high"]
    assert result["n_negatives"] == 600
    entry = result["tpr_at_fpr"]["0.01"]
    assert entry["ci_low"] <= entry["tpr"] <= entry["ci_high"]
    assert entry["fpr_reached"] <= 0.01
    assert result["eer"] == pytest.approx(eer(y, score))
    assert len(unreliable_warnings(result)) == 2  # 600 negatives are too few for both targets
