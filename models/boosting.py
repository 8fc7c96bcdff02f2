"""The plain LightGBM model: out-of-fold scores and a final fit on all rows.

LightGBM (Ke et al., "LightGBM: A Highly Efficient Gradient Boosting Decision Tree", NeurIPS
2017) handles missing values (a failed family is NaN) and hundreds of correlated histogram
features without scaling, and its text model format loads without executing code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import lightgbm
import numpy as np

from models.selection import select_features
from models.validation import FoldPlan

# Rows LightGBM samples to place its histogram bins (its own default is 200,000). Building a
# Dataset holds the sample's values, about 24 bytes per sampled row and feature: at 3,486 features
# (the previous default preset; 4,023 now, 15 % more) 17 GB for 200,000 rows against 4 GB for
# 50,000, which then still puts about 200 values in each of 255 bins
# (benchmarks/bench_fit_memory.py, benchmarks/RESULTS.md). Below 50,000 training rows every row
# is used either way.
BIN_SAMPLE_ROWS = 50_000

DEFAULT_PARAMS: dict[str, Any] = {
    "n_estimators": 400,
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_child_samples": 10,
    "colsample_bytree": 0.3,
    "subsample": 0.8,
    "subsample_freq": 1,
    "reg_lambda": 1.0,
    "bin_construct_sample_cnt": BIN_SAMPLE_ROWS,
    # Every core (OpenMP's default): with deterministic=True the trees do not depend on the
    # number of threads (identical on 1, 2, 3 and 8; tests/test_boosting.py), so a large machine
    # trains faster and gives the same model.
    "n_jobs": 0,
    "verbose": -1,
}

# Images: many small trees, each seeing a tenth of the columns. Thousands of weak, correlated
# histogram and layout features reward many shallow looks at different column subsets. Against
# DEFAULT_PARAMS, out-of-fold AUC (default preset, stratified 5-fold) went 0.864 -> 0.884 on
# stylegan140k_small and 0.976 -> 0.978 on laundered lfw_faceswap; on yonsei_rff (200 images)
# 0.682 -> 0.685 averaged over fold seeds 1-4 (seed 0: 0.732 -> 0.702, a draw within its +-0.07
# interval); a fit is also about half as long. The 404 audio features keep DEFAULT_PARAMS
# (univmelgan_demo: 0.949 against 0.947 averaged over seeds 0-4).
MODALITY_PARAMS: dict[str, dict[str, Any]] = {
    "image": {"n_estimators": 1500, "num_leaves": 7, "colsample_bytree": 0.1},
}


def plain_params(modality: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The plain model's parameters: the defaults, the modality's own, then the user's."""
    return {**DEFAULT_PARAMS, **MODALITY_PARAMS.get(modality, {}), **(overrides or {})}


@dataclass(frozen=True)
class PlainModel:
    """A fitted plain model: LightGBM's booster (``booster_``, named as on LightGBM's
    scikit-learn model), and ``predict_proba`` as in scikit-learn."""
    booster_: Any

    def predict_proba(self, X) -> np.ndarray:
        positive = predict_positive(self, X)
        return np.column_stack([1.0 - positive, positive])


# Arguments of LightGBM's scikit-learn model that its core library does not know; given to
# ``lightgbm.train`` they would be dropped without a word (``verbose: -1``), with what they ask.
SKLEARN_ONLY_PARAMS = {"class_weight": "is_unbalance: true or scale_pos_weight",
                       "importance_type": "nothing (fit writes gain and SHAP importances)"}


def training_params(params: Mapping[str, Any] | None = None,
                    seed: int = 0) -> tuple[dict[str, Any], int]:
    """``lightgbm.train``'s parameters and number of rounds for these plain-model parameters
    (scikit-learn names such as ``colsample_bytree`` are LightGBM aliases)."""
    for name in SKLEARN_ONLY_PARAMS.keys() & dict(params or {}).keys():
        raise ValueError(f"lightgbm parameter {name!r} (config 'lightgbm:') is only known to "
                         f"LightGBM's scikit-learn model; use {SKLEARN_ONLY_PARAMS[name]}")
    merged = {**DEFAULT_PARAMS, **(params or {}), "objective": "binary", "random_state": seed,
              "deterministic": True, "force_row_wise": True}
    return merged, merged.pop("n_estimators")


# LightGBM's names for min_data_in_leaf (its parameter documentation).
MIN_DATA_IN_LEAF_ALIASES = ("min_data_in_leaf", "min_data_per_leaf", "min_data",
                            "min_child_samples", "min_samples_leaf")


