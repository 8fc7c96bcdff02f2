"""Hostile label files and file names: traversal, huge fields, spreadsheet formulas, HTML.

No name may lead outside the data root, no written CSV cell may start like a spreadsheet formula
(= + - @), and no name may reach the HTML report unescaped.
"""
import csv
import os

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from plotly.offline import get_plotlyjs

from pipelines import extract, fit, predict

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
SCRIPT = "<script>alert(1)</script>"
IMG_TAG = "<img src=x onerror=alert(1)>"
GOOD_HOSTILE = ["=cmd|' /C calc'!A0.png", "+1.png", "@SUM(1).png", "-2+3.png",
                f"{SCRIPT}.png"]  # the last is a folder '<script>alert(1)<' holding 'script>.png'
BROKEN_HOSTILE = ['=HYPERLINK("evil")-broken.png', f"{IMG_TAG}.png"]
FIT_CONFIG = "fit:\n  lightgbm: {n_estimators: 60}\n"


def write_image(path, rng, fake):
    image = cv2.GaussianBlur(rng.normal(128, 40, (48, 48, 3)), (0, 0), 2)
    if fake:
        image[::2, ::2] += 25
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.clip(image, 0, 255).astype(np.uint8))


def write_labels(path, rows, header=("img_name", "target")):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """extract -> fit -> predict on 16 images (8 per class) and 2 broken files, hostile names."""
    base = tmp_path_factory.mktemp("hostile")
    root = base / "data"
    rng = np.random.default_rng(0)
    names = GOOD_HOSTILE + [f"plain_{i}.png" for i in range(16 - len(GOOD_HOSTILE))]
    rows = []
    for i, name in enumerate(names):
        write_image(root / name, rng, fake=i % 2 == 1)
        rows.append((name, i % 2))
    for name in BROKEN_HOSTILE:
        (root / name).write_bytes(b"\x89PNG\r\n\x1a\n broken")
        rows.append((name, 0))
    write_labels(root / "labels.csv", rows)
    features, run = base / "features.parquet", base / "run"
    (base / "fit.yaml").write_text(FIT_CONFIG)
    submission = base / "submission.csv"
    assert extract.main(["--data-root", str(root), "--out", str(features), "--preset", "minimal",
                         "--n-jobs", "1"]) == 0
    assert fit.main(["--config", str(base / "fit.yaml"), "--features", str(features),
                     "--out", str(run), "--folds", "3"]) == 0
    assert predict.main(["--model", str(run), "--data-root", str(root), "--out", str(submission),
                         "--n-jobs", "1"]) == 0
    return base, submission, run


