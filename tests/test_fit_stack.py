"""pipelines.fit --model stack: honest nested metrics, a safe bundle, resumable tuning."""
import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from conftest import PROJECT_ROOT
from models.tuning import FINISHED_STATES
from pipelines import extract, fit, predict

# One fold partition: these tests are about one nested cross-validation (40 images would
# otherwise get five).
STACK_CONFIG = """
fit:
  repeats: 1
  stack:
    learners: [lightgbm, logistic]
    cv: 2
    n_jobs: 1
"""


@pytest.fixture
def features(dataset, tmp_path):
    root, config, _ = dataset
    out = tmp_path / "features.parquet"
    assert extract.main(["--config", str(config), "--data-root", str(root), "--out", str(out),
                         "--n-jobs", "1"]) == 0
    fit_config = tmp_path / "fit.yaml"
    fit_config.write_text(STACK_CONFIG)
    return root, out, fit_config


def test_the_stack_fit_never_holds_the_whole_feature_matrix(features, tmp_path, monkeypatch):
    # The stack's learners take matrices of the columns it chose, read from the file.
    _, table, config = features
    from test_table_rows import forbid_the_whole_matrix

    forbid_the_whole_matrix(monkeypatch)
    run = tmp_path / "run"
    assert fit.main(["--features", str(table), "--out", str(run), "--model", "stack",
                     "--config", str(config), "--n-trials", "1", "--folds", "2",
                     "--max-features", "5"]) == 0
    assert (run / "model" / "stack" / "manifest.json").is_file()


@pytest.mark.parametrize("cap", [[], ["--max-features", "4"]], ids=["all", "capped"])
def test_stack_fit_reports_every_learner_and_predicts(features, tmp_path, cap):
    root, table, config = features
    run = tmp_path / "run"
    assert fit.main(["--features", str(table), "--out", str(run), "--model", "stack",
                     "--config", str(config), "--n-trials", "2", "--folds", "3", *cap]) == 0
    importances = (run / "importance.csv").read_text().splitlines()[1:]
    stack_manifest = json.loads((run / "model" / "stack" / "manifest.json").read_text())
    assert len(importances) == len(stack_manifest["support"])
    if cap:
        assert len(stack_manifest["support"]) == 4
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["primary"] == "stack"
    assert set(metrics["oof"]) == {"stack", "lightgbm", "logistic"}
    for summary in metrics["oof"].values():
        assert summary["auc_ci"]["ci_low"] <= summary["auc"] <= summary["auc_ci"]["ci_high"]
        assert 0.0 <= summary["eer"] <= 1.0
    assert (run / "oof_lightgbm.csv").is_file() and (run / "oof_logistic.csv").is_file()
    # Each of the 3 outer folds says which combiner it used, with one weight per learner.
    folds = metrics["run"]["nested_folds"]
    assert [fold["fold"] for fold in folds] == [0, 1, 2]
    # 41 images: below the default cap's floor of 500 columns.
    assert metrics["run"]["stack_params"]["max_features"] == (4 if cap else 500)
    for fold in folds:
        assert fold["meta"]["kind"] in {"logistic", "rank_mean", "best"}
        assert fold["meta"]["kind"] == "rank_mean" or len(fold["meta"]["coef"]) == 2
        assert fold["n_rounds"]["lightgbm"] >= 1 and fold["n_rounds"]["logistic"] is None
        assert fold["n_features"] == 4 if cap else fold["n_features"] > 4
    tuning = json.loads((run / "tuning.json").read_text())
    assert set(tuning) == {"final-lightgbm", "final-logistic"}
    assert "Tuning" in (run / "report.html").read_text()
    submission = tmp_path / "submission.csv"
    assert predict.main(["--model", str(run), "--data-root", str(root), "--out", str(submission),
                         "--n-jobs", "1"]) == 0
    assert len(submission.read_text().splitlines()) == 42  # header + 41 files


@pytest.mark.parametrize("n_images, cap", [(1, 500), (200, 500), (700, 700), (1330, 1000),
                                           (500_000, 1000)])
def test_default_stack_cap_is_one_column_per_image_within_bounds(n_images, cap):
    assert fit.default_stack_cap(n_images) == cap


def test_existing_studies_need_resume(features, tmp_path, capsys):
    _, table, config = features
    run = tmp_path / "run"
    run.mkdir()
    (run / "tuning.journal").write_text("")
    assert fit.main(["--features", str(table), "--out", str(run), "--model", "stack",
                     "--config", str(config)]) == 2
    assert "pass --resume" in capsys.readouterr().err


