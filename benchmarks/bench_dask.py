"""Extraction on the local process pool against a Dask cluster, and what limits scaling out.

    python benchmarks/bench_dask.py [--images DIR] [--repeats 2] [--n-jobs 2] [--chunk-size 256]
                                    [--keep-malloc-defaults]

Starts ``dask scheduler`` and ``dask worker --nworkers N --nthreads 1`` on loopback (N =
``--n-jobs``), then runs ``python -m pipelines.extract`` on the image set alternately with the
local backend (loky, ``--n-jobs N``) and with ``--backend dask``, ``--repeats`` times each
(interleaved, so that load from other jobs on a shared machine hits both alike), and checks that
both backends write the same table. Per run it prints the wall time of the command (start-up
included), the extraction's own summary time and images/s, and the CPU seconds of all the
processes involved (the command and its workers, plus for Dask the scheduler and workers; sampled
with psutil every 0.1 s), whose ratio to the images is the throughput per core whatever else the
machine runs (up to cache and memory contention); then the speed-up of Dask over loky.

By default a Dask nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``
(``distributed.nanny.pre-spawn-environ``). Setting it turns off glibc's adaptive mmap threshold,
so every large temporary array is mapped and page-faulted afresh; the feature code then costs
about 1.7x the CPU. ``--keep-malloc-defaults`` starts the workers with a Dask config file that
unsets it (``MALLOC_TRIM_THRESHOLD_: null``), as a deployment should.

What stops scaling, measured on the same machine:

* scheduling overhead: seconds per task of ``joblib.Parallel`` on each backend, for an empty task
  and for one returning a chunk-sized float32 result (chunk rows x the number of features), as
  extraction's tasks do; divided by the chunk size, the overhead per image;
* I/O: read rate of the image files after asking the kernel to drop them from the page cache
  (``posix_fadvise(DONTNEED)``, a best effort: a cold read unless another process holds them),
  and with a warm cache; JPEG decoding alone on one core;
* assembly: the main process writes every chunk's part file and then streams the parts into the
  final Parquet table; both are timed on the real extracted table with the extractor's own
  functions (``chunk_table``, ``write_parquet_atomic``, ``assemble``).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines import extract  # noqa: E402
from pipelines.datasets import load_dataset  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_IMAGES = Path(os.environ.get("DEEPFAKE_DATA", PROJECT_ROOT.parent / "shared" / "data")
                      ) / "images" / "stylegan140k_small"
# A Dask config file that stops the nanny from setting MALLOC_TRIM_THRESHOLD_ in its workers.
MALLOC_DEFAULTS = ("distributed:\n  nanny:\n    pre-spawn-environ:\n"
                   "      MALLOC_TRIM_THRESHOLD_: null\n")
SUMMARY = re.compile(r"extracted (\d+) of (\d+) files .* in ([\d.]+) s \(([\d.]+) files/s\)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalDaskCluster:
    """``dask scheduler`` and ``dask worker`` processes on loopback, stopped on exit."""

    def __init__(self, n_workers: int, workdir: Path, worker_env: dict | None = None):
        self.n_workers, self.workdir, self.worker_env = n_workers, workdir, worker_env
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> "LocalDaskCluster":
        from distributed import Client
        dask = shutil.which("dask") or sys.exit("the dask command is not installed")
        port = self.address.rsplit(":", 1)[1]
        self.log = open(self.workdir / "dask.log", "w")
        started = time.perf_counter()
        self.processes = [subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"],
            stdout=self.log, stderr=self.log)]
        self.processes.append(subprocess.Popen(
            [dask, "worker", self.address, "--nworkers", str(self.n_workers), "--nthreads", "1",
             "--no-dashboard", "--local-directory", str(self.workdir / "workers")],
            stdout=self.log, stderr=self.log, env={**os.environ, **(self.worker_env or {})}))
        deadline = time.time() + 120
        while True:
            try:
                with Client(self.address, timeout=5) as client:
                    client.wait_for_workers(self.n_workers, timeout=max(1, deadline - time.time()))
                break
            except (OSError, TimeoutError):
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        self.start_seconds = time.perf_counter() - started
        return self

    def __exit__(self, *exc) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.log.close()


def tree_cpu(roots: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) of each process of the trees under ``roots``."""
    import psutil
    seconds = {}
    for root in roots:
        try:
            processes = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
        except psutil.Error:  # the root has ended
            continue
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            seconds[process.pid] = times.user + times.system
    return seconds


