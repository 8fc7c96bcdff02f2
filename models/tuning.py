"""Hyperparameter tuning of one base learner with Optuna: one resumable, shareable study each.

The objective is the mean ROC AUC over cross-validation folds (StratifiedKFold, or
StratifiedGroupKFold when groups are given); the folds are fixed by ``random_state`` so that every
trial is scored on the same folds. After each fold the running mean is reported, and a
MedianPruner stops trials that are below the median of earlier trials at the same fold. The
sampler is a seeded TPESampler; a new study first evaluates the ``start`` values of its search
space, where given (Optuna's ``enqueue_trial``). Each booster's trial also records its early-stopped
rounds per inner training row; the best trial's mean (``TuningResult.rounds_per_row``) sets the
rounds of the stack's later fits, which then need no early stopping of their own.

Storage: ``None`` keeps the study in memory; a URL (``sqlite:///...``, ``postgresql://...``) uses
Optuna's database storage; any other string or path is a journal file (Optuna's JournalStorage),
the usual choice: one file in the run folder. Studies are opened with ``load_if_exists``, so
calling again after an interruption resumes the same study and only runs the missing trials
(finished = complete or pruned). Several processes pointing at the same storage and study name
share one study; together they stop at ``n_trials`` finished trials (each process may finish the
trial it is running, so the total can exceed ``n_trials`` by at most the number of processes - 1).
A study remembers a fingerprint of its data and settings and refuses to resume on different ones.

Reference: T. Akiba, S. Sano, T. Yanase, T. Ohta, M. Koyama, "Optuna: A Next-generation
Hyperparameter Optimization Framework", KDD 2019.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import yaml
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from models.learners import (LEARNER_NAMES, RESERVED_PARAMS, EarlyStopping, fit_learner,
                             tunable_params)

DEFAULT_SEARCH_SPACES = Path(__file__).resolve().parent.parent / "configs" / "search_spaces.yaml"
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
_SPEC_KEYS = {"float": {"type", "low", "high", "log", "step", "start"},
              "int": {"type", "low", "high", "log", "step", "start"},
              "categorical": {"type", "choices", "start"}}


@dataclass(frozen=True)
class ParamSpec:
    """One hyperparameter: a fixed ``value``, a float/int range, or categorical ``choices``.

    ``start`` (optional) is the value the first trial of a new study evaluates.
    """
    kind: str
    value: object = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None
    start: object = None


@dataclass(frozen=True)
class TuningResult:
    """Outcome of one learner's study; ``best_params`` includes the fixed values of the space."""
    learner: str
    study_name: str
    best_params: dict
    best_value: float
    n_complete: int
    n_pruned: int
    # Boosters: the best trial's early-stopped rounds per inner training row, averaged over its
    # folds (None: no such record, e.g. a logistic regression or an untuned space).
    rounds_per_row: float | None = None


def load_search_spaces(source=None) -> dict[str, dict[str, ParamSpec]]:
    """Validated search spaces from a YAML file (default ``configs/search_spaces.yaml``) or dict."""
    if source is None or isinstance(source, (str, Path)):
        path = Path(source or DEFAULT_SEARCH_SPACES)
        raw = yaml.safe_load(path.read_text())
    else:
        raw = source
    if not isinstance(raw, dict):
        raise ValueError("search spaces must map learner names to parameter specifications")
    return {learner: _parse_space(learner, space) for learner, space in raw.items()}


def _parse_space(learner: str, space) -> dict[str, ParamSpec]:
    if learner not in LEARNER_NAMES:
        raise ValueError(f"search spaces: unknown learner {learner!r}; known learners: "
                         f"{', '.join(LEARNER_NAMES)}")
    if not isinstance(space, dict):
        raise ValueError(f"search spaces: {learner!r} must map parameter names to specifications")
    allowed = tunable_params(learner)
    for param in space:
        if param in RESERVED_PARAMS:
            raise ValueError(f"search spaces: {learner}.{param} is set by the toolkit and cannot "
                             f"be tuned")
        if param not in allowed:
            raise ValueError(f"search spaces: unknown parameter {learner}.{param}; allowed: "
                             f"{', '.join(sorted(allowed))}")
    return {param: _parse_spec(f"{learner}.{param}", spec) for param, spec in space.items()}


