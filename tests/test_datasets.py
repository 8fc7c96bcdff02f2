import os

import numpy as np
import pytest

from pipelines.datasets import DatasetError, load_dataset


def make_files(root, names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


@pytest.mark.parametrize("column", ["img_name", "img_path", "video_name"])
def test_all_three_name_headers(tmp_path, column):
    make_files(tmp_path, ["a.jpg", "sub/b.jpg"])
    (tmp_path / "labels.csv").write_text(f"{column},target\na.jpg,0\nsub/b.jpg,1\n")
    data = load_dataset(tmp_path)
    assert data.name_column == column
    assert data.names == ("a.jpg", "sub/b.jpg")
    assert data.paths[1] == tmp_path / "sub" / "b.jpg"
    np.testing.assert_array_equal(data.targets, [0, 1])


def test_competition_layout_label_file_beside_folder(tmp_path):
    root = tmp_path / "trainset"
    make_files(root, ["x.jpg", "y.jpg"])
    (tmp_path / "trainset_label.txt").write_text("img_name,target\nx.jpg,1\ny.jpg,0\n")
    data = load_dataset(root)
    assert data.label_file == tmp_path / "trainset_label.txt"
    np.testing.assert_array_equal(data.targets, [1, 0])


def test_unlabelled_folder_for_prediction(tmp_path):
    make_files(tmp_path, ["b.png", "a.jpg", "notes.txt", "d/c.JPG"])
    data = load_dataset(tmp_path, require_targets=False)
    assert data.names == ("a.jpg", "b.png", "d/c.JPG")
    assert data.targets is None


def test_file_list_without_targets(tmp_path):
    make_files(tmp_path, ["a.jpg"])
    (tmp_path / "list.csv").write_text("img_name\na.jpg\n")
    assert load_dataset(tmp_path, tmp_path / "list.csv", require_targets=False).targets is None
    with pytest.raises(DatasetError, match="no 'target' column"):
        load_dataset(tmp_path, tmp_path / "list.csv")


@pytest.mark.parametrize("body, message", [
    ("img_name,target\n../x.jpg,0\n", r"row 2: '\.\./x\.jpg' contains '\.\.'"),
    ("img_name,target\n/etc/passwd,0\n", "row 2: '/etc/passwd' is an absolute path"),
    ("img_name,target\na.jpg,2\n", "row 2: target '2' is not 0 or 1"),
    ("img_name,target\na.jpg,\n", "row 2: target '' is not 0 or 1"),
    ("img_name,target\na.jpg,1\na.jpg,0\n", r"row 3: duplicate name 'a\.jpg' \(first on row 2\)"),
    ("img_name,target\nmissing.jpg,1\n", "row 2: 'missing.jpg' not found"),
    ("name,target\na.jpg,1\n", "row 1 .header. has no name column"),
    ("img_name,label\na.jpg,1\n", "no 'target' column"),
    ("img_name,target\na.jpg,1,extra\n", "row 2: 3 fields"),
    ("img_name,target\n" + "x" * 5000 + ",1\n", "row 2: a field of 5,000 characters"),
])
def test_rejected_rows_name_the_row(tmp_path, body, message):
    make_files(tmp_path, ["a.jpg"])
    (tmp_path / "labels.csv").write_text(body)
    with pytest.raises(DatasetError, match=message):
        load_dataset(tmp_path)


def test_symlink_leaving_the_root_is_rejected(tmp_path):
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"x")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "link.jpg")
    (root / "labels.csv").write_text("img_name,target\nlink.jpg,1\n")
    with pytest.raises(DatasetError, match="row 2: 'link.jpg' resolves outside the data root"):
        load_dataset(root)


def test_all_problems_of_a_pass_reported_at_once(tmp_path):
    make_files(tmp_path, ["a.jpg"])
    (tmp_path / "labels.csv").write_text("img_name,target\na.jpg,5\nb.jpg,x\na.jpg,1\n")
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path)
    text = str(error.value)
    assert "3 problem(s)" in text
    assert "row 2: target '5'" in text and "row 3: target 'x'" in text
    assert "row 4: duplicate name 'a.jpg' (first on row 2)" in text


def test_missing_root_names_the_option(tmp_path):
    with pytest.raises(DatasetError, match="--data-root"):
        load_dataset(tmp_path / "nope")


def test_real_set_loads(shared_data):
    data = load_dataset(shared_data("images/stylegan140k_small"))
    assert len(data) == 1330 and set(np.unique(data.targets)) == {0, 1}
