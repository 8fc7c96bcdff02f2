"""extract -> fit -> predict on small generated images, through the command-line entry points."""
import csv
import json
import logging
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from features import registry
from pipelines import extract, fit, predict


def run_extract(root, config, out, *extra):
    return extract.main(["--config", str(config), "--data-root", str(root), "--out", str(out),
                         "--n-jobs", "1", "--chunk-size", "7", *extra])


@pytest.fixture
def features(dataset, tmp_path):
    """The generated set's feature table (``dataset``'s small family), in ``tmp_path``."""
    root, config, _ = dataset
    table = tmp_path / "features.parquet"
    assert run_extract(root, config, table) == 0
    return table


def test_extract_skips_and_records_a_corrupt_file(dataset, tmp_path, capsys):
    root, config, rows = dataset
    out = tmp_path / "features.parquet"
    assert run_extract(root, config, out) == 0
    table = pq.read_table(out)
    assert table.column("img_name").to_pylist() == [n for n, _ in rows if n != "broken.png"]
    assert table.column_names[:2] == ["img_name", "target"]
    feature_columns = table.column_names[2:]
    assert len(feature_columns) > 8 and all(c.startswith("fft__") for c in feature_columns)
    assert all(str(table.schema.field(c).type) == "float" for c in feature_columns)
    with open(out.with_suffix(".errors.csv")) as handle:
        errors = list(csv.DictReader(handle))
    assert [e["img_name"] for e in errors] == ["broken.png"] and errors[0]["kind"] == "file"
    assert "1 failed" in capsys.readouterr().out
    assert not out.with_name(out.name + ".parts").exists()


def test_fit_then_predict_writes_submission_in_input_order(dataset, tmp_path):
    root, config, rows = dataset
    features = tmp_path / "features.parquet"
    assert run_extract(root, config, features) == 0
    run = tmp_path / "run"
    assert fit.main(["--features", str(features), "--out", str(run), "--folds", "3"]) == 0
    result = json.loads((run / "metrics.json").read_text())
    assert result["oof"]["lightgbm"]["auc"] > 0.9  # the grid is an easy, real signal
    assert (run / "report.html").stat().st_size > 100_000
    submission = tmp_path / "submission.csv"
    assert predict.main(["--model", str(run), "--data-root", str(root), "--out", str(submission),
                         "--n-jobs", "1"]) == 0
    with open(submission) as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == ["img_name", "y_pred"]
    assert [r[0] for r in lines[1:]] == [n for n, _ in rows]
    scores = {r[0]: float(r[1]) for r in lines[1:]}
    assert scores["broken.png"] == 0.5  # documented fallback
    assert all(0.0 <= s <= 1.0 for s in scores.values())
    fakes = [scores[n] for n, t in rows if t == 1 and n != "broken.png"]
    reals = [scores[n] for n, t in rows if t == 0]
    assert np.mean(fakes) > np.mean(reals)
    with open(submission.with_suffix(".failed.csv")) as handle:
        assert [r["img_name"] for r in csv.DictReader(handle)] == ["broken.png"]


