"""Rows of a feature table read from its Parquet file a row group at a time, never all at once.

The plain LightGBM builds its binned Dataset from a :class:`lightgbm.Sequence`: a sample of rows
to place the bins, then every row in batches (LightGBM's "Sequence" input). Its float32 feature
matrix never has to exist whole: 500,000 images with a mirrored copy make a 13 GiB matrix at the
default preset, more than half of a 24 GiB machine before LightGBM has binned a value
(benchmarks/RESULTS.md, "Fit: memory and time at scale"). :class:`TableRows` is such a Sequence
over chosen rows and columns of the file; reading one row keeps its row group, so LightGBM's
ascending sample and batches read each group once. The stack screens its columns on such rows
the same way, then reads only the columns it keeps into a matrix (``models.stack``).
"""
from __future__ import annotations

from pathlib import Path

import lightgbm
import numpy as np
import pyarrow.parquet as pq


class TableRows(lightgbm.Sequence):
    """The float32 values of ``columns`` in ``rows`` (indices into the file; all rows if None).

    Indexing follows NumPy along the rows: ``rows[i]`` is one row, ``rows[a:b]`` or
    ``rows[indices]`` a (rows x columns) matrix; :meth:`subset` and :meth:`select_columns` make
    views of fewer rows or columns without reading anything. Rows in ascending file order (the
    folds' order) read each row group once; another order may read a group again.
    """

    # Rows LightGBM pushes into its Dataset at a time (64 MiB of float32 at 4,096 columns).
    batch_size = 4096

    def __init__(self, path: str | Path, columns: list[str], rows: np.ndarray | None = None):
        self.path = Path(path)
        self.column_names = list(columns)
        self._file = pq.ParquetFile(self.path)
        metadata = self._file.metadata
        self._group_starts = np.cumsum(
            [0] + [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)])
        self.rows = np.arange(metadata.num_rows) if rows is None else np.asarray(rows)
        self._forget_groups()

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.column_names)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            # One row at a time is how LightGBM reads its bin sample, which must be float64.
            row = self.rows[index]
            group = int(np.searchsorted(self._group_starts, row, side="right")) - 1
            return self._group(group)[row - self._group_starts[group]].astype(np.float64)
        return self.read(self.rows[index])

    def subset(self, positions) -> TableRows:
        """A view of the rows at ``positions`` of this one (in that order)."""
        return self._view(self.column_names, self.rows[positions])

    def select_columns(self, positions) -> TableRows:
        """A view of the columns at ``positions`` (indices or a boolean mask) of this one."""
        return self._view(np.asarray(self.column_names)[positions].tolist(), self.rows)

    def read(self, file_rows: np.ndarray) -> np.ndarray:
        """The values at these file row indices, as a (len(file_rows) x columns) float32 matrix."""
        file_rows = np.asarray(file_rows, dtype=np.int64)
        values = np.empty((len(file_rows), len(self.column_names)), dtype=np.float32)
        groups = np.searchsorted(self._group_starts, file_rows, side="right") - 1
        for group in np.unique(groups):
            here = groups == group
            values[here] = self._group(group)[file_rows[here] - self._group_starts[group]]
        return values

    def _group(self, group: int) -> np.ndarray:
        """One row group's values (the last one read is kept: rows are read in order).

        Every group is decoded into the same buffer: a fresh 64 MiB array per group made each
        first write a page fault, which took longer than reading the group.
        """
        if group != self._cached_group:
            table = self._file.read_row_group(int(group), columns=self.column_names)
            if self._buffer is None or len(self._buffer) < table.num_rows:
                self._buffer = np.empty((table.num_rows, len(self.column_names)), np.float32)
            values = self._buffer[:table.num_rows]
            for j, column in enumerate(table.columns):
                values[:, j] = column.to_numpy()
            self._cached_group, self._cached_values = group, values
        return self._cached_values

    def __getstate__(self) -> dict:
        # Worker processes get the path, the rows and the columns; each reopens the file and
        # keeps its own group cache (a ParquetFile handle does not cross processes).
        return {"path": self.path, "column_names": self.column_names, "rows": self.rows,
                "_group_starts": self._group_starts}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._file = pq.ParquetFile(self.path)
        self._forget_groups()

    def _view(self, columns: list[str], rows: np.ndarray) -> TableRows:
        view = object.__new__(TableRows)
        view.path, view.column_names, view.rows = self.path, columns, rows
        view._file, view._group_starts = self._file, self._group_starts
        view._forget_groups()
        return view

    def _forget_groups(self) -> None:
        """No row group read yet: each view and each process keeps its own group and buffer."""
        self._cached_group, self._cached_values, self._buffer = -1, None, None