def _parse_spec(where: str, spec) -> ParamSpec:
    if not isinstance(spec, dict):
        return ParamSpec("fixed", value=spec)
    kind = spec.get("type")
    if kind not in _SPEC_KEYS:
        raise ValueError(f"search spaces: {where} needs 'type' among {sorted(_SPEC_KEYS)}, "
                         f"got {kind!r}")
    unknown = set(spec) - _SPEC_KEYS[kind]
    if unknown:
        raise ValueError(f"search spaces: {where} has unknown keys {sorted(unknown)} for type "
                         f"{kind!r}; allowed: {sorted(_SPEC_KEYS[kind])}")
    start = spec.get("start")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ValueError(f"search spaces: {where} needs a non-empty list of 'choices'")
        if start is not None and start not in choices:
            raise ValueError(f"search spaces: {where} has start {start!r} not among its choices")
        return ParamSpec(kind, choices=tuple(choices), start=start)
    if "low" not in spec or "high" not in spec:
        raise ValueError(f"search spaces: {where} needs 'low' and 'high'")
    low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
    if not (_is_number(low) and _is_number(high)):
        raise ValueError(f"search spaces: {where} needs numeric 'low' and 'high' (write 1.0e-3, "
                         f"not 1e-3, which YAML reads as text), got {low!r} and {high!r}")
    if not low < high:
        raise ValueError(f"search spaces: {where} needs low < high, got {low} and {high}")
    if log and low <= 0:
        raise ValueError(f"search spaces: {where} has log=true, so low must be > 0")
    if log and spec.get("step") is not None:
        raise ValueError(f"search spaces: {where} cannot have both log=true and a step")
    if start is not None and not (_is_number(start) and low <= start <= high):
        raise ValueError(f"search spaces: {where} has start {start!r} outside [{low}, {high}]")
    return ParamSpec(kind, low=low, high=high, log=log, step=spec.get("step"), start=start)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def suggest_params(trial: optuna.Trial, space: dict[str, ParamSpec]) -> dict:
    """Hyperparameters for one trial: suggested values for ranges, the fixed values as they are."""
    params = {}
    for name, spec in space.items():
        if spec.kind == "fixed":
            params[name] = spec.value
        elif spec.kind == "categorical":
            params[name] = trial.suggest_categorical(name, list(spec.choices))
        elif spec.kind == "int":
            params[name] = trial.suggest_int(name, int(spec.low), int(spec.high), log=spec.log,
                                             step=int(spec.step or 1))
        else:
            params[name] = trial.suggest_float(name, float(spec.low), float(spec.high),
                                               log=spec.log, step=spec.step)
    return params


def start_params(space: dict[str, ParamSpec]) -> dict:
    """The ``start`` values of the space's ranges: the first trial of a new study."""
    return {name: spec.start for name, spec in space.items() if spec.start is not None}


def fixed_params(space: dict[str, ParamSpec]) -> dict:
    return {name: spec.value for name, spec in space.items() if spec.kind == "fixed"}


# Optuna's default: finished trials before the median pruner stops any.
PRUNER_STARTUP = 5


def startup_trials(n_trials: int) -> int:
    """Trials of a study before TPE models its results (random ones, after the start point) and
    before the pruner stops any (at most ``PRUNER_STARTUP``): a third of the budget, 2 to 10.

    Optuna's defaults (10 for TPE, 5 for the median pruner) make any budget under 10 trials, such
    as the stack's default 4, a random search around the start point with few trials or none
    prunable; a third of the budget, and at least the start point and one random trial, leaves
    the rest to TPE and the pruner. Large budgets keep Optuna's 10 and 5 (J. Bergstra, R. Bardenet,
    Y. Bengio, B. Kegl, "Algorithms for Hyper-Parameter Optimization", NeurIPS 2011, for TPE;
    with the pruner waiting for 10, a 50-trial tuning took 568 s instead of 498 s).
    """
    return min(10, max(2, round(n_trials / 3)))


def make_splits(y, groups=None, n_splits: int = 3, random_state: int = 0) -> list:
    """Shuffled stratified folds (group-disjoint when groups are given) as (train, test) pairs."""
    placeholder = np.zeros(len(y))
    if groups is None:
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
        return list(splitter.split(placeholder, y))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    return list(splitter.split(placeholder, y, groups))


