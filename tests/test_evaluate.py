"""pipelines.evaluate end to end on small generated image sets: robustness grid and cross matrix."""
import csv
import json
import logging
import shutil

import cv2
import numpy as np
import pytest
import pyarrow.parquet as pq
from sklearn.metrics import roc_auc_score

from features import perturbations
from features.context import ImageContext
from features.extractor import cached_extractor
from features.image_decode import load_image
from features.registry import FeatureConfig
from pipelines import evaluate, extract, fit, predict
from test_table_rows import forbid_the_whole_matrix

# A small family and a small single-threaded model keep the test fast on a busy machine.
LIGHTGBM = "  lightgbm: {n_estimators: 100, n_jobs: 1}\n"
CONFIG = ("extract:\n  families:\n    fft: {n_bins: 8}\n"
          "fit:\n" + LIGHTGBM +
          "evaluate:\n  families:\n    fft: {n_bins: 8}\n" + LIGHTGBM)


def write_set(root, seed, n=40):
    """Real-like: smooth noise; fake-like: the same plus a 2-pixel grid (up-sampling trace).

    meta.csv pairs each real with the next fake (``pair_key``), as in the audio sets."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    rows = []
    for i in range(n):
        base = cv2.GaussianBlur(rng.normal(128, 40, (64, 64, 3)), (0, 0), 3)
        if i % 2:
            base[::2, ::2] += 25
        cv2.imwrite(str(root / f"img_{i:02d}.png"), np.clip(base, 0, 255).astype(np.uint8))
        rows.append((f"img_{i:02d}.png", i % 2))
    with open(root / "labels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("img_name", "target"), *rows])
    with open(root / "meta.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("img_name", "pair_key"),
                                      *((name, f"pair_{i // 2}") for i, (name, _) in
                                        enumerate(rows))])
    return rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("trained")
    root = tmp_path / "set_a"
    rows = write_set(root, seed=0)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    features = tmp_path / "features.parquet"
    assert extract.main(["--config", str(config), "--data-root", str(root), "--out",
                         str(features), "--n-jobs", "1"]) == 0
    run = tmp_path / "run"
    assert fit.main(["--config", str(config), "--features", str(features), "--out", str(run),
                     "--folds", "3"]) == 0
    return root, run, rows, config


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_robustness_grid_end_to_end(trained, tmp_path, capsys):
    root, run, rows, _ = trained
    out = tmp_path / "robust"
    assert evaluate.main(["--model", str(run), "--data-root", str(root), "--perturb", "blur=2",
                          "jpeg=95", "--out", str(out), "--n-jobs", "1", "--chunk-size", "16"]) == 0
    result = json.loads((out / "robustness.json").read_text())
    by_label = {r["label"]: r for r in result["rows"]}
    assert list(by_label) == ["as is", "blur=2", "jpeg=95"]
    assert all(r["n"] == 40 and r["n_failed"] == 0 for r in result["rows"])

    # As is: the same scores predict gives (an independent path through extract_dataset).
    submission = tmp_path / "submission.csv"
    assert predict.main(["--model", str(run), "--data-root", str(root), "--out",
                         str(submission), "--n-jobs", "1"]) == 0
    scores = [float(r["y_pred"]) for r in read_csv(submission)]
    assert by_label["as is"]["auc"] == pytest.approx(roc_auc_score([t for _, t in rows], scores))
    # A sigma-2 blur multiplies the 2-pixel grid by exp(-2 pi^2 4 / 4) ~ 3e-9: the trace is gone.
    assert by_label["blur=2"]["auc"] < 0.8 < by_label["as is"]["auc"]
    assert by_label["blur=2"]["delta_auc"] == pytest.approx(
        by_label["blur=2"]["auc"] - by_label["as is"]["auc"])
    assert by_label["jpeg=95"]["tpr_at_fpr"]["0.01"]["n_negatives"] == 20
    assert result["sets"][0]["training_set"] and "in-sample" in result["notes"][0]

    table = read_csv(out / "robustness.csv")
    assert [(r["set"], r["perturbation"], r["strength"]) for r in table] == [
        ("set_a", "none", ""), ("set_a", "blur", "2"), ("set_a", "jpeg", "95")]
    assert float(table[1]["auc"]) == pytest.approx(by_label["blur=2"]["auc"], abs=1e-6)
    assert {"tpr_at_fpr_0.001", "fpr_reached_0.01", "n_negatives", "n"} <= set(table[0])
    page = (out / "robustness.html").read_text()
    assert "AUC under blur" in page and "Plotly" in page and "<script src" not in page
    assert "blur=2" in capsys.readouterr().out


def test_default_output_folder_is_inside_the_run(tmp_path, trained):
    root, run, _, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert evaluate.main(["--model", str(copy), "--data-root", str(root), "--n-jobs", "1"]) == 0
    result = json.loads((copy / "robustness" / "robustness.json").read_text())
    assert [r["label"] for r in result["rows"]] == ["as is"]


def test_a_model_fitted_on_another_feature_version_is_scored_with_a_warning(tmp_path, trained,
                                                                            caplog):
    root, run, _, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    manifest_path = copy / "model" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["feature_version"] = 1
    manifest_path.write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING):
        assert evaluate.main(["--model", str(copy), "--data-root", str(root), "--n-jobs", "1"]) == 0
    assert "fitted on features of version 1" in caplog.text
    assert (copy / "robustness" / "robustness.json").is_file()


def test_several_sets_from_a_config_file(trained, tmp_path):
    root, run, _, _ = trained
    rows_b = write_set(root.parent / "set_b", seed=3, n=20)
    (root.parent / "set_b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    with open(root.parent / "set_b" / "labels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("img_name", "target"), ("broken.png", 1), *rows_b])
    config = root.parent / "sets.yaml"  # paths in a config file are relative to it
    config.write_text("evaluate:\n  sets:\n    - {data_root: set_a, name: first}\n"
                      "    - {data_root: set_b, labels: set_b/labels.csv}\n"
                      "  perturb: noise=3\n")
    out = tmp_path / "several"
    assert evaluate.main(["--config", str(config), "--model", str(run), "--out", str(out),
                          "--n-jobs", "1"]) == 0
    rows = json.loads((out / "robustness.json").read_text())["rows"]
    result = json.loads((out / "robustness.json").read_text())
    assert [s["training_set"] for s in result["sets"]] == [True, False]
    assert [(r["set"], r["label"], r["n"], r["n_failed"]) for r in rows] == [
        ("first", "as is", 40, 0), ("first", "noise=3", 40, 0), ("set_b", "as is", 20, 1),
        ("set_b", "noise=3", 20, 1)]
    assert any(n.startswith("set_b, as is: 1 file(s) not scored, e.g. ImageDecodeError")
               for n in result["notes"])


def test_a_grid_step_without_its_codec_is_skipped_with_a_note(monkeypatch):
    monkeypatch.setitem(perturbations.ENCODERS, "mp3", ("no_such_encoder",))
    runnable, notes = evaluate.runnable_grid([("mp3", 64.0), ("snr", 10.0)])
    assert runnable == [("snr", 10.0)]
    assert notes == ["skipped mp3=64: mp3: no encoder in this FFmpeg build (tried "
                     "no_such_encoder)"]


@pytest.mark.parametrize("args, message", [
    (["--perturb", "jpeg=90", "sharpen=2"], "'sharpen=2': unknown image perturbation"),
    (["--labels", "x.csv", "--data-root", "elsewhere"], "--labels applies to a single"),
])
def test_bad_requests_fail_with_a_clear_message(trained, args, message, capsys):
    root, run, _, _ = trained
    assert evaluate.main(["--model", str(run), "--data-root", str(root), *args]) == 2
    assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def cross(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("cross")
    write_set(tmp_path / "one", seed=1)
    write_set(tmp_path / "two", seed=2)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "cross"
    with pytest.MonkeyPatch.context() as patch:
        forbid_the_whole_matrix(patch)  # each set's rows are streamed from its table
        assert evaluate.main(["--config", str(config), "--cross", str(tmp_path / "one"),
                              str(tmp_path / "two"), "--out", str(out), "--launder", "--folds",
                              "3", "--group-column", "pair_key", "--n-jobs", "1"]) == 0
    return out, config, json.loads((out / "cross_matrix.json").read_text())


def test_cross_matrix_on_two_sets(cross):
    out, _, result = cross
    assert result["sets"] == ["one", "two"] and result["launder"] == ["launder", 0.8]
    assert result["group_column"] == "pair_key"
    assert set(result["auc"]) == {"as_is", "laundered"}
    cells = {(c["train_set"], c["test_set"], c["version"]): c for c in result["cells"]}
    assert len(cells) == 8
    assert cells[("one", "one", "as_is")]["kind"] == "3-fold out-of-fold"
    assert cells[("one", "two", "as_is")]["kind"] == "transfer"
    # Both sets carry the same trace, so every model transfers; matrix[i][j] is cell (i, j).
    matrix = result["auc"]["as_is"]
    assert all(v > 0.9 for row in matrix for v in row)
    assert matrix[0][1] == cells[("one", "two", "as_is")]["auc"]
    assert result["auc"]["laundered"][1][0] == cells[("two", "one", "laundered")]["auc"]
    assert all(c["n"] == 40 for c in result["cells"])
    assert (out / "features" / "one.parquet").is_file()
    table = read_csv(out / "cross_matrix.csv")
    assert [(r["train_set"], r["test_set"], r["version"]) for r in table] == list(cells)


def test_cross_diagonal_is_the_out_of_fold_score_of_fit(cross, tmp_path):
    out, config, result = cross
    run = tmp_path / "run"
    assert fit.main(["--config", str(config), "--features", str(out / "features" / "one.parquet"),
                     "--out", str(run), "--folds", "3", "--group-column", "pair_key"]) == 0
    assert result["auc"]["as_is"][0][0] == \
        json.loads((run / "metrics.json").read_text())["oof"]["lightgbm"]["auc"]


def test_cross_launder_reads_each_laundered_image_from_its_own_table(cross):
    """The laundered copies are extracted into a table beside each set's (not held in memory),
    and each row there describes that image shrunk by 0.8 and re-encoded at JPEG 90."""
    out, _, _ = cross
    table = pq.read_table(out / "features" / "two.laundered.parquet").to_pandas()
    assert len(table) == 40
    extractor = cached_extractor(FeatureConfig.from_mapping("image", {"fft": {"n_bins": 8}}))
    root = out.parent / "two"
    for i in (0, 7, 39):  # a real, a fake and the last row
        rgb = load_image(root / f"img_{i:02d}.png")
        shrunk = cv2.resize(rgb, (51, 51), interpolation=cv2.INTER_AREA)  # round(64 * 0.8)
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(shrunk, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        laundered = cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        expected, failures = extractor.transform_context(ImageContext(laundered))
        row = table.loc[table["img_name"] == f"img_{i:02d}.png", extractor.names]
        assert not failures and np.allclose(row.to_numpy()[0], expected, rtol=1e-6, atol=1e-6)
