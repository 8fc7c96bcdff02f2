"""Which feature columns a LightGBM model is trained on: drop constant columns, cap the rest.

Most of the default preset's 5,511 columns are spatial-pyramid histogram bins, and many are empty
on a given training set. A constant column can never be split on, so dropping it changes no
prediction but shortens the bundle's feature list and the importance table. The optional cap
keeps the ``max_features`` columns with the largest total split gain (the impurity-based
importance of Friedman, "Greedy function approximation: a gradient boosting machine", Ann.
Statist. 2001, as computed by LightGBM) of a quick screening model.

The selection must only ever see training rows: ranking features on all rows before
cross-validation would let the held-out labels choose the columns and inflate out-of-fold
metrics. ``models.boosting`` therefore calls ``select_features`` once per training fold.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

# The screening model trades trees for a larger step (100 x 0.1 against the default 400 x 0.03):
# about the same total shrinkage, a quarter of the cost, and a gain ranking of the same splits.
# The screening model ranks columns: few trees, each allowed to look at a third of the columns
# (the plain model's tenth would leave most columns unseen by 100 trees). Its bins come from
# 10,000 rows, not the plain model's 50,000: from streamed rows LightGBM copies its bin sample
# several times (float64 rows, their transpose, per-column copies), and a ranking of columns does
# not need finer bins. With it a stack fit of 40,000 rows peaked at 3.7 GiB instead of 5.5
# (benchmarks/RESULTS.md, "Fit: memory and time at scale").
SCREENING_PARAMS: dict[str, Any] = {"n_estimators": 100, "learning_rate": 0.1, "num_leaves": 15,
                                    "colsample_bytree": 0.3, "bin_construct_sample_cnt": 10_000}


# Rows per block when scanning a matrix for constant columns.
ROW_BLOCK = 4096


def check_max_features(max_features: int | None) -> None:
    """Refuse a cap that keeps no feature (None means no cap)."""
    if max_features is not None and (isinstance(max_features, bool)
                                     or not isinstance(max_features, (int, np.integer))
                                     or max_features <= 0):
        raise ValueError(f"option --max-features must be a positive integer, got {max_features!r}")


def varying_columns(X) -> np.ndarray:
    """Indices of the columns that are not constant over the rows of ``X`` (a matrix or a
    ``TableRows``, read a block at a time).

    A column with some missing (NaN) values and one other value still varies: LightGBM can split
    missing from present. Only an all-NaN column or a column of a single value is constant.
    Rows are scanned in blocks, so the temporaries stay small beside a large ``X``.
    """
    n_columns = X.shape[1]
    low, high = np.full(n_columns, np.inf), np.full(n_columns, -np.inf)
    some_missing, all_missing = np.zeros(n_columns, bool), np.ones(n_columns, bool)
    for start in range(0, len(X), ROW_BLOCK):
        block = X[start:start + ROW_BLOCK]
        missing = np.isnan(block)
        # fmin/fmax skip NaN; an all-NaN column leaves low = inf and high = -inf.
        low = np.fmin(low, np.fmin.reduce(block, axis=0))
        high = np.fmax(high, np.fmax.reduce(block, axis=0))
        some_missing |= missing.any(axis=0)
        all_missing &= missing.all(axis=0)
    return np.flatnonzero((low < high) | (some_missing & ~all_missing))


def top_by_gain(gain: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest gains, in ascending position order; ties go to the earlier
    position, so the choice is deterministic."""
    order = np.argsort(-np.asarray(gain, dtype=float), kind="stable")
    return np.sort(order[:k])


def select_features(X, y: np.ndarray, max_features: int | None = None,
                    params: Mapping[str, Any] | None = None, seed: int = 0) -> np.ndarray:
    """Column indices (ascending) of ``X`` (a matrix or a ``TableRows``) that a model fitted on
    these rows should use.

    Constant columns are always dropped. With ``max_features``, a screening LightGBM (the given
    parameters with ``SCREENING_PARAMS``) is fitted on the remaining columns and the
    ``max_features`` with the largest total gain are kept; a cap at or above the number of
    varying columns keeps them all. Pass training rows only.
    """
    from models.boosting import columns_of, fit_full

    check_max_features(max_features)
    columns = varying_columns(X)
    if len(columns) == 0:
        raise ValueError(f"all {X.shape[1]} feature columns are constant over the "
                         f"{len(X)} training rows; nothing to fit")
    if max_features is None or max_features >= len(columns):
        return columns
    screening = fit_full(columns_of(X, columns), y, {**(params or {}), **SCREENING_PARAMS}, seed)
    gain = screening.booster_.feature_importance(importance_type="gain")
    return columns[top_by_gain(gain, max_features)]