def run_extract(images: Path, out: Path, args, scheduler: str | None,
                cluster_pids: list[int]) -> dict:
    """One ``pipelines.extract`` command: its wall time, the numbers of its summary line, and the
    CPU seconds it cost (its process tree and the Dask cluster's)."""
    command = [sys.executable, "-m", "pipelines.extract", "--data-root", str(images),
               "--out", str(out), "--preset", args.preset, "--chunk-size", str(args.chunk_size)]
    command += ["--backend", "dask", "--scheduler", scheduler] if scheduler else \
        ["--n-jobs", str(args.n_jobs)]
    baseline = tree_cpu(cluster_pids)
    started = time.perf_counter()
    with open(out.with_suffix(".log"), "w+") as log:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   text=True)
        seen = {}
        while process.poll() is None:
            seen.update(tree_cpu([process.pid, *cluster_pids]))
            time.sleep(0.1)
        wall = time.perf_counter() - started
        seen.update(tree_cpu(cluster_pids))
        log.seek(0)
        output = log.read()
    if process.returncode != 0:
        sys.exit(f"extraction failed ({' '.join(command)}):\n{output[-3000:]}")
    match = SUMMARY.search(output)
    if match is None:
        sys.exit(f"no summary line in the output of {' '.join(command)}:\n{output}")
    cpu = sum(seconds - baseline.get(pid, 0.0) for pid, seconds in seen.items())
    return {"wall": wall, "n_rows": int(match[1]), "n_files": int(match[2]),
            "seconds": float(match[3]), "rate": float(match[4]), "cpu": cpu}


def _chunk_result(rows: int, columns: int) -> np.ndarray:
    return np.zeros((rows, columns), dtype=np.float32)


def task_overhead(n_tasks: int, rows: int, columns: int, backend: str, n_jobs: int) -> float:
    """Seconds per task of joblib.Parallel on ``backend``, each task returning rows x columns."""
    from joblib import Parallel, delayed, parallel_config
    with parallel_config(backend=backend):
        parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1)
        list(parallel(delayed(_chunk_result)(rows, columns) for _ in range(2 * n_jobs)))  # warm
        started = time.perf_counter()
        for _ in parallel(delayed(_chunk_result)(rows, columns) for _ in range(n_tasks)):
            pass
    return (time.perf_counter() - started) / n_tasks


def read_rates(paths: list[Path]) -> dict:
    """Files/s and MB/s reading every file after dropping it from the page cache, then warm."""
    def read_all() -> tuple[float, int]:
        started, size = time.perf_counter(), 0
        for path in paths:
            size += len(path.read_bytes())
        return time.perf_counter() - started, size

    for path in paths:
        with open(path, "rb") as handle:
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    cold, size = read_all()
    warm, _ = read_all()
    return {"cold_files_s": len(paths) / cold, "cold_mb_s": size / cold / 1e6,
            "warm_files_s": len(paths) / warm, "warm_mb_s": size / warm / 1e6,
            "mean_kb": size / len(paths) / 1e3}


def decode_rate(paths: list[Path]) -> float:
    """Images per CPU second decoding the (cached) files with OpenCV on one thread."""
    import cv2
    cv2.setNumThreads(1)
    blobs = [np.frombuffer(p.read_bytes(), np.uint8) for p in paths]
    started = time.process_time()
    for blob in blobs:
        cv2.imdecode(blob, cv2.IMREAD_COLOR)
    return len(blobs) / (time.process_time() - started)


