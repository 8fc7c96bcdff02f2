"""python -m pipelines.fit: cross-validate a model on a feature table and write a run folder.

The run folder holds ``model/`` (the safe bundle), ``metrics.json`` (out-of-fold AUC and TPR at
FPR = 1e-3 and 1e-2, with the FPR reached and the number of negatives), ``oof.csv`` (out-of-fold
predictions), ``importance.csv`` and ``report.html``.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import shutil
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from models import boosting, metrics
from models.bundle import lightgbm_writer, write_bundle
from models.selection import check_max_features
from features.perturbations import source_name
from models.validation import plan_folds, with_copies
from pipelines import provenance
from pipelines.extract import read_features_metadata
from pipelines.options import (Option, atomic_path, build_parser, configure_logging, resolve,
                               write_text_atomic)
from pipelines.outputs import safe_cell, write_csv_atomic
from pipelines.table_rows import TableRows

log = logging.getLogger("pipelines.fit")

# The stack's default feature cap: about one screened column per source image, within these
# bounds. Its learners are tuned in every outer fold and each one's cost grows with the
# columns (HistGradientBoosting bins and scans every one), so the ceiling keeps a default
# `fit --model stack` near ten minutes on two cores for 1,300 images (15-18 with one augmented
# copy of each). Few images rank columns noisily: with 1,000 columns yonsei_rff (200 images)
# fell from 0.690 to 0.676 (mean over fold seeds 0-4), while stylegan140k_small (1,330 images)
# rose from 0.880 to 0.894 (benchmarks/RESULTS.md, "The stack").
STACK_FEATURE_CAP = (500, 1000)
# Views of the columns for the stack's default extra learners (names matched with re.search):
# `global`, every family but the image grids (`layout` and `coherence`). The grids have 3,584 of
# the default preset's 4,023 columns, so a booster sampling a tenth of the columns per tree draws
# mostly grid cells; a LightGBM without the grids ranks the rows otherwise (Spearman 0.78 with
# each booster, which rank the rows alike at 0.97). On stylegan140k_small (nested, fold seed 0,
# the previous preset, whose only grid was `layout`) it lifted the stack from 0.894 to 0.898,
# above XGBoost's 0.895, alone scoring 0.846 (benchmarks/RESULTS.md, "The stack"). By default
# each view that leaves out some columns, but not all, adds a LightGBM on it
# (`lightgbm@global`); `stack: {learners: [...]}` chooses the members, and `stack: {views:
# {NAME: REGEX}}` replaces the views.
STACK_VIEWS = {"global": r"^(?!layout__|coherence__)"}
# Repeated cross-validation by default on small sets: enough fold partitions to score about this
# many images in all, at most REPEATS_MAX. On yonsei_rff's 200 images one 5-fold partition moved
# the stack's AUC between 0.675 and 0.712 over fold seeds 0-4, and the best learner changed
# from seed to seed (benchmarks/RESULTS.md, "The stack"); from 1,000 images one partition is the
# default.
REPEATS_SCORED_IMAGES = 1000
REPEATS_MAX = 5

OPTIONS = (
    Option("features", "feature table written by pipelines.extract",
           default="reports/features.parquet"),
    Option("out", "run folder to write", default="reports/run"),
    Option("group_column", "column whose groups never straddle folds (e.g. pair_key)"),
    Option("metadata", "CSV joined on the name column to find --group-column "
           "(default: meta.csv in the data root, if present)"),
    Option("folds", "number of cross-validation folds", type=int, default=5),
    Option("seed", "random seed", type=int, default=0),
    Option("repeats", "repeat the cross-validation on this many fold partitions (seeds SEED, "
           "SEED+1, ...) and report each model's mean AUC over them (default: enough to score "
           f"about {REPEATS_SCORED_IMAGES:,} images in all, at most {REPEATS_MAX}; 1 from "
           f"{REPEATS_SCORED_IMAGES:,} source images)", type=int),
    Option("drop_features", "regular expression: feature columns whose names it matches "
           "(re.search) are not used, e.g. 'cell_(2x2|4x4)' for no spatial pyramid"),
    Option("max_features", "keep at most this many features, ranked by LightGBM gain inside "
           "each training fold (constant columns are always dropped; default: all for "
           "lightgbm; for the stack, the number of source images within "
           f"{STACK_FEATURE_CAP[0]}..{STACK_FEATURE_CAP[1]})", type=int),
    Option("model", "plain LightGBM, or the Optuna-tuned stack (LightGBM, XGBoost, "
           "HistGradientBoosting, logistic regression) evaluated by nested cross-validation",
           default="lightgbm", choices=("lightgbm", "stack")),
    Option("n_trials", "stack: Optuna trials per base learner and study", type=int, default=4),
    Option("timeout", "stack: seconds allowed to each study", type=float),
    Option("storage", "stack: Optuna storage URL (sqlite:///..., postgresql://...) or journal "
           "file (default: RUN_DIR/tuning.journal)"),
    Option("resume", "continue an interrupted fit in the same run folder: the plain model "
           "keeps its finished folds, the stack its Optuna studies",
           flag=True),
    Option("tune_only", "stack: be one tuning worker: run the stack's Optuna studies in "
           "--storage, sharing their trials with other workers, and write nothing else; a fit "
           "without it then builds the stack from the finished studies", flag=True),
    Option("n_jobs", "stack: worker processes (-1: all cores)", type=int, default=-1),
    Option("ablation", "also measure each feature family alone and all families but it "
           "(out-of-fold AUC of plain LightGBM; 2 extra cross-validations per family)",
           flag=True),
)


@dataclass(frozen=True)
class FeatureTable:
    """The rows of a feature table: the columns ``feature_names`` (those not dropped by
    ``--drop-features``) streamed from the file (``rows``) or read whole (``X``, on first use);
    ``extracted_names`` lists every feature column of the file."""
    path: Path
    names: list[str]
    name_column: str
    y: np.ndarray
    feature_names: list[str]
    meta: dict
    extracted_names: list[str]

    @property
    def rows(self) -> TableRows:
        """The feature columns as a ``TableRows``: the plain model reads the file a row group at
        a time, so no full matrix is held."""
        return TableRows(self.path, self.feature_names)

    @cached_property
    def X(self) -> np.ndarray:
        """The feature columns as one float32 matrix, read a row group at a time: for a
        notebook or a test; ``fit`` and ``evaluate`` stream ``rows`` instead."""
        return self.rows[:]


def load_feature_table(path: str | Path, drop_pattern: str | None = None) -> FeatureTable:
    """The table at ``path``, without the feature columns ``drop_pattern`` matches (labels and
    names are read; the features when they are used)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"feature table {path} does not exist (option --features)")
    meta = read_features_metadata(path)
    source = pq.ParquetFile(path)
    name_column = meta["name_column"]
    if "target" not in source.schema_arrow.names:
        raise ValueError(f"{path}: no 'target' column; extract with a labelled dataset to fit")
    extracted = [c for c in source.schema_arrow.names if "__" in c]
    feature_names = [extracted[j] for j in kept_columns(extracted, drop_pattern)]
    labels = source.read(columns=[name_column, "target"])
    return FeatureTable(path, labels.column(name_column).to_pylist(), name_column,
                        labels.column("target").to_numpy().astype(int), feature_names, meta,
                        extracted)


