"""Cross-validation splits that stay honest on small and grouped data.

With a group column (for example ``pair_key``: a real utterance and its re-syntheses), all members
of a group fall in the same fold, so a model is never scored on a clone of what it trained on.
Small sets lower the number of folds instead of failing, and say so.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold


@dataclass(frozen=True)
class FoldPlan:
    n_splits: int
    folds: tuple[tuple[np.ndarray, np.ndarray], ...]
    note: str | None  # why the number of folds was lowered, if it was; the caller reports it

    def fold_ids(self, n: int) -> np.ndarray:
        ids = np.full(n, -1, dtype=np.int16)
        for k, (_, test) in enumerate(self.folds):
            ids[test] = k
        return ids


def plan_folds(y, groups=None, n_splits: int = 5, seed: int = 0) -> FoldPlan:
    """Stratified (group) k-fold, with ``n_splits`` lowered to what the data allows."""
    y = np.asarray(y).astype(int)
    counts = np.bincount(y, minlength=2)
    if counts.min() < 2:
        raise ValueError(f"cross-validation needs at least 2 samples of each class; "
                         f"got {counts[0]} real and {counts[1]} fake")
    limit = int(counts.min())
    if groups is not None:
        groups = np.asarray(groups)
        limit = min(limit, min(len(np.unique(groups[y == c])) for c in (0, 1)))
        if limit < 2:
            raise ValueError("grouped cross-validation needs each class in at least 2 groups")
    note = None
    if limit < n_splits:
        note = (f"lowered the number of folds from {n_splits} to {limit}: the smallest class "
                f"has only {limit} {'groups' if groups is not None else 'samples'}")
        n_splits = limit
    if groups is None:
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        folds = tuple(splitter.split(np.zeros(len(y)), y))
    else:
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        folds = tuple(splitter.split(np.zeros(len(y)), y, groups))
    for k, (_, test) in enumerate(folds):
        if len(np.unique(y[test])) < 2:
            raise ValueError(f"fold {k} holds a single class; use fewer folds or other groups")
    return FoldPlan(n_splits, folds, note)


def with_copies(plan: FoldPlan, originals: np.ndarray, source_of: np.ndarray) -> FoldPlan:
    """Extend folds planned over original rows to a table that also holds augmented copies.

    ``originals`` are the table indices of the original rows (the rows ``plan`` was made for);
    ``source_of[i]`` is the table index of row i's source (itself for an original). A copy trains
    in every fold where its source trains and is never tested, so no fold is scored on a
    processed twin of a training image.
    """
    folds = tuple((np.flatnonzero(np.isin(source_of, originals[train])), originals[test])
                  for train, test in plan.folds)
    return FoldPlan(plan.n_splits, folds, plan.note)
