"""Peak memory of ``pipelines.fit`` on a large feature table, against the size of its matrix.

    python benchmarks/bench_fit_memory.py --features reports/demo/features.parquet --rows 100000 \
        [--param bin_construct_sample_cnt=50000] [other fit options]

The rows of ``--features`` (a table written by ``pipelines.extract``) are repeated under distinct
names until the table holds ``--rows`` rows (its columns and metadata unchanged), and
``python -m pipelines.fit`` runs on it as a child process, its resident memory sampled every
50 ms (see ``bench_memory.py``). The feature matrix is ``rows x features x 4`` bytes (float32);
the ratio of the peak to it tells how large a table fits in a machine's memory. The boosters are
shrunk (``--trees``, default 20) because memory does not depend on the number of trees;
``--param KEY=VALUE`` sets another LightGBM parameter, and options the benchmark does not know are
passed on to ``fit``. ``--stack logistic`` measures ``fit --model stack`` with those learners
instead (2 tuning folds, its boosters' rounds capped at ``--trees`` too; add e.g. ``--n-trials 1
--max-features 500``): its memory is set by the feature screening, the matrices of the chosen
columns and the learners' own copies of them.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from bench_memory import MIB, SAMPLE_SECONDS, TreeSampler
from models.tuning import DEFAULT_SEARCH_SPACES
from pipelines.extract import ROW_GROUP_BYTES, read_features_metadata

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def build_repeated_table(source: Path, rows: int, target: Path) -> tuple[int, int]:
    """``source``'s rows repeated (names prefixed ``copy_k/``) up to ``rows`` rows, written to
    ``target`` with the source's schema metadata and row groups as ``extract`` sizes them;
    returns (rows, feature columns)."""
    table = pq.read_table(source)
    name_column = read_features_metadata(source)["name_column"]
    names = table.column(name_column).to_pylist()
    position = table.column_names.index(name_column)
    n_features = sum("__" in c for c in table.column_names)
    parts, written, copy = [], 0, 0
    while written < rows:
        part = table.slice(0, rows - written)
        aliases = pa.array([f"copy_{copy}/{name}" for name in names[:len(part)]])
        parts.append(part.set_column(position, table.schema.field(position), aliases))
        written, copy = written + len(part), copy + 1
    pq.write_table(pa.concat_tables(parts), target,
                   row_group_size=max(1, ROW_GROUP_BYTES // (4 * table.num_columns)))
    return rows, n_features


def capped_search_spaces(rounds: int, path: Path) -> Path:
    """The default search spaces with every booster's rounds capped at ``rounds``, at ``path``."""
    spaces = yaml.safe_load(DEFAULT_SEARCH_SPACES.read_text())
    for space in spaces.values():
        for key in ("n_estimators", "max_iter"):
            if key in space:
                space[key] = rounds
    path.write_text(yaml.safe_dump(spaces))
    return path


def run_fit(features: Path, out: Path, folds: int, lightgbm: dict[str, str],
            extra: list[str], stack: list[str] | None = None) -> dict:
    config = out.parent / "bench_fit.yaml"
    text = "fit:\n  lightgbm:\n" + "".join(f"    {key}: {value}\n"
                                            for key, value in lightgbm.items())
    if stack:
        spaces = capped_search_spaces(int(lightgbm["n_estimators"]), out.parent / "spaces.yaml")
        text += (f"  stack:\n    learners: [{', '.join(stack)}]\n    cv: 2\n"
                 f"    search_spaces: {spaces}\n")
        extra = ["--model", "stack", *extra]
    config.write_text(text)
    command = [sys.executable, "-m", "pipelines.fit", "--features", str(features), "--out",
               str(out), "--folds", str(folds), "--config", str(config), *extra]
    started = time.monotonic()
    log_path = out.parent / "fit.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log, stderr=log)
        sampler = TreeSampler(process.pid)
        while process.poll() is None:
            sampler.sample()
            time.sleep(SAMPLE_SECONDS)
    if process.returncode != 0:
        lines = log_path.read_text().splitlines()
        raise SystemExit(f"fit failed (exit {process.returncode}):\n" + "\n".join(lines[-20:]))
    return {"seconds": time.monotonic() - started, "peak_rss": sampler.peak_rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=Path, required=True,
                        help="feature table written by pipelines.extract (with targets)")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the repeated table")
    parser.add_argument("--folds", type=int, default=5, help="fit's cross-validation folds")
    parser.add_argument("--trees", type=int, default=20,
                        help="trees of the plain LightGBM (most rounds of the stack's boosters)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="another LightGBM parameter (e.g. bin_construct_sample_cnt=50000)")
    parser.add_argument("--stack", type=lambda text: text.split(","), default=None,
                        metavar="LEARNER[,LEARNER...]",
                        help="measure fit --model stack with these learners")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the temporary table (default: the system's)")
    args, extra = parser.parse_known_args()
    if not args.features.is_file():
        raise SystemExit(f"{args.features}: no such file (option --features)")
    lightgbm = {"n_estimators": str(args.trees),
                **dict(item.split("=", 1) for item in args.param)}
    work = Path(tempfile.mkdtemp(prefix="bench_fit_memory_", dir=args.work))
    try:
        rows, n_features = build_repeated_table(args.features, args.rows, work / "features.parquet")
        result = run_fit(work / "features.parquet", work / "run", args.folds, lightgbm, extra,
                         args.stack)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    matrix = rows * n_features * 4
    print(f"{args.features.name} repeated to {rows} rows x {n_features} features "
          f"(float32 matrix {matrix / MIB:.0f} MiB); fit --folds {args.folds} "
          + (f"--model stack ({', '.join(args.stack)}) " if args.stack else "")
          + " ".join(extra) + "; lightgbm: "
          + ", ".join(f"{key}={value}" for key, value in lightgbm.items()))
    print(f"  {result['seconds']:.1f} s; peak RSS {result['peak_rss'] / MIB:.0f} MiB "
          f"= {result['peak_rss'] / matrix:.2f} x the matrix")


if __name__ == "__main__":
    main()
