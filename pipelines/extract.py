"""python -m pipelines.extract: decode each file once, run the feature families, write Parquet.

Work is cut into chunks of files. Each chunk is keyed by the identity of its files (name, size,
modification time) and the feature configuration, processed by a joblib worker (local processes
by default, a Dask cluster with ``--backend dask``) and written atomically to
``OUT.parts/<key>.parquet`` as soon as it is done. A run that is killed and started again skips the
chunks already written; the final table is then assembled chunk by chunk (bounded memory) and
renamed into place. Files that cannot be decoded get no row and are listed in ``OUT.errors.csv``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - makes pa.compute available
import pyarrow.parquet as pq

from joblib.externals.loky.process_executor import TerminatedWorkerError

from features.extractor import cached_extractor, extract_files, is_decode_failure
from features.perturbations import AugmentSpec, augment_plan, source_name
from features.registry import FEATURE_VERSION, FeatureConfig, families
from pipelines import provenance
from pipelines.datasets import Dataset, load_dataset
from pipelines.options import (Option, atomic_path, build_parser, configure_logging,
                               require_data_root, resolve)
from pipelines.outputs import safe_cell, write_csv_atomic

log = logging.getLogger("pipelines.extract")
METADATA_KEY = b"deepfake_forensics"
ROW_GROUP_BYTES = 64 * 1024 * 1024

OPTIONS = (
    Option("data_root", "folder the label file's names are relative to"),
    Option("labels", "label file (img_name|img_path|video_name[,target]); default: found beside "
           "the data root, or every media file under it"),
    Option("out", "output Parquet file", default="reports/features.parquet"),
    Option("modality", "kind of input", default="image", choices=("image", "audio", "clip")),
    Option("preset", "feature preset in configs/features (minimal, default, full)",
           default="default"),
    Option("n_jobs", "worker processes (-1: all cores)", type=int, default=-1),
    Option("chunk_size", "files per chunk (unit of parallel work and of resumption)", type=int,
           default=256),
    Option("max_pixels", "largest image accepted, in pixels (decompression-bomb limit)", type=int,
           default=64_000_000),
    Option("backend", "joblib backend", default="loky", choices=("loky", "dask")),
    Option("scheduler", "Dask scheduler address for --backend dask (tcp://HOST:PORT)"),
    Option("augment_seed", "seed of the augmentation plan (config section 'augment')", type=int,
           default=0),
    Option("list_features", "print the registered feature families and exit", flag=True),
)


def feature_config(settings: dict[str, Any]) -> FeatureConfig:
    modality = settings["modality"]
    if settings.get("families"):
        return FeatureConfig.from_mapping(modality, settings["families"])
    return FeatureConfig.from_preset(settings["preset"], modality)


def chunk_key(config: FeatureConfig, options: dict, names: Sequence[str], paths: Sequence[Path],
              steps: Sequence | None = None) -> str:
    """Identity of a chunk: the feature configuration, the decoding options, each file's name,
    size and mtime, and the perturbations applied to it (augmented rows)."""
    digest = hashlib.sha256(config.fingerprint().encode())
    digest.update(json.dumps(options, sort_keys=True, default=str).encode())
    for i, (name, path) in enumerate(zip(names, paths)):
        stat = path.stat()
        digest.update(f"\0{name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
        if steps is not None and steps[i]:
            digest.update(repr(steps[i]).encode())
    return digest.hexdigest()[:20]


def run_chunk(index: int, paths: list[str], config: FeatureConfig, options: dict,
              steps: list | None = None):
    import cv2
    cv2.setNumThreads(1)  # parallelism comes from the processes; avoid oversubscription
    rows, errors = extract_files(paths, config, options, steps)
    return index, rows, errors


def augment_dataset(dataset: Dataset, spec: AugmentSpec, seed: int) -> tuple[Dataset, list]:
    """The dataset with augmented copies appended (``name#augK``), and each row's steps."""
    plan = augment_plan(dataset.names, spec, seed)
    clashes = [n for n in dataset.names if source_name(n) != n]
    if clashes:
        raise ValueError(f"cannot augment: names such as {clashes[0]!r} already look like "
                         "augmented rows (#augN)")
    index = {name: i for i, name in enumerate(dataset.names)}
    sources = [index[row.source] for row in plan]
    targets = None if dataset.targets is None else np.concatenate(
        [dataset.targets, dataset.targets[sources]])
    augmented = replace(dataset, names=dataset.names + tuple(r.name for r in plan),
                        paths=dataset.paths + tuple(dataset.paths[i] for i in sources),
                        targets=targets, extra={})
    steps = [None] * len(dataset) + [(row.steps, row.seed) for row in plan]
    return augmented, steps


def chunk_table(dataset: Dataset, start: int, rows: np.ndarray, errors: list[str | None],
                names: Sequence[str]) -> pa.Table:
    stop = start + len(rows)
    columns: dict[str, Any] = {
        "row": pa.array(np.arange(start, stop, dtype=np.int64)),
        dataset.name_column: pa.array(dataset.names[start:stop], pa.string()),
    }
    if dataset.targets is not None:
        columns["target"] = pa.array(dataset.targets[start:stop].astype(np.int8))
    columns["failed"] = pa.array([is_decode_failure(r, e) for r, e in zip(rows, errors)])
    columns["error"] = pa.array(errors, pa.string())
    for j, name in enumerate(names):
        columns[name] = pa.array(rows[:, j])
    return pa.table(columns)


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def plan_chunks(dataset: Dataset, config: FeatureConfig, chunk_size: int, options: dict,
                steps=None):
    if chunk_size < 1:
        raise ValueError(f"option chunk_size must be >= 1, got {chunk_size}")
    plan = []
    for start in range(0, len(dataset), chunk_size):
        stop = min(start + chunk_size, len(dataset))
        key = chunk_key(config, options, dataset.names[start:stop], dataset.paths[start:stop],
                        steps[start:stop] if steps else None)
        plan.append((start, stop, key))
    return plan


def extract_dataset(dataset: Dataset, config: FeatureConfig, out: Path, *, n_jobs: int = -1,
                    chunk_size: int = 256, options: dict | None = None, backend: str = "loky",
                    scheduler: str | None = None, progress: bool = True,
                    steps: list | None = None) -> dict:
    """Extract features of ``dataset`` into ``out`` (resumable); returns the run summary.

    ``steps`` optionally gives, per file, None or the perturbation ``(chain, seed)`` to apply.
    """
    from joblib import Parallel, delayed, parallel_config
    from tqdm import tqdm

    started = time.time()
    options = options or {}
    names = cached_extractor(config).names
    parts = out.with_name(out.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    plan = plan_chunks(dataset, config, chunk_size, options, steps)
    pending = [(i, start, stop) for i, (start, stop, key) in enumerate(plan)
               if not (parts / f"{key}.parquet").is_file()]
    done_files = len(dataset) - sum(stop - start for _, start, stop in pending)
    if done_files:
        log.info("resuming: %d of %d chunks already done", len(plan) - len(pending), len(plan))
    bar = tqdm(total=len(dataset), initial=done_files, unit="file", disable=not progress,
               desc="extract", file=sys.stderr)
    tasks = (delayed(run_chunk)(i, [str(p) for p in dataset.paths[start:stop]], config, options,
                                steps[start:stop] if steps else None)
             for i, start, stop in pending)
    with _backend(backend, scheduler, n_jobs) as (parallel_backend, jobs):
        with parallel_config(backend=parallel_backend):
            for index, rows, errors in Parallel(n_jobs=jobs, return_as="generator_unordered",
                                                batch_size=1)(tasks):
                start, stop, key = plan[index]
                write_parquet_atomic(chunk_table(dataset, start, rows, errors, names),
                                     parts / f"{key}.parquet")
                bar.update(stop - start)
    bar.close()
    summary = assemble(dataset, config, plan, parts, out, started, options)
    shutil.rmtree(parts, ignore_errors=True)
    return summary


# What the scheduler and each worker import to unpickle an extraction task.
TASK_MODULES = ("features", "pipelines")


def missing_modules(client, modules: Sequence[str]) -> dict[str, list[str]]:
    """The ``modules`` (``TASK_MODULES`` for extraction) each process of a Dask cluster cannot
    import, by process (if any).

    Dask unpickles every task on the scheduler and on a worker. Where the toolkit is not
    installed that fails there, and the client, never getting a result, would wait forever; so
    the extractor asks first. The probe is a local function, which Dask ships by value: it needs
    nothing from the toolkit to run.
    """
    def absent(names):
        import importlib.util
        return [name for name in names if importlib.util.find_spec(name) is None]

    found = {"scheduler": client.run_on_scheduler(absent, list(modules)),
             **client.run(absent, list(modules))}
    return {process: names for process, names in found.items() if names}


class _backend:
    """Context manager choosing joblib's backend; connects a Dask client when asked."""

    def __init__(self, backend: str, scheduler: str | None, n_jobs: int):
        self.backend, self.scheduler, self.n_jobs, self.client = backend, scheduler, n_jobs, None

    def __enter__(self):
        if self.backend == "dask":
            if not self.scheduler:
                raise ValueError("--backend dask needs --scheduler tcp://HOST:PORT")
            from distributed import Client
            self.client = Client(self.scheduler)
            missing = missing_modules(self.client, TASK_MODULES)
            if missing:
                self.client.close()
                where = "; ".join(f"{process}: {', '.join(names)}"
                                  for process, names in missing.items())
                raise ValueError(f"the Dask cluster at {self.scheduler} cannot import this "
                                 f"toolkit ({where}); install it (pip install -e .) where the "
                                 "scheduler and every worker run")
            return "dask", -1
        return "loky", self.n_jobs

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()


def assemble(dataset: Dataset, config: FeatureConfig, plan, parts: Path, out: Path,
             started: float, options: dict) -> dict:
    """Stream the chunk files, in order, into the final Parquet table and the errors CSV."""
    failures: list[tuple[str, str, str]] = []
    for start, _, key in plan:  # first pass: only the small status columns
        status = pq.read_table(parts / f"{key}.parquet", columns=["failed", "error"])
        for i, (failed, error) in enumerate(zip(*(c.to_pylist() for c in status.columns))):
            if error is not None:
                failures.append((dataset.names[start + i], "file" if failed else "family", error))
    n_failed = sum(1 for f in failures if f[1] == "file")
    summary = {"n_files": len(dataset), "n_rows": len(dataset) - n_failed, "n_failed": n_failed,
               "n_family_failures": len(failures) - n_failed,
               "seconds": round(time.time() - started, 3)}
    metadata = {METADATA_KEY: json.dumps(provenance_record(dataset, config, summary, options))}
    writer, buffer, buffered = None, [], 0
    with atomic_path(out) as tmp:
        for _, _, key in plan:
            table = pq.read_table(parts / f"{key}.parquet")
            keep = pa.compute.invert(table.column("failed"))
            table = table.filter(keep).drop_columns(["row", "failed", "error"])
            table = table.replace_schema_metadata(metadata)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            buffer.append(table)
            buffered += len(table)
            # Few large row groups: the writer keeps metadata per row group until it closes.
            if buffered >= max(1, ROW_GROUP_BYTES // (4 * table.num_columns)):
                writer.write_table(pa.concat_tables(buffer))
                buffer, buffered = [], 0
        if buffer:
            writer.write_table(pa.concat_tables(buffer))
        writer.close()
    write_csv_atomic(out.with_suffix(".errors.csv"), [dataset.name_column, "kind", "error"],
                     [(safe_cell(n), k, safe_cell(e)) for n, k, e in failures])
    return summary


def provenance_record(dataset: Dataset, config: FeatureConfig, summary: dict,
                      options: dict) -> dict:
    return {
        "feature_config": {"modality": config.modality, "families": config.to_mapping()},
        "feature_fingerprint": config.fingerprint(),
        "feature_version": FEATURE_VERSION,
        "name_column": dataset.name_column,
        "data_root": str(dataset.root),
        "label_file": str(dataset.label_file) if dataset.label_file else None,
        "summary": summary, "options": options,
        "versions": provenance.versions(),
    }


def read_features_metadata(path: Path) -> dict:
    schema = pq.read_schema(path)
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if not raw:
        raise ValueError(f"{path}: not a feature table written by pipelines.extract "
                         "(no provenance metadata)")
    return json.loads(raw)


def list_features() -> str:
    lines = []
    for modality in ("image", "audio", "clip"):
        lines.append(f"{modality} families:")
        for family in families(modality):
            params = ", ".join(f"{k}={dict(v) if isinstance(v, Mapping) else v!r}"
                               for k, v in family.defaults.items())
            lines.append(f"  {family.name:<14} {family.cost:<9} {family.summary}")
            if params:
                lines.append(f"  {'':<14} {'':<9} parameters: {params}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    parser = build_parser("pipelines.extract", __doc__.splitlines()[0], OPTIONS)
    args = parser.parse_args(argv)
    try:
        settings = resolve(args, "extract", OPTIONS)
        if settings["list_features"]:
            print(list_features())
            return 0
        require_data_root(parser, settings)
        config = feature_config(settings)
        modality = settings["modality"]
        dataset = load_dataset(settings["data_root"], settings["labels"], require_targets=False,
                               modality=modality)
        options = {"max_pixels": settings["max_pixels"]}
        steps = None
        if settings.get("augment"):
            spec = AugmentSpec.from_mapping(settings["augment"], config.modality)
            dataset, steps = augment_dataset(dataset, spec, settings["augment_seed"])
            options["augment"] = {**settings["augment"], "seed": settings["augment_seed"]}
        out = Path(settings["out"])
        summary = extract_dataset(dataset, config, out, n_jobs=settings["n_jobs"],
                                  chunk_size=settings["chunk_size"], options=options,
                                  backend=settings["backend"], scheduler=settings["scheduler"],
                                  steps=steps)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TerminatedWorkerError as error:
        print(f"error: a worker process died ({error}); the chunks already written are kept "
              "and a new run resumes after them", file=sys.stderr)
        return 3
    rate = summary["n_files"] / max(summary["seconds"], 1e-9)
    print(f"extracted {summary['n_rows']} of {summary['n_files']} files into {out} "
          f"({len(config.families)} families, {len(cached_extractor(config).names)} features) "
          f"in {summary['seconds']:.1f} s ({rate:.1f} files/s); {summary['n_failed']} failed, "
          f"{summary['n_family_failures']} with a failed family"
          + (f": see {out.with_suffix('.errors.csv')}" if summary['n_failed'] or
             summary['n_family_failures'] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
