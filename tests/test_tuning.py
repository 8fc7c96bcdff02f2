"""Tuning: search-space validation, the CV-AUC objective, resuming and sharing studies."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from models.learners import fit_learner
from models.tuning import (FINISHED_STATES, load_search_spaces, open_storage, startup_trials,
                           suggest_params, tune_learner)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
C_SPACE = {"logistic": {"C": {"type": "float", "low": 1.0e-3, "high": 10.0, "log": True}}}

# Shared by the test process and the tuning subprocesses, so both see the same data.
DATA_CODE = """
import numpy as np
rng = np.random.default_rng(0)
X = rng.normal(size=(150, 8))
y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(size=150) > 0).astype(int)
"""


def make_data():
    namespace = {}
    exec(DATA_CODE, namespace)
    return namespace["X"], namespace["y"]


def logistic_space():
    return load_search_spaces(C_SPACE)["logistic"]


def finished(study) -> list:
    return study.get_trials(states=FINISHED_STATES)


def load(journal: Path, name="logistic"):
    return optuna.load_study(study_name=name, storage=open_storage(journal))


def run_child(journal: Path, n_trials: int, worker: int, callback_code: str) -> subprocess.Popen:
    """Start ``python -c`` tuning the logistic learner into ``journal`` with ``callback``."""
    code = "\n".join([
        DATA_CODE,
        "import optuna, time",
        "optuna.logging.set_verbosity(optuna.logging.WARNING)",
        "from models.tuning import load_search_spaces, tune_learner",
        textwrap.dedent(callback_code),
        f"space = load_search_spaces({C_SPACE!r})['logistic']",
        f"tune_learner('logistic', X, y, space=space, n_trials={n_trials}, "
        f"storage={str(journal)!r}, worker={worker}, callbacks=[callback])",
    ])
    return subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT_ROOT)


def test_default_search_spaces_are_valid():
    spaces = load_search_spaces()
    assert set(spaces) == {"lightgbm", "xgboost", "histgb", "logistic"}
    assert spaces["lightgbm"]["learning_rate"].log


@pytest.mark.parametrize("raw, message", [
    ({"catboost": {}}, "unknown learner 'catboost'"),
    ({"lightgbm": {"num_leafs": 8}}, "unknown parameter lightgbm.num_leafs"),
    ({"xgboost": {"random_state": 1}}, "set by the toolkit"),
    ({"logistic": {"C": {"type": "float", "low": 1.0, "high": 2.0, "base": 10}}},
     "unknown keys \\['base'\\]"),
    ({"logistic": {"C": {"type": "loguniform", "low": 1.0, "high": 2.0}}}, "needs 'type'"),
    ({"logistic": {"C": {"type": "float", "low": 2.0, "high": 1.0}}}, "low < high"),
    ({"logistic": {"C": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}}, "low must"),
    ({"logistic": {"C": {"type": "float", "low": "1e-3", "high": 1.0}}}, "numeric"),
    ({"histgb": {"max_leaf_nodes": {"type": "categorical", "choices": []}}}, "non-empty"),
    ({"logistic": {"C": {"type": "float", "low": 1.0, "high": 2.0, "start": 3.0}}},
     "logistic.C has start 3.0 outside \\[1.0, 2.0\\]"),
    ({"histgb": {"max_leaf_nodes": {"type": "categorical", "choices": [7, 15], "start": 31}}},
     "start 31 not among its choices"),
])
def test_invalid_search_spaces_are_rejected_with_a_clear_message(raw, message):
    with pytest.raises(ValueError, match=message):
        load_search_spaces(raw)


def test_suggested_parameters_stay_in_their_ranges_and_fixed_ones_pass_through():
    space = load_search_spaces({"lightgbm": {
        "n_estimators": 50,
        "num_leaves": {"type": "int", "low": 4, "high": 9},
        "learning_rate": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
        "boosting_type": {"type": "categorical", "choices": ["gbdt", "dart"]}}})["lightgbm"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        params = suggest_params(study.ask(), space)
        assert params["n_estimators"] == 50
        assert isinstance(params["num_leaves"], int) and 4 <= params["num_leaves"] <= 9
        assert 0.01 <= params["learning_rate"] <= 0.1
        assert params["boosting_type"] in ("gbdt", "dart")


def test_a_new_study_first_evaluates_the_start_values_and_a_resumed_one_does_not_again(tmp_path):
    X, y = make_data()
    space = load_search_spaces({"logistic": {
        "C": {"type": "float", "low": 1.0e-3, "high": 10.0, "log": True, "start": 0.0123},
        "tol": {"type": "float", "low": 1.0e-5, "high": 1.0e-3, "log": True}}})["logistic"]
    journal = tmp_path / "studies.log"
    tune_learner("logistic", X, y, space=space, n_trials=2, storage=journal)
    first, second = load(journal).trials
    assert first.params["C"] == 0.0123
    assert 1.0e-5 <= first.params["tol"] <= 1.0e-3   # no start: sampled as usual
    assert second.params["C"] != 0.0123
    tune_learner("logistic", X, y, space=space, n_trials=4, storage=journal)
    assert [t.params["C"] for t in load(journal).trials].count(0.0123) == 1


def test_objective_is_the_mean_cross_validated_auc():
    X, y = make_data()
    result = tune_learner("logistic", X, y, space=logistic_space(), n_trials=3, cv=3,
                          random_state=5)
    assert result.n_complete + result.n_pruned == 3
    # The same folds and model, rebuilt with plain scikit-learn.
    model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                          LogisticRegression(C=result.best_params["C"], class_weight="balanced",
                                             max_iter=2000))
    folds = StratifiedKFold(3, shuffle=True, random_state=5)
    expected = cross_val_score(model, X, y, cv=folds, scoring="roc_auc").mean()
    assert result.best_value == pytest.approx(expected)


def test_the_best_trial_gives_its_early_stopped_rounds_per_inner_row():
    X, y = make_data()
    space = load_search_spaces({"lightgbm": {
        "n_estimators": 300, "learning_rate": 0.3,
        "num_leaves": {"type": "int", "low": 4, "high": 8, "start": 4}}})["lightgbm"]
    result = tune_learner("lightgbm", X, y, space=space, n_trials=1, cv=3, random_state=2)
    # One trial, the start point; its three folds rebuilt by hand. Each trains on 100 of the 150
    # rows, of which the booster is grown on 80 (a 20% early-stopping split).
    rates = []
    for train, _ in StratifiedKFold(3, shuffle=True, random_state=2).split(X, y):
        stopped = fit_learner("lightgbm", result.best_params, X[train], y[train], random_state=2,
                              refit=False)
        rates.append(stopped.estimator.best_iteration_ / 80)
    assert result.rounds_per_row == pytest.approx(np.mean(rates))
    assert tune_learner("logistic", X, y, space=logistic_space(), n_trials=1).rounds_per_row is None


@pytest.mark.parametrize("n_trials, expected", [(1, 2), (4, 2), (8, 3), (9, 3), (30, 10),
                                                 (50, 10)])
def test_tpe_takes_over_after_a_third_of_the_budget(n_trials, expected):
    # A third of the budget, rounded, at least the start point and one random trial, at most
    # Optuna's own 10 start-up trials.
    assert startup_trials(n_trials) == expected


def test_tuning_is_reproducible_for_a_seed():
    X, y = make_data()

    def tried_values(random_state):
        storage = optuna.storages.InMemoryStorage()
        tune_learner("logistic", X, y, space=logistic_space(), n_trials=3, storage=storage,
                     random_state=random_state)
        return [t.params["C"] for t in optuna.load_study(study_name="logistic",
                                                          storage=storage).trials]
    assert tried_values(0) == tried_values(0)
    assert tried_values(0) != tried_values(1)


def test_running_mean_auc_is_reported_after_each_fold():
    X, y = make_data()
    study_storage = optuna.storages.InMemoryStorage()
    tune_learner("logistic", X, y, space=logistic_space(), n_trials=2, cv=4,
                 storage=study_storage)
    trial = optuna.load_study(study_name="logistic", storage=study_storage).trials[0]
    fold_aucs = trial.user_attrs["fold_auc"]
    assert len(fold_aucs) == 4
    expected = {step: np.mean(fold_aucs[:step + 1]) for step in range(4)}
    assert trial.intermediate_values == pytest.approx(expected)


def test_resuming_runs_only_the_missing_trials(tmp_path):
    X, y = make_data()
    journal = tmp_path / "optuna.journal"
    tune_learner("logistic", X, y, space=logistic_space(), n_trials=3, storage=journal)
    result = tune_learner("logistic", X, y, space=logistic_space(), n_trials=5, storage=journal)
    assert len(finished(load(journal))) == 5
    assert result.n_complete + result.n_pruned == 5


def test_a_database_url_is_a_storage_too(tmp_path):
    X, y = make_data()
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    tune_learner("logistic", X, y, space=logistic_space(), n_trials=2, storage=url)
    tune_learner("logistic", X, y, space=logistic_space(), n_trials=3, storage=url)
    assert len(optuna.load_study(study_name="logistic", storage=url).trials) == 3


def test_a_study_refuses_to_resume_on_other_data(tmp_path):
    X, y = make_data()
    journal = tmp_path / "optuna.journal"
    tune_learner("logistic", X, y, space=logistic_space(), n_trials=1, storage=journal)
    with pytest.raises(ValueError, match="other data or settings"):
        tune_learner("logistic", X, 1 - y, space=logistic_space(), n_trials=2, storage=journal)


def test_running_trials_of_dead_processes_are_marked_failed(tmp_path):
    X, y = make_data()
    journal = tmp_path / "optuna.journal"
    tune_learner("logistic", X, y, space=logistic_space(), n_trials=1, storage=journal)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study = load(journal)
    host = os.uname().nodename
    orphan, live = study.ask(), study.ask()
    orphan.set_user_attr("owner", f"{host}:{dead.pid}")
    live.set_user_attr("owner", f"{host}:{os.getpid()}")
    tune_learner("logistic", X, y, space=logistic_space(), n_trials=2, storage=journal)
    states = {trial.number: trial.state for trial in load(journal).trials}
    assert states[orphan.number] == optuna.trial.TrialState.FAIL
    assert states[live.number] == optuna.trial.TrialState.RUNNING


def test_a_killed_tuning_resumes_the_same_study(tmp_path):
    X, y = make_data()
    journal = tmp_path / "optuna.journal"
    # The pause after each trial gives the test time to kill the child between two polls.
    child = run_child(journal, n_trials=12, worker=0,
                      callback_code="def callback(study, trial): time.sleep(0.3)")
    deadline = time.monotonic() + 60
    before = []
    while len(before) < 3 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        if journal.exists():
            try:
                before = finished(load(journal))
            except KeyError:  # the study is not created yet
                pass
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert 3 <= len(before) < 12

    tune_learner("logistic", X, y, space=logistic_space(), n_trials=12, storage=journal)
    after = load(journal)
    assert len(finished(after)) == 12
    assert not after.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    kept = {trial.number: trial.params for trial in after.trials}
    assert all(kept[trial.number] == trial.params for trial in before)


def test_two_processes_share_one_study(tmp_path):
    journal = tmp_path / "optuna.journal"
    # Each worker waits after its trials until the other has finished one, so both contribute.
    barrier = textwrap.dedent("""
        def callback(study, trial):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(
                    {t.user_attrs.get("owner") for t in study.get_trials(states=(
                        optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))}) < 2:
                time.sleep(0.05)
    """)
    children = [run_child(journal, n_trials=8, worker=w, callback_code=barrier) for w in (0, 1)]
    for child in children:
        assert child.wait(timeout=120) == 0
    trials = finished(load(journal))
    owners = {trial.user_attrs["owner"] for trial in trials}
    assert owners == {f"{os.uname().nodename}:{child.pid}" for child in children}
    assert 8 <= len(trials) <= 9  # each process may finish the trial it was running
