"""Base learners of the stack: three gradient-boosting libraries and a standardised logistic
regression.

Every learner is built from a name and a dict of hyperparameters (the keys of the scikit-learn
style estimator, as written in ``configs/search_spaces.yaml``). The toolkit owns the settings that
must not be tuned: seeds, threads, class-imbalance weights and early stopping.

Early stopping (boosters only): the training part is split once more (stratified, grouped when
groups are given) into an inner training and an inner validation part; the booster is grown on the
inner training part until the validation log-loss has not improved for ``patience`` rounds. The
refit on the whole training part (``refit=True``, the default) grows the best number of rounds
scaled by the ratio of rows, n_all / n_inner (about 1 / (1 - validation_fraction)): a booster
fitted on more rows keeps improving for more rounds (the usual rule when refitting on all the
data after early stopping). On stylegan140k_small (default preset, 5-fold, the plain image
parameters at learning rate 0.03, patience 100) the unscaled count gave AUC 0.877, the scaled one
0.879, a fixed 1,500 rounds 0.884. Given ``rounds_per_row`` (the stack passes the rate its tuning
found, :mod:`models.tuning`), a booster skips early stopping and grows that many rounds per
training row, one fit instead of two.

Threads: each model uses ``n_threads`` threads (default 1). On a 2-core machine the stack runs two
models at once in separate processes rather than one model on two threads: LightGBM and XGBoost
scale well on two threads but HistGradientBoosting barely does on a few thousand rows, and one
thread per model keeps every result bit-identical whatever the number of parallel workers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import lightgbm
import numpy as np
import xgboost
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedShuffleSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from models.boosting import BIN_SAMPLE_ROWS

BOOSTERS = ("lightgbm", "xgboost", "histgb")
LEARNER_NAMES = BOOSTERS + ("logistic",)

# Hyperparameters a search space may not set: the toolkit sets them (seeds, threads, imbalance,
# early stopping, objective) so that every learner is fitted the same, reproducible way.
RESERVED_PARAMS = frozenset({
    "random_state", "seed", "n_jobs", "nthread", "num_threads", "verbose", "verbosity",
    "class_weight", "scale_pos_weight", "is_unbalance", "objective", "loss", "eval_metric",
    "early_stopping", "early_stopping_rounds", "n_iter_no_change", "validation_fraction",
    "scoring", "callbacks", "warm_start", "categorical_features",
})

# LightGBM booster parameters that its scikit-learn wrapper accepts as keywords but does not list.
LIGHTGBM_EXTRA_PARAMS = frozenset({"max_bin", "extra_trees", "path_smooth",
                                   "feature_fraction_bynode"})

# The hyperparameter holding the (maximum) number of boosting rounds of each booster.
ROUNDS_PARAM = {"lightgbm": "n_estimators", "xgboost": "n_estimators", "histgb": "max_iter"}


class UnweightedBinningHistGB(HistGradientBoostingClassifier):
    """HistGradientBoostingClassifier whose bin edges ignore the sample weights.

    scikit-learn 1.9 places the bin edges at weighted quantiles, one ``_weighted_percentile``
    call per edge and feature: with ``class_weight='balanced'`` that binning took 18 s of a 19 s
    fit on 900 rows x 1,000 features (against 0.3 s unweighted), and made this learner 74% of a
    stack's tuning time. Balanced class weights take only two values, so weighting the edges
    buys nothing; the edges are the unweighted quantiles, as in LightGBM and scikit-learn < 1.9.
    The weights still enter the gradients and hessians, which is what balances the classes.
    (Upstream speeds the weighted path up in scikit-learn PR #34248.)
    """

    def _bin_data(self, X, sample_weight, is_training_data):
        return super()._bin_data(X, None, is_training_data)


@dataclass(frozen=True)
class EarlyStopping:
    """How boosters find their number of rounds: inner validation share and patience in rounds."""
    validation_fraction: float = 0.2
    # On a few hundred validation rows the log-loss is noisy: with 30 rounds of patience LightGBM
    # stopped early enough to lose 0.009 AUC on stylegan140k_small against 100 rounds.
    patience: int = 100


@dataclass
class FittedLearner:
    """A fitted base learner; ``n_rounds`` is its number of boosting rounds (None for logistic),
    ``n_rows`` the number of rows it was grown on."""
    name: str
    estimator: object
    n_rounds: int | None
    n_threads: int = 1
    n_rows: int = 0

    def predict_positive(self, X) -> np.ndarray:
        """Probability of the positive class (fake) for each row."""
        with threadpool_limits(limits=self.n_threads):
            return self.estimator.predict_proba(_input_for(self.name, X))[:, 1]


def check_learner_name(name: str) -> None:
    if name not in LEARNER_NAMES:
        raise ValueError(f"unknown learner {name!r}; known learners: {', '.join(LEARNER_NAMES)}")


def tunable_params(name: str) -> frozenset[str]:
    """Hyperparameter names a search space may set for this learner."""
    check_learner_name(name)
    extra = LIGHTGBM_EXTRA_PARAMS if name == "lightgbm" else frozenset()
    return (frozenset(_default_estimator(name).get_params()) | extra) - RESERVED_PARAMS


def make_estimator(name: str, params: dict, *, positive_weight: float, random_state: int = 0,
                   n_threads: int = 1, patience: int | None = None):
    """An unfitted estimator with the toolkit's fixed settings; ``patience`` enables early stopping.

    ``positive_weight`` is n_negatives / n_positives of the training data (the imbalance weight of
    LightGBM and XGBoost); HistGradientBoosting and the logistic regression use
    ``class_weight='balanced'``, which is the same reweighting.
    """
    check_learner_name(name)
    unknown = set(params) - tunable_params(name)
    if unknown:
        raise ValueError(f"parameters {sorted(unknown)} cannot be set for learner {name!r}")
    if name == "lightgbm":
        return lightgbm.LGBMClassifier(**params, scale_pos_weight=positive_weight,
                                       bin_construct_sample_cnt=BIN_SAMPLE_ROWS,
                                       random_state=random_state, n_jobs=n_threads, verbose=-1)
    if name == "xgboost":
        return xgboost.XGBClassifier(**params, scale_pos_weight=positive_weight,
                                     random_state=random_state, n_jobs=n_threads,
                                     eval_metric="logloss", early_stopping_rounds=patience)
    if name == "histgb":
        stopping = ({"early_stopping": True, "n_iter_no_change": patience, "scoring": "loss"}
                    if patience else {"early_stopping": False})
        return UnweightedBinningHistGB(**params, **stopping, class_weight="balanced",
                                       random_state=random_state)
    return Pipeline([
        # keep_empty_features: an all-NaN column stays (as 0) so the column layout never changes.
        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ("scale", StandardScaler()),
        ("logistic", LogisticRegression(**{"max_iter": 2000, **params}, class_weight="balanced",
                                        random_state=random_state)),
    ])


def fit_learner(name: str, params: dict, X, y, groups=None, *, random_state: int = 0,
                n_threads: int = 1, early_stopping: EarlyStopping = EarlyStopping(),
                refit: bool = True, rounds_per_row: float | None = None) -> FittedLearner:
    """Fit one base learner; boosters use early stopping on an inner validation split.

    With ``refit=False`` the early-stopped model, grown on the inner training part only, is
    returned: half the cost, used while tuning to rank hyperparameters. LightGBM and XGBoost then
    predict with the best round; HistGradientBoosting keeps the ``patience`` rounds grown after it.
    With ``rounds_per_row`` a booster is grown on all rows for ``ceil(rounds_per_row * rows)``
    rounds, without early stopping.
    """
    X = _input_for(name, X)
    y = np.asarray(y)
    weight = float(np.sum(y == 0) / max(np.sum(y == 1), 1))
    with threadpool_limits(limits=n_threads):
        if name not in BOOSTERS:
            estimator = make_estimator(name, params, positive_weight=weight,
                                       random_state=random_state, n_threads=n_threads)
            return FittedLearner(name, estimator.fit(X, y), None, n_threads, len(y))
        if rounds_per_row is not None:
            return _fit_rounds(name, params, X, y, max(1, math.ceil(rounds_per_row * len(y))),
                               weight, random_state, n_threads)
        inner, valid = inner_validation_split(y, groups, early_stopping.validation_fraction,
                                              random_state)
        stopped = make_estimator(name, params, positive_weight=weight, random_state=random_state,
                                 n_threads=n_threads, patience=early_stopping.patience)
        _fit_with_validation(name, stopped, X[inner], y[inner], X[valid], y[valid],
                             early_stopping.patience)
        n_rounds = best_rounds(name, stopped)
        if not refit:
            return FittedLearner(name, stopped, n_rounds, n_threads, len(inner))
        return _fit_rounds(name, params, X, y, refit_rounds(n_rounds, len(inner), len(y)),
                           weight, random_state, n_threads)


def _fit_rounds(name, params, X, y, n_rounds, weight, random_state, n_threads) -> FittedLearner:
    """A booster grown on all of X for exactly ``n_rounds`` rounds."""
    estimator = make_estimator(name, {**params, ROUNDS_PARAM[name]: n_rounds},
                               positive_weight=weight, random_state=random_state,
                               n_threads=n_threads)
    return FittedLearner(name, estimator.fit(X, y), n_rounds, n_threads, len(y))


def refit_rounds(best: int, n_inner: int, n_all: int) -> int:
    """Rounds for the refit on ``n_all`` rows, the best count on ``n_inner`` rows scaled up."""
    return max(1, math.ceil(best * n_all / max(n_inner, 1)))


def inner_validation_split(y, groups, validation_fraction: float, random_state: int):
    """Stratified (and, with groups, group-disjoint) train/validation indices for early stopping."""
    y = np.asarray(y)
    placeholder = np.zeros(len(y))
    if groups is None:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=validation_fraction,
                                          random_state=random_state)
        return next(splitter.split(placeholder, y))
    n_splits = max(2, int(round(1.0 / validation_fraction)))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    return next(splitter.split(placeholder, y, groups))


def best_rounds(name: str, estimator) -> int:
    """Number of boosting rounds with the best inner-validation log-loss (at least 1)."""
    if name == "lightgbm":
        return max(1, int(estimator.best_iteration_))
    if name == "xgboost":
        return int(estimator.best_iteration) + 1
    # validation_score_[i] is minus the validation loss after i rounds (index 0: before any).
    return max(1, int(np.argmax(estimator.validation_score_)))


def _fit_with_validation(name, estimator, X, y, X_valid, y_valid, patience: int) -> None:
    if name == "lightgbm":
        estimator.fit(X, y, eval_X=X_valid, eval_y=y_valid,
                      callbacks=[lightgbm.early_stopping(patience, verbose=False)])
    elif name == "xgboost":
        estimator.fit(X, y, eval_set=[(X_valid, y_valid)], verbose=False)
    else:
        estimator.fit(X, y, X_val=X_valid, y_val=y_valid)


def _input_for(name: str, X) -> np.ndarray:
    """The logistic regression works in float64 so its saved arrays reproduce it exactly."""
    return np.asarray(X, dtype=np.float64) if name == "logistic" else np.asarray(X)


def _default_estimator(name: str):
    return {"lightgbm": lightgbm.LGBMClassifier, "xgboost": xgboost.XGBClassifier,
            "histgb": HistGradientBoostingClassifier, "logistic": LogisticRegression}[name]()