def test_predict_refuses_a_bundle_whose_features_do_not_match(dataset, tmp_path, capsys):
    root, config, _ = dataset
    features = tmp_path / "features.parquet"
    run_extract(root, config, features)
    run = tmp_path / "run"
    fit.main(["--features", str(features), "--out", str(run), "--folds", "2"])
    manifest_path = run / "model" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["feature_names"] = manifest["feature_names"][::-1]
    manifest_path.write_text(json.dumps(manifest))
    assert predict.main(["--model", str(run), "--data-root", str(root),
                         "--out", str(tmp_path / "s.csv")]) == 2
    assert "same names in another order" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("recorded, expected", [
    ("same", None),
    (1, "features of version 1"),
    ("absent", "a release that did not record its version"),
])
def test_predict_warns_when_the_model_saw_another_feature_version(dataset, features, tmp_path,
                                                                  caplog, recorded, expected):
    root, _, _ = dataset
    run = tmp_path / "run"
    assert fit.main(["--features", str(features), "--out", str(run), "--folds", "2"]) == 0
    manifest_path = run / "model" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["feature_version"] == registry.FEATURE_VERSION
    if recorded == "absent":
        del manifest["feature_version"]
    elif recorded != "same":
        manifest["feature_version"] = recorded
    manifest_path.write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING):
        assert predict.main(["--model", str(run), "--data-root", str(root), "--n-jobs", "1",
                             "--out", str(tmp_path / "s.csv")]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if expected is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and expected in warnings[0]
        assert f"this code computes version {registry.FEATURE_VERSION}" in warnings[0]
    assert (tmp_path / "s.csv").exists()  # a warning, not a refusal


def test_unknown_config_key_is_rejected_naming_it(dataset, tmp_path, capsys):
    root, _, _ = dataset
    config = tmp_path / "bad.yaml"
    config.write_text("extract:\n  n_job: 2\n")
    assert run_extract(root, config, tmp_path / "f.parquet") == 2
    err = capsys.readouterr().err
    assert "unknown key(s) ['n_job']" in err and "bad.yaml" in err


@pytest.mark.parametrize("value", ['"two"', "2.5", "true", "[2]"])
def test_config_value_of_the_wrong_type_is_rejected_naming_the_option(dataset, tmp_path, capsys,
                                                                      value):
    root, _, _ = dataset
    config = tmp_path / "bad.yaml"
    config.write_text(f"extract:\n  n_jobs: {value}\n")
    assert extract.main(["--config", str(config), "--data-root", str(root),
                         "--out", str(tmp_path / "f.parquet")]) == 2
    assert "option --n-jobs (config key 'n_jobs')" in capsys.readouterr().err
    assert not (tmp_path / "f.parquet").exists()


def test_unknown_family_parameter_is_rejected(dataset, tmp_path, capsys):
    root, _, _ = dataset
    config = tmp_path / "bad.yaml"
    config.write_text("extract:\n  families:\n    fft: {n_bin: 8}\n")
    assert run_extract(root, config, tmp_path / "f.parquet") == 2
    assert "family 'fft' has no parameter(s) ['n_bin']" in capsys.readouterr().err


def test_list_features_prints_families(capsys):
    assert extract.main(["--list-features"]) == 0
    out = capsys.readouterr().out
    assert "image families:" in out and "fft" in out


def test_family_ablation_is_measured_and_reported(dataset, tmp_path):
    root, _, _ = dataset
    config = tmp_path / "two.yaml"
    config.write_text("extract:\n  families:\n    fft: {n_bins: 8}\n    colour: {}\n")
    features = tmp_path / "features.parquet"
    assert run_extract(root, config, features) == 0
    run = tmp_path / "run"
    assert fit.main(["--features", str(features), "--out", str(run), "--folds", "3",
                     "--ablation"]) == 0
    ablation = json.loads((run / "metrics.json").read_text())["ablation"]
    assert set(ablation) == {"fft", "colour"}
    # The period-2 grid that separates the classes is a spectral trace: fft alone finds it.
    assert ablation["fft"]["alone"] > 0.9
    # With two families, "all but one" is exactly "the other one alone" (same folds, same seed).
    assert ablation["fft"]["without"] == ablation["colour"]["alone"]
    assert ablation["colour"]["without"] == ablation["fft"]["alone"]
    n_features = len(pq.read_schema(features).names) - 2
    assert ablation["fft"]["n_features"] + ablation["colour"]["n_features"] == n_features
    assert "AUC of this family alone" in (run / "report.html").read_text()


def test_config_paths_are_relative_to_the_file_but_choices_are_not(dataset, tmp_path):
    root, _, _ = dataset
    folder = tmp_path / "configs"
    folder.mkdir()
    config = folder / "train.yaml"
    config.write_text("extract:\n  families:\n    fft: {n_bins: 8}\n  out: ../features.parquet\n"
                      "fit:\n  model: lightgbm\n  features: ../features.parquet\n  out: ../run\n")
    assert extract.main(["--config", str(config), "--data-root", str(root), "--n-jobs", "1"]) == 0
    assert (tmp_path / "features.parquet").is_file()
    assert fit.main(["--config", str(config), "--folds", "2"]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["primary"] == "lightgbm"


def test_feature_table_is_read_without_the_dropped_columns(features, tmp_path):
    table = fit.load_feature_table(features, "bin_1")
    raw = pq.read_table(features)
    extracted = [c for c in raw.column_names if c.startswith("fft__")]
    kept = [c for c in extracted if "bin_1" not in c]
    assert table.extracted_names == extracted and table.feature_names == kept
    assert len(kept) < len(extracted)
    assert table.X.dtype == np.float32 and table.X.flags.c_contiguous
    np.testing.assert_array_equal(table.X, np.column_stack([raw.column(c).to_numpy()
                                                            for c in kept]))
    assert table.names == raw.column("img_name").to_pylist()
    np.testing.assert_array_equal(table.y, raw.column("target").to_numpy())


def counting_fits(monkeypatch, fail_at: int | None = None) -> list:
    """Count the plain model's fits (folds and final); raise KeyboardInterrupt at fit
    ``fail_at`` (1-based), as a user's Ctrl-C would."""
    from models import boosting

    calls, real = [], boosting.fit_selected

    def fit_selected(*args, **kwargs):
        calls.append(1)
        if len(calls) == fail_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(boosting, "fit_selected", fit_selected)
    return calls


@pytest.mark.parametrize("repeats, fail_at, interrupted, refits", [
    # Stopped at the third fold; resumed, it fits that fold and the final model.
    (1, 3, {"checkpoint": ["fold_0.npy", "fold_1.npy"]}, 2),
    # Stopped after the first repeat's 3 folds and 1 of the second's; resumed, it fits the
    # second repeat's other two and the final model.
    (2, 5, {"checkpoint": ["fold_0.npy", "fold_1.npy", "fold_2.npy"],
            "checkpoint-repeat1": ["fold_0.npy"]}, 3),
], ids=["one partition", "two partitions"])
def test_an_interrupted_fit_resumes_from_the_finished_folds_of_every_repeat(
        features, tmp_path, monkeypatch, repeats, fail_at, interrupted, refits):
    reference, run = tmp_path / "reference", tmp_path / "run"
    common = ["--features", str(features), "--folds", "3", "--repeats", str(repeats)]
    assert fit.main([*common, "--out", str(reference)]) == 0
    args = [*common, "--out", str(run)]
    counting_fits(monkeypatch, fail_at=fail_at)
    with pytest.raises(KeyboardInterrupt):
        fit.main(args)
    for folder, names in interrupted.items():
        assert sorted(p.name for p in (run / folder).glob("fold_*.npy")) == names
    assert not (run / "metrics.json").exists()
    calls = counting_fits(monkeypatch)
    assert fit.main([*args, "--resume"]) == 0
    assert len(calls) == refits
    assert (run / "oof.csv").read_text() == (reference / "oof.csv").read_text()
    finished, expected = (json.loads((folder / "metrics.json").read_text()).get("repeats")
                          for folder in (run, reference))
    assert finished == expected
    assert not list(run.glob("checkpoint*"))


def test_resume_refuses_other_settings_and_a_fresh_fit_refits_every_fold(features, tmp_path,
                                                                        monkeypatch, capsys):
    args = ["--features", str(features), "--out", str(tmp_path / "run"), "--folds", "3",
            "--repeats", "1"]
    counting_fits(monkeypatch, fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        fit.main(args)
    counting_fits(monkeypatch)
    assert fit.main([*args, "--resume", "--seed", "1"]) == 2
    assert "other seed, folds; run without --resume" in capsys.readouterr().err
    stat = features.stat()  # the table written again: same names, perhaps other values
    os.utime(features, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert fit.main([*args, "--resume"]) == 2
    assert "used other feature table; run without --resume" in capsys.readouterr().err
    calls = counting_fits(monkeypatch)
    assert fit.main(args) == 0
    assert len(calls) == 4  # three folds and the final model


def oof_auc(run, column="y_pred") -> float:
    """AUC of a run folder's out-of-fold predictions, by scikit-learn."""
    from sklearn.metrics import roc_auc_score

    with open(run / "oof.csv") as handle:
        rows = list(csv.DictReader(handle))
    return roc_auc_score([int(r["target"]) for r in rows], [float(r[column]) for r in rows])


def test_repeated_cross_validation_scores_each_partition_as_a_fit_at_its_seed(features, tmp_path,
                                                                             capsys):
    common = ["--features", str(features), "--folds", "3"]
    run = tmp_path / "run"
    assert fit.main([*common, "--out", str(run), "--seed", "4", "--repeats", "3"]) == 0
    printed = capsys.readouterr().out
    singles = [tmp_path / f"seed{seed}" for seed in (4, 5, 6)]
    for seed, single in zip((4, 5, 6), singles):
        assert fit.main([*common, "--out", str(single), "--seed", str(seed), "--repeats", "1"]) == 0
    folds = [[row.split(",")[2] for row in (single / "oof.csv").read_text().splitlines()]
             for single in singles]
    assert folds[0] != folds[1] != folds[2]  # three different partitions
    aucs = [oof_auc(single) for single in singles]

    repeats = json.loads((run / "metrics.json").read_text())["repeats"]
    assert repeats["seeds"] == [4, 5, 6]
    found = repeats["models"]["lightgbm"]
    assert [item["auc"] for item in found["per_repeat"]] == pytest.approx(aucs, abs=1e-9)
    assert found["auc_mean"] == pytest.approx(np.mean(aucs), abs=1e-9)
    assert (found["auc_min"], found["auc_max"]) == pytest.approx((min(aucs), max(aucs)), abs=1e-9)
    # The run's out-of-fold predictions and bundle are those of its first partition and seed.
    assert (run / "oof.csv").read_text() == (singles[0] / "oof.csv").read_text()
    assert f"over 3 fold partitions (seeds 4-6): {np.mean(aucs):.4f}" in printed
    assert "mean AUC of 3 fold partitions" in (run / "report.html").read_text()
    assert not json.loads((singles[0] / "metrics.json").read_text()).get("repeats")


@pytest.mark.parametrize("n_images, repeats", [(40, 5), (200, 5), (250, 4), (400, 3), (999, 2),
                                               (1000, 1), (500_000, 1)])
def test_small_sets_are_cross_validated_on_enough_partitions_to_score_1000_images(n_images,
                                                                                 repeats):
    assert fit.default_repeats(n_images) == repeats


def test_lowering_the_folds_is_reported_once_however_many_partitions(features, tmp_path, capsys,
                                                                     caplog):
    # The generated set has 20 images of each class, fewer than the 25 folds asked.
    run = tmp_path / "run"
    assert fit.main(["--features", str(features), "--out", str(run), "--folds", "25",
                     "--repeats", "3"]) == 0
    note = "lowered the number of folds from 25 to 20"
    shown = capsys.readouterr().err + caplog.text  # printed, or logged (pytest captures logs)
    assert shown.count(note) == 1
    result = json.loads((run / "metrics.json").read_text())
    assert [w for w in result["warnings"] if note in w] == [result["warnings"][0]]
    assert result["run"]["n_splits"] == 20


def test_repeats_below_one_is_an_error_naming_the_option(features, tmp_path, capsys):
    assert fit.main(["--features", str(features), "--out", str(tmp_path / "run"),
                     "--repeats", "0"]) == 2
    assert "option --repeats must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_max_features_bundle_predicts_on_files_as_the_fitted_model(dataset, tmp_path,
                                                                     monkeypatch):
    from models import boosting

    monkeypatch.setattr(predict, "SCORE_ROWS", 4)  # the submission is scored in batches
    root, config, rows = dataset
    features = tmp_path / "features.parquet"
    assert run_extract(root, config, features) == 0
    run = tmp_path / "run"
    assert fit.main(["--features", str(features), "--out", str(run), "--folds", "2",
                     "--max-features", "4"]) == 0
    table = fit.load_feature_table(features)
    model, columns = boosting.fit_selected(table.X, table.y, boosting.plain_params("image"), 0, 4)
    manifest = json.loads((run / "model" / "manifest.json").read_text())
    used = [table.feature_names[j] for j in columns]
    assert manifest["feature_names"] == table.feature_names and len(table.feature_names) > 8
    assert manifest["model_features"] == used and len(used) == 4
    with open(run / "importance.csv") as handle:
        assert [r["feature"] for r in csv.DictReader(handle)] == used
    submission = tmp_path / "submission.csv"
    assert predict.main(["--model", str(run), "--data-root", str(root), "--out", str(submission),
                         "--n-jobs", "1"]) == 0
    with open(submission) as handle:
        scores = {r["img_name"]: float(r["y_pred"]) for r in csv.DictReader(handle)}
    expected = model.predict_proba(table.X[:, columns])[:, 1]
    np.testing.assert_allclose([scores[n] for n in table.names], expected, atol=5e-7)


def test_dropped_features_are_never_read_and_predict_still_checks_the_full_list(dataset,
                                                                                 tmp_path):
    from models import boosting

    root, config, _ = dataset
    features = tmp_path / "features.parquet"
    assert run_extract(root, config, features) == 0
    table = fit.load_feature_table(features)
    dropped = [n for n in table.feature_names if "bin_1" in n]
    assert 0 < len(dropped) < len(table.feature_names)
    run = tmp_path / "run"
    assert fit.main(["--features", str(features), "--out", str(run), "--folds", "2",
                     "--drop-features", "bin_1"]) == 0
    manifest = json.loads((run / "model" / "manifest.json").read_text())
    kept = [j for j, n in enumerate(table.feature_names) if n not in dropped]
    assert manifest["feature_names"] == table.feature_names
    assert manifest["model_features"] == [table.feature_names[j] for j in kept]
    submission = tmp_path / "submission.csv"
    assert predict.main(["--model", str(run), "--data-root", str(root), "--out", str(submission),
                         "--n-jobs", "1"]) == 0
    with open(submission) as handle:
        scores = {r["img_name"]: float(r["y_pred"]) for r in csv.DictReader(handle)}
    model = boosting.fit_full(table.X[:, kept], table.y, boosting.plain_params("image"), 0)
    np.testing.assert_allclose([scores[n] for n in table.names],
                               model.predict_proba(table.X[:, kept])[:, 1], atol=5e-7)


@pytest.mark.parametrize("pattern, message", [("(", "not a valid regular expression"),
                                              ("__", "matches all")])
def test_invalid_drop_features_is_an_error_naming_the_option(features, tmp_path, capsys, pattern,
                                                             message):
    assert fit.main(["--features", str(features), "--out", str(tmp_path / "run"),
                     "--drop-features", pattern]) == 2
    err = capsys.readouterr().err
    assert "option --drop-features" in err and message in err
    assert not (tmp_path / "run").exists()


def test_a_scikit_learn_only_lightgbm_parameter_is_an_error_before_any_fit(features, tmp_path,
                                                                            capsys):
    """LightGBM's core ignores class_weight without a word; the plain model is fitted by it."""
    (tmp_path / "fit.yaml").write_text("fit:\n  lightgbm:\n    class_weight: balanced\n")
    assert fit.main(["--features", str(features), "--out", str(tmp_path / "run"),
                     "--config", str(tmp_path / "fit.yaml")]) == 2
    err = capsys.readouterr().err
    assert "'class_weight'" in err and "lightgbm:" in err and "is_unbalance" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("source", ["cli", "config"])
def test_invalid_max_features_is_an_error_naming_the_option(features, tmp_path, capsys, source):
    args = ["--features", str(features), "--out", str(tmp_path / "run")]
    if source == "cli":
        args += ["--max-features", "0"]
    else:
        (tmp_path / "fit.yaml").write_text("fit:\n  max_features: -2\n")
        args += ["--config", str(tmp_path / "fit.yaml")]
    assert fit.main(args) == 2
    assert "--max-features must be a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
