"""Peak memory of a whole extraction run (the process and its workers), for N and for k x N files.

    python benchmarks/bench_memory.py --images DIR --repeat 1
    python benchmarks/bench_memory.py --images DIR --repeat 10 [--preset default] [--n-jobs -1]

The files of DIR (its labels.csv, or every image under it) are linked ``--repeat`` times into a
temporary data root under distinct names (hard links; copies across file systems), with a label
file listing them all, and ``python -m pipelines.extract`` runs on it as a child process. Memory is
sampled every 50 ms over the whole process tree: the sum of resident set sizes (an upper bound:
shared pages count once per process) and of proportional set sizes (shared pages split between
the processes that map them); ``getrusage`` gives the largest single process. Extraction is meant
to work in bounded memory, so the peak should barely move between --repeat 1 and --repeat 10.
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.datasets import MEDIA_SUFFIXES

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_IMAGES = Path(os.environ.get("DEEPFAKE_DATA", PROJECT_ROOT.parent / "shared" / "data")
                      ) / "images" / "stylegan140k_small"
IMAGE_SUFFIXES = MEDIA_SUFFIXES["image"]
SAMPLE_SECONDS = 0.05
MIB = 1024 * 1024


def list_files(images: Path) -> list[tuple[str, str]]:
    """(name relative to ``images``, target) for every file of the set."""
    labels = images / "labels.csv"
    if labels.is_file():
        with open(labels, newline="", encoding="utf-8-sig") as handle:
            return [(row["img_name"], row.get("target", "0")) for row in csv.DictReader(handle)]
    return [(p.relative_to(images).as_posix(), "0") for p in sorted(images.rglob("*"))
            if p.suffix.lower() in IMAGE_SUFFIXES]


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(source, target)


def build_repeated_set(images: Path, repeat: int, root: Path) -> int:
    """``repeat`` copies of the set under ``root/copy_<k>/``, and ``root/labels.csv``."""
    files = list_files(images)
    rows = []
    for copy in range(repeat):
        for name, target in files:
            alias = f"copy_{copy}/{name}"
            link_or_copy(images / name, root / alias)
            rows.append((alias, target))
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("img_name", "target"), *rows])
    return len(rows)


class TreeSampler:
    """Peak summed RSS and PSS of a process and all its descendants, sampled by polling."""

    def __init__(self, pid: int):
        import psutil
        self.psutil = psutil
        self.root = psutil.Process(pid)
        self.peak_rss = self.peak_pss = 0
        self.peak_processes = 0

    def sample(self) -> None:
        rss = pss = count = 0
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except self.psutil.Error:
            return
        for process in processes:
            try:
                memory = process.memory_full_info()
            except self.psutil.Error:  # the process ended between listing and reading
                continue
            rss, pss, count = rss + memory.rss, pss + getattr(memory, "pss", memory.rss), count + 1
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
        self.peak_processes = max(self.peak_processes, count)


def run_extraction(root: Path, preset: str, n_jobs: int, chunk_size: int,
                   config: Path | None) -> dict:
    out = root / "features.parquet"
    command = [sys.executable, "-m", "pipelines.extract", "--data-root", str(root),
               "--out", str(out), "--preset", preset, "--n-jobs", str(n_jobs),
               "--chunk-size", str(chunk_size)]
    if config is not None:  # a config file's families replace the preset
        command += ["--config", str(config.resolve())]
    started = time.monotonic()
    with open(root / "extract.log", "w") as log:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log, stderr=log)
        try:
            sampler = TreeSampler(process.pid)
        except ImportError:
            sampler = None
        while process.poll() is None:
            if sampler:
                sampler.sample()
            time.sleep(SAMPLE_SECONDS)
    seconds = time.monotonic() - started
    lines = (root / "extract.log").read_text().splitlines()
    if process.returncode != 0:
        raise SystemExit(f"extraction failed (exit {process.returncode}):\n"
                         + "\n".join(lines[-20:]))
    summary = next((line for line in reversed(lines) if line.startswith("extracted")), "")
    counts = re.match(r"extracted (\d+) of (\d+) files .*?\((\d+) families, (\d+) features\)",
                      summary)
    # Linux reports ru_maxrss in KiB: the largest resident size of any waited-for descendant.
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    described = (f"{counts[1]} of {counts[2]} files extracted, {counts[3]} families, "
                 f"{counts[4]} features" if counts else summary)
    return {"seconds": seconds, "summary": described, "largest_process": largest,
            "tree_rss": sampler.peak_rss if sampler else None,
            "tree_pss": sampler.peak_pss if sampler else None,
            "processes": sampler.peak_processes if sampler else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES,
                        help="image set (with labels.csv, or a folder of images)")
    parser.add_argument("--repeat", type=int, default=1, help="times each file is listed")
    parser.add_argument("--preset", default="default", help="feature preset")
    parser.add_argument("--config", type=Path, default=None,
                        help="extract config file (e.g. its families), passed to the extraction")
    parser.add_argument("--n-jobs", type=int, default=-1, help="extraction worker processes")
    parser.add_argument("--chunk-size", type=int, default=256, help="files per chunk")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the temporary data root (default: the system's)")
    args = parser.parse_args()
    if not args.images.is_dir():
        raise SystemExit(f"{args.images}: no such folder (option --images, or $DEEPFAKE_DATA)")
    root = Path(tempfile.mkdtemp(prefix="bench_memory_", dir=args.work))
    try:
        n_files = build_repeated_set(args.images, args.repeat, root)
        result = run_extraction(root, args.preset, args.n_jobs, args.chunk_size, args.config)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    features = f"config {args.config}" if args.config else f"preset {args.preset}"
    print(f"{args.images.name} x{args.repeat}: {n_files} files, {features}, "
          f"n_jobs {args.n_jobs}, chunk size {args.chunk_size}")
    print(f"  {result['summary']} in {result['seconds']:.1f} s")
    if result["tree_rss"] is not None:
        print(f"  peak of the process tree ({result['processes']} processes): "
              f"RSS sum {result['tree_rss'] / MIB:.0f} MiB, "
              f"PSS sum {result['tree_pss'] / MIB:.0f} MiB")
    print(f"  largest single process (getrusage): {result['largest_process'] / MIB:.0f} MiB")


if __name__ == "__main__":
    main()
