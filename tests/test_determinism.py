"""Same inputs and configuration, same outputs, bit for bit, whatever the parallelism and chunks."""
import csv

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines import extract, fit, predict

N_IMAGES = 24
FIT_CONFIG = "fit:\n  lightgbm: {n_estimators: 60}\n"  # fewer trees: quicker, as deterministic


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Images of several sizes and formats, two classes (the fakes carry an up-sampling grid)."""
    root = tmp_path_factory.mktemp("determinism") / "data"
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(N_IMAGES):
        target = i % 2
        height, width = 48 + 8 * (i % 5), 64 + 16 * (i % 3)
        image = cv2.GaussianBlur(rng.normal(128, 40, (height, width, 3)), (0, 0), 2)
        if target:
            image[::2, ::2] += 25
        name = f"img_{i:02d}.{'png' if i % 3 else 'jpg'}"
        cv2.imwrite(str(root / name), np.clip(image, 0, 255).astype(np.uint8))
        rows.append((name, target))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    rows.insert(7, ("broken.jpg", 0))
    with open(root / "labels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("img_name", "target"), *rows])
    return root


def run_extract(root, out, n_jobs, chunk_size):
    assert extract.main(["--data-root", str(root), "--out", str(out), "--preset", "minimal",
                         "--n-jobs", str(n_jobs), "--chunk-size", str(chunk_size)]) == 0
    return pq.read_table(out)


def feature_bits(table) -> np.ndarray:
    """The float32 feature columns as raw 32-bit patterns (a bitwise comparison, NaN included)."""
    columns = [c for c in table.column_names if "__" in c]
    return np.column_stack([table.column(c).to_numpy().view(np.uint32) for c in columns])


def test_feature_table_is_bitwise_identical_whatever_jobs_and_chunk_size(dataset, tmp_path):
    runs = {(n_jobs, chunk): run_extract(dataset, tmp_path / f"{n_jobs}_{chunk}.parquet",
                                         n_jobs, chunk)
            for n_jobs, chunk in [(1, 5), (2, 3), (2, 100)]}
    reference = runs[(1, 5)]
    assert reference.num_rows == N_IMAGES  # the broken file has no row
    for setting, table in runs.items():
        assert table.column_names == reference.column_names, setting
        assert table.column("img_name").equals(reference.column("img_name")), setting
        np.testing.assert_array_equal(feature_bits(table), feature_bits(reference))
        assert table.equals(reference), setting
    errors = {(tmp_path / f"{n}_{c}.errors.csv").read_bytes() for n, c in runs}
    assert len(errors) == 1 and b"broken.jpg" in errors.pop()


def test_fitting_twice_gives_identical_predictions(dataset, tmp_path):
    features = tmp_path / "features.parquet"
    run_extract(dataset, features, 1, 8)
    config = tmp_path / "fit.yaml"
    config.write_text(FIT_CONFIG)
    outputs = []
    for attempt in ("first", "second"):
        run = tmp_path / attempt
        assert fit.main(["--config", str(config), "--features", str(features), "--out", str(run),
                         "--folds", "3"]) == 0
        submission = tmp_path / f"{attempt}_submission.csv"
        assert predict.main(["--model", str(run), "--data-root", str(dataset),
                             "--out", str(submission), "--n-jobs", "1"]) == 0
        outputs.append(((run / "oof.csv").read_bytes(), submission.read_bytes()))
    (oof_a, submission_a), (oof_b, submission_b) = outputs
    assert oof_a == oof_b and submission_a == submission_b
    scores = [float(line.split(",")[1]) for line in submission_a.decode().splitlines()[1:]]
    assert len(scores) == N_IMAGES + 1 and len(set(scores)) > 2  # real, varied predictions
