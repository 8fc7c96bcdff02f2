"""Training copies made at extraction (`augment`): extracted as processed twins, trained on in
their source's folds only, never scored."""
import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from models.validation import FoldPlan, with_copies
from pipelines import extract, fit
from pipelines.fit import augmentation_sources

MIRRORED_LAYOUT = """extract:
  families:
    layout: {grid: 2, maps: [y]}
  augment:
    copies: 1
    perturbations:
      mirror: [1, 1]
"""


@pytest.fixture
def augmented_table(dataset, tmp_path):
    root, _, rows = dataset
    config = tmp_path / "augment.yaml"
    config.write_text(MIRRORED_LAYOUT)
    out = tmp_path / "augmented.parquet"
    assert extract.main(["--config", str(config), "--data-root", str(root), "--out", str(out),
                         "--n-jobs", "1", "--chunk-size", "7"]) == 0
    return out, [(name, target) for name, target in rows if name != "broken.png"]


def test_each_file_gets_a_mirrored_copy_whose_grid_is_the_mirror_image(augmented_table):
    out, originals = augmented_table
    frame = pq.read_table(out).to_pandas().set_index("img_name")
    copies = [f"{name}#aug1" for name, _ in originals]
    # Every readable file and one copy of it (the corrupt file has neither), labels carried over.
    assert sorted(frame.index) == sorted([name for name, _ in originals] + copies)
    assert all(frame.loc[f"{name}#aug1", "target"] == target for name, target in originals)
    # A left-right mirror swaps the grid's columns: a copy's left cells are its source's right.
    # (The spread comes from float32 sums of squares, which round differently in another order.)
    for cell, mirrored in (("0_0", "0_1"), ("1_1", "1_0")):
        for stat, tolerance in (("mean", 1e-4), ("std", 1e-2)):
            source = frame.loc[[n for n, _ in originals], f"layout__y__{stat}__cell_{mirrored}"]
            copy = frame.loc[copies, f"layout__y__{stat}__cell_{cell}"]
            np.testing.assert_allclose(copy.to_numpy(), source.to_numpy(), atol=tolerance)
    # ... and does change the cells themselves (the generated images are not symmetric).
    assert not np.allclose(frame.loc[copies, "layout__y__mean__cell_0_0"].to_numpy(),
                           frame.loc[[n for n, _ in originals], "layout__y__mean__cell_0_0"])


def test_fit_trains_on_the_copies_but_scores_only_the_originals(augmented_table, tmp_path):
    out, originals = augmented_table
    run = tmp_path / "run"
    assert fit.main(["--features", str(out), "--out", str(run), "--folds", "3"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["run"]["n_augmented_rows"] == len(originals)
    assert metrics["oof"]["lightgbm"]["n"] == len(originals)
    with open(run / "oof.csv") as handle:
        scored = [row["img_name"] for row in csv.DictReader(handle)]
    assert sorted(scored) == sorted(name for name, _ in originals)


def test_a_copy_trains_exactly_where_its_source_trains_and_is_never_tested():
    # Table rows: originals a, b, c, d at 0, 2, 4, 6, each followed by its copy.
    names = [n for source in "abcd" for n in (f"{source}.png", f"{source}.png#aug1")]
    originals, source_of = augmentation_sources(names)
    assert originals.tolist() == [0, 2, 4, 6]
    assert source_of.tolist() == [0, 0, 2, 2, 4, 4, 6, 6]
    # Two folds planned over the four originals (positions in ``originals``).
    plan = FoldPlan(2, ((np.array([0, 1]), np.array([2, 3])),
                        (np.array([2, 3]), np.array([0, 1]))), None)
    extended = with_copies(plan, originals, source_of)
    (train_0, test_0), (train_1, test_1) = extended.folds
    assert train_0.tolist() == [0, 1, 2, 3] and test_0.tolist() == [4, 6]
    assert train_1.tolist() == [4, 5, 6, 7] and test_1.tolist() == [0, 2]


def test_a_copy_without_its_source_is_an_error_naming_it():
    with pytest.raises(ValueError, match="b.png"):
        augmentation_sources(["a.png", "a.png#aug1", "b.png#aug1"])


def test_names_that_already_look_like_copies_cannot_be_augmented(dataset, tmp_path, capsys):
    root, _, rows = dataset
    labels = root / "labels.csv"
    text = labels.read_text().replace("img_03.png", "img_03.png#aug1")
    (root / "img_03.png").rename(root / "img_03.png#aug1")
    labels.write_text(text)
    config = tmp_path / "augment.yaml"
    config.write_text(MIRRORED_LAYOUT)
    assert extract.main(["--config", str(config), "--data-root", str(root), "--out",
                         str(tmp_path / "t.parquet"), "--n-jobs", "1"]) == 2
    assert "img_03.png#aug1" in capsys.readouterr().err
