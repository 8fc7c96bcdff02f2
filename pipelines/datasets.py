"""Datasets: a root folder plus a label file (or a plain folder / file list for prediction).

Accepted layouts:

* the competition's: ``trainset/`` beside ``trainset_label.txt`` (header ``img_name,target``;
  ``img_path`` and ``video_name`` are accepted for the name column);
* any folder holding a ``labels.csv``;
* for prediction only: a folder of media files, or a file list without a ``target`` column.

Everything is checked before any long work starts: every name resolves inside the root (``../x``,
absolute paths and symbolic links leaving the root are rejected), targets are 0 or 1, names are
unique and every file exists. Errors name the label file and the row (the header is row 1).
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NAME_COLUMNS = ("img_name", "img_path", "video_name")
TARGET_COLUMN = "target"
MAX_FIELD_CHARS = 4096
MAX_ERRORS_SHOWN = 10
MEDIA_SUFFIXES = {
    "image": (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"),
    "audio": (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus"),
    "clip": (".mp4", ".mkv", ".avi", ".mov", ".webm"),
}


class DatasetError(ValueError):
    """A label file or data folder that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Dataset:
    """Files to process, in input order, with their names as written in the label file."""

    root: Path
    names: tuple[str, ...]
    paths: tuple[Path, ...]
    targets: np.ndarray | None  # int8 0/1, or None when unlabelled
    name_column: str
    label_file: Path | None
    extra: dict[str, tuple[str, ...]]  # other label-file columns (e.g. a group column)

    def __len__(self) -> int:
        return len(self.names)


def find_label_file(root: Path) -> Path | None:
    """``root/labels.csv``, or ``<root>_label.txt`` beside the folder (competition layout)."""
    candidates = [root / "labels.csv", root.parent / f"{root.name}_label.txt",
                  root.parent / f"{root.name}_label.csv"]
    return next((c for c in candidates if c.is_file()), None)


def load_dataset(root: str | Path, labels: str | Path | None = None, *,
                 require_targets: bool = True, modality: str = "image") -> Dataset:
    """Load and fully validate a dataset.

    Parameters
    ----------
    root : folder the names in the label file are relative to.
    labels : label file; found with ``find_label_file`` when omitted. Without one, and when
        ``require_targets`` is False, every media file under ``root`` is listed (sorted).
    require_targets : whether a ``target`` column is mandatory (training) or optional (prediction).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data root {root} is not a folder (option --data-root)")
    label_file = Path(labels) if labels is not None else find_label_file(root)
    if label_file is None:
        if require_targets:
            raise DatasetError(f"no label file given (option --labels) and none found for {root} "
                               f"(looked for labels.csv and {root.name}_label.txt)")
        return _scan_folder(root, modality)
    names, rows, targets, name_column, extra = _read_label_file(label_file, require_targets)
    paths = _resolve_all(root, label_file, names, rows)
    return Dataset(root, tuple(names), tuple(paths), targets, name_column, label_file, extra)


def _scan_folder(root: Path, modality: str) -> Dataset:
    suffixes = MEDIA_SUFFIXES[modality]
    resolved_root = root.resolve()
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes and p.is_file()
                   and p.resolve().is_relative_to(resolved_root))
    if not paths:
        raise DatasetError(f"{root}: no {modality} files ({', '.join(suffixes)}) found")
    names = tuple(p.relative_to(root).as_posix() for p in paths)
    return Dataset(root, names, tuple(paths), None, "img_name", None, {})


def _read_label_file(label_file: Path, require_targets: bool):
    if not label_file.is_file():
        raise DatasetError(f"label file {label_file} does not exist (option --labels)")
    try:
        with open(label_file, newline="", encoding="utf-8-sig") as handle:
            rows = list(_limited_rows(handle, label_file))
    except UnicodeDecodeError as error:
        raise DatasetError(f"{label_file}: not UTF-8 text ({error})") from error
    if not rows:
        raise DatasetError(f"{label_file}: empty label file")
    header = [h.strip() for h in rows[0]]
    name_column = next((c for c in NAME_COLUMNS if c in header), None)
    if name_column is None:
        raise DatasetError(f"{label_file}: row 1 (header) has no name column; expected one of "
                           f"{', '.join(NAME_COLUMNS)}, found {header}")
    if require_targets and TARGET_COLUMN not in header:
        raise DatasetError(f"{label_file}: row 1 (header) has no '{TARGET_COLUMN}' column, "
                           f"found {header}")
    name_index = header.index(name_column)
    target_index = header.index(TARGET_COLUMN) if TARGET_COLUMN in header else None
    names, row_numbers, targets, errors = [], [], [], []
    extra_columns = [c for c in header if c not in (name_column, TARGET_COLUMN)]
    extra = {c: [] for c in extra_columns}
    seen: dict[str, int] = {}
    for row_number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            errors.append(f"row {row_number}: {len(row)} fields, the header has {len(header)}")
            continue
        name = row[name_index].strip()
        if not name:
            errors.append(f"row {row_number}: empty {name_column}")
            continue
        if name in seen:
            errors.append(f"row {row_number}: duplicate name {name!r} (first on row {seen[name]})")
            continue
        seen[name] = row_number
        if target_index is not None:
            value = row[target_index].strip()
            if value not in ("0", "1"):
                errors.append(f"row {row_number}: target {value!r} is not 0 or 1")
                continue
            targets.append(int(value))
        names.append(name)
        row_numbers.append(row_number)
        for column in extra_columns:
            extra[column].append(row[header.index(column)])
    _raise_if(errors, label_file)
    if not names:
        raise DatasetError(f"{label_file}: no data rows")
    target_array = np.asarray(targets, dtype=np.int8) if target_index is not None else None
    return names, row_numbers, target_array, name_column, {c: tuple(v) for c, v in extra.items()}


def _limited_rows(handle, label_file: Path):
    reader = csv.reader(handle)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise DatasetError(f"{label_file}: row {reader.line_num}: malformed CSV ({error})") from error
        too_long = [cell for cell in row if len(cell) > MAX_FIELD_CHARS]
        if too_long:
            raise DatasetError(f"{label_file}: row {reader.line_num}: a field of "
                               f"{len(too_long[0]):,} characters exceeds {MAX_FIELD_CHARS}")
        yield row


def resolve_inside(root: Path, name: str) -> Path:
    """The path of ``name`` under ``root``; raises ValueError if it would leave the root."""
    if "\x00" in name:
        raise ValueError("contains a NUL character")
    candidate = Path(name)
    if candidate.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ValueError("is an absolute path")
    if ".." in Path(name.replace("\\", "/")).parts:
        raise ValueError("contains '..'")
    path = root / candidate
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
        raise ValueError("resolves outside the data root (symbolic link)")
    return path


def _resolve_all(root: Path, label_file: Path, names: list[str], rows: list[int]) -> list[Path]:
    paths, errors = [], []
    for row_number, name in zip(rows, names):
        try:
            path = resolve_inside(root, name)
        except ValueError as error:
            errors.append(f"row {row_number}: {name!r} {error}")
            continue
        if not path.is_file():
            errors.append(f"row {row_number}: {name!r} not found under {root}")
        paths.append(path)
    _raise_if(errors, label_file)
    return paths


def _raise_if(errors: list[str], label_file: Path) -> None:
    if not errors:
        return
    shown = "\n  ".join(errors[:MAX_ERRORS_SHOWN])
    more = f"\n  ... and {len(errors) - MAX_ERRORS_SHOWN} more" if len(errors) > MAX_ERRORS_SHOWN else ""
    raise DatasetError(f"{label_file}: {len(errors)} problem(s):\n  {shown}{more}")
