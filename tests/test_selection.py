"""Feature selection: constant columns dropped, a gain cap chosen on training rows only."""
import numpy as np
import pytest

from models import boosting, selection
from models.validation import FoldPlan

FAST = {"n_estimators": 60}


def informative_table(seed: int = 0, n: int = 400):
    """200 columns: 0, 1, 2 carry the label, 50 are constant (0 or NaN), the rest are noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 200)).astype(np.float32)
    y = rng.integers(0, 2, n)
    X[:, :3] += 1.5 * (2 * y[:, None] - 1)
    constant = np.arange(150, 200)
    X[:, constant] = 0.0
    X[:, constant[-5:]] = np.nan  # a family that failed on every row
    return X, y, constant


def test_varying_columns_keeps_partly_missing_and_drops_single_valued():
    X = np.array([[0.0, 1.0, np.nan, np.nan, 3.0],
                  [0.0, 2.0, np.nan, 1.0, 3.0],
                  [0.0, 1.0, np.nan, 1.0, 3.0]], dtype=np.float32)
    # column 3 is 1 or missing: LightGBM can still split missing from present
    np.testing.assert_array_equal(selection.varying_columns(X), [1, 3])


def test_varying_columns_across_row_blocks(monkeypatch):
    # Blocks of 2 rows: each column below is constant inside every block, or missing in one.
    monkeypatch.setattr(selection, "ROW_BLOCK", 2)
    X = np.array([[5.0, 4.0, np.nan, np.nan, 2.0],
                  [5.0, 4.0, np.nan, np.nan, 2.0],
                  [5.0, 6.0, 7.0, np.nan, 2.0],
                  [5.0, 6.0, 7.0, np.nan, 2.0],
                  [5.0, 6.0, 7.0, np.nan, np.nan]], dtype=np.float32)
    # 1: 4 in the first block, 6 later; 2: missing, then 7; 4: 2 or missing (last block only)
    np.testing.assert_array_equal(selection.varying_columns(X), [1, 2, 4])


def test_top_by_gain_breaks_ties_by_position():
    np.testing.assert_array_equal(selection.top_by_gain(np.array([1.0, 5.0, 1.0, 1.0, 0.0]), 3),
                                  [0, 1, 2])


def test_cap_keeps_the_informative_columns_and_no_constant_one():
    X, y, constant = informative_table()
    kept = selection.select_features(X, y, 10, FAST)
    assert len(kept) == 10
    assert {0, 1, 2} <= set(kept.tolist())
    assert not set(kept.tolist()) & set(constant.tolist())


def test_without_cap_only_constant_columns_go():
    X, y, _ = informative_table()
    np.testing.assert_array_equal(selection.select_features(X, y), np.arange(150))
    # a cap above the number of varying columns keeps them all, without a screening model
    np.testing.assert_array_equal(selection.select_features(X, y, 5000), np.arange(150))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_invalid_cap_names_the_option(bad):
    X, y, _ = informative_table()
    with pytest.raises(ValueError, match="--max-features"):
        selection.select_features(X, y, bad)


def test_all_constant_columns_is_a_clear_error():
    with pytest.raises(ValueError, match="all 4 feature columns are constant over the 6"):
        selection.select_features(np.zeros((6, 4), np.float32), np.array([0, 1] * 3))


def test_fold_selection_never_sees_held_out_rows(monkeypatch):
    """Column 1 carries the label only in the held-out half, column 0 only in the training
    half: selection on all rows would rank column 1 first, selection on training rows keeps 0."""
    rng = np.random.default_rng(5)
    n = 400
    y = np.tile([0, 1], n // 2)
    train, test = np.arange(n // 2), np.arange(n // 2, n)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    X[train, 0] += 2.0 * y[train]
    X[test, 1] += 4.0 * y[test]
    assert selection.select_features(X, y, 1, FAST).tolist() == [1]  # the leak it must avoid
    seen = []
    original = selection.select_features

    def spy(X_fold, y_fold, *args):
        seen.append(len(X_fold))
        return original(X_fold, y_fold, *args)

    monkeypatch.setattr(boosting, "select_features", spy)
    plan = FoldPlan(1, ((train, test),), None)
    oof = boosting.out_of_fold(X, y, plan, FAST, max_features=1)
    assert seen == [len(train)]
    # The model kept column 0, which says nothing about the held-out rows: chance-level scores.
    from models.metrics import auc
    assert 0.35 < auc(y[test], oof[test]) < 0.65
    _, columns = boosting.fit_selected(X[train], y[train], FAST, max_features=1)
    assert columns.tolist() == [0]
