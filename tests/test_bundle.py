import json
import pickle

import numpy as np
import pytest

from models import boosting
from models.bundle import BundleError, check_features, lightgbm_writer, load_bundle, write_bundle


def fitted(rng):
    X = rng.normal(size=(200, 5)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.5, size=200) > 0).astype(int)
    return X, y, boosting.fit_full(X, y, {"n_estimators": 30})


def manifest(names):
    return {"feature_names": names, "feature_config": {"modality": "image", "families": {}}}


def test_round_trip_gives_identical_predictions(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    X, y, model = fitted(rng)
    names = [f"f__v{i}" for i in range(5)]
    write_bundle(tmp_path / "model", manifest(names), lightgbm_writer(model))
    # Loading must not unpickle anything.
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("pickle.load called"))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("pickle.loads called"))
    bundle = load_bundle(tmp_path / "model")
    np.testing.assert_array_equal(bundle.predict_proba(X), model.predict_proba(X)[:, 1])
    assert bundle.feature_names == names


def test_load_accepts_run_folder_and_rewrites_atomically(tmp_path):
    rng = np.random.default_rng(2)
    X, _, model = fitted(rng)
    names = [f"f__v{i}" for i in range(5)]
    write_bundle(tmp_path / "run" / "model", manifest(names), lightgbm_writer(model))
    write_bundle(tmp_path / "run" / "model", manifest(names), lightgbm_writer(model))
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["model"]
    assert load_bundle(tmp_path / "run").predict_proba(X).shape == (200,)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(format="other"), "not a deepfake-forensics-bundle manifest"),
    (lambda m: m.update(format_version=99), "format version 99"),
    (lambda m: m.pop("feature_names"), "missing 'feature_names'"),
    (lambda m: m["model"].update(file="../../etc/passwd"), "leaves the bundle"),
    (lambda m: m["model"].update(kind="pickle"), "unknown model kind 'pickle'"),
])
def test_malformed_manifest_is_refused(tmp_path, edit, message):
    rng = np.random.default_rng(3)
    _, _, model = fitted(rng)
    write_bundle(tmp_path / "m", manifest(["a__b"] * 5), lightgbm_writer(model))
    path = tmp_path / "m" / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=message):
        load_bundle(tmp_path / "m")


def test_corrupt_model_file_is_a_bundle_error(tmp_path):
    rng = np.random.default_rng(4)
    _, _, model = fitted(rng)
    write_bundle(tmp_path / "m", manifest(["a__b"] * 5), lightgbm_writer(model))
    (tmp_path / "m" / "lightgbm.txt").write_text("not a model")
    with pytest.raises(BundleError, match="not a LightGBM text model"):
        load_bundle(tmp_path / "m")


def test_feature_mismatch_names_missing_and_unexpected():
    with pytest.raises(BundleError, match=r"1 missing \(e.g. \['fft__b'\]\), 1 unexpected"):
        check_features({"feature_names": ["fft__a", "fft__b"]}, ["fft__a", "fft__c"])
    check_features({"feature_names": ["fft__a"]}, ("fft__a",))


def selected_bundle(tmp_path, rng):
    """A model fitted on columns 3 and 1 of five extractor features, written as a bundle."""
    X, y, _ = fitted(rng)
    names = [f"f__v{i}" for i in range(5)]
    model = boosting.fit_full(X[:, [3, 1]], y, {"n_estimators": 30})
    write_bundle(tmp_path / "m", {**manifest(names), "model_features": ["f__v3", "f__v1"]},
                 lightgbm_writer(model))
    return X, model


def test_bundle_with_model_features_reads_its_columns_by_name(tmp_path):
    X, model = selected_bundle(tmp_path, np.random.default_rng(6))
    bundle = load_bundle(tmp_path / "m")
    assert bundle.model_features == ["f__v3", "f__v1"]
    assert bundle.feature_names == [f"f__v{i}" for i in range(5)]
    expected = model.predict_proba(X[:, [3, 1]])[:, 1]
    np.testing.assert_array_equal(bundle.predict_proba(X), expected)  # all extractor columns
    np.testing.assert_array_equal(bundle.predict_proba_used(X[:, [3, 1]]), expected)
    with pytest.raises(BundleError, match="expected 2 feature columns, got 5"):
        bundle.predict_proba_used(X)


@pytest.mark.parametrize("used, message", [
    (["f__v3", "f__nope"], "must be a non-empty list of distinct names"),
    (["f__v3", "f__v3"], "must be a non-empty list of distinct names"),
    ([], "must be a non-empty list of distinct names"),
    (["f__v3", "f__v1", "f__v0"], "takes 2 features but the manifest lists 3"),
])
def test_inconsistent_model_features_are_refused(tmp_path, used, message):
    selected_bundle(tmp_path, np.random.default_rng(7))
    path = tmp_path / "m" / "manifest.json"
    data = json.loads(path.read_text())
    data["model_features"] = used
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=message):
        load_bundle(tmp_path / "m")
