"""Base learners: imbalance weights, early stopping then refit, median imputation, inner splits."""
import math

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from models.learners import (BOOSTERS, fit_learner, inner_validation_split, make_estimator,
                             tunable_params)

SMALL = {"lightgbm": {"n_estimators": 400, "learning_rate": 0.3, "num_leaves": 7},
         "xgboost": {"n_estimators": 400, "learning_rate": 0.3, "max_depth": 3},
         "histgb": {"max_iter": 400, "learning_rate": 0.3, "max_leaf_nodes": 7}}


def imbalanced_data(n_negatives=240, n_positives=80, n_features=6, seed=0, signal=1.5):
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n_negatives, int), np.ones(n_positives, int)]
    X = rng.normal(size=(len(y), n_features)).astype(np.float32)
    X[:, 0] += signal * y
    return X, y


def trees_in(fitted) -> int:
    """Number of boosting rounds actually stored in the refitted model."""
    estimator = fitted.estimator
    if fitted.name == "lightgbm":
        return estimator.booster_.num_trees()
    if fitted.name == "xgboost":
        return estimator.get_booster().num_boosted_rounds()
    return len(estimator._predictors)


def test_unknown_learner_and_reserved_parameter_are_rejected():
    with pytest.raises(ValueError, match="unknown learner 'catboost'"):
        make_estimator("catboost", {}, positive_weight=1.0)
    with pytest.raises(ValueError, match="random_state"):
        make_estimator("lightgbm", {"random_state": 3}, positive_weight=1.0)
    assert "learning_rate" in tunable_params("xgboost")
    assert "max_bin" in tunable_params("lightgbm")
    assert "n_jobs" not in tunable_params("lightgbm")


def test_class_imbalance_is_reweighted():
    X, y = imbalanced_data(n_negatives=240, n_positives=80)  # 3 negatives per positive
    lightgbm_model = fit_learner("lightgbm", SMALL["lightgbm"], X, y).estimator
    xgboost_model = fit_learner("xgboost", SMALL["xgboost"], X, y).estimator
    assert lightgbm_model.get_params()["scale_pos_weight"] == pytest.approx(3.0)
    assert xgboost_model.get_params()["scale_pos_weight"] == pytest.approx(3.0)
    assert fit_learner("histgb", SMALL["histgb"], X, y).estimator.class_weight == "balanced"
    logistic = fit_learner("logistic", {"C": 1.0}, X, y).estimator
    assert logistic.named_steps["logistic"].class_weight == "balanced"


def test_histgb_bins_ignore_the_class_weights_but_the_gradients_do_not():
    X, y = imbalanced_data(n_negatives=300, n_positives=30, signal=0.0)  # 10 to 1, no signal
    X[:30, 1] = np.linspace(100, 130, 30)  # the negatives' outliers: weighted edges would move
    params = {"max_iter": 3, "learning_rate": 0.1, "max_leaf_nodes": 7, "max_bins": 15}
    weighted = make_estimator("histgb", params, positive_weight=10.0).fit(X, y)
    plain = HistGradientBoostingClassifier(**params, early_stopping=False).fit(X, y)
    for edges, expected in zip(weighted._bin_mapper.bin_thresholds_,
                               plain._bin_mapper.bin_thresholds_):
        np.testing.assert_array_equal(edges, expected)
    # Balanced weights: the mean predicted probability sits near 1/2, not at the 1/11 base rate.
    assert weighted.predict_proba(X)[:, 1].mean() > 0.4
    assert plain.predict_proba(X)[:, 1].mean() < 0.15


@pytest.mark.parametrize("name", BOOSTERS)
def test_early_stopping_stops_on_noise_and_the_refit_scales_the_rounds_found(name):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    noise_labels = rng.integers(0, 2, 300)
    stopped = fit_learner(name, SMALL[name], X, noise_labels, refit=False)
    fitted = fit_learner(name, SMALL[name], X, noise_labels)
    # Labels unrelated to X: validation loss stops improving long before the 400-round cap.
    assert 1 <= stopped.n_rounds < 100
    # The refit sees 300 rows instead of the inner 240 (a 20% validation split): 5/4 the rounds.
    assert fitted.n_rounds == math.ceil(stopped.n_rounds * 300 / 240)
    assert trees_in(fitted) == fitted.n_rounds


@pytest.mark.parametrize("name", BOOSTERS)
def test_signal_needs_more_rounds_than_noise(name):
    X, y = imbalanced_data(n_negatives=300, n_positives=300, signal=0.0)
    y = (X[:, 0] + X[:, 1] ** 2 - 1 > 0).astype(int)  # deterministic, learnable labels
    rng = np.random.default_rng(1)
    noise = fit_learner(name, SMALL[name], X, rng.integers(0, 2, len(y)))
    signal = fit_learner(name, SMALL[name], X, y)
    assert signal.n_rounds > noise.n_rounds


@pytest.mark.parametrize("name", BOOSTERS)
def test_a_given_rate_grows_that_many_rounds_per_row_without_early_stopping(name):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 5)).astype(np.float32)
    noise_labels = rng.integers(0, 2, 150)
    fitted = fit_learner(name, SMALL[name], X, noise_labels, rounds_per_row=1.37)
    # 1.37 rounds per row x 150 rows = 205.5, rounded up; early stopping on these noise labels
    # stops before 100 rounds (test above).
    assert fitted.n_rounds == trees_in(fitted) == 206
    assert fitted.n_rows == 150


def test_without_refit_the_early_stopped_model_is_returned():
    X, y = imbalanced_data(n_negatives=200, n_positives=200)
    stopped = fit_learner("lightgbm", SMALL["lightgbm"], X, y, refit=False)
    # LightGBM stopped `patience` rounds after the best one and kept the rounds up to the best.
    assert stopped.estimator.best_iteration_ == stopped.n_rounds < 400
    assert stopped.estimator.booster_.num_trees() == stopped.n_rounds
    assert stopped.n_rows == 320  # grown on the inner 80% of the 400 rows


def test_logistic_imputes_missing_values_with_the_training_median():
    X, y = imbalanced_data()
    X = X.astype(np.float64)
    X[::4, 2] = np.nan
    fitted = fit_learner("logistic", {"C": 1.0}, X, y)
    median = np.median(X[~np.isnan(X[:, 2]), 2])
    assert fitted.estimator.named_steps["impute"].statistics_[2] == pytest.approx(median)
    row = X[:1].copy()  # row 0 has a missing third feature
    filled = row.copy()
    filled[0, 2] = median
    assert fitted.predict_positive(row) == pytest.approx(fitted.predict_positive(filled))


def test_logistic_keeps_an_all_missing_column():
    X, y = imbalanced_data()
    X[:, 3] = np.nan
    fitted = fit_learner("logistic", {"C": 1.0}, X, y)
    assert fitted.estimator.named_steps["logistic"].coef_.shape == (1, X.shape[1])
    assert np.all(np.isfinite(fitted.predict_positive(X)))


def test_inner_split_is_stratified_and_group_disjoint():
    y = np.r_[np.zeros(60, int), np.ones(40, int)]
    groups = np.arange(100) // 4  # 25 groups of 4 rows, each group of one class
    train, valid = inner_validation_split(y, groups, 0.2, random_state=0)
    assert not set(groups[train]) & set(groups[valid])
    assert set(y[valid]) == {0, 1}
    train, valid = inner_validation_split(y, None, 0.2, random_state=0)
    assert len(valid) == 20 and np.sum(y[valid]) == 8  # 40 % positives, as in the whole
