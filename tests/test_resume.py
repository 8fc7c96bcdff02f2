"""Resumable extraction: a run killed with SIGKILL and started again redoes only unfinished chunks.

Chunks are written atomically to ``OUT.parts/<key>.parquet``; after a kill only hidden ``.tmp``
files may be partial, the final table does not exist yet, and the second run ends with exactly
the table of an uninterrupted run.
"""
import logging
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from features import registry
from pipelines import extract

PROJECT_ROOT = Path(__file__).resolve().parent.parent
N_IMAGES, CHUNK_SIZE = 60, 5
N_CHUNKS = N_IMAGES // CHUNK_SIZE
SIDE = 640  # large enough that one chunk takes a visible fraction of a second
KILL_AFTER_PARTS = 2
PART_NAME = re.compile(r"^[0-9a-f]{20}\.parquet$")


def write_images(root: Path, count: int, side: int) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        small = cv2.GaussianBlur(rng.integers(0, 256, (side // 8, side // 8, 3), np.uint8),
                                 (0, 0), 1.5)
        cv2.imwrite(str(root / f"img_{i:02d}.jpg"), cv2.resize(small, (side, side)))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("resume") / "data"
    write_images(root, N_IMAGES, SIDE)
    return root


def extract_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--data-root", str(root), "--out", str(out), "--preset", "minimal",
            "--chunk-size", str(CHUNK_SIZE), "--n-jobs", "1", *extra]


def complete_parts(parts: Path) -> dict[str, tuple[int, int]]:
    """Finished chunk files and their (inode, mtime), ignoring hidden temporary files."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in parts.glob("*.parquet") if not p.name.startswith(".")}


def kill_after_some_chunks(root: Path, out: Path, tmp_path: Path) -> None:
    parts = out.with_name(out.name + ".parts")
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "pipelines.extract",
                                    *extract_args(root, out)], cwd=PROJECT_ROOT,
                                   stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline:
            if parts.is_dir() and len(complete_parts(parts)) >= KILL_AFTER_PARTS:
                break
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, (
        "the run ended before it could be killed:\n" + (tmp_path / "killed.log").read_text())


def test_killed_run_resumes_from_its_finished_chunks_and_ends_with_the_same_table(
        images, tmp_path, monkeypatch, caplog):
    out = tmp_path / "out" / "features.parquet"
    parts = out.with_name(out.name + ".parts")
    kill_after_some_chunks(images, out, tmp_path)

    # After the kill: no final table; every visible file is a whole chunk; others are hidden .tmp
    assert not out.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == [parts.name]
    before = complete_parts(parts)
    assert KILL_AFTER_PARTS <= len(before) < N_CHUNKS
    for entry in parts.iterdir():
        if entry.name.startswith("."):
            assert entry.name.endswith(".tmp")
        else:
            assert PART_NAME.match(entry.name)
            assert pq.read_table(entry).num_rows == CHUNK_SIZE

    written, at_assembly = [], {}
    original_write, original_assemble = extract.write_parquet_atomic, extract.assemble

    def record_write(table, path):
        written.append(Path(path).name)
        original_write(table, path)

    def record_assemble(*args, **kwargs):
        at_assembly.update(complete_parts(parts))
        return original_assemble(*args, **kwargs)

    monkeypatch.setattr(extract, "write_parquet_atomic", record_write)
    monkeypatch.setattr(extract, "assemble", record_assemble)
    caplog.set_level(logging.INFO, logger="pipelines.extract")
    assert extract.main(extract_args(images, out)) == 0

    assert f"resuming: {len(before)} of {N_CHUNKS} chunks already done" in caplog.text
    assert not set(written) & set(before) and len(written) == N_CHUNKS - len(before)
    assert {name: at_assembly[name] for name in before} == before  # same inode, same mtime
    assert not parts.exists()

    reference = tmp_path / "uninterrupted" / "features.parquet"
    monkeypatch.undo()
    assert extract.main(extract_args(images, reference)) == 0
    resumed, expected = pq.read_table(out), pq.read_table(reference)
    assert resumed.num_rows == N_IMAGES
    assert resumed.equals(expected)


def test_finished_chunks_are_not_reused_after_an_option_that_changes_them(tmp_path, monkeypatch):
    # A run interrupted under --max-pixels 1000 (every 64x64 image rejected) and resumed without
    # it must not keep the rejections: the chunk key has to cover the decoding options.
    root, out = tmp_path / "data", tmp_path / "features.parquet"
    write_images(root, 10, 64)

    def crash(*args, **kwargs):
        raise RuntimeError("killed before assembly")

    monkeypatch.setattr(extract, "assemble", crash)
    with pytest.raises(RuntimeError):
        extract.main(extract_args(root, out, "--max-pixels", "1000"))
    assert len(complete_parts(out.with_name(out.name + ".parts"))) == 2
    monkeypatch.undo()
    assert extract.main(extract_args(root, out)) == 0
    assert pq.read_table(out).num_rows == 10
    assert out.with_suffix(".errors.csv").read_text().splitlines() == ["img_name,kind,error"]


def test_finished_chunks_of_another_feature_version_are_not_reused(tmp_path, monkeypatch,
                                                                   caplog):
    # Chunks finished by a release whose families computed other values (an older
    # FEATURE_VERSION) must be extracted again, not assembled beside the new ones.
    root, out = tmp_path / "data", tmp_path / "features.parquet"
    write_images(root, 10, 64)
    monkeypatch.setattr(registry, "FEATURE_VERSION", registry.FEATURE_VERSION - 1)
    monkeypatch.setattr(extract, "assemble", lambda *a, **k: (_ for _ in ()).throw(
        RuntimeError("killed before assembly")))
    with pytest.raises(RuntimeError):
        extract.main(extract_args(root, out))
    old_parts = complete_parts(out.with_name(out.name + ".parts"))
    assert len(old_parts) == 2
    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="pipelines.extract"):
        assert extract.main(extract_args(root, out)) == 0
    assert "resuming" not in caplog.text
    assert extract.read_features_metadata(out)["feature_version"] == registry.FEATURE_VERSION


def test_assembled_table_does_not_keep_one_row_group_per_chunk(tmp_path):
    # Each Parquet row group adds footer metadata for every column, which the writer holds until
    # it closes: at 640 features about 1.3 MiB per chunk, gigabytes for 500,000 files in chunks
    # of 256. Chunks are the unit of work and resumption, not of storage.
    root, out = tmp_path / "data", tmp_path / "features.parquet"
    write_images(root, 12, 64)
    assert extract.main(["--data-root", str(root), "--out", str(out), "--preset", "minimal",
                         "--chunk-size", "2", "--n-jobs", "1"]) == 0
    metadata = pq.ParquetFile(out).metadata
    assert metadata.num_rows == 12
    assert metadata.num_row_groups == 1  # 12 rows of 76 floats: far below any row-group size