def open_storage(storage):
    """An Optuna storage: None (in memory), a database URL, or a journal file path."""
    if storage is None or isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if "://" in str(storage):
        return RDBStorage(str(storage))
    path = Path(storage)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def tune_learner(name: str, X, y, groups=None, *, space: dict[str, ParamSpec],
                 n_trials: int = 10, timeout: float | None = None, cv: int = 3, storage=None,
                 study_name: str | None = None, random_state: int = 0, n_threads: int = 1,
                 early_stopping: EarlyStopping = EarlyStopping(), worker: int = 0,
                 callbacks=()) -> TuningResult:
    """Tune one learner to maximise its mean cross-validated AUC; resumes an existing study.

    ``n_trials`` is the total number of finished trials wanted in the study, counting those of
    earlier (interrupted) runs and of other processes sharing it; ``timeout`` (seconds) bounds this
    call. ``worker`` distinguishes processes started together on one shared study (their samplers
    would otherwise draw the same random start-up trials). ``callbacks`` are passed to
    ``Study.optimize``.
    """
    X, y = np.asarray(X), np.asarray(y)
    study_name = study_name or name
    if not any(spec.kind != "fixed" for spec in space.values()):
        return TuningResult(name, study_name, fixed_params(space), float("nan"), 0, 0)
    storage = open_storage(storage)
    fingerprint = _fingerprint(name, X, y, groups, space, cv, random_state, early_stopping)
    study, created = _create_or_load(storage, study_name)
    _check_fingerprint(study, fingerprint)
    _fail_stale_trials(study)
    n_existing = len(study.trials)
    start = start_params(space)
    if created and start:
        # A known-good point first: with a budget of a few trials, TPE's random start-up trials
        # alone often miss the region that many shallow trees on few columns need. Only the
        # process that created the study enqueues it, so workers sharing it evaluate it once.
        study.enqueue_trial(start)
    # Seeded per learner (so learners explore differently), per resume point (so a resumed study
    # does not replay its first random trials) and per worker.
    entropy = [random_state, zlib.crc32(name.encode()), n_existing, worker]
    seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    warm_up = startup_trials(n_trials)
    study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=warm_up)
    study.pruner = optuna.pruners.MedianPruner(n_startup_trials=min(warm_up, PRUNER_STARTUP))
    remaining = n_trials - _count_finished(study)
    if remaining > 0:
        splits = make_splits(y, groups, cv, random_state)
        objective = _cv_auc_objective(name, X, y, groups, space, splits, random_state,
                                      n_threads, early_stopping)
        stop_at_total = MaxTrialsCallback(n_trials, states=FINISHED_STATES)
        study.optimize(objective, n_trials=remaining, timeout=timeout,
                       callbacks=[stop_at_total, *callbacks])
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        raise RuntimeError(f"study {study_name!r} has no completed trial; raise n_trials or "
                           f"timeout")
    best = study.best_trial
    fold_rates = best.user_attrs.get("rounds_per_row")
    return TuningResult(name, study_name, {**fixed_params(space), **best.params},
                        float(best.value), len(completed),
                        len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))),
                        float(np.mean(fold_rates)) if fold_rates else None)


def _create_or_load(storage, study_name: str) -> tuple[optuna.Study, bool]:
    """The study, and whether this call created it (of processes racing, exactly one did)."""
    try:
        return optuna.create_study(storage=storage, study_name=study_name,
                                   direction="maximize"), True
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=study_name, storage=storage), False


def _cv_auc_objective(name, X, y, groups, space, splits, random_state, n_threads, early_stopping):
    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("owner", _owner())
        params = suggest_params(trial, space)
        fold_aucs, fold_rates = [], []
        for step, (train, test) in enumerate(splits):
            model = fit_learner(name, params, X[train], y[train],
                                None if groups is None else np.asarray(groups)[train],
                                random_state=random_state, n_threads=n_threads,
                                early_stopping=early_stopping, refit=False)
            fold_aucs.append(float(roc_auc_score(y[test], model.predict_positive(X[test]))))
            trial.set_user_attr("fold_auc", fold_aucs)
            if model.n_rounds is not None:
                fold_rates.append(model.n_rounds / model.n_rows)
                trial.set_user_attr("rounds_per_row", fold_rates)
            trial.report(float(np.mean(fold_aucs)), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(fold_aucs))
    return objective


def _count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


def finished_trials(storage) -> dict[str, int]:
    """Number of finished (complete or pruned) trials of every study in ``storage``."""
    storage = open_storage(storage)
    return {name: _count_finished(optuna.load_study(study_name=name, storage=storage))
            for name in optuna.get_all_study_names(storage)}


def process_worker() -> int:
    """A ``worker`` number for :func:`tune_learner` that differs between processes and hosts."""
    return zlib.crc32(_owner().encode())


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _fail_stale_trials(study: optuna.Study) -> None:
    """Mark FAIL the running trials left by dead processes of this host (e.g. killed by SIGKILL).

    A journal file has no heartbeat, so a trial whose process died stays RUNNING for ever; TPE
    would keep treating it as a pending point. Trials of live processes and of other hosts are
    left alone.
    """
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner_host, _, pid = str(trial.user_attrs.get("owner", "")).rpartition(":")
        if owner_host == host and pid.isdigit() and not _process_alive(int(pid)):
            study.tell(trial.number, state=TrialState.FAIL)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fingerprint(name, X, y, groups, space, cv, random_state, early_stopping) -> str:
    digest = hashlib.sha256()
    for array in (X, y) + (() if groups is None else (np.asarray(groups).astype(str),)):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    settings = {"learner": name, "space": {k: repr(v) for k, v in space.items()}, "cv": cv,
                "random_state": random_state, "early_stopping": repr(early_stopping)}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def _check_fingerprint(study: optuna.Study, fingerprint: str) -> None:
    stored = study.user_attrs.get("fingerprint")
    if stored is None:
        study.set_user_attr("fingerprint", fingerprint)
    elif stored != fingerprint:
        raise ValueError(f"study {study.study_name!r} in this storage was built on other data or "
                         f"settings; use a new storage file or study name to start afresh")
