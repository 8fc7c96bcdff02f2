"""Time the gradient-boosted stack on a features Parquet file and show where the time goes.

Usage:
    python benchmarks/bench_stack.py FEATURES.parquet [--n-trials 50] [--cv 3] [--n-jobs -1]
                                     [--max-features K]
    python benchmarks/bench_stack.py /tmp/synthetic.parquet --synthetic 2000 100 --n-trials 5

The Parquet file has a target column (1 = fake) and float32 features named family__feature.
``--synthetic ROWS FEATURES`` first writes such a file (a noisy synthetic problem) to the path.
Per learner it prints wall and CPU seconds of tuning, OOF predictions and refit (CPU seconds
are what the work costs whatever else runs on the machine).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.metrics import auc  # noqa: E402
from models.stack import GradientBoostedStack  # noqa: E402
from pipelines.fit import stack_members  # noqa: E402


def write_synthetic(path: Path, n_rows: int, n_features: int, seed: int = 0) -> None:
    X, y = make_classification(n_rows, n_features, n_informative=min(30, n_features // 2),
                               flip_y=0.05, random_state=seed)
    frame = pd.DataFrame(X.astype(np.float32),
                         columns=[f"synthetic__f{i}" for i in range(n_features)])
    frame.insert(0, "target", y)
    frame.insert(0, "img_name", [f"img_{i}.png" for i in range(n_rows)])
    frame.to_parquet(path, index=False)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("features", type=Path)
    parser.add_argument("--n-trials", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=None, help="seconds per learner study")
    parser.add_argument("--cv", type=int, default=3)
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--learners", nargs="+", default=None,
                        help="default: the learners of `fit --model stack` on these columns")
    parser.add_argument("--meta", default="rank_mean")
    parser.add_argument("--storage", default=None, help="journal file or database URL")
    parser.add_argument("--max-features", type=int, default=None,
                        help="keep this many features, by a screening LightGBM's gain")
    parser.add_argument("--synthetic", type=int, nargs=2, metavar=("ROWS", "FEATURES"))
    args = parser.parse_args(argv)

    if args.synthetic:
        write_synthetic(args.features, *args.synthetic)
    frame = pd.read_parquet(args.features)
    y = frame["target"].to_numpy().astype(int)
    columns = [c for c in frame.columns if "__" in c]
    X = frame[columns].to_numpy(dtype=np.float32)
    print(f"data: {X.shape[0]} rows x {X.shape[1]} features, {y.mean():.1%} fake")

    members = stack_members({} if args.learners is None else {"learners": args.learners}, columns)
    stack = GradientBoostedStack(**members, n_trials=args.n_trials,
                                 timeout=args.timeout, cv=args.cv, meta=args.meta,
                                 storage=args.storage, n_jobs=args.n_jobs,
                                 max_features=args.max_features)
    start = time.perf_counter()
    stack.fit(X, y)
    total = time.perf_counter() - start
    print(f"features used: {len(stack.support_)}")

    costs = stack.timings_["learners"]
    phases = [f"{phase}_{clock}" for phase in ("tune", "oof", "refit") for clock in ("wall", "cpu")]
    print(f"\n{'learner':<16} {'trials':>6} {'pruned':>6} {'cv_auc':>7} {'oof_auc':>7} "
          + " ".join(f"{phase:>10}" for phase in phases))
    for name in stack.learners:
        tuning = stack.tuning_[name]
        print(f"{name:<16} {tuning['n_complete']:6d} {tuning['n_pruned']:6d} "
              f"{tuning['best_value']:7.4f} {auc(y, stack.oof_predictions_[name]):7.4f} "
              + " ".join(f"{costs[name][phase]:10.1f}" for phase in phases))
    print(f"{'stack':<16} {'':>6} {'':>6} {'':>7} {auc(y, stack.oof_predictions_['stack']):7.4f}")
    print("\nwall-clock seconds per phase:", json.dumps(
        {phase: round(seconds, 1) for phase, seconds in stack.timings_["wall"].items()}))
    print(f"total fit: {total:.1f} s (n_jobs={args.n_jobs}); per-learner times are measured in "
          f"the workers, so with n_jobs > 1 they add up to more than the phase wall time")
    print("OOF AUCs are mildly optimistic (tuned on the same folds); use nested_oof to evaluate.")


if __name__ == "__main__":
    main()
