"""A stack of tuned gradient-boosted learners and a logistic regression, and its honest evaluation.

``GradientBoostedStack.fit`` (1) tunes each base learner with its own Optuna study
(:mod:`models.tuning`), (2) builds out-of-fold (OOF) predictions of the tuned learners, never
predicting a row with a model that saw it, (3) fits the meta-learner on those OOF predictions,
(4) refits every base learner on all rows. The OOF folds are a fresh partition, not the tuning
folds, and each chooses its own columns (:meth:`GradientBoostedStack._out_of_fold`): the
meta-learner should judge each learner on rows that chose neither its hyperparameters' lucky
splits nor its columns. A booster's OOF fits and refit grow the rounds per training row that its
study's best trial reached by early stopping, averaged over the tuning folds (the round count is
tuned with the other hyperparameters): one fit each instead of an early-stopped fit and a refit.

Meta-learners: ``"logistic"`` is a logistic regression on the logits of the base probabilities
with non-negative weights (stacked generalisation, D. H. Wolpert, "Stacked generalization", Neural
Networks, 1992; the constraint is Breiman's, "Stacked regressions", Machine Learning, 1996: base
learners predict the same target, so a negative weight only fits noise in their differences);
``"rank_mean"`` averages each learner's rank, read as the fraction of OOF scores below a
probability (piecewise-linear between the OOF scores, so one row is scored without needing a
batch), which only uses the ordering of each learner; learners that only lower the average's OOF
AUC are left out (:func:`rank_average_members`). ``"best"`` passes on the probability of the
learner with the highest OOF AUC (the "discrete" Super Learner of M. J. van der Laan, E. C. Polley,
A. E. Hubbard, "Super Learner", Statistical Applications in Genetics and Molecular Biology, 2007).
``"auto"`` fits all three and keeps rank averaging unless weighting or the best learner beats it
clearly on cross-validated OOF AUC (:func:`choose_meta`).

Rank averaging is the default. In nested cross-validation (default image preset, 8 trials), plain
rank averaging scored at least as well as ``auto``: stylegan140k_small 0.876 against 0.874
(``auto`` kept rank averaging in 4 of 5 outer folds); yonsei_rff, mean over fold seeds 0-4, 0.711
against 0.699 (at seed 0 one outer fold passed on the logistic regression, the best learner on
its inner rows and the worst on the outer ones). Weights fitted on a few hundred OOF rows chase
noise, and the base learners are refitted on more rows than produced those OOF scores, so fitted
weights meet learners that are not quite the ones they were fitted on; ranks only need each
learner's ordering.

The OOF predictions kept in ``oof_predictions_`` are mildly optimistic because the
hyperparameters were chosen on the same rows; :func:`nested_oof` gives the honest estimate by
repeating the whole fit inside outer folds.

Parallelism: ``n_jobs`` worker processes (joblib/loky; -1 = all cores) run learners (tuning,
refit) and (learner, fold) pairs (OOF) at the same time, each model on ``model_threads`` threads;
:func:`nested_oof` instead runs whole stack fits (outer folds, final) at the same time, one per
worker. Results do not depend on ``n_jobs``.
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field

import lightgbm
import numpy as np
import optuna
import pandas as pd
from joblib import Parallel, delayed, effective_n_jobs
from scipy.optimize import minimize
from scipy.special import expit, logit
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from models.boosting import columns_of, rows_of
from models.learners import LEARNER_NAMES, EarlyStopping, check_learner_name, fit_learner
from models.metrics import auc, delong_difference
from models.selection import select_features
from models.tuning import load_search_spaces, make_splits, tune_learner

META_KINDS = ("logistic", "rank_mean", "best")
# What ``auto`` keeps unless another combiner is clearly better: it fits no weights.
SAFE_META = "rank_mean"
META_CHOICES = (*META_KINDS, "auto")
# Inverse L2 strength of the logistic meta-learner, as scikit-learn's C.
META_C = 1.0
# The OOF partition's seed is the tuning folds' seed plus this: another partition of the rows.
OOF_SEED_OFFSET = 1
# Separates a learner's kind from the view of the columns it reads: "lightgbm@global".
VIEW_SEPARATOR = "@"
# A view's name also names its learners' model files.
VIEW_NAME = re.compile(r"[A-Za-z0-9_]+")
# Probabilities are clipped before the logit so a saturated learner gives a finite feature.
PROBABILITY_CLIP = 1e-12


@dataclass
class MetaLearner:
    """The combiner of base probabilities: fitted arrays only, so it is saved as plain JSON."""
    kind: str
    coef: list[float] = field(default_factory=list)
    intercept: float = 0.0
    knots: list[list[list[float]]] = field(default_factory=list)

    def predict(self, base_probabilities: np.ndarray) -> np.ndarray:
        """Stack probability (logistic), mean rank (rank_mean: over the learners ``coef``
        weights, all of them when it is empty) or the chosen learner's probability (best:
        ``coef`` is one-hot) from one column per learner."""
        if self.kind == "logistic":
            return expit(logit_features(base_probabilities) @ np.asarray(self.coef)
                         + self.intercept)
        if self.kind == "best":
            return np.asarray(base_probabilities, dtype=np.float64) @ np.asarray(self.coef)
        ranks = [np.interp(base_probabilities[:, j], x, r) for j, (x, r) in enumerate(self.knots)]
        if not self.coef:
            return np.mean(ranks, axis=0)
        return np.asarray(self.coef) @ np.asarray(ranks)

    def as_dict(self) -> dict:
        return asdict(self)


def logit_features(base_probabilities: np.ndarray) -> np.ndarray:
    # In float64: XGBoost's float32 probabilities would round 1 - 1e-12 back to 1 (logit = inf).
    probabilities = np.asarray(base_probabilities, dtype=np.float64)
    return logit(np.clip(probabilities, PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP))


def fit_meta(kind: str, oof_probabilities: np.ndarray, y) -> MetaLearner:
    """Fit the meta-learner on OOF probabilities (one column per base learner)."""
    if kind == "logistic":
        coef, intercept = nonnegative_logistic(logit_features(oof_probabilities), y)
        return MetaLearner(kind, coef=coef.tolist(), intercept=intercept)
    if kind == "rank_mean":
        kept = rank_average_members(oof_probabilities, y)
        return MetaLearner(kind, coef=(kept / kept.sum()).tolist(),
                           knots=[rank_knots(column) for column in oof_probabilities.T])
    if kind == "best":
        scores = [auc(y, column) for column in oof_probabilities.T]
        return MetaLearner(kind, coef=np.eye(len(scores))[int(np.argmax(scores))].tolist())
    raise ValueError(f"unknown meta-learner {kind!r}; choose one of {META_KINDS}")


def rank_average_members(oof_probabilities: np.ndarray, y) -> np.ndarray:
    """1 for each learner the rank average keeps, else 0: backward elimination on OOF AUC.

    Starting from all learners, a learner is dropped when the average of the others has a higher
    OOF AUC by more than one DeLong standard error of the paired difference (the one-standard-error
    rule of :func:`choose_meta`); of several such learners, the one whose removal gains most,
    then again on the rest. A weaker learner stays when its errors differ from the others' (it
    still lifts the average) or when the rows cannot tell; a learner that clearly dilutes the
    others goes: on the 2,660 rows of ``demo.sh`` the logistic regression (0.775 against boosters
    at 0.867-0.873) pulled the four-learner average down to 0.867. Without the standard-error
    margin, elimination on the 160 rows of a yonsei_rff fold kept one or two learners chosen by
    noise, and lost 0.01-0.03 AUC against the plain average. With the margin (nested, default
    settings) the stack went from 0.867 to 0.870 on the ``demo.sh`` table, stayed at 0.876 on
    stylegan140k_small, and went from 0.711 to 0.706 on yonsei_rff (mean of fold seeds 0-4, inside
    its +-0.07 intervals). This is ensemble selection (R. Caruana, A. Niculescu-Mizil, G. Crew,
    A. Ksikes, "Ensemble Selection from Libraries of Models", ICML 2004) run backwards over equal
    weights.
    """
    ranks = np.column_stack([rankdata(column) for column in np.asarray(oof_probabilities).T])
    kept = list(range(ranks.shape[1]))
    while len(kept) > 1:
        average = ranks[:, kept].mean(axis=1)
        clear_gains = {}
        for j in kept:
            gain, variance = delong_difference(y, ranks[:, [m for m in kept if m != j]].mean(axis=1),
                                               average)
            if gain > np.sqrt(variance):
                clear_gains[j] = gain
        if not clear_gains:
            break
        kept.remove(max(clear_gains, key=clear_gains.__getitem__))
    return np.isin(np.arange(ranks.shape[1]), kept).astype(np.float64)


def nonnegative_logistic(Z: np.ndarray, y, C: float = META_C) -> tuple[np.ndarray, float]:
    """L2-penalised logistic regression with weights >= 0 (intercept free).

    Minimises ``sum_i log(1 + exp(z_i)) - y_i z_i + |w|^2 / (2 C)`` with ``z = Z w + b``, the
    objective of scikit-learn's ``LogisticRegression(C=C)``, under ``w >= 0`` (L-BFGS-B).
    """
    Z, y = np.asarray(Z, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n_columns = Z.shape[1]

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        weights, intercept = params[:n_columns], params[n_columns]
        z = Z @ weights + intercept
        residual = expit(z) - y
        value = np.sum(np.logaddexp(0.0, z) - y * z) + weights @ weights / (2 * C)
        return value, np.r_[Z.T @ residual + weights / C, residual.sum()]

    start = np.r_[np.full(n_columns, 1.0 / n_columns), 0.0]
    bounds = [(0.0, None)] * n_columns + [(None, None)]
    result = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds)
    return result.x[:n_columns], float(result.x[n_columns])


def rank_knots(scores: np.ndarray) -> list[list[float]]:
    """Knots of a strictly increasing map from probability to mid-rank fraction among ``scores``.

    Each distinct score maps to (number below + half the number equal) / n; 0 and 1 are added as
    end knots (mapping to 0 and 1) so probabilities beyond the OOF range keep their order.
    """
    values, counts = np.unique(scores, return_counts=True)
    ranks = (np.cumsum(counts) - 0.5 * counts) / len(scores)
    if values[0] > 0.0:
        values, ranks = np.r_[0.0, values], np.r_[0.0, ranks]
    if values[-1] < 1.0:
        values, ranks = np.r_[values, 1.0], np.r_[ranks, 1.0]
    return [values.tolist(), ranks.tolist()]


class GradientBoostedStack(ClassifierMixin, BaseEstimator):
    """Tuned LightGBM / XGBoost / HistGradientBoosting / logistic regression, stacked.

    Parameters
    ----------
    learners : base learner names, among ``models.learners.LEARNER_NAMES``.
    search_spaces : YAML path or dict of search spaces; None = ``configs/search_spaces.yaml``.
    n_trials : finished Optuna trials wanted per learner (a resumed study only runs the rest).
    timeout : seconds allowed to each learner's tuning (None = no limit).
    cv : number of folds of the tuning and of the OOF predictions (two different partitions).
    meta : ``"rank_mean"`` (default), ``"logistic"``, ``"best"`` or ``"auto"`` (module
        docstring); ``meta_.kind`` is the one used.
    storage : Optuna storage (journal file path or database URL); None = in memory.
    study_prefix : prefix of the study names (the study of a learner is ``prefix + name``).
    random_state : seed of folds, samplers and models.
    n_jobs : worker processes (-1 = all cores).
    model_threads : threads of each model.
    validation_fraction, patience : early stopping of the boosters (inner split, rounds).
    worker : distinguishes processes tuning the same studies at once (their samplers get
        different seeds); see :func:`models.tuning.tune_learner`.
    max_features : keep at most this many features, ranked by a screening LightGBM's gain on the
        rows given to ``fit`` (:func:`models.selection.select_features`; constant columns are
        always dropped). Inside :func:`nested_oof` each outer fold selects on its own training
        rows, so the held-out labels never choose the columns. ``support_`` holds the indices.
    views : named subsets of the columns, ``{name: column indices}``. A learner named
        ``"KIND@VIEW"`` (``"lightgbm@global"``) is learner KIND fitted on that view's columns only,
        screened on their own with the same cap (``view_supports_``), with a study of its own.
        A view gives the stack a learner that ranks the rows otherwise: when a few families have
        most of the columns (the image grids, ``layout`` and ``coherence``: 3,584 of 4,023),
        column sampling draws mostly from them, and a booster without them disagrees more with
        the others (see ``pipelines.fit``).
    """

    def __init__(self, learners=LEARNER_NAMES, *, search_spaces=None, n_trials=4, timeout=None,
                 cv=3, meta="rank_mean", storage=None, study_prefix="", random_state=0,
                 n_jobs=-1, model_threads=1, validation_fraction=0.2, patience=100, worker=0,
                 max_features=None, views=None):
        self.learners = learners
        self.search_spaces = search_spaces
        self.n_trials = n_trials
        self.timeout = timeout
        self.cv = cv
        self.meta = meta
        self.storage = storage
        self.study_prefix = study_prefix
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.model_threads = model_threads
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.worker = worker
        self.max_features = max_features
        self.views = views

    def fit(self, X, y, groups=None):
        """Tune, fit the meta-learner on OOF predictions, then refit the learners on all rows.

        ``X`` is a matrix, or rows streamed from a feature table
        (``pipelines.table_rows.TableRows``): then the features are screened a batch of rows at
        a time and only the chosen columns are ever held whole (benchmarks/RESULTS.md).
        """
        started = time.perf_counter()
        X_all, y = self._validated(X, y)
        matrices, y = self._selected(X_all, y)
        self.classes_ = np.array([0, 1])
        names = list(self.learners)
        splits = make_splits(y, groups, self.cv, self.random_state + OOF_SEED_OFFSET)
        parallel = Parallel(n_jobs=self.n_jobs, backend="loky")
        costs = {name: dict.fromkeys(_COST_KEYS, 0.0) for name in names}
        wall = {}

        tick = time.perf_counter()
        self._tune(parallel, names, matrices, y, groups, costs)
        wall["tune"] = time.perf_counter() - tick

        tick = time.perf_counter()
        oof = self._out_of_fold(parallel, names, X_all, y, groups, splits, costs)
        wall["oof"] = time.perf_counter() - tick

        tick = time.perf_counter()
        chosen, stacked = choose_meta(self.meta, oof, y, splits)
        self.meta_ = fit_meta(chosen, oof, y)
        self.oof_predictions_ = pd.DataFrame(oof, columns=names)
        self.oof_predictions_["stack"] = stacked
        wall["meta"] = time.perf_counter() - tick

        tick = time.perf_counter()
        refitted = dict(zip(_slowest_first(names), parallel(delayed(_timed)(
            fit_learner, learner_kind(name), self.best_params_[name], matrices[learner_view(name)],
            y, groups, **self._fit_settings(name)) for name in _slowest_first(names))))
        self.learners_ = {name: refitted[name][0] for name in names}
        for name in names:
            _add_cost(costs[name], "refit", refitted[name][1])
        wall["refit"] = time.perf_counter() - tick
        wall["total"] = time.perf_counter() - started
        # Per-learner costs are measured inside the workers: with n_jobs > 1 they add up to more
        # than the wall time of their phase; CPU seconds show the work whatever the machine load.
        self.timings_ = {"wall": wall, "learners": costs}
        return self

    def tune(self, X, y, groups=None):
        """Run (or join) only the learners' Optuna studies; sets ``tuning_`` and ``best_params_``.

        For workers sharing a storage: a later :meth:`fit` on the same data finds the studies
        finished and runs no new trial.
        """
        matrices, y = self._selected(*self._validated(X, y))
        names = list(self.learners)
        costs = {name: dict.fromkeys(_COST_KEYS, 0.0) for name in names}
        self._tune(Parallel(n_jobs=self.n_jobs, backend="loky"), names, matrices, y, groups, costs)
        return self

    def _validated(self, X, y):
        """scikit-learn's checks of a matrix; of a Sequence (read later, in batches) its width
        and the labels only."""
        if not isinstance(X, lightgbm.Sequence):
            return validate_data(self, X, y, dtype=np.float32, ensure_all_finite="allow-nan")
        y = column_or_1d(y)
        if len(y) != len(X):
            raise ValueError(f"{len(X)} rows of features but {len(y)} labels")
        self.n_features_in_ = X.shape[1]
        return X, y

    def _selected(self, X, y) -> tuple[dict, np.ndarray]:
        """Check the data, choose ``support_`` (and ``view_supports_``) on these rows; the
        chosen columns as one matrix per view (key None: the learners on all columns) and the
        int labels."""
        self._check_settings(y)
        y = y.astype(int)
        # Nothing else runs while the columns are screened: the screening model may use every
        # worker's threads (one inside the nested folds' workers, whose n_jobs is 1).
        threads = effective_n_jobs(self.n_jobs) * self.model_threads
        supports = self._screened(X, y, threads)
        self.support_ = supports.pop(None)
        self.view_supports_ = supports
        return view_matrices(X, self._supports()), y

    def _screened(self, X, y, threads: int) -> dict:
        """The columns (indices into ``X``) that the learners of each view read, chosen on these
        rows: key None for all columns, then each view's own columns, screened with the same cap.

        Constant columns, entirely missing ones among them, are never chosen (HistGradientBoosting
        would fail on an all-missing column)."""
        screen = dict(max_features=self.max_features, params={"n_jobs": threads},
                      seed=self.random_state)
        supports = {None: select_features(X, y, **screen)}
        for view in self._views_used():
            columns = np.asarray(self.views[view], dtype=np.intp)
            supports[view] = columns[select_features(columns_of(X, columns), y, **screen)]
        return supports

    def _supports(self) -> dict:
        """Fitted column indices per view (key None: all columns)."""
        return {None: self.support_, **self.view_supports_}

    def _views_used(self) -> list[str]:
        return sorted({learner_view(name) for name in self.learners} - {None})

    def _tune(self, parallel, names, matrices, y, groups, costs) -> None:
        """One study per learner; sets ``tuning_`` and ``best_params_``."""
        spaces = load_search_spaces(self.search_spaces)
        missing = sorted({learner_kind(name) for name in names} - set(spaces))
        if missing:
            raise ValueError(f"no search space for learners {missing}")
        tuned = dict(zip(_slowest_first(names), parallel(delayed(_timed)(
            tune_learner, learner_kind(name), matrices[learner_view(name)], y, groups,
            space=spaces[learner_kind(name)], n_trials=self.n_trials,
            timeout=self.timeout, cv=self.cv, storage=self.storage,
            study_name=f"{self.study_prefix}{name}", worker=self.worker, **self._fit_settings())
            for name in _slowest_first(names))))
        for name in names:
            _add_cost(costs[name], "tune", tuned[name][1])
        self.tuning_ = {name: asdict(tuned[name][0]) for name in names}
        self.best_params_ = {name: tuned[name][0].best_params for name in names}

    def _out_of_fold(self, parallel, names, X_all, y, groups, splits, costs) -> np.ndarray:
        """OOF probabilities of the tuned learners, one column per learner.

        Each fold chooses its own columns on its training part (``max_features``): columns chosen
        on all rows would have seen the held-out labels, and on a few hundred rows that made the
        OOF AUC of the logistic regression (the learner that leans most on the chosen columns)
        look best when it scored worst on new rows (C. Ambroise, G. J. McLachlan, "Selection
        bias in gene extraction on the basis of microarray gene-expression data", PNAS, 2002).
        """
        tasks = [(name, fold) for fold in range(len(splits)) for name in _slowest_first(names)]

        def fits():
            # Fold by fold (the order of ``tasks``), so only the folds being fitted hold a
            # matrix of their columns.
            for fold, (train, test) in enumerate(splits):
                # Screened while the previous fold's models still fit in the workers.
                chosen = self._screened(rows_of(X_all, train), y[train], self.model_threads)
                matrices = view_matrices(X_all, chosen)
                for name in _slowest_first(names):
                    yield delayed(_timed)(_fit_predict, learner_kind(name), self.best_params_[name],
                                          matrices[learner_view(name)], y, groups, train, test,
                                          **self._fit_settings(name))

        predictions = parallel(fits())
        oof = np.empty((len(y), len(names)))
        for (name, fold), (prediction, cost) in zip(tasks, predictions):
            oof[splits[fold][1], names.index(name)] = prediction
            _add_cost(costs[name], "oof", cost)
        return oof

    def _fit_settings(self, name: str | None = None) -> dict:
        """Settings of every fit; after tuning, a learner's fits grow the rounds per row its
        study found (see the class docstring)."""
        settings = dict(random_state=self.random_state, n_threads=self.model_threads,
                        early_stopping=EarlyStopping(self.validation_fraction, self.patience))
        if name is not None:
            settings["rounds_per_row"] = self.tuning_[name]["rounds_per_row"]
        return settings

    def predict_proba(self, X) -> np.ndarray:
        """Columns P(real), P(fake); with ``meta='rank_mean'`` the second column is a mean rank."""
        base = self.learner_probabilities(X)  # checks first that the stack is fitted
        positive = self.meta_.predict(base)
        return np.column_stack([1.0 - positive, positive])

    def learner_probabilities(self, X) -> np.ndarray:
        """Each learner's probability of 'fake' for the rows of ``X``: one column per learner,
        in the order of ``learners`` (what the meta-learner combines)."""
        check_is_fitted(self, "meta_")
        if isinstance(X, lightgbm.Sequence):
            if X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                                 f"expecting {self.n_features_in_} features as input")
        else:
            X = validate_data(self, X, reset=False, dtype=np.float32,
                              ensure_all_finite="allow-nan")
        matrices = view_matrices(X, self._supports())
        return np.column_stack([self.learners_[name].predict_positive(matrices[learner_view(name)])
                                for name in self.learners])

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def _check_settings(self, y) -> None:
        if not set(np.unique(y)) == {0, 1}:
            raise ValueError("y must contain both classes 0 (real) and 1 (fake), and only them")
        if not self.learners or len(set(self.learners)) != len(self.learners):
            raise ValueError(f"learners must be distinct and at least one, got {self.learners}")
        for view in self.views or {}:
            if not (isinstance(view, str) and VIEW_NAME.fullmatch(view)):
                raise ValueError(f"view names are letters, digits and '_', got {view!r}")
        for name in self.learners:
            check_learner_name(learner_kind(name))
            view = learner_view(name)
            if view is not None and view not in (self.views or {}):
                raise ValueError(f"learner {name!r} names view {view!r}, which is not among the "
                                 f"stack's views {sorted(self.views or {})}")
            if view is not None and not len(self.views[view]):
                raise ValueError(f"view {view!r} of learner {name!r} has no columns")
        if self.meta not in META_CHOICES:
            raise ValueError(f"unknown meta-learner {self.meta!r}; choose one of {META_CHOICES}")


@dataclass
class NestedOOF:
    """Honest OOF predictions: ``predictions`` has columns fold, target, each learner and stack;
    ``final`` is the stack fitted (or, tuning only, tuned) on all rows when it was asked for."""
    predictions: pd.DataFrame
    folds: list[dict]
    final: GradientBoostedStack | None = None


def nested_oof(X, y, groups=None, *, outer_cv: int = 5, outer_folds=None, tune_only=False,
               with_final=False, on_fit=None, **stack_params) -> NestedOOF:
    """Out-of-fold predictions of every base learner and of the stack, with tuning nested inside.

    Each outer fold's test part is predicted by a stack (tuning included) fitted on the outer
    training part only, so no hyperparameter, round count or meta weight has seen the rows it
    predicts. ``stack_params`` go to :class:`GradientBoostedStack`; the studies of outer fold k are
    named ``{study_prefix}outer{k}-{learner}``, so an interrupted run resumes fold by fold. With
    ``with_final`` the stack is also fitted on all rows (studies ``{study_prefix}final-...``).

    The outer folds are ``outer_cv`` stratified (group) folds, or the given ``outer_folds``
    ((train, test) index pairs, e.g. from ``models.validation.plan_folds``); rows in no test part
    keep fold -1 and NaN predictions. With ``tune_only`` only the studies run (see
    :meth:`GradientBoostedStack.tune`): the predictions stay NaN and each fold holds its tuning.

    The fits (outer folds, final) are independent, so they run at the same time, one per worker
    process (``n_jobs``; largest first), each fitting its learners one after another: up to
    folds + 1 workers stay busy, where one fit has four learners to spread (on 2 cores it kept
    1.96 cores busy on the ``demo.sh`` table, for about the same wall time as before: there the
    work itself set it). ``on_fit(label)`` is called as each fit ends (label ``"final"`` or the fold
    number). Results do not depend on ``n_jobs``.
    """
    if not isinstance(X, lightgbm.Sequence):
        X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y).astype(int)
    prefix = stack_params.pop("study_prefix", "")
    n_jobs = stack_params.pop("n_jobs", -1)
    names = list(stack_params.get("learners", LEARNER_NAMES))
    if outer_folds is None:
        outer_folds = make_splits(y, groups, outer_cv, stack_params.get("random_state", 0))
    # The final fit takes every row: a slice, so X is not copied.
    tasks = ([("final", slice(None), None)] if with_final else []) + [
        (k, train, test) for k, (train, test) in enumerate(outer_folds)]
    parallel = Parallel(n_jobs=min(effective_n_jobs(n_jobs), len(tasks)), backend="loky",
                        return_as="generator_unordered")
    results = {}
    for label, result in parallel(delayed(_nested_fit)(
            label, X, y, groups, train, test, tune_only,
            {**stack_params, "n_jobs": 1, "study_prefix": f"{prefix}{_study_part(label)}"},
            optuna.logging.get_verbosity())
            for label, train, test in tasks):
        results[label] = result
        if on_fit is not None:
            on_fit(label)
    predictions = pd.DataFrame({"fold": -1, "target": y}, index=np.arange(len(y)))
    for name in names + ["stack"]:
        predictions[name] = np.nan
    folds = []
    for k, (_, test) in enumerate(outer_folds):
        fold, fold_predictions = results[k]
        if not tune_only:
            predictions.loc[test, "fold"] = k
            for name, values in fold_predictions.items():
                predictions.loc[test, name] = values
        folds.append(fold)
    return NestedOOF(predictions, folds, results.get("final"))


def _study_part(label) -> str:
    return "final-" if label == "final" else f"outer{label}-"


def _nested_fit(label, X, y, groups, train, test, tune_only, stack_params,
                optuna_verbosity):
    """One fit of :func:`nested_oof`, in a worker: the final stack, or an outer fold's record and
    its held-out predictions (learner or "stack" -> values). Optuna logs as in the caller."""
    optuna.logging.set_verbosity(optuna_verbosity)
    stack = GradientBoostedStack(**stack_params)
    train_groups = None if groups is None else np.asarray(groups)[train]
    if tune_only:
        stack.tune(rows_of(X, train), y[train], train_groups)
        return label, stack if label == "final" else ({"fold": label, "tuning": stack.tuning_}, {})
    stack.fit(rows_of(X, train), y[train], train_groups)
    if label == "final":
        return label, stack
    names = list(stack.learners)
    base = stack.learner_probabilities(rows_of(X, test))
    fold_predictions = dict(zip(names, base.T))
    fold_predictions["stack"] = stack.meta_.predict(base)
    return label, ({"fold": label, "n_train": int(len(train)), "n_test": int(len(test)),
                    "tuning": stack.tuning_, "meta": stack.meta_.as_dict(),
                    "n_rounds": {n: stack.learners_[n].n_rounds for n in names},
                    "n_features": int(len(stack.support_)), "timings": stack.timings_},
                   fold_predictions)


def dense_columns(X, columns: np.ndarray) -> np.ndarray:
    """These columns of every row as a matrix: a copy from a matrix, read from a Sequence."""
    chosen = columns_of(X, columns)
    return chosen if isinstance(chosen, np.ndarray) else chosen[:]


def view_matrices(X, supports: dict) -> dict:
    """The matrix each view's learners read (key None: the learners on all columns), from the
    column indices of each view."""
    return {view: dense_columns(X, columns) for view, columns in supports.items()}


def _fit_predict(name, params, X, y, groups, train, test, **fit_settings) -> np.ndarray:
    model = fit_learner(name, params, X[train], y[train],
                        None if groups is None else np.asarray(groups)[train], **fit_settings)
    return model.predict_positive(X[test])


def choose_meta(meta: str, oof: np.ndarray, y, splits) -> tuple[str, np.ndarray]:
    """The meta-learner kind to use and its cross-validated stack OOF predictions.

    ``"auto"`` keeps rank averaging, which fits nothing, unless a fitted combiner (``logistic``,
    ``best``) beats its cross-validated AUC by more than one DeLong standard error of the paired
    difference; of those that do, the one with the highest AUC. This is the one-standard-error
    rule (L. Breiman, J. Friedman, R. Olshen, C. Stone, "Classification and Regression Trees",
    1984, section 3.4.3): on a few hundred rows the inner folds cannot tell the combiners apart,
    and picking the highest AUC there picked the weakest learner of the outer evaluation.
    """
    kinds = META_KINDS if meta == "auto" else (meta,)
    stacked = {kind: _cross_validated_meta(kind, oof, y, splits) for kind in kinds}
    if meta != "auto":
        return meta, stacked[meta]
    clear_gains = {}
    for kind in kinds:
        if kind != SAFE_META:
            gain, variance = delong_difference(y, stacked[kind], stacked[SAFE_META])
            if gain > np.sqrt(variance):
                clear_gains[kind] = gain
    chosen = max(clear_gains, key=clear_gains.__getitem__) if clear_gains else SAFE_META
    return chosen, stacked[chosen]


def _cross_validated_meta(kind: str, oof: np.ndarray, y, splits) -> np.ndarray:
    """Stack OOF: each fold's rows combined by a meta-learner fitted on the other folds' OOF."""
    stacked = np.empty(len(y))
    for train, test in splits:
        stacked[test] = fit_meta(kind, oof[train], y[train]).predict(oof[test])
    return stacked


# Dispatch order of parallel work, slowest learner first, so that no worker is left alone with it.
_COST_RANK = {"histgb": 0, "xgboost": 1, "lightgbm": 2, "logistic": 3}


def _slowest_first(names: list[str]) -> list[str]:
    return sorted(names, key=lambda name: _COST_RANK[learner_kind(name)])


def learner_kind(name: str) -> str:
    """The learner of a stack member's name: ``"lightgbm"`` for ``"lightgbm@global"``."""
    return name.split(VIEW_SEPARATOR, 1)[0]


def learner_view(name: str) -> str | None:
    """The view of a stack member's name (``"global"`` for ``"lightgbm@global"``), or None."""
    return name.partition(VIEW_SEPARATOR)[2] or None


_COST_KEYS = ("tune_wall", "tune_cpu", "oof_wall", "oof_cpu", "refit_wall", "refit_cpu")


def _timed(function, *args, **kwargs):
    """Run ``function``; return its result and its (wall, CPU) seconds in the running process."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, (time.perf_counter() - wall, time.process_time() - cpu)


def _add_cost(costs: dict, phase: str, cost: tuple[float, float]) -> None:
    costs[f"{phase}_wall"] += cost[0]
    costs[f"{phase}_cpu"] += cost[1]
