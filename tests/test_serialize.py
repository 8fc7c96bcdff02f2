"""Saving and loading the stack: same predictions, plain files, no pickle."""
import builtins
import json
import pickle

import joblib
import numpy as np
import pandas as pd
import pytest

from models.serialize import load_stack, save_stack
from models.stack import GradientBoostedStack

SPACES = {
    "lightgbm": {"n_estimators": 60, "learning_rate": 0.2,
                 "num_leaves": {"type": "int", "low": 4, "high": 16}},
    "xgboost": {"n_estimators": 60, "learning_rate": 0.2,
                "max_depth": {"type": "int", "low": 2, "high": 4}},
    "histgb": {"max_iter": 60, "learning_rate": 0.2,
               "max_leaf_nodes": {"type": "int", "low": 4, "high": 16}},
    "logistic": {"C": {"type": "float", "low": 0.01, "high": 10.0, "log": True}},
}


def random_features(n, seed, missing=0.1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 10)).astype(np.float32)
    X[rng.random(X.shape) < missing] = np.nan
    return X


@pytest.fixture(scope="module")
def training_data():
    X = random_features(300, seed=0)
    filled = np.nan_to_num(X)
    rng = np.random.default_rng(1)
    y = (filled[:, 0] + filled[:, 1] * filled[:, 2] + rng.normal(size=len(X)) > 0).astype(int)
    return X, y


@pytest.fixture(scope="module", params=["logistic", "rank_mean", "best"])
def fitted_stack(request, training_data):
    X, y = training_data
    columns = [f"family__feature_{i}" for i in range(X.shape[1])]
    stack = GradientBoostedStack(search_spaces=SPACES, n_trials=2, meta=request.param,
                                 patience=5, n_jobs=1)
    return stack.fit(pd.DataFrame(X, columns=columns), y)


def test_round_trip_reproduces_predict_proba(fitted_stack, tmp_path):
    save_stack(fitted_stack, tmp_path)
    loaded = load_stack(tmp_path)
    X_new = random_features(500, seed=2, missing=0.2) * 3  # beyond the training range too
    columns = fitted_stack.feature_names_in_
    expected = fitted_stack.predict_proba(pd.DataFrame(X_new, columns=columns))
    assert np.max(np.abs(loaded.predict_proba(pd.DataFrame(X_new, columns=columns))
                         - expected)) <= 1e-9
    assert np.max(np.abs(loaded.predict_proba(X_new) - expected)) <= 1e-9
    for name in fitted_stack.learners:
        np.testing.assert_allclose(loaded.predictors[name](X_new),
                                   fitted_stack.learners_[name].predict_positive(X_new),
                                   rtol=0, atol=1e-9)


def test_loading_needs_no_pickle_nor_eval(fitted_stack, tmp_path, monkeypatch):
    save_stack(fitted_stack, tmp_path)

    def forbidden(*args, **kwargs):
        raise AssertionError("unsafe deserialisation used")
    for module, name in [(pickle, "load"), (pickle, "loads"), (joblib, "load"),
                         (builtins, "eval"), (builtins, "exec")]:
        monkeypatch.setattr(module, name, forbidden)
    loaded = load_stack(tmp_path)
    assert loaded.predict_proba(random_features(5, seed=3)).shape == (5, 2)


def test_folder_holds_plain_text_files_and_a_manifest(fitted_stack, tmp_path):
    manifest = save_stack(fitted_stack, tmp_path)
    files = sorted(path.name for path in tmp_path.iterdir())
    assert files == ["histgb.json", "lightgbm.txt", "logistic.json", "manifest.json",
                     "xgboost.json"]
    for path in tmp_path.iterdir():
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            json.loads(text, parse_constant=lambda token: pytest.fail(f"{token} in {path}"))
    assert [entry["name"] for entry in manifest["learners"]] == list(fitted_stack.learners)
    assert manifest["meta"]["kind"] == fitted_stack.meta
    assert manifest["feature_names"] == list(fitted_stack.feature_names_in_)
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest


def test_a_tampered_model_file_is_refused(fitted_stack, tmp_path):
    save_stack(fitted_stack, tmp_path)
    path = tmp_path / "logistic.json"
    path.write_text(path.read_text().replace("0", "1", 1))
    with pytest.raises(ValueError, match="checksum"):
        load_stack(tmp_path)


def test_loaded_stack_checks_its_input(fitted_stack, tmp_path):
    save_stack(fitted_stack, tmp_path)
    loaded = load_stack(tmp_path)
    with pytest.raises(ValueError, match="10 columns"):
        loaded.predict_proba(np.zeros((3, 9), dtype=np.float32))
    renamed = pd.DataFrame(np.zeros((3, 10)), columns=[f"other_{i}" for i in range(10)])
    with pytest.raises(ValueError, match="columns of X differ"):
        loaded.predict_proba(renamed)


def test_a_stack_with_a_feature_cap_round_trips(training_data, tmp_path):
    X, y = training_data
    stack = GradientBoostedStack(learners=("lightgbm", "logistic"), search_spaces=SPACES,
                                 n_trials=1, patience=5, n_jobs=1, max_features=4).fit(X, y)
    save_stack(stack, tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text())["support"] == \
        stack.support_.tolist()
    X_new = random_features(200, seed=3)
    assert np.max(np.abs(load_stack(tmp_path).predict_proba(X_new)
                         - stack.predict_proba(X_new))) <= 1e-9


@pytest.mark.parametrize("support", [[], [0, 0], [2, 1], [0, 10], ["0"]])
def test_an_invalid_support_is_refused(fitted_stack, tmp_path, support):
    save_stack(fitted_stack, tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["support"] = support
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="support"):
        load_stack(tmp_path)


def test_a_stack_with_a_learner_on_a_view_round_trips(training_data, tmp_path):
    X, y = training_data
    stack = GradientBoostedStack(learners=("lightgbm", "lightgbm@tail"), views={"tail": [5, 7, 9]},
                                 search_spaces=SPACES, n_trials=1, patience=5, n_jobs=1).fit(X, y)
    manifest = save_stack(stack, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "lightgbm-tail.txt", "lightgbm.txt", "manifest.json"]
    assert set(manifest["view_supports"]["tail"]) <= {5, 7, 9}
    X_new = random_features(200, seed=3)
    assert np.max(np.abs(load_stack(tmp_path).predict_proba(X_new)
                         - stack.predict_proba(X_new))) <= 1e-9
    # A manifest whose learner names a view it holds no columns for is refused.
    manifest["view_supports"] = {}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="no columns for the views"):
        load_stack(tmp_path)