class SequenceDataset(lightgbm.Dataset):
    """A Dataset read from a ``lightgbm.Sequence`` that drops the same features as one built from
    a matrix. LightGBM builds it with only the parameters it lists as the Dataset's, without
    min_data_in_leaf, and so drops the features that cannot fill leaves of its default 20 rows
    rather than the model's (lightgbm-org/LightGBM issue 6020): on 26 training rows with
    min_child_samples 10 every feature was dropped."""

    def __init__(self, data, label, leaf_params: Mapping[str, Any]):
        super().__init__(data, label=label)
        self.leaf_params = dict(leaf_params)

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), **self.leaf_params}


def fit_full(X, y: np.ndarray, params: Mapping[str, Any] | None = None, seed: int = 0):
    """A plain model fitted on all rows of ``X``: a matrix, or a ``lightgbm.Sequence`` such as
    ``pipelines.table_rows.TableRows``, whose rows LightGBM bins a batch at a time (the same
    bins and trees as from the matrix)."""
    train_params, rounds = training_params(params, seed)
    label = np.asarray(y, dtype=np.float64)
    if isinstance(X, lightgbm.Sequence):
        dataset = SequenceDataset(X, label, {k: v for k, v in train_params.items()
                                             if k in MIN_DATA_IN_LEAF_ALIASES})
    else:
        dataset = lightgbm.Dataset(X, label=label)
    return PlainModel(lightgbm.train(train_params, dataset, num_boost_round=rounds))


def predict_positive(model: PlainModel, X) -> np.ndarray:
    """Probability of 'fake' for each row of ``X`` (a Sequence is read a batch at a time)."""
    if isinstance(X, lightgbm.Sequence):
        return np.concatenate([model.booster_.predict(X[start:start + X.batch_size])
                               for start in range(0, len(X), X.batch_size)] or [np.empty(0)])
    return model.booster_.predict(X)


def rows_of(X, rows: np.ndarray):
    """These rows of a matrix (a copy) or of a ``TableRows`` (a view, nothing read)."""
    return X[rows] if isinstance(X, np.ndarray) else X.subset(rows)


def columns_of(X, columns: np.ndarray):
    """These columns of a matrix (a copy) or of a ``TableRows`` (a view, nothing read)."""
    return X[:, columns] if isinstance(X, np.ndarray) else X.select_columns(columns)


def out_of_fold(X, y: np.ndarray, plan: FoldPlan,
                params: Mapping[str, Any] | None = None, seed: int = 0,
                max_features: int | None = None, on_fold=None,
                finished: Mapping[int, np.ndarray] | None = None) -> np.ndarray:
    """Probability of 'fake' for every row, each predicted by a model that never saw it.

    ``X`` is a matrix or a ``TableRows`` (read from its file fold by fold). Features are selected
    (``models.selection``) on each fold's training rows only, so the held-out labels never choose
    the columns that score them. ``finished`` maps a fold's index to the predictions of its
    held-out rows from an earlier run: that fold is not refitted. ``on_fold(index,
    predictions)``, if given, is called after each newly fitted fold.
    """
    oof = np.full(len(y), np.nan)
    for index, (train, test) in enumerate(plan.folds):
        if finished and index in finished:
            oof[test] = finished[index]
            continue
        model, columns = fit_selected(rows_of(X, train), y[train], params, seed, max_features)
        oof[test] = predict_positive(model, columns_of(rows_of(X, test), columns))
        if on_fold is not None:
            on_fold(index, oof[test])
    return oof


def fit_selected(X, y: np.ndarray, params: Mapping[str, Any] | None = None,
                 seed: int = 0, max_features: int | None = None):
    """A model fitted on the columns that ``select_features`` picks on these rows, and those
    column indices (the model's input is ``X[:, columns]``)."""
    columns = select_features(X, y, max_features, params, seed)
    selected = X if len(columns) == X.shape[1] else columns_of(X, columns)  # no copy if all kept
    return fit_full(selected, y, params, seed), columns


# SHAP contributions are averaged over at most this many rows: their table is rows x features in
# float64, twice the float32 feature matrix when every row is explained.
EXPLAINED_ROWS = 10_000


def explanation_rows(n_rows: int, seed: int = 0, limit: int = EXPLAINED_ROWS) -> np.ndarray:
    """All row indices, or ``limit`` of them drawn without replacement (sorted), seeded."""
    if n_rows <= limit:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=limit, replace=False))


def importances(model, X: np.ndarray) -> dict[str, np.ndarray]:
    """Total gain per feature, and mean |SHAP contribution| over the rows of ``X`` (LightGBM's
    pred_contrib: the TreeSHAP values of S. M. Lundberg et al., "From local explanations to
    global understanding with explainable AI for trees", Nature Machine Intelligence, 2020)."""
    booster = model.booster_
    gain = booster.feature_importance(importance_type="gain")
    contributions = booster.predict(X, pred_contrib=True)[:, :-1]  # last column is the bias
    return {"gain": np.asarray(gain, dtype=float),
            "mean_abs_contribution": np.abs(contributions).mean(axis=0)}
