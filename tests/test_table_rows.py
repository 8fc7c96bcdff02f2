"""Feature-table rows streamed from Parquet: the values NumPy indexing gives, and the plain
LightGBM fitted from them equal to LightGBM fitted on the whole matrix."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models import boosting
from models.validation import plan_folds
from pipelines import fit
from pipelines.table_rows import TableRows


def write_table(path, X, y=None, row_group_size=7):
    columns = {f"fam__f__{j}": pa.array(X[:, j]) for j in range(X.shape[1])}
    if y is not None:
        columns = {"target": pa.array(y), **columns}
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return [f"fam__f__{j}" for j in range(X.shape[1])]


@pytest.fixture
def numbered(tmp_path):
    """Value = 100 x row + column: every cell says where it came from."""
    X = (100 * np.arange(40)[:, None] + np.arange(6)[None, :]).astype(np.float32)
    names = write_table(tmp_path / "t.parquet", X)  # 6 row groups of 7 rows, the last of 5
    return TableRows(tmp_path / "t.parquet", names), X


def test_rows_slices_and_index_arrays_read_what_numpy_indexing_gives(numbered):
    rows, X = numbered
    assert rows.shape == (40, 6) and len(rows) == 40
    np.testing.assert_array_equal(rows[:], X)
    np.testing.assert_array_equal(rows[5:23], X[5:23])  # crosses three row groups
    np.testing.assert_array_equal(rows[np.array([39, 0, 20, 6, 7])], X[[39, 0, 20, 6, 7]])
    single = rows[13]
    assert single.dtype == np.float64  # what LightGBM's bin sample requires
    np.testing.assert_array_equal(single, X[13])


def test_views_select_rows_and_columns_without_changing_the_source(numbered):
    rows, X = numbered
    picked = np.array([2, 9, 30, 31])
    view = rows.subset(picked).select_columns([5, 0])
    assert view.shape == (4, 2)
    np.testing.assert_array_equal(view[:], X[np.ix_(picked, [5, 0])])
    np.testing.assert_array_equal(view.subset([3, 1])[:], X[np.ix_([31, 9], [5, 0])])
    mask = np.array([True, False, True, False, False, True])
    np.testing.assert_array_equal(rows.select_columns(mask)[:], X[:, mask])
    np.testing.assert_array_equal(rows[:], X)


def informative_table(tmp_path, n=120, n_features=8, seed=0, constant_column=None):
    """Two informative columns among noise, some NaN; 16-row row groups."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    X = rng.normal(size=(n, n_features)).astype(np.float32)
    X[:, 0] += 1.5 * y
    X[:, 3] -= 0.8 * y
    X[rng.random(X.shape) < 0.05] = np.nan  # failed families are NaN
    if constant_column is not None:
        X[:, constant_column] = 2.0
    names = write_table(tmp_path / "t.parquet", X, y, row_group_size=16)
    return TableRows(tmp_path / "t.parquet", names), X, y


PARAMS = {"n_estimators": 40, "num_leaves": 5, "colsample_bytree": 0.5, "subsample": 0.7,
          "subsample_freq": 1, "min_child_samples": 5}


def test_a_model_fitted_from_streamed_rows_equals_lightgbm_on_the_whole_matrix(tmp_path):
    from lightgbm import LGBMClassifier

    rows, X, y = informative_table(tmp_path, constant_column=5)
    streamed = boosting.fit_full(rows, y, PARAMS, seed=3)
    reference = LGBMClassifier(**{**boosting.DEFAULT_PARAMS, **PARAMS}, random_state=3,
                               deterministic=True, force_row_wise=True).fit(X, y)
    assert streamed.booster_.num_trees() == 40
    np.testing.assert_array_equal(streamed.predict_proba(rows)[:, 1],
                                  reference.predict_proba(X)[:, 1])
    np.testing.assert_array_equal(streamed.predict_proba(X), reference.predict_proba(X))


@pytest.mark.parametrize("max_features", [None, 3])
def test_out_of_fold_from_streamed_rows_equals_the_in_memory_run(tmp_path, max_features):
    rows, X, y = informative_table(tmp_path, constant_column=5)
    plan = plan_folds(y, None, 3, 0)
    streamed = boosting.out_of_fold(rows, y, plan, PARAMS, 0, max_features)
    in_memory = boosting.out_of_fold(X, y, plan, PARAMS, 0, max_features)
    assert not np.isnan(streamed).any()
    np.testing.assert_array_equal(streamed, in_memory)
    _, columns = boosting.fit_selected(rows, y, PARAMS, 0, max_features)
    assert 5 not in columns and (max_features is None or len(columns) == max_features)


def forbid_the_whole_matrix(monkeypatch):
    def whole_matrix(self):
        raise AssertionError("fit read the whole feature matrix")

    monkeypatch.setattr(fit.FeatureTable, "X", property(whole_matrix))


def test_the_plain_fit_never_holds_the_whole_feature_matrix(dataset, tmp_path, monkeypatch):
    from test_pipelines import run_extract

    root, config, _ = dataset
    features = tmp_path / "features.parquet"
    assert run_extract(root, config, features) == 0
    table = fit.load_feature_table(features)
    expected = boosting.out_of_fold(table.X, table.y, plan_folds(table.y, None, 2, 0),
                                    boosting.plain_params("image"), 0)
    forbid_the_whole_matrix(monkeypatch)
    run = tmp_path / "run"
    assert fit.main(["--features", str(features), "--out", str(run), "--folds", "2"]) == 0
    with open(run / "oof.csv") as handle:
        written = {line.split(",")[0]: float(line.split(",")[3]) for line in list(handle)[1:]}
    np.testing.assert_allclose([written[n] for n in table.names], expected, atol=5e-7)


def test_features_too_rare_for_a_leaf_are_kept_or_dropped_as_from_a_matrix(tmp_path):
    """LightGBM builds a Dataset from a Sequence without min_data_in_leaf and dropped every
    feature of 26 rows under its default of 20 (issue 6020); with the model's 5 they split."""
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 13)
    X = (rng.normal(size=(26, 3)) + 2.0 * y[:, None]).astype(np.float32)
    names = write_table(tmp_path / "small.parquet", X, y)
    params = {"n_estimators": 5, "min_child_samples": 5}
    streamed = boosting.fit_full(TableRows(tmp_path / "small.parquet", names), y, params)
    assert streamed.booster_.num_trees() == 5
    assert streamed.booster_.feature_importance().sum() > 0  # it split on something
    np.testing.assert_array_equal(streamed.predict_proba(X),
                                  boosting.fit_full(X, y, params).predict_proba(X))