def test_killed_fit_resumes_its_studies(features, tmp_path):
    _, table, config = features
    run = tmp_path / "run"
    command = [sys.executable, "-m", "pipelines.fit", "--features", str(table), "--out", str(run),
               "--model", "stack", "--config", str(config), "--n-trials", "6", "--folds", "2"]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    journal = run / "tuning.journal"
    deadline = time.time() + 120
    storage = None
    while time.time() < deadline and process.poll() is None:
        if journal.is_file():
            storage = optuna.storages.JournalStorage(
                optuna.storages.journal.JournalFileBackend(str(journal)))
            done = [s for s in optuna.get_all_study_summaries(storage) if s.n_trials >= 2]
            if done:
                break
        time.sleep(0.2)
    assert process.poll() is None, "fit finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    assert before and not (run / "metrics.json").exists()
    assert fit.main(command[3:] + ["--resume"]) == 0
    after = optuna.get_all_study_summaries(optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))))
    counts = {s.study_name: s.n_trials for s in after}
    for name, n in before.items():  # the same studies went on; none started again
        assert counts[name] >= n
    for summary in after:  # every study reached its budget, counting the killed run's trials
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        assert sum(t.state.is_finished() for t in study.trials) >= 6
    assert (run / "metrics.json").is_file()


# A tuning worker: `python -m pipelines.fit ... --tune-only`, except that it first imports
# everything, says it is ready and waits for the go file, so that both workers start tuning at
# the same moment whatever their start-up times.
TUNING_WORKER = """
import os, sys, time
from pathlib import Path
import models.stack, models.tuning
from pipelines import fit
go = Path(sys.argv[1])
Path(f"{go}.{os.getpid()}").touch()
while not go.exists():
    time.sleep(0.01)
sys.exit(fit.main(sys.argv[2:]))
"""


def test_tuning_workers_share_the_studies_and_the_build_reuses_them(features, tmp_path):
    _, table, config = features
    journal = tmp_path / "shared.journal"
    common = ["--features", str(table), "--model", "stack", "--config", str(config),
              "--n-trials", "4", "--folds", "2", "--storage", str(journal)]
    go = tmp_path / "go"
    workers = [subprocess.Popen([sys.executable, "-c", TUNING_WORKER, str(go),
                                 *common, "--out", str(tmp_path / "unused"), "--tune-only"],
                                cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    deadline = time.time() + 60
    while len(list(tmp_path.glob("go.*"))) < 2 and time.time() < deadline:
        assert all(worker.poll() is None for worker in workers), "a worker died at start-up"
        time.sleep(0.05)
    go.touch()
    for worker in workers:
        assert worker.wait(timeout=120) == 0
    assert "finished trials per study: " in workers[0].stdout.read()
    assert not (tmp_path / "unused").exists()  # a tuning worker writes no run folder

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal)))
    names = {f"{prefix}-{learner}" for prefix in ("outer0", "outer1", "final")
             for learner in ("lightgbm", "logistic")}
    assert set(optuna.get_all_study_names(storage)) == names
    owners, n_finished = set(), 0
    for name in names:
        trials = [t for t in optuna.load_study(study_name=name, storage=storage).trials
                  if t.state in FINISHED_STATES]
        assert 4 <= len(trials) <= 5  # each worker may finish the trial it was running
        params = [tuple(sorted(t.params.items())) for t in trials]
        # The workers' samplers drew different points, and only the study's creator enqueued
        # the search space's start values.
        assert len(set(params)) == len(params)
        owners |= {t.user_attrs["owner"] for t in trials}
        n_finished += len(trials)
    host = os.uname().nodename
    assert owners == {f"{host}:{worker.pid}" for worker in workers}

    run = tmp_path / "run"
    assert fit.main([*common, "--out", str(run)]) == 0
    recorded = json.loads((run / "metrics.json").read_text())["run"]["tuning_trials"]
    assert recorded == {"reused": n_finished, "new": 0}
    assert sum(len(optuna.load_study(study_name=name, storage=storage).trials)
               for name in names) == n_finished  # no trial was even started


