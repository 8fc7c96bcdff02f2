"""Save a fitted stack to a folder of plain model files, and load it back without pickle.

Nothing here unpickles or evaluates code, so a model folder received from someone else can be
loaded safely. Formats:

* LightGBM: its own text model (``lightgbm.txt``), loaded with ``lightgbm.Booster(model_str=...)``;
* XGBoost: its own JSON model (``xgboost.json``), loaded with ``xgboost.Booster.load_model``;
* HistGradientBoosting: scikit-learn has no safe format, so its trees are exported to JSON
  (``histgb.json``: per tree the node arrays feature, threshold, missing-goes-left, children,
  leaf flag and value, plus the baseline log-odds) and evaluated with NumPy exactly as scikit-learn
  does (NaN follows missing-goes-left, otherwise x <= threshold goes left; leaf values summed in
  tree order onto the baseline; probability = expit);
* logistic regression: JSON of the fitted arrays (median imputation values, scaler mean and scale,
  coefficients, intercept);
* ``manifest.json``: learner names, files with their SHA-256, round counts, tuned parameters, the
  input columns read (``support``, and ``view_supports`` for learners fitted on a view such as
  ``lightgbm@global``, whose file is ``lightgbm-global.txt``) and the meta-learner (weights, or
  rank knots).

The loaded stack reproduces the fitted one's ``predict_proba`` to within floating-point rounding.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightgbm
import numpy as np
import sklearn
import xgboost
from scipy.special import expit

from models.stack import GradientBoostedStack, MetaLearner, learner_kind, learner_view

FORMAT = "deepfake-gradient-boosted-stack"
# Version 2 added learners on views of the columns (``view_supports``); version 1 still loads.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
_FILES = {"lightgbm": "lightgbm.txt", "xgboost": "xgboost.json", "histgb": "histgb.json",
          "logistic": "logistic.json"}


def save_stack(model: GradientBoostedStack, folder) -> dict:
    """Write the fitted stack's model files and manifest into ``folder``; return the manifest."""
    if not hasattr(model, "meta_"):
        raise ValueError("the stack is not fitted")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    learners = []
    for name in model.learners:
        fitted = model.learners_[name]
        path = folder / learner_file(name)
        path.write_text(_EXPORTERS[learner_kind(name)](fitted.estimator))
        learners.append({"name": name, "file": path.name, "sha256": _sha256(path),
                         "n_rounds": fitted.n_rounds, "params": model.best_params_[name]})
    feature_names = getattr(model, "feature_names_in_", None)
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "n_features": int(model.n_features_in_),
        "support": [int(i) for i in model.support_],
        "view_supports": {view: [int(i) for i in columns]
                          for view, columns in model.view_supports_.items()},
        "feature_names": None if feature_names is None else [str(f) for f in feature_names],
        "input_dtype": "float32",
        "learners": learners,
        "meta": model.meta_.as_dict(),
        "tuning": {name: _tuning_summary(result) for name, result in model.tuning_.items()},
        "library_versions": {"lightgbm": lightgbm.__version__, "xgboost": xgboost.__version__,
                             "scikit-learn": sklearn.__version__, "numpy": np.__version__},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=False))
    return manifest


def load_stack(folder) -> "LoadedStack":
    """Rebuild a saved stack from its folder (model files are checked against their SHA-256)."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest.get("format") != FORMAT or manifest.get("format_version") not in READABLE_VERSIONS:
        raise ValueError(f"{folder} does not hold a {FORMAT} model of version "
                         f"{' or '.join(map(str, READABLE_VERSIONS))}")
    predictors = {}
    for entry in manifest["learners"]:
        path = folder / entry["file"]
        if _sha256(path) != entry["sha256"]:
            raise ValueError(f"{path} does not match the checksum in the manifest")
        predictors[entry["name"]] = _LOADERS[learner_kind(entry["name"])](path)
    return LoadedStack(manifest, predictors)


class LoadedStack:
    """A saved stack rebuilt for prediction: ``predict_proba`` as the fitted stack's."""

    classes_ = np.array([0, 1])

    def __init__(self, manifest: dict, predictors: dict):
        self.manifest = manifest
        self.predictors = predictors
        self.meta = MetaLearner(**manifest["meta"])
        self.support = _checked_support(manifest, manifest.get("support"), "support")
        self.view_supports = {
            view: _checked_support(manifest, columns, f"view_supports.{view}")
            for view, columns in manifest.get("view_supports", {}).items()}
        unknown = {learner_view(name) for name in self.learners} - {None} - set(self.view_supports)
        if unknown:
            raise ValueError(f"the stack manifest has no columns for the views {sorted(unknown)}")

    @property
    def learners(self) -> list[str]:
        return [entry["name"] for entry in self.manifest["learners"]]

    def predict_proba(self, X) -> np.ndarray:
        X = self._check_input(X)
        columns = {None: self.support, **self.view_supports}
        base = np.column_stack([self.predictors[name](X[:, columns[learner_view(name)]])
                                for name in self.learners])
        positive = self.meta.predict(base)
        return np.column_stack([1.0 - positive, positive])

    def _check_input(self, X) -> np.ndarray:
        names = self.manifest["feature_names"]
        if hasattr(X, "columns") and names is not None and [str(c) for c in X.columns] != names:
            raise ValueError("the columns of X differ from the features the stack was fitted on")
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.manifest["n_features"]:
            raise ValueError(f"X must have {self.manifest['n_features']} columns, got shape "
                             f"{X.shape}")
        return X