def assembly_times(images: Path, table_path: Path, chunk_size: int, preset: str,
                   workdir: Path) -> dict:
    """Wall and CPU seconds to write the part files and to assemble them, for the extracted
    table."""
    dataset = load_dataset(images, None, require_targets=False)
    config = extract.feature_config({"modality": "image", "preset": preset})
    table = pq.read_table(table_path)
    names = [c for c in table.column_names if "__" in c]
    if table.num_rows != len(dataset):
        sys.exit("assembly timing needs a table without failed files")
    features = np.column_stack([table.column(c).to_numpy() for c in names]).astype(np.float32)
    plan = extract.plan_chunks(dataset, config, chunk_size, {"max_pixels": 64_000_000})
    parts = workdir / "assembly.parts"
    parts.mkdir(exist_ok=True)
    started, cpu = time.perf_counter(), time.process_time()
    for start, stop, key in plan:
        part = extract.chunk_table(dataset, start, features[start:stop], [None] * (stop - start),
                                   names)
        extract.write_parquet_atomic(part, parts / f"{key}.parquet")
    write, write_cpu = time.perf_counter() - started, time.process_time() - cpu
    started, cpu = time.perf_counter(), time.process_time()
    extract.assemble(dataset, config, plan, parts, workdir / "assembled.parquet", time.time(), {})
    return {"rows": len(dataset), "features": len(names), "write_parts": write,
            "write_parts_cpu": write_cpu, "assemble": time.perf_counter() - started,
            "assemble_cpu": time.process_time() - cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="image set")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each backend")
    parser.add_argument("--n-jobs", type=int, default=2, help="loky processes = Dask workers")
    parser.add_argument("--chunk-size", type=int, default=256, help="files per task")
    parser.add_argument("--preset", default="default", help="feature preset")
    parser.add_argument("--overhead-tasks", type=int, default=200,
                        help="tasks timed per backend for the scheduling overhead")
    parser.add_argument("--keep-malloc-defaults", action="store_true",
                        help="start the Dask workers without MALLOC_TRIM_THRESHOLD_ (see above)")
    args = parser.parse_args()
    images = args.images.resolve()

    with tempfile.TemporaryDirectory(prefix="bench_dask_") as tmp:
        workdir = Path(tmp)
        worker_env = None
        if args.keep_malloc_defaults:
            (workdir / "dask-config").mkdir()
            (workdir / "dask-config" / "malloc.yaml").write_text(MALLOC_DEFAULTS)
            worker_env = {"DASK_CONFIG": str(workdir / "dask-config")}
        with LocalDaskCluster(args.n_jobs, workdir, worker_env) as cluster:
            print(f"Dask cluster on {cluster.address}: {args.n_jobs} workers x 1 thread, "
                  f"{'glibc malloc defaults' if worker_env else 'MALLOC_TRIM_THRESHOLD_=65536'}, "
                  f"started in {cluster.start_seconds:.1f} s (not counted below)")
            runs = {"loky": [], "dask": []}
            for repeat in range(args.repeats):
                for backend in runs:
                    out = workdir / f"{backend}{repeat}.parquet"
                    run = run_extract(images, out, args,
                                      cluster.address if backend == "dask" else None,
                                      [p.pid for p in cluster.processes]
                                      if backend == "dask" else [])
                    runs[backend].append(run)
                    print(f"{backend:<4} run {repeat + 1}: {run['n_rows']} of {run['n_files']} "
                          f"images, command {run['wall']:.1f} s, extraction {run['seconds']:.1f} "
                          f"s = {run['rate']:.1f} images/s; {run['cpu']:.0f} CPU s = "
                          f"{run['n_files'] / run['cpu']:.1f} images per CPU second", flush=True)
            same = pq.read_table(workdir / "dask0.parquet").equals(
                pq.read_table(workdir / "loky0.parquet"))
            print(f"Dask and loky tables identical: {same}")
            best = {b: min(r["seconds"] for r in rs) for b, rs in runs.items()}
            mean = {b: np.mean([r["seconds"] for r in rs]) for b, rs in runs.items()}
            print(f"speed-up of Dask over loky (extraction time): best runs "
                  f"{best['loky'] / best['dask']:.2f}x, mean {mean['loky'] / mean['dask']:.2f}x")

            n_features = pq.read_schema(workdir / "loky0.parquet").names
            n_features = sum("__" in c for c in n_features)
            from distributed import Client
            with Client(cluster.address):
                chunk = f"{args.chunk_size} x {n_features} float32"
                for rows, label in ((0, "empty task"), (args.chunk_size, chunk)):
                    for backend in ("loky", "dask"):
                        per_task = task_overhead(args.overhead_tasks, rows, n_features, backend,
                                                 args.n_jobs)
                        per_image = f", {1e3 * per_task / args.chunk_size:.3f} ms per image" \
                            if rows else ""
                        print(f"overhead {backend:<4} {label}: {1e3 * per_task:.2f} ms per task"
                              f"{per_image}")

        paths = list(load_dataset(images, None, require_targets=False).paths)
        io = read_rates(paths)
        print(f"read {len(paths)} files ({io['mean_kb']:.0f} kB mean): after dropping the page "
              f"cache {io['cold_files_s']:.0f} files/s = {io['cold_mb_s']:.0f} MB/s; warm "
              f"{io['warm_files_s']:.0f} files/s = {io['warm_mb_s']:.0f} MB/s")
        print(f"decoding alone (OpenCV, 1 thread): {decode_rate(paths):.0f} images per CPU "
              f"second")
        timing = assembly_times(images, workdir / "loky0.parquet", args.chunk_size, args.preset,
                                workdir)
        print(f"main process, {timing['rows']} rows x {timing['features']} features: writing the "
              f"part files {timing['write_parts']:.2f} s ({timing['write_parts_cpu']:.2f} CPU s), "
              f"assembling the table {timing['assemble']:.2f} s ({timing['assemble_cpu']:.2f} "
              f"CPU s); {1e3 * (timing['write_parts'] + timing['assemble']) / timing['rows']:.2f} "
              f"ms per row")


if __name__ == "__main__":
    main()
