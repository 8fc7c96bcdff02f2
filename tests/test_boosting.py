"""The plain LightGBM's parameters per modality; the rows its importances are averaged over."""
import numpy as np

from models.boosting import (DEFAULT_PARAMS, explanation_rows, fit_full, plain_params,
                             predict_positive)


def test_images_get_their_own_trees_and_the_user_has_the_last_word():
    image = plain_params("image")
    assert (image["n_estimators"], image["num_leaves"], image["colsample_bytree"]) == (1500, 7, 0.1)
    assert image["learning_rate"] == DEFAULT_PARAMS["learning_rate"]
    assert plain_params("audio") == DEFAULT_PARAMS
    assert plain_params("image", {"num_leaves": 31})["num_leaves"] == 31
    assert plain_params("clip", {"n_estimators": 50})["n_estimators"] == 50


def test_every_row_is_explained_up_to_the_limit_then_a_seeded_sample():
    np.testing.assert_array_equal(explanation_rows(5, seed=3, limit=5), np.arange(5))
    rows = explanation_rows(1000, seed=3, limit=50)
    assert len(rows) == 50 and len(set(rows.tolist())) == 50
    assert rows.min() >= 0 and rows.max() < 1000 and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(rows, explanation_rows(1000, seed=3, limit=50))
    assert not np.array_equal(rows, explanation_rows(1000, seed=4, limit=50))


def test_out_of_fold_reports_each_new_fold_and_reuses_finished_ones():
    from models.boosting import out_of_fold
    from models.validation import plan_folds

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    X = (rng.normal(size=(60, 4)) + y[:, None]).astype(np.float32)
    plan = plan_folds(y, None, 3, 0)
    reported = {}
    oof = out_of_fold(X, y, plan, {"n_estimators": 20}, 0,
                      on_fold=lambda index, predictions: reported.update({index: predictions}))
    assert sorted(reported) == [0, 1, 2] and not np.isnan(oof).any()
    for index, (_, test) in enumerate(plan.folds):
        np.testing.assert_array_equal(reported[index], oof[test])
    # a finished fold is taken as given (here: a constant) and not refitted or reported again
    held_out = plan.folds[1][1]
    again = {}
    resumed = out_of_fold(X, y, plan, {"n_estimators": 20}, 0,
                          on_fold=lambda index, predictions: again.update({index: predictions}),
                          finished={1: np.full(len(held_out), 0.25)})
    assert sorted(again) == [0, 2]
    np.testing.assert_array_equal(resumed[held_out], 0.25)
    rest = np.setdiff1d(np.arange(60), held_out)
    np.testing.assert_array_equal(resumed[rest], oof[rest])


def test_the_plain_model_is_the_same_on_any_number_of_threads():
    # The default uses every core, so a model trained on a large machine must be the one a
    # laptop would train. OpenMP runs as many threads as asked on any number of cores, so an
    # uneven split of the work (3) and more threads than this machine's cores (8) are tried too.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 30)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] + X[:, 2] + rng.normal(size=600) > 0).astype(int)
    params = plain_params("image", {"n_estimators": 60})
    assert params["n_jobs"] == 0  # all cores
    one, *more = (fit_full(X, y, {**params, "n_jobs": n}) for n in (1, 2, 3, 8))
    for other in more:
        assert one.booster_.dump_model()["tree_info"] == other.booster_.dump_model()["tree_info"]
        np.testing.assert_array_equal(predict_positive(one, X), predict_positive(other, X))
