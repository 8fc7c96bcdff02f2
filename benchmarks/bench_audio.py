"""Speed of audio decoding and of the audio feature families, in multiples of real time on one core.

x-real-time = seconds of audio processed per second of CPU time of this (single-threaded)
process; CPU time rather than wall time, so that other work on the machine does not distort the
figures. Each number is the best of ``--repeats`` passes over the inputs.

Inputs: a synthetic speech-like recording of 10 s at 16 kHz, and the first ``--max-files`` files
of ``<data>/audio/yourtts_demo`` when that folder exists (``--data``, default $DEEPFAKE_DATA or
../shared/data from the project root).

Usage: python benchmarks/bench_audio.py [--presets minimal default full] [--max-files 40]
"""
from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"  # one core: set before NumPy loads its BLAS

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from features import (  # noqa: E402,F401
    fine_structure, lfcc, ltas, mfcc, modulation, prosody, spectral)
from features.audio_context import AudioContext  # noqa: E402
from features.audio_decode import decode_audio  # noqa: E402
from features.registry import REGISTRY, load_preset  # noqa: E402

SR = 16000


def synthetic_speech(seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    """Harmonics of a gliding pitch in syllable-rate bursts, noise bursts and a noise floor."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 140 * (1 + 0.2 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 40)) * np.clip(
        np.sin(2 * np.pi * 4 * t), 0, None)
    bursts = (np.sin(2 * np.pi * 1.3 * t) > 0.8) * rng.standard_normal(t.size) * 0.3
    y = voiced + bursts + 0.003 * rng.standard_normal(t.size)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def best_cpu_seconds(task: Callable[[], None], repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.process_time()
        task()
        best = min(best, time.process_time() - start)
    return best


def families_task(signals: list[np.ndarray], chosen: dict[str, dict]) -> Callable[[], None]:
    """One fresh context per signal (so shared transforms are paid for), all chosen families."""
    resolved = [(REGISTRY[name], REGISTRY[name].resolve_params(params))
                for name, params in chosen.items()]

    def run() -> None:
        for y in signals:
            context = AudioContext(y, SR)
            for family, params in resolved:
                family.compute(context, params)
    return run


def measure(label: str, signals: list[np.ndarray], presets: list[str],
            repeats: int) -> list[dict]:
    seconds = sum(y.size for y in signals) / SR
    audio = [name for name, family in REGISTRY.items() if family.modality == "audio"]
    families_task(signals[:1], {name: {} for name in audio})()  # warm-up: imports, caches
    rows = []
    for name in audio:
        cpu = best_cpu_seconds(families_task(signals, {name: {}}), repeats)
        rows.append({"input": label, "what": f"family {name} (alone)", "x_real_time":
                     seconds / cpu, "ms_per_10s": 1e4 * cpu / seconds})
    for preset in presets:
        chosen = load_preset(preset, "audio")
        cpu = best_cpu_seconds(families_task(signals, chosen), repeats)
        rows.append({"input": label, "what": f"preset {preset}", "x_real_time": seconds / cpu,
                     "ms_per_10s": 1e4 * cpu / seconds})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "DEEPFAKE_DATA", PROJECT_ROOT.parent / "shared" / "data")))
    parser.add_argument("--presets", nargs="+", default=["minimal", "default", "full"])
    parser.add_argument("--max-files", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    rows = measure("synthetic 10 s", [synthetic_speech()], args.presets, args.repeats)
    folder = args.data / "audio" / "yourtts_demo"
    if (folder / "labels.csv").is_file():
        paths = [folder / name for name in
                 pd.read_csv(folder / "labels.csv")["img_name"][:args.max_files]]
        signals = [decode_audio(path) for path in paths]
        seconds = sum(y.size for y in signals) / SR
        label = f"yourtts_demo {len(paths)} files"
        cpu = best_cpu_seconds(lambda: [decode_audio(p) for p in paths], args.repeats)
        rows.append({"input": label, "what": "decode (FLAC -> 16 kHz float)",
                     "x_real_time": seconds / cpu, "ms_per_10s": 1e4 * cpu / seconds})
        rows += measure(label, signals, args.presets, args.repeats)
    else:
        print(f"(no real data at {folder}: synthetic input only)")
    table = pd.DataFrame(rows)
    with pd.option_context("display.float_format", "{:.1f}".format, "display.width", 120):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
