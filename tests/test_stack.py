"""The stack: scikit-learn conventions, honest OOF predictions, gain from complementary learners."""
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from models.metrics import auc
from models.stack import GradientBoostedStack, MetaLearner, nested_oof, rank_knots

SPACES = {
    "lightgbm": {"n_estimators": 300, "learning_rate": 0.1,
                 "num_leaves": {"type": "int", "low": 4, "high": 16}},
    "logistic": {"C": {"type": "float", "low": 0.01, "high": 10.0, "log": True}},
}


def complementary_problem(n=1000, seed=0):
    """Ten small additive effects (easy for a linear model, costly for trees) plus an XOR of two
    features (invisible to a linear model, easy for trees)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 12)).astype(np.float32)
    linear = 0.6 * X[:, :10].sum(axis=1)
    interaction = 1.5 * np.sign(X[:, 10] * X[:, 11])
    y = (linear + interaction + 0.5 * rng.normal(size=n) > 0).astype(int)
    return X, y, linear


def test_init_only_stores_parameters_and_clones():
    stack = GradientBoostedStack(learners=("logistic",), n_trials=3, meta="rank_mean")
    assert stack.get_params()["n_trials"] == 3
    assert stack.get_params()["meta"] == "rank_mean"
    assert clone(stack).get_params() == stack.get_params()
    assert not hasattr(stack, "meta_")
    with pytest.raises(NotFittedError):
        stack.predict_proba(np.zeros((2, 3)))


def test_invalid_settings_are_rejected():
    X, y, _ = complementary_problem(n=60)
    with pytest.raises(ValueError, match="meta-learner"):
        GradientBoostedStack(meta="median", search_spaces=SPACES).fit(X, y)
    with pytest.raises(ValueError, match="unknown learner"):
        GradientBoostedStack(learners=("svm",), search_spaces=SPACES).fit(X, y)


def test_oof_predictions_never_come_from_a_model_that_saw_the_row():
    # Labels are pure noise and a weakly regularised logistic regression on 300 features can
    # memorise 400 rows: in-sample AUC is high, but a truly out-of-fold AUC stays near 1/2
    # (its standard error is about 0.03 here).
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 300)).astype(np.float32)
    y = rng.integers(0, 2, 400)
    stack = GradientBoostedStack(learners=("logistic",), search_spaces={"logistic": {"C": 100.0}},
                                 n_jobs=1).fit(X, y)
    assert auc(y, stack.learners_["logistic"].predict_positive(X)) > 0.99
    assert abs(auc(y, stack.oof_predictions_["logistic"]) - 0.5) < 0.1
    assert abs(auc(y, stack.oof_predictions_["stack"]) - 0.5) < 0.1


def test_nested_stack_beats_the_linear_learner_on_complementary_signals():
    X, y, linear = complementary_problem()
    result = nested_oof(X, y, outer_cv=3, learners=("lightgbm", "logistic"),
                        search_spaces=SPACES, n_trials=2, n_jobs=1)
    predictions = result.predictions
    assert sorted(predictions["fold"].unique()) == [0, 1, 2]
    assert not predictions[["lightgbm", "logistic", "stack"]].isna().any().any()
    scores = {name: auc(y, predictions[name]) for name in ("lightgbm", "logistic", "stack")}
    # Hand check of the weak learner: a linear model cannot use the XOR term, so it can do no
    # better than the true linear part of the signal.
    assert scores["logistic"] <= auc(y, linear) + 0.01
    assert scores["stack"] >= scores["logistic"] + 0.02
    assert scores["stack"] >= scores["lightgbm"] - 0.01
    assert [fold["n_train"] + fold["n_test"] for fold in result.folds] == [1000] * 3


def test_nested_oof_follows_given_outer_folds():
    X, y, _ = complementary_problem(n=90)
    rows = np.arange(90)
    folds = [(rows[rows % 3 != k], rows[(rows % 3 == k) & (rows < 80)]) for k in range(3)]
    result = nested_oof(X, y, outer_folds=folds, learners=("logistic",),
                        search_spaces={"logistic": {"C": 1.0}}, n_jobs=1)
    assert np.array_equal(result.predictions["fold"][:80], rows[:80] % 3)
    assert (result.predictions["fold"][80:] == -1).all()
    assert result.predictions["stack"][80:].isna().all()
    assert result.predictions["stack"][:80].notna().all()


def test_boosters_are_refitted_with_the_rounds_per_row_their_tuning_found():
    X, y, _ = complementary_problem(n=300)
    stack = GradientBoostedStack(learners=("lightgbm", "logistic"), search_spaces=SPACES,
                                 n_trials=2, n_jobs=1).fit(X, y)
    rate = stack.tuning_["lightgbm"]["rounds_per_row"]
    refitted = stack.learners_["lightgbm"]
    # At most the 300-round cap over the 160 rows a tuning fold grows on (200, less 20 % held out).
    assert 0 < rate <= 300 / 160
    assert refitted.n_rounds == math.ceil(rate * 300)
    assert refitted.estimator.booster_.num_trees() == refitted.n_rounds
    assert stack.learners_["logistic"].n_rounds is None


def test_results_do_not_depend_on_the_number_of_workers():
    X, y, _ = complementary_problem(n=200)
    settings = dict(learners=("lightgbm", "logistic"), search_spaces=SPACES, n_trials=2)
    serial = GradientBoostedStack(**settings, n_jobs=1).fit(X, y)
    parallel = GradientBoostedStack(**settings, n_jobs=2).fit(X, y)
    assert np.array_equal(serial.predict_proba(X), parallel.predict_proba(X))


def test_nested_fits_run_side_by_side_with_the_results_of_one_at_a_time():
    X, y, _ = complementary_problem(n=200)
    settings = dict(outer_cv=3, learners=("lightgbm", "logistic"), search_spaces=SPACES,
                    n_trials=2, with_final=True)
    finished = []
    serial = nested_oof(X, y, n_jobs=1, **settings)
    parallel = nested_oof(X, y, n_jobs=2, on_fit=finished.append, **settings)
    pd.testing.assert_frame_equal(serial.predictions, parallel.predictions)
    assert sorted(map(str, finished)) == ["0", "1", "2", "final"]
    # The final stack is the one a fit on all rows gives, under the final studies' names.
    alone = GradientBoostedStack(learners=("lightgbm", "logistic"), search_spaces=SPACES,
                                 n_trials=2, n_jobs=1, study_prefix="final-").fit(X, y)
    assert np.array_equal(parallel.final.predict_proba(X), alone.predict_proba(X))
    assert set(parallel.final.tuning_) == {"lightgbm", "logistic"}
    assert parallel.final.tuning_["lightgbm"]["study_name"] == "final-lightgbm"


def test_rank_knots_of_a_hand_made_sample():
    # Sorted sample 0.2, 0.2, 0.5, 0.9: mid-rank fractions 1/4 (the tied pair), 5/8, 7/8.
    values, ranks = rank_knots(np.array([0.5, 0.2, 0.9, 0.2]))
    assert values == [0.0, 0.2, 0.5, 0.9, 1.0]
    assert ranks == pytest.approx([0.0, 0.25, 0.625, 0.875, 1.0])


def test_rank_mean_averages_interpolated_ranks():
    meta = MetaLearner("rank_mean", knots=[[[0.0, 0.5, 1.0], [0.0, 0.5, 1.0]],
                                           [[0.0, 0.2, 1.0], [0.0, 0.8, 1.0]]])
    # Learner 1 at 0.25 -> rank 0.25; learner 2 at 0.1 -> rank 0.4 (halfway to 0.8).
    assert meta.predict(np.array([[0.25, 0.1]])) == pytest.approx([0.325])


def test_logistic_meta_combines_logits():
    meta = MetaLearner("logistic", coef=[1.0, 2.0], intercept=-1.0)
    # logit(0.5) = 0 and logit(0.75) = ln 3: 1*0 + 2*ln 3 - 1 -> probability 9 / (9 + e).
    assert meta.predict(np.array([[0.5, 0.75]])) == pytest.approx([9 / (9 + np.e)])


def test_best_meta_passes_on_the_learner_with_the_highest_auc():
    from models.stack import fit_meta
    y = np.array([0, 0, 1, 1])
    # Column 0 orders the rows perfectly (AUC 1), column 1 half wrong (AUC 0.5).
    oof = np.array([[0.1, 0.9], [0.2, 0.2], [0.8, 0.1], [0.9, 0.8]])
    meta = fit_meta("best", oof, y)
    assert meta.coef == [1.0, 0.0]
    np.testing.assert_array_equal(meta.predict(np.array([[0.3, 0.6], [0.7, 0.4]])), [0.3, 0.7])


def test_rank_mean_leaves_out_learners_that_only_dilute_the_average():
    from models.stack import fit_meta
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 900)
    # A strong learner and two pure-noise ones: averaging with noise only blurs the strong one.
    oof = 1 / (1 + np.exp(-np.column_stack([y + 0.6 * rng.normal(size=900),
                                             rng.normal(size=900), rng.normal(size=900)])))
    meta = fit_meta("rank_mean", oof, y)
    assert meta.coef == [1.0, 0.0, 0.0]
    # The stack then orders rows exactly as the strong learner does.
    probe = np.column_stack([np.linspace(0.05, 0.95, 50), rng.random(50), rng.random(50)])
    assert np.all(np.diff(meta.predict(probe)) >= 0)


def test_rank_mean_keeps_a_weaker_learner_whose_errors_are_its_own():
    from models.stack import rank_average_members
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 900)
    # Independent errors of similar size: the average's noise (0.8^2 + 1^2) / 4 is below 0.8^2,
    # so the weaker learner lifts it.
    strong = y + 0.8 * rng.normal(size=900)
    oof = 1 / (1 + np.exp(-np.column_stack([strong, y + 1.0 * rng.normal(size=900)])))
    assert rank_average_members(oof, y).tolist() == [1.0, 1.0]
    assert auc(y, oof.mean(axis=1)) > auc(y, oof[:, 0])


def test_max_features_keeps_the_informative_columns_and_reads_whole_rows():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 40)).astype(np.float32)
    X[:, 30:] = 1.0  # constant columns: never selected
    y = (X[:, 3] + X[:, 17] - X[:, 25] + 0.3 * rng.normal(size=400) > 0).astype(int)
    stack = GradientBoostedStack(learners=("logistic",), search_spaces=SPACES, n_trials=2,
                                 n_jobs=1, max_features=5).fit(X, y)
    assert len(stack.support_) == 5 and {3, 17, 25} <= set(stack.support_.tolist())
    assert stack.support_.max() < 30
    # Whole rows in; only the selected columns matter.
    shuffled = X.copy()
    unused = np.setdiff1d(np.arange(40), stack.support_)
    shuffled[:, unused] = rng.normal(size=(400, unused.size))
    np.testing.assert_array_equal(stack.predict_proba(shuffled), stack.predict_proba(X))
    assert auc(y, stack.oof_predictions_["stack"]) > 0.9


def test_no_lightgbm_model_of_the_stack_uses_more_threads_than_it_was_given(monkeypatch):
    """Every LightGBM the stack trains, the feature screening's included, keeps to its threads:
    the screening used to take the plain model's two, and two workers each running it on two
    threads of a two-core machine took four times as long (benchmarks/bench_fit_memory.py)."""
    import lightgbm
    threads = []
    train = lightgbm.train

    def recording_train(params, *args, **kwargs):
        threads.append(params.get("n_jobs", params.get("num_threads")))
        return train(params, *args, **kwargs)

    monkeypatch.setattr(lightgbm, "train", recording_train)
    X, y, _ = complementary_problem(n=300)
    GradientBoostedStack(learners=("lightgbm", "logistic"), search_spaces=SPACES, n_trials=1,
                         n_jobs=1, model_threads=1, max_features=6).fit(X, y)
    assert len(threads) >= 4  # the screenings: on all rows, then in each of the 3 OOF folds
    assert set(threads) == {1}


def test_an_entirely_missing_column_is_never_given_to_the_learners():
    # scikit-learn's HistGradientBoosting fails on a column with no value at all.
    X, y, _ = complementary_problem(n=200)
    X[:, 4] = np.nan
    stack = GradientBoostedStack(learners=("histgb", "logistic"), n_trials=1, n_jobs=1,
                                 search_spaces={"histgb": {"max_iter": 30},
                                                "logistic": {"C": 1.0}}).fit(X, y)
    assert 4 not in stack.support_ and len(stack.support_) == 11
    assert np.isfinite(stack.predict_proba(X)).all()


def test_rows_streamed_from_a_table_give_the_stack_of_the_matrix(tmp_path):
    from test_table_rows import write_table

    from pipelines.table_rows import TableRows

    X, y, _ = complementary_problem(n=150)
    X[::5, 2] = np.nan
    rows = TableRows(tmp_path / "t.parquet", write_table(tmp_path / "t.parquet", X, y))
    settings = dict(outer_cv=3, learners=("lightgbm", "logistic"), search_spaces=SPACES,
                    n_trials=2, with_final=True, max_features=8, n_jobs=2)
    in_memory, streamed = nested_oof(X, y, **settings), nested_oof(rows, y, **settings)
    pd.testing.assert_frame_equal(streamed.predictions, in_memory.predictions)
    np.testing.assert_array_equal(streamed.final.support_, in_memory.final.support_)
    np.testing.assert_array_equal(streamed.final.predict_proba(rows),
                                  in_memory.final.predict_proba(X))
    with pytest.raises(ValueError, match="expecting 12 features"):
        streamed.final.predict_proba(rows.select_columns(np.arange(11)))


def test_without_a_cap_only_constant_columns_are_dropped():
    X, y, _ = complementary_problem(n=200)
    X = np.column_stack([X, np.zeros(len(X), np.float32)])
    stack = GradientBoostedStack(learners=("logistic",), search_spaces=SPACES, n_trials=1,
                                 n_jobs=1).fit(X, y)
    np.testing.assert_array_equal(stack.support_, np.arange(12))


def test_nonnegative_logistic_is_scikit_learns_when_the_weights_come_out_positive():
    from sklearn.linear_model import LogisticRegression

    from models.stack import nonnegative_logistic
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    Z = np.column_stack([y + rng.normal(size=500), 0.5 * y + rng.normal(size=500)])
    coef, intercept = nonnegative_logistic(Z, y, C=1.0)
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000).fit(Z, y)
    np.testing.assert_allclose(coef, reference.coef_[0], atol=1e-4)
    assert abs(intercept - reference.intercept_[0]) < 1e-4


def test_nonnegative_logistic_gives_a_misleading_learner_zero_weight():
    from models.stack import nonnegative_logistic
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    Z = np.column_stack([y + rng.normal(size=500), -y + rng.normal(size=500)])
    coef, _ = nonnegative_logistic(Z, y)
    assert coef[0] > 0.5 and coef[1] == 0.0


def test_auto_meta_prefers_weighting_when_learners_differ_in_strength():
    from models.stack import choose_meta
    from models.tuning import make_splits
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 900)
    # A strong learner, a weaker one with its own errors, and noise: weighting adds the weaker
    # learner's information (beats the best alone) and leaves out the noise (beats averaging).
    oof = 1 / (1 + np.exp(-np.column_stack([y + 0.8 * rng.normal(size=900),
                                             y + 1.6 * rng.normal(size=900),
                                             rng.normal(size=900)])))
    kind, stacked = choose_meta("auto", oof, y, make_splits(y, None, 3, 0))
    assert kind == "logistic"
    assert auc(y, stacked) > auc(y, oof[:, 0])
    assert auc(y, stacked) > auc(y, oof.mean(axis=1))
    assert choose_meta("rank_mean", oof, y, make_splits(y, None, 3, 0))[0] == "rank_mean"


def test_auto_meta_keeps_rank_averaging_when_a_fitted_combiner_is_not_clearly_better():
    from models.stack import _cross_validated_meta, choose_meta
    from models.tuning import make_splits
    rng = np.random.default_rng(20)
    y = rng.integers(0, 2, 160)  # a few hundred rows, as in a small set's inner folds
    oof = 1 / (1 + np.exp(-np.column_stack([y + 0.8 * rng.normal(size=160),
                                             y + 1.3 * rng.normal(size=160),
                                             y + 1.3 * rng.normal(size=160)])))
    splits = make_splits(y, None, 3, 0)
    logistic, rank_mean = (_cross_validated_meta(kind, oof, y, splits)
                           for kind in ("logistic", "rank_mean"))
    # Weighting scores higher here (0.825 against 0.810), but by less than one standard error.
    assert auc(y, logistic) > auc(y, rank_mean)
    kind, stacked = choose_meta("auto", oof, y, splits)
    assert kind == "rank_mean"
    np.testing.assert_array_equal(stacked, rank_mean)


def test_oof_folds_choose_their_columns_without_the_held_out_labels():
    from models.stack import OOF_SEED_OFFSET
    from models.tuning import make_splits
    rng = np.random.default_rng(7)
    n = 300
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    X[:, 1] += 0.8 * y  # informative everywhere
    held_out = make_splits(y, None, 3, OOF_SEED_OFFSET)[0][1]  # fold 0 of the OOF partition
    X[held_out, 4] = 5.0 * y[held_out]  # informative on fold 0's held-out rows only
    stack = GradientBoostedStack(learners=("logistic",), search_spaces=SPACES, n_trials=2,
                                 n_jobs=1, max_features=1, meta="rank_mean").fit(X, y)
    assert stack.support_.tolist() == [4]  # chosen on all rows, the leak wins
    # Fold 0 chose column 1 on its training rows, so its held-out rows are scored without it.
    oof = stack.oof_predictions_["logistic"].to_numpy()
    assert auc(y[held_out], oof[held_out]) < 0.85
    assert auc(y[held_out], X[held_out, 4]) == 1.0


def test_a_learner_on_a_view_reads_only_the_view_s_columns():
    # The label lives in column 0; the view "rest" holds the other columns, which are noise. The
    # LightGBM on all columns separates the classes, the one on the view cannot, and changing the
    # columns outside the view leaves the view learner's predictions as they were.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 8)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.normal(size=400) > 0).astype(int)
    rest = np.arange(1, 8)
    stack = GradientBoostedStack(learners=("lightgbm", "lightgbm@rest"), views={"rest": rest},
                                 search_spaces=SPACES, n_trials=1, n_jobs=1).fit(X, y)
    assert set(stack.view_supports_["rest"].tolist()) <= set(rest.tolist())
    assert set(stack.tuning_) == {"lightgbm", "lightgbm@rest"}
    assert auc(y, stack.oof_predictions_["lightgbm"]) > 0.9
    assert abs(auc(y, stack.oof_predictions_["lightgbm@rest"]) - 0.5) < 0.1
    changed = X.copy()
    changed[:, 0] = rng.normal(size=400)
    before, after = stack.learner_probabilities(X), stack.learner_probabilities(changed)
    np.testing.assert_array_equal(after[:, 1], before[:, 1])
    assert not np.array_equal(after[:, 0], before[:, 0])


def test_views_are_checked():
    X, y, _ = complementary_problem(n=60)
    with pytest.raises(ValueError, match="view 'rest'"):
        GradientBoostedStack(learners=("lightgbm@rest",), search_spaces=SPACES).fit(X, y)
    with pytest.raises(ValueError, match="view names"):
        GradientBoostedStack(learners=("lightgbm",), views={"a/b": [0]},
                             search_spaces=SPACES).fit(X, y)
    with pytest.raises(ValueError, match="view 'rest' of learner 'lightgbm@rest' has no columns"):
        GradientBoostedStack(learners=("lightgbm@rest",), views={"rest": []},
                             search_spaces=SPACES).fit(X, y)
    with pytest.raises(ValueError, match="unknown learner 'svm'"):
        GradientBoostedStack(learners=("svm@rest",), views={"rest": [0]},
                             search_spaces=SPACES).fit(X, y)