def read_cells(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_no_written_csv_cell_starts_like_a_formula(hostile_run):
    base, submission, run = hostile_run
    files = [submission, submission.with_suffix(".failed.csv"), base / "features.errors.csv",
             run / "oof.csv", run / "extract_errors.csv", run / "importance.csv"]
    for path in files:
        for row in read_cells(path):
            bad = [cell for cell in row if cell.startswith(FORMULA_START)]
            assert not bad, (path.name, bad)
    submitted = [row[0] for row in read_cells(submission)[1:]]
    # Every input is still there, in order; formula-like names are quoted, others untouched.
    assert "'=cmd|' /C calc'!A0.png" in submitted and "'+1.png" in submitted
    assert "'@SUM(1).png" in submitted and "'-2+3.png" in submitted
    assert f"{SCRIPT}.png" in submitted and len(submitted) == 18
    failed = [row[0] for row in read_cells(submission.with_suffix(".failed.csv"))[1:]]
    assert failed == ["'" + BROKEN_HOSTILE[0], BROKEN_HOSTILE[1]]


def test_report_shows_hostile_names_escaped(hostile_run):
    _, _, run = hostile_run
    page = (run / "report.html").read_text(encoding="utf-8")
    page = page.replace(get_plotlyjs(), "")  # plotly's own bundle is not data
    escaped_script = "&lt;script&gt;alert(1)&lt;/script&gt;"
    escaped_img = "&lt;img src=x onerror=alert(1)&gt;"
    assert SCRIPT not in page and IMG_TAG not in page
    assert escaped_script in page  # a good file: shown in the error analysis
    assert escaped_img in page  # a broken file: listed among the files that failed
    # Every occurrence of the payload is inside one of its escaped forms.
    assert page.count("alert(1)") == page.count(escaped_script) + page.count(escaped_img)


# --- label files that try to leave the data root -------------------------------------------------

@pytest.fixture
def traversal_root(tmp_path):
    outside = tmp_path / "outside"
    root = tmp_path / "data"
    rng = np.random.default_rng(1)
    write_image(outside / "secret.png", rng, fake=False)
    write_image(root / "inside.png", rng, fake=False)
    os.symlink(outside / "secret.png", root / "link.png")
    os.symlink(outside, root / "linked_folder")
    return root, outside


@pytest.mark.parametrize("name, reason", [
    ("../outside/secret.png", "contains '..'"),
    ("sub/../../outside/secret.png", "contains '..'"),
    ("ABSOLUTE", "is an absolute path"),
    ("link.png", "resolves outside the data root"),
    ("linked_folder/secret.png", "resolves outside the data root"),
])
def test_names_leaving_the_root_stop_the_run_before_any_output(traversal_root, tmp_path, capsys,
                                                               name, reason):
    root, outside = traversal_root
    name = str(outside / "secret.png") if name == "ABSOLUTE" else name
    labels = tmp_path / "labels.csv"
    write_labels(labels, [("inside.png", 0), (name, 1)])
    out = tmp_path / "out" / "features.parquet"
    assert extract.main(["--data-root", str(root), "--labels", str(labels), "--out", str(out),
                         "--preset", "minimal", "--n-jobs", "1"]) == 2
    message = capsys.readouterr().err
    assert f"row 3: {name!r} {reason}" in message
    assert not (tmp_path / "out").exists()


def test_folder_scan_ignores_links_leaving_the_root(traversal_root, tmp_path):
    root, _ = traversal_root
    out = tmp_path / "features.parquet"
    assert extract.main(["--data-root", str(root), "--out", str(out), "--preset", "minimal",
                         "--n-jobs", "1"]) == 0
    assert pq.read_table(out).column("img_name").to_pylist() == ["inside.png"]


@pytest.mark.parametrize("cell, fragment", [
    ("a" * 5000 + ".png", "a field of 5,004 characters exceeds 4096"),
    ("b" * 200_000 + ".png", "malformed CSV"),
    ("nul\x00.png", "contains a NUL character"),
], ids=["5000_chars", "200000_chars", "nul"])
def test_huge_or_binary_fields_are_clear_errors(traversal_root, tmp_path, capsys, cell, fragment):
    root, _ = traversal_root
    labels = tmp_path / "labels.csv"
    labels.write_text(f"img_name,target\ninside.png,0\n{cell},1\n", encoding="utf-8")
    assert extract.main(["--data-root", str(root), "--labels", str(labels),
                         "--out", str(tmp_path / "f.parquet"), "--preset", "minimal"]) == 2
    message = capsys.readouterr().err
    assert fragment in message and "row 3" in message
    assert len(message) < 1000  # the offending field is not echoed back whole


def test_label_file_that_is_not_utf8_is_a_clear_error(traversal_root, tmp_path, capsys):
    root, _ = traversal_root
    labels = tmp_path / "labels.csv"
    labels.write_bytes(b"img_name,target\n\xff\xfe\xfa.png,0\n")
    assert extract.main(["--data-root", str(root), "--labels", str(labels),
                         "--out", str(tmp_path / "f.parquet"), "--preset", "minimal"]) == 2
    assert "not UTF-8 text" in capsys.readouterr().err