def _checked_support(manifest: dict, support, key: str) -> np.ndarray:
    """Input columns that learners read: distinct, ascending, in range (all when absent)."""
    n_features = manifest["n_features"]
    support = list(range(n_features)) if support is None else support
    if not (isinstance(support, list) and support
            and all(isinstance(i, int) and 0 <= i < n_features for i in support)
            and all(a < b for a, b in zip(support, support[1:]))):
        raise ValueError(f"the stack manifest's {key!r} must list distinct ascending column "
                         f"indices below {n_features}")
    return np.array(support, dtype=np.intp)


def learner_file(name: str) -> str:
    """The model file of a stack member: ``lightgbm.txt``, ``lightgbm-global.txt`` for the
    LightGBM on view ``global``."""
    view = learner_view(name)
    file = _FILES[learner_kind(name)]
    return file if view is None else file.replace(".", f"-{view}.", 1)


def _export_lightgbm(estimator) -> str:
    return estimator.booster_.model_to_string()


def _export_xgboost(estimator) -> str:
    return bytes(estimator.get_booster().save_raw(raw_format="json")).decode()


def _export_histgb(estimator) -> str:
    if estimator.n_trees_per_iteration_ != 1:
        raise ValueError("only binary HistGradientBoosting models can be exported")
    trees = []
    for (predictor,) in estimator._predictors:
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            raise ValueError("categorical splits are not supported by the JSON export")
        trees.append({"feature": nodes["feature_idx"].tolist(),
                      "threshold": nodes["num_threshold"].tolist(),
                      "missing_left": nodes["missing_go_to_left"].astype(bool).tolist(),
                      "left": nodes["left"].tolist(), "right": nodes["right"].tolist(),
                      "is_leaf": nodes["is_leaf"].astype(bool).tolist(),
                      "value": nodes["value"].tolist()})
    baseline = float(np.ravel(estimator._baseline_prediction)[0])
    return json.dumps({"baseline": baseline, "trees": trees})


def _export_logistic(pipeline) -> str:
    imputer, scaler, logistic = (pipeline.named_steps[s] for s in ("impute", "scale", "logistic"))
    # keep_empty_features imputes an all-missing column with 0, whatever statistics_ holds.
    fill = np.where(np.isnan(imputer.statistics_), 0.0, imputer.statistics_)
    return json.dumps({"fill_values": fill.tolist(), "mean": scaler.mean_.tolist(),
                       "scale": scaler.scale_.tolist(), "coef": logistic.coef_[0].tolist(),
                       "intercept": float(logistic.intercept_[0])})


def _load_lightgbm(path: Path):
    booster = lightgbm.Booster(model_str=path.read_text())
    return lambda X: booster.predict(X, num_threads=1)


def _load_xgboost(path: Path):
    booster = xgboost.Booster()
    booster.load_model(str(path))
    booster.set_param({"nthread": 1})
    return lambda X: booster.inplace_predict(X)


def _load_histgb(path: Path):
    model = json.loads(path.read_text())
    trees = [{key: np.asarray(values) for key, values in tree.items()} for tree in model["trees"]]

    def predict(X):
        X = np.asarray(X, dtype=np.float64)
        raw = np.full(len(X), model["baseline"])
        for tree in trees:
            raw += _tree_values(tree, X)
        return expit(raw)
    return predict


def _tree_values(tree: dict, X: np.ndarray) -> np.ndarray:
    """Leaf value reached by every row, descending all rows one level per step."""
    node = np.zeros(len(X), dtype=np.intp)
    rows = np.flatnonzero(~tree["is_leaf"][node])
    while rows.size:
        current = node[rows]
        x = X[rows, tree["feature"][current]]
        go_left = np.where(np.isnan(x), tree["missing_left"][current],
                           x <= tree["threshold"][current])
        node[rows] = np.where(go_left, tree["left"][current], tree["right"][current])
        rows = rows[~tree["is_leaf"][node[rows]]]
    return tree["value"][node]


def _load_logistic(path: Path):
    model = {key: np.asarray(value) for key, value in json.loads(path.read_text()).items()}

    def predict(X):
        X = np.asarray(X, dtype=np.float64)
        X = np.where(np.isnan(X), model["fill_values"], X)
        return expit((X - model["mean"]) / model["scale"] @ model["coef"] + model["intercept"])
    return predict


def _tuning_summary(result: dict) -> dict:
    """Study outcome without the parameters (kept per learner); no score is null, not NaN."""
    summary = {k: v for k, v in result.items() if k != "best_params"}
    if summary["best_value"] != summary["best_value"]:
        summary["best_value"] = None
    return summary


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_EXPORTERS = {"lightgbm": _export_lightgbm, "xgboost": _export_xgboost,
              "histgb": _export_histgb, "logistic": _export_logistic}
_LOADERS = {"lightgbm": _load_lightgbm, "xgboost": _load_xgboost, "histgb": _load_histgb,
            "logistic": _load_logistic}