def read_groups(table: FeatureTable, column: str, metadata: str | None) -> np.ndarray:
    """The group of each row, from a metadata CSV joined on the name column."""
    source = Path(metadata) if metadata else Path(table.meta["data_root"]) / "meta.csv"
    if not source.is_file():
        raise ValueError(f"--group-column {column}: metadata file {source} not found "
                         "(option --metadata)")
    with open(source, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if column not in (reader.fieldnames or []) or table.name_column not in reader.fieldnames:
            raise ValueError(f"{source}: needs columns '{table.name_column}' and '{column}', "
                             f"found {reader.fieldnames}")
        mapping = {row[table.name_column]: row[column] for row in reader}
    missing = [n for n in table.names if n not in mapping]
    if missing:
        raise ValueError(f"{source}: no '{column}' for {len(missing)} rows, e.g. {missing[:3]}")
    return np.asarray([mapping[n] for n in table.names])


def augmentation_sources(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the original rows, and for every row the index of its source row."""
    index = {name: i for i, name in enumerate(names)}
    try:
        source_of = np.array([index[source_name(n)] for n in names])
    except KeyError as error:
        raise ValueError(f"augmented row without its source row in the table: {error}") from error
    return np.flatnonzero(source_of == np.arange(len(names))), source_of


def kept_columns(feature_names: list[str], drop_pattern: str | None) -> np.ndarray:
    """Indices of the columns whose names ``drop_pattern`` does not match (all without one)."""
    if not drop_pattern:
        return np.arange(len(feature_names))
    try:
        pattern = re.compile(drop_pattern)
    except re.error as error:
        raise ValueError(f"option --drop-features: {drop_pattern!r} is not a valid regular "
                         f"expression ({error})") from None
    kept = np.array([j for j, name in enumerate(feature_names) if not pattern.search(name)],
                    dtype=np.intp)
    if kept.size == 0:
        raise ValueError(f"option --drop-features: {drop_pattern!r} matches all "
                         f"{len(feature_names)} feature columns")
    return kept


def family_of(feature: str) -> str:
    return feature.split("__", 1)[0]


def fit_run(table: FeatureTable, out: Path, settings: dict[str, Any]) -> dict:
    started = time.time()
    check_max_features(settings["max_features"])
    originals, source_of = augmentation_sources(table.names)
    groups = read_groups(table, settings["group_column"], settings["metadata"]) \
        if settings["group_column"] else None
    seeds = repeat_seeds(settings, len(originals))
    plans = [with_copies(plan_folds(table.y[originals],
                                    None if groups is None else groups[originals],
                                    settings["folds"], seed), originals, source_of)
             for seed in seeds]
    plan = plans[0]
    if settings["tune_only"]:
        return {"studies": tune_stack(table, settings, plans, seeds,
                                      stack_groups(groups, source_of, originals), len(originals))}
    if settings["model"] == "lightgbm":
        boosting.training_params(plain_params(table, settings))  # refuse bad parameters first
    out.mkdir(parents=True, exist_ok=True)
    if settings["model"] == "stack":
        fitted = fit_stack(table, out, settings, plans, seeds,
                           stack_groups(groups, source_of, originals), len(originals))
    else:
        fitted = fit_lightgbm(table, out, settings, plans, seeds)
    y_original = table.y[originals]
    names_original = [table.names[i] for i in originals]
    fold_ids = plan.fold_ids(len(table.y))[originals]
    summaries = {name: metrics.full_summary(y_original, oof[originals], seed=settings["seed"])
                 for name, oof in fitted["oof"].items()}
    primary = settings["model"]
    summary = summaries[primary]
    warnings = metrics.unreliable_warnings(summary)
    if plan.note:
        warnings.insert(0, plan.note)
    run = {
        "model_kind": settings["model"],
        "n_splits": plan.n_splits,
        "n_augmented_rows": int(len(table.names) - len(originals)),
        "group_column": settings["group_column"],
        "drop_features": settings["drop_features"],
        "n_extracted_features": len(table.extracted_names),
        "seed": settings["seed"],
        **fitted["settings"],
        "features_file": str(table.path),
        "data_root": table.meta.get("data_root"),
        "data_fingerprint": provenance.data_fingerprint(table.names, table.y),
        "extraction": table.meta.get("summary", {}),
        "versions": provenance.versions(),
    }
    # Indices into the table's columns: the model reads `used`, importances explain `explained`.
    used = fitted.get("columns", np.arange(len(table.feature_names)))
    used_names = [table.feature_names[j] for j in used]
    manifest = {
        "feature_names": table.extracted_names,
        "model_features": used_names,
        "feature_config": table.meta["feature_config"],
        "feature_fingerprint": table.meta["feature_fingerprint"],
        # Absent from tables written before the version was recorded: None, which predict and
        # evaluate flag.
        "feature_version": table.meta.get("feature_version"),
        "name_column": table.name_column,
        "metrics": {"oof": summary},
        "fallback_score": 0.5,
        "versions": run["versions"],
        "data_fingerprint": run["data_fingerprint"],
    }
    write_bundle(out / "model", manifest, fitted["writer"])
    for name, oof in fitted["oof"].items():
        path = out / ("oof.csv" if name == primary else f"oof_{name}.csv")
        write_csv_atomic(path, [table.name_column, "target", "fold", "y_pred"],
                         [(safe_cell(n), t, f, f"{p:.6f}") for n, t, f, p in
                          zip(names_original, y_original, fold_ids, oof[originals])])
    # The stack reads whole rows (it selects its columns itself); importances name what the
    # explaining model read.
    explained = fitted.get("explained", used)
    explained_names = [table.feature_names[j] for j in explained]
    rows = boosting.explanation_rows(len(table.y), settings["seed"])
    explained_rows = table.rows.subset(rows).select_columns(explained)
    found = boosting.importances(fitted["explainer"], explained_rows[:])
    write_csv_atomic(out / "importance.csv", ["feature", "family", "gain", "mean_abs_contribution"],
                     [(n, family_of(n), f"{g:.6g}", f"{c:.6g}") for n, g, c in
                      zip(explained_names, found["gain"], found["mean_abs_contribution"])])
    errors = table.path.with_suffix(".errors.csv")
    if errors.is_file():
        shutil.copyfile(errors, out / "extract_errors.csv")
    record = {"primary": primary, "oof": summaries, "warnings": warnings, "run": run}
    if len(seeds) > 1:
        record["repeats"] = repeats_summary(y_original,
                                            [{name: oof[originals] for name, oof in repeat.items()}
                                             for repeat in fitted["oof_repeats"]], seeds)
    if settings["ablation"]:
        record["ablation"] = family_ablation(table, plan, originals, settings)
    run["seconds"] = round(time.time() - started, 3)
    write_text_atomic(out / "metrics.json", json.dumps(record, indent=2))
    from pipelines.report import build_report
    build_report(out)
    clear_checkpoints(out)
    return {"metrics": summaries, "warnings": warnings, "n_splits": plan.n_splits,
            "repeats": record.get("repeats")}


def default_repeats(n_images: int) -> int:
    """Fold partitions of a cross-validation on ``n_images`` source images when --repeats is not
    given: enough to score about ``REPEATS_SCORED_IMAGES`` in all, at most ``REPEATS_MAX``."""
    return min(REPEATS_MAX, max(1, -(-REPEATS_SCORED_IMAGES // n_images)))


def repeat_seeds(settings: dict, n_images: int) -> list[int]:
    """The seed of each repeat of the cross-validation: --seed, then the next ones."""
    repeats = settings["repeats"]
    if repeats is not None and repeats < 1:
        raise ValueError(f"option --repeats must be at least 1, got {repeats}")
    return [settings["seed"] + r for r in range(repeats or default_repeats(n_images))]


def repeats_summary(y: np.ndarray, repeats: list[dict[str, np.ndarray]],
                    seeds: list[int]) -> dict:
    """Each model's out-of-fold AUC (DeLong interval) and TPR@FPR at every repeat of the
    cross-validation, and their means over the repeats. Repeats vary the fold partition, not the
    images, so the mean steadies the estimate against the split; it does not narrow the
    interval, which rests on the same images every time."""
    models = {}
    for name in repeats[0]:
        per_repeat = []
        for seed, oof in zip(seeds, repeats):
            found, interval = metrics.summary(y, oof[name]), metrics.auc_ci(y, oof[name])
            per_repeat.append({"seed": seed, "auc": found["auc"],
                               "auc_ci": [interval["ci_low"], interval["ci_high"]],
                               "tpr_at_fpr": {key: item["tpr"]
                                              for key, item in found["tpr_at_fpr"].items()}})
        aucs = [item["auc"] for item in per_repeat]
        models[name] = {
            "auc_mean": float(np.mean(aucs)), "auc_min": min(aucs), "auc_max": max(aucs),
            "tpr_at_fpr_mean": {key: float(np.mean([item["tpr_at_fpr"][key]
                                                    for item in per_repeat]))
                                for key in per_repeat[0]["tpr_at_fpr"]},
            "per_repeat": per_repeat}
    return {"n_repeats": len(seeds), "seeds": list(seeds), "models": models}


def fit_lightgbm(table: FeatureTable, out: Path, settings: dict, plans: list,
                 seeds: list[int]) -> dict:
    """Plain LightGBM; features are selected inside each training fold, then on all rows for
    the final model (``columns``: the indices it uses). Each repeat of the cross-validation
    (``plans``, at ``seeds``) checkpoints its finished folds, so an interrupted fit continues
    with --resume."""
    params = plain_params(table, settings)
    cap = settings["max_features"]
    checkpoints = [FoldCheckpoint(out, fold_identity(table, params, {**settings, "seed": seed},
                                                     plan), settings["resume"],
                                  checkpoint_folder(r))
                   for r, (plan, seed) in enumerate(zip(plans, seeds))]
    finished = [checkpoint.finished() for checkpoint in checkpoints]
    n_folds, n_finished = sum(plan.n_splits for plan in plans), sum(map(len, finished))
    if n_finished:
        log.info("resuming: %d of %d folds already fitted", n_finished, n_folds)

    # One step per model: the folds, then the final model (minutes each on 100,000s of rows).
    with tqdm(total=n_folds + 1, initial=n_finished, unit="model", desc="fit",
              file=sys.stderr) as bar:
        oof_repeats = []
        for plan, seed, checkpoint, done in zip(plans, seeds, checkpoints, finished):
            def fold_done(index: int, predictions: np.ndarray, checkpoint=checkpoint) -> None:
                checkpoint.save(index, predictions)
                bar.update()

            oof_repeats.append({"lightgbm": boosting.out_of_fold(
                table.rows, table.y, plan, params, seed, cap, on_fold=fold_done, finished=done)})
        model, columns = boosting.fit_selected(table.rows, table.y, params, settings["seed"], cap)
        bar.update()
    return {"oof": oof_repeats[0], "oof_repeats": oof_repeats, "writer": lightgbm_writer(model),
            "explainer": model,
            "columns": columns,
            "settings": {"lightgbm_params": params,
                         "max_features": cap, "n_features": len(table.feature_names),
                         "n_model_features": len(columns)}}


class FoldCheckpoint:
    """The held-out predictions of the plain model's finished folds in one repeat of the
    cross-validation, in RUN_DIR/checkpoint/ (``checkpoint-repeatR/`` for the later repeats)
    until the fit completes. Without --resume an earlier checkpoint is discarded; with it, it is
    reused only if the data, feature table file, columns, parameters, seed and folds are the
    same."""

    def __init__(self, out: Path, identity: dict[str, str], resume: bool,
                 folder: str = "checkpoint"):
        self.folder = out / folder
        saved = self.folder / "identity.json"
        if resume and saved.is_file():
            earlier = json.loads(saved.read_text())
            differing = [key for key in identity if earlier.get(key) != identity[key]]
            if differing:
                raise ValueError(f"--resume: the interrupted fit in {out} used other "
                                 f"{', '.join(differing)}; run without --resume to start again")
        elif self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(saved, json.dumps(identity, indent=2))

    def finished(self) -> dict[int, np.ndarray]:
        return {int(path.stem.removeprefix("fold_")): np.load(path, allow_pickle=False)
                for path in self.folder.glob("fold_*.npy")}

    def save(self, fold: int, predictions: np.ndarray) -> None:
        with atomic_path(self.folder / f"fold_{fold}.npy") as tmp, open(tmp, "wb") as handle:
            np.save(handle, predictions, allow_pickle=False)


def checkpoint_folder(repeat: int) -> str:
    return "checkpoint" if repeat == 0 else f"checkpoint-repeat{repeat}"


def clear_checkpoints(out: Path) -> None:
    """Remove the plain model's fold checkpoints once the run folder is complete."""
    for folder in out.glob("checkpoint*"):
        shutil.rmtree(folder, ignore_errors=True)


def fold_identity(table: FeatureTable, params: dict, settings: dict, plan) -> dict[str, str]:
    """What a fold's predictions depend on, as digests (see ``FoldCheckpoint``)."""
    def digest(value) -> str:
        return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()

    stat = table.path.stat()  # a table extracted again (same names, other values) is refused
    return {"data": provenance.data_fingerprint(table.names, table.y),
            "feature table": f"{stat.st_size}:{stat.st_mtime_ns}",
            "columns": digest(table.feature_names),
            "parameters": digest({**params, "max_features": settings["max_features"]}),
            "seed": str(settings["seed"]),
            "folds": digest([test.tolist() for _, test in plan.folds])}


def plain_params(table: FeatureTable, settings: dict) -> dict:
    """Plain LightGBM parameters for the table's modality, with the config's ``lightgbm:``."""
    modality = table.meta["feature_config"]["modality"]
    return boosting.plain_params(modality, settings.get("lightgbm"))


def family_ablation(table: FeatureTable, plan, originals: np.ndarray, settings: dict) -> dict:
    """Out-of-fold AUC of each family alone and of all families but it (plain LightGBM, with
    the run's --max-features cap)."""
    families = np.array([family_of(n) for n in table.feature_names])
    params = plain_params(table, settings)
    y = table.y[originals]

    def oof_auc(columns: np.ndarray) -> float:
        oof = boosting.out_of_fold(table.rows.select_columns(columns), table.y, plan, params,
                                   settings["seed"], settings["max_features"])
        return metrics.auc(y, oof[originals])

    result = {}
    for family in dict.fromkeys(families):
        alone = families == family
        result[family] = {"n_features": int(alone.sum()), "alone": oof_auc(alone),
                          "without": oof_auc(~alone) if (~alone).any() else None}
        log.info("ablation %s: %s", family, result[family])
    return result


def stack_groups(groups, source_of: np.ndarray, originals: np.ndarray):
    """Groups for the stack's inner splits: copies with their source, and the user's groups."""
    if groups is not None:
        return np.asarray(groups)[source_of]
    return source_of if len(originals) < len(source_of) else None


def fit_stack(table: FeatureTable, out: Path, settings: dict, plans: list, seeds: list[int],
              groups, n_images: int) -> dict:
    """Nested CV for honest metrics (on each repeat's folds, ``plans`` at ``seeds``), then the
    final stack tuned and fitted on all rows."""
    from models.serialize import save_stack
    from models.stack import nested_oof
    from models.tuning import finished_trials

    storage = settings["storage"] or str(out / "tuning.journal")
    if not settings["storage"] and Path(storage).exists() and not settings["resume"]:
        raise ValueError(f"{out} already holds tuning studies ({storage}); pass --resume to "
                         "continue them, or choose another --out")
    params = stack_params(settings, storage, n_images, table.feature_names)
    before = finished_trials(storage)
    # One step per stack fit: the outer folds of every repeat and the final one, several at a
    # time.
    with tqdm(total=sum(plan.n_splits for plan in plans) + 1, unit="fit", desc="stack",
              file=sys.stderr) as bar:
        repeats = [nested_oof(table.rows, table.y, groups, outer_folds=plan.folds,
                              with_final=r == 0, on_fit=lambda _: bar.update(),
                              **repeat_stack_params(params, r, seed))
                   for r, (plan, seed) in enumerate(zip(plans, seeds))]
    nested = repeats[0]
    final = nested.final
    learners = list(final.learners)
    names = stack_study_names(repeats, final)
    after = {name: n for name, n in finished_trials(storage).items() if name in names}
    # Trials already finished (e.g. by --tune-only workers) are reused, not run again.
    trials = {"reused": sum(before.get(name, 0) for name in after),
              "new": sum(n - before.get(name, 0) for name, n in after.items())}
    log.info("tuning: %(reused)d finished trials reused, %(new)d new", trials)
    oof_repeats = [{name: repeat.predictions[name].to_numpy() for name in ["stack", *learners]}
                   for repeat in repeats]
    write_text_atomic(out / "tuning.json", json.dumps(
        tuning_record(storage, [f"final-{name}" for name in learners]), indent=2))

    def writer(folder: Path) -> dict:
        save_stack(final, folder / "stack")
        return {"kind": "stack", "folder": "stack"}

    # Importances come from the stack's own LightGBM (on the columns the stack selected), or
    # from a plain LightGBM when the stack has none.
    explained = final.support_
    if "lightgbm" in learners:
        explainer = final.learners_["lightgbm"].estimator
    else:
        explainer = boosting.fit_full(table.rows.select_columns(explained), table.y, None,
                                      settings["seed"])
    return {"oof": oof_repeats[0], "oof_repeats": oof_repeats, "writer": writer,
            "explainer": explainer, "explained": explained,
            "settings": {"stack_params": {k: v for k, v in params.items()
                                          if k not in ("storage", "views")},
                         "stack_views": {view: view_patterns(settings.get("stack") or {})[view]
                                         for view in params["views"]},
                         "storage": storage if not settings["storage"] else "(user storage)",
                         "tuning_trials": trials,
                         "best_params": final.best_params_,
                         "nested_folds": [nested_fold_summary(f) for f in nested.folds]}}


def nested_fold_summary(fold: dict) -> dict:
    """One outer fold of a nested stack fit: sizes, the combiner chosen (kind and weights, not
    its rank knots), the rounds of each booster and the number of columns kept."""
    return {**{k: fold[k] for k in ("fold", "n_train", "n_test", "n_rounds", "n_features")},
            "meta": {k: fold["meta"][k] for k in ("kind", "coef")}}


def default_stack_cap(n_images: int) -> int:
    """The stack's feature cap when --max-features is not given (``STACK_FEATURE_CAP``)."""
    low, high = STACK_FEATURE_CAP
    return min(high, max(low, n_images))


def stack_params(settings: dict, storage: str, n_images: int, feature_names: list[str]) -> dict:
    """GradientBoostedStack parameters of a stack fit (and of its tuning workers) on a table of
    ``n_images`` source images (augmented copies not counted) with these feature columns."""
    stack = dict(settings.get("stack") or {})
    return {"n_trials": settings["n_trials"], "timeout": settings["timeout"],
            "cv": 3, "random_state": settings["seed"], "n_jobs": settings["n_jobs"],
            "storage": storage,
            "max_features": settings["max_features"] or default_stack_cap(n_images),
            **stack, **stack_members(stack, feature_names)}


def stack_members(stack: dict, feature_names: list[str]) -> dict:
    """The stack's ``learners`` and ``views`` (column indices) from its config section: the
    learners it names, or by default the four learners on all columns and a LightGBM on each
    view (``STACK_VIEWS`` unless ``views`` is given) that leaves out some columns but not all."""
    from models.learners import LEARNER_NAMES
    from models.stack import learner_view

    patterns = view_patterns(stack)
    views = {view: view_columns(view, pattern, feature_names) for view, pattern in patterns.items()}
    if "learners" in stack:
        learners = list(stack["learners"])
    else:
        learners = [*LEARNER_NAMES, *(f"lightgbm@{view}" for view, columns in views.items()
                                      if 0 < len(columns) < len(feature_names))]
    used = sorted(({learner_view(name) for name in learners} - {None}) & set(views))
    for view in used:
        if not len(views[view]):
            raise ValueError(f"option stack.views.{view} ({patterns[view]!r}) matches none of the "
                             f"{len(feature_names)} feature columns")
    return {"learners": learners, "views": {view: views[view] for view in used}}


def view_patterns(stack: dict) -> dict:
    """The stack's views as given in its config section (``STACK_VIEWS`` when none are)."""
    patterns = stack.get("views", STACK_VIEWS)
    if not isinstance(patterns, dict):
        raise ValueError(f"option stack.views must map view names to regular expressions, got "
                         f"{patterns!r}")
    return patterns


def view_columns(view: str, pattern, feature_names: list[str]) -> np.ndarray:
    """Indices of the feature columns whose names match a view's regular expression."""
    try:
        compiled = re.compile(pattern)
    except (re.error, TypeError) as error:
        raise ValueError(f"option stack.views.{view}: {pattern!r} is not a regular expression "
                         f"({error})") from None
    return np.array([j for j, name in enumerate(feature_names) if compiled.search(name)],
                    dtype=np.intp)


def repeat_stack_params(params: dict, repeat: int, seed: int) -> dict:
    """The stack parameters of one repeat of the nested cross-validation: its own seed, and
    its own studies (``repeatR-outerK-...``; the first repeat's keep their names)."""
    return {**params, "random_state": seed,
            **({"study_prefix": f"repeat{repeat}-"} if repeat else {})}


def stack_study_names(repeats: list, final) -> set[str]:
    """The Optuna studies of a stack fit: one per repeat, outer fold and learner, and the final
    ones."""
    tunings = [fold["tuning"] for nested in repeats for fold in nested.folds] + [final.tuning_]
    return {result["study_name"] for tuning in tunings for result in tuning.values()}


def tune_stack(table: FeatureTable, settings: dict, plans: list, seeds: list[int], groups,
               n_images: int) -> dict[str, int]:
    """--tune-only: run the studies of a stack fit on ``table``, and only them.

    Every worker runs the same studies as the fit would (several at a time, as the fit does); on
    a shared storage they split each study's trials. Returns each study's finished trials.
    """
    from models.stack import nested_oof
    from models.tuning import finished_trials, process_worker

    params = {**stack_params(settings, settings["storage"], n_images, table.feature_names),
              "worker": process_worker()}
    repeats = [nested_oof(table.rows, table.y, groups, outer_folds=plan.folds, tune_only=True,
                          with_final=r == 0, **repeat_stack_params(params, r, seed))
               for r, (plan, seed) in enumerate(zip(plans, seeds))]
    names = stack_study_names(repeats, repeats[0].final)
    return {name: n for name, n in sorted(finished_trials(settings["storage"]).items())
            if name in names}


def tuning_record(storage: str, study_names: list[str]) -> dict:
    """Each study's trial history and parameter importances, for the report."""
    import optuna

    from models.tuning import open_storage

    record = {}
    for name in study_names:
        study = optuna.load_study(study_name=name, storage=open_storage(storage))
        trials = [{"number": t.number, "value": t.value, "state": t.state.name}
                  for t in study.get_trials(deepcopy=False)]
        complete = [t for t in study.get_trials(deepcopy=False)
                    if t.state == optuna.trial.TrialState.COMPLETE]
        try:
            importances = optuna.importance.get_param_importances(study) if len(complete) > 1 else {}
        except (RuntimeError, ValueError):
            importances = {}
        record[name] = {"trials": trials, "param_importances": importances}
    return record


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parser = build_parser("pipelines.fit", __doc__.splitlines()[0], OPTIONS)
    args = parser.parse_args(argv)
    try:
        settings = resolve(args, "fit", OPTIONS)
        if settings["tune_only"] and (settings["model"] != "stack" or not settings["storage"]):
            raise ValueError("--tune-only needs --model stack and --storage URL: tuning workers "
                             "share their studies only through a storage they all reach")
        table = load_feature_table(settings["features"], settings["drop_features"])
        out = Path(settings["out"])
        result = fit_run(table, out, settings)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if settings["tune_only"]:
        print("finished trials per study: " + ", ".join(
            f"{name} {n}" for name, n in result["studies"].items()))
        return 0
    for name, summary in result["metrics"].items():
        print(format_metrics(name, summary, result["n_splits"], result["repeats"]))
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"run folder: {out} (report: {out / 'report.html'})")
    return 0


def format_metrics(name: str, summary: dict, n_splits: int, repeats: dict | None = None) -> str:
    low, high = summary["auc_ci"]["ci_low"], summary["auc_ci"]["ci_high"]
    lines = [f"{name}: out-of-fold ({n_splits}-fold) AUC {summary['auc']:.4f} "
             f"[95% CI {low:.4f}, {high:.4f}] on {summary['n']} rows "
             f"({summary['n_positives']} fake, {summary['n_negatives']} real)"]
    if repeats:
        found, seeds = repeats["models"][name], repeats["seeds"]
        lines.append(f"  mean AUC over {repeats['n_repeats']} fold partitions (seeds {seeds[0]}-"
                     f"{seeds[-1]}): {found['auc_mean']:.4f} (from {found['auc_min']:.4f} to "
                     f"{found['auc_max']:.4f})")
    for key, item in summary["tpr_at_fpr"].items():
        lines.append(f"  TPR@FPR={key}: {item['tpr']:.4f} (FPR reached {item['fpr_reached']:.4g}, "
                     f"{item['n_negatives']} negatives)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