def test_each_repeat_of_a_stack_fit_has_its_own_studies_and_scores_as_a_fit_at_its_seed(
        features, tmp_path):
    from test_pipelines import oof_auc

    _, table, config = features
    common = ["--features", str(table), "--model", "stack", "--config", str(config),
              "--n-trials", "1", "--folds", "2"]
    run, single = tmp_path / "run", tmp_path / "seed1"
    assert fit.main([*common, "--out", str(run), "--repeats", "2"]) == 0
    assert fit.main([*common, "--out", str(single), "--seed", "1"]) == 0  # one partition

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run / "tuning.journal")))
    assert set(optuna.get_all_study_names(storage)) == {
        f"{part}-{learner}" for part in ("outer0", "outer1", "repeat1-outer0", "repeat1-outer1",
                                         "final") for learner in ("lightgbm", "logistic")}
    repeats = json.loads((run / "metrics.json").read_text())["repeats"]["models"]
    assert set(repeats) == {"stack", "lightgbm", "logistic"}
    # One trial is the search space's start point, so no sampler draw differs between the
    # repeat's studies and the single fit's: the second partition scores as `--seed 1`.
    assert repeats["stack"]["per_repeat"][1]["auc"] == pytest.approx(oof_auc(single), abs=1e-9)
    assert repeats["stack"]["per_repeat"][0]["auc"] == pytest.approx(oof_auc(run), abs=1e-9)


def test_tune_only_needs_a_shared_storage(features, capsys):
    _, table, config = features
    assert fit.main(["--features", str(table), "--model", "stack", "--config", str(config),
                     "--tune-only"]) == 2
    assert "--tune-only needs --model stack and --storage" in capsys.readouterr().err


def test_a_view_learner_is_fitted_on_the_columns_its_pattern_names(features, tmp_path):
    # The synthetic table holds fft columns of the full image and of its central crop; the view
    # "crop" keeps the crop's, and its LightGBM reads no other column in any fold or the bundle.
    root, table, _ = features
    config = tmp_path / "views.yaml"
    config.write_text(STACK_CONFIG.replace(
        "learners: [lightgbm, logistic]",
        "learners: [lightgbm, lightgbm@crop]\n    views: {crop: '_crop__'}"))
    run = tmp_path / "run"
    assert fit.main(["--features", str(table), "--out", str(run), "--model", "stack",
                     "--config", str(config), "--n-trials", "1", "--folds", "2"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["oof"]) == {"stack", "lightgbm", "lightgbm@crop"}
    assert metrics["run"]["stack_views"] == {"crop": "_crop__"}
    manifest = json.loads((run / "model" / "stack" / "manifest.json").read_text())
    names = json.loads((run / "model" / "manifest.json").read_text())["feature_names"]
    crop = [j for j, name in enumerate(names) if "_crop__" in name]
    assert 0 < len(crop) < len(names)
    assert set(manifest["view_supports"]["crop"]) <= set(crop)
    assert (run / "model" / "stack" / "lightgbm-crop.txt").is_file()
    submission = tmp_path / "submission.csv"
    assert predict.main(["--model", str(run), "--data-root", str(root), "--out", str(submission),
                         "--n-jobs", "1"]) == 0
    assert len(submission.read_text().splitlines()) == 42


def test_the_default_stack_adds_a_lightgbm_on_each_view_that_leaves_out_some_columns():
    image = ["layout__cell_0__y", "layout__cell_1__y", "fft__slope", "texture__lbp_0"]
    members = fit.stack_members({}, image)
    assert members["learners"] == ["lightgbm", "xgboost", "histgb", "logistic",
                                   "lightgbm@global"]
    assert members["views"]["global"].tolist() == [2, 3]
    # Without a layout grid (audio) the view would be every column: no extra learner.
    audio = ["mfcc__mean_0", "spectral__centroid_mean"]
    assert fit.stack_members({}, audio) == {
        "learners": ["lightgbm", "xgboost", "histgb", "logistic"], "views": {}}
    # Named learners are kept as they are.
    assert fit.stack_members({"learners": ["xgboost"]}, image) == {
        "learners": ["xgboost"], "views": {}}


@pytest.mark.parametrize("stack, message", [
    ({"views": {"global": "("}}, r"stack.views.global: '\(' is not a regular expression"),
    ({"views": ["layout"]}, "must map view names"),
    ({"learners": ["lightgbm@none"], "views": {"none": "^absent"}},
     "stack.views.none .* matches none of the 2 feature columns"),
])
def test_bad_views_are_refused_with_the_option_named(stack, message):
    with pytest.raises(ValueError, match=message):
        fit.stack_members(stack, ["fft__slope", "layout__cell_0__y"])
