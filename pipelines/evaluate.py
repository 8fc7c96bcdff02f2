"""python -m pipelines.evaluate: score a model as files are met in the wild, and across data sets.

Robustness (``--model RUN --data-root DIR [--data-root DIR ...] --perturb GRID``): each labelled
set is scored as it is and under every perturbation of the grid (``features.perturbations``; e.g.
``jpeg=50,70,90 resize=0.5,0.75 blur=1,2 noise=2,5 launder``). Each file is decoded once per
chunk; every condition perturbs the decoded sample, re-extracts the bundle's features and scores
them. The random perturbations (noise) draw from a generator seeded by ``--seed`` and the file's
name, so a run is reproducible. Written to ``--out`` (default ``RUN/robustness``) atomically:
``robustness.json`` (every number, and notes), ``robustness.csv`` (set, perturbation, strength,
AUC with its DeLong 95 % interval, TPR at FPR = 1e-3 and 1e-2 with the FPR reached, n, negatives,
failures) and ``robustness.html`` (self-contained: AUC and TPR@FPR against strength).

Cross-dataset matrix (``--cross DIR DIR ... --out DIR``): each set (a folder with labels.csv) is
extracted once (``--preset``, or ``families`` in ``--config``) into ``OUT/features``; a plain
LightGBM is trained on each set and scores every other set. The diagonal is the out-of-fold score
(stratified folds; grouped by ``--group-column`` of each set's meta.csv, e.g. ``pair_key`` for
audio). ``--launder`` also scores laundered copies of the target sets (both classes through one
resize + JPEG pipeline for images, resampling + 16-bit quantisation for audio), which shows how
much of a score came from how the files were saved; the laundered copies' features go to a
table of their own (``OUT/features/SET.laundered.parquet``), and every fit and score reads its
rows from the tables a row group at a time. Written: ``cross_matrix.json`` and
``cross_matrix.csv``.

A file that cannot be decoded, or whose perturbation fails, is left out of that condition's
metrics and counted in ``n_failed``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from features import perturbations
from features.extractor import LOADERS, cached_extractor, loader_options
from features.registry import FeatureConfig
from models import boosting, metrics
from models.bundle import check_features, load_bundle
from models.validation import plan_folds
from pipelines import provenance
from pipelines.datasets import Dataset, load_dataset
from pipelines.options import (Option, build_parser, configure_logging, resolve,
                               write_text_atomic)
from pipelines.table_rows import TableRows

AS_IS = "none"
TARGET_FPRS = metrics.TARGET_FPRS

OPTIONS = (
    Option("model", "run folder (or its model/ folder) written by pipelines.fit"),
    Option("labels", "label file of the (single) --data-root; default: found beside it"),
    Option("out", "output folder (default: RUN/robustness, or reports/cross with --cross)"),
    Option("modality", "kind of input of the --cross sets", default="image",
           choices=("image", "audio")),
    Option("preset", "feature preset of the --cross sets (or 'families' in --config)",
           default="default"),
    Option("launder", "--cross: also score laundered copies of the target sets", flag=True),
    Option("folds", "--cross: folds of the out-of-fold diagonal", type=int, default=5),
    Option("group_column", "--cross: column of each set's meta.csv whose groups never straddle "
           "folds (e.g. pair_key)"),
    Option("seed", "random seed (noise perturbations, folds, models)", type=int, default=0),
    Option("n_jobs", "worker processes (-1: all cores)", type=int, default=-1),
    Option("chunk_size", "files per unit of parallel work", type=int, default=64),
    Option("max_pixels", "largest image accepted, in pixels", type=int, default=64_000_000),
)
LIST_OPTIONS = (
    Option("data_root", "labelled set to score; repeat for several sets", type=None),
    Option("perturb", "perturbation grid, e.g. jpeg=50,70,90 resize=0.5,0.75 blur=1,2 noise=2,5 "
           "launder (audio: resample=8000 mp3=32,64 aac=64 snr=10,20 gain=-6,6 launder)",
           type=None),
    Option("cross", "sets (folders with labels.csv) of the cross-dataset matrix", type=None),
    Option("sets", "config file only: list of {data_root, labels, name}", type=None),
)


# ---------------------------------------------------------------------------------------------
# Features of perturbed samples


def condition_label(steps: Sequence[perturbations.Step]) -> str:
    return " + ".join(perturbations.step_label(s) for s in steps) if steps else "as is"


def perturbed_rows(paths: Sequence[str], names: Sequence[str], config: FeatureConfig,
                   conditions: Sequence[tuple[perturbations.Step, ...]], seed: int,
                   options: dict) -> tuple[np.ndarray, list[list[str | None]]]:
    """Feature rows of each file under each condition, decoding each file once.

    Returns rows of shape (n_conditions, n_files, n_features), NaN where the file or the
    perturbation failed, and the error message of each (condition, file) or None.
    """
    import cv2
    cv2.setNumThreads(1)  # parallelism comes from the processes
    extractor = cached_extractor(config)
    loader = LOADERS[config.modality]
    rows = np.full((len(conditions), len(paths), len(extractor.names)), np.nan, np.float32)
    errors: list[list[str | None]] = [[None] * len(paths) for _ in conditions]
    for i, (path, name) in enumerate(zip(paths, names)):
        try:
            context, data = loader(path, loader_options(config, options))
        except Exception as error:  # noqa: BLE001 - recorded, the run goes on
            for row in errors:
                row[i] = f"{type(error).__name__}: {error}"
            continue
        for c, steps in enumerate(conditions):
            try:
                if steps:
                    sample = perturbations.perturb_context(
                        context, steps, perturbations.sample_rng(seed, name))
                else:  # as is: exactly what pipelines.extract computes
                    sample = context
                    if data is not None:
                        sample.shared("file_bytes", lambda: data)
                rows[c, i], _ = extractor.transform_context(sample)
            except Exception as error:  # noqa: BLE001
                errors[c][i] = f"{type(error).__name__}: {error}"
    return rows, errors


def _chunk(start: int, *args) -> tuple[int, np.ndarray, list[list[str | None]]]:
    return (start, *perturbed_rows(*args))


def map_chunks(dataset: Dataset, config: FeatureConfig, conditions, settings: dict,
               consume, desc: str) -> None:
    """Run ``perturbed_rows`` over the dataset in parallel chunks; ``consume(start, rows, errors)``
    receives each chunk as it completes (in any order)."""
    from joblib import Parallel, delayed
    from tqdm import tqdm

    size = settings["chunk_size"]
    if size < 1:
        raise ValueError(f"option chunk_size must be >= 1, got {size}")
    options = {"max_pixels": settings["max_pixels"]}
    tasks = (delayed(_chunk)(start, [str(p) for p in dataset.paths[start:start + size]],
                             list(dataset.names[start:start + size]), config, conditions,
                             settings["seed"], options)
             for start in range(0, len(dataset), size))
    with tqdm(total=len(dataset), unit="file", desc=desc, file=sys.stderr) as bar:
        for start, rows, errors in Parallel(n_jobs=settings["n_jobs"], batch_size=1,
                                            return_as="generator_unordered")(tasks):
            consume(start, rows, errors)
            bar.update(rows.shape[1])


# ---------------------------------------------------------------------------------------------
# Robustness of a trained bundle


@dataclass(frozen=True)
class NamedSet:
    name: str
    dataset: Dataset


def condition_metrics(y: np.ndarray, scores: np.ndarray) -> dict:
    """metrics.summary with the DeLong interval, on the rows that were scored; None cells if a
    class is missing."""
    scored = ~np.isnan(scores)
    y, scores = y[scored], scores[scored]
    counts = {"n": int(scored.sum()), "n_failed": int((~scored).sum()),
              "n_positives": int(np.sum(y == 1)), "n_negatives": int(np.sum(y == 0))}
    if counts["n_positives"] == 0 or counts["n_negatives"] == 0:
        return {**counts, "auc": None, "auc_ci": None, "tpr_at_fpr": None}
    summary = metrics.summary(y, scores, TARGET_FPRS)
    enough = min(counts["n_positives"], counts["n_negatives"]) >= 2  # DeLong needs 2 of each
    interval = metrics.auc_ci(y, scores) if enough else None
    return {**counts, "auc": summary["auc"], "auc_ci": interval,
            "tpr_at_fpr": summary["tpr_at_fpr"]}


def runnable_grid(grid: Sequence[perturbations.Step]) -> tuple[list[perturbations.Step], list[str]]:
    """The steps this machine can run, and a note for each one it cannot (a missing codec)."""
    runnable, notes = [], []
    for step in grid:
        reason = perturbations.unavailable_reason(step[0])
        if reason:
            notes.append(f"skipped {perturbations.step_label(step)}: {reason}")
        else:
            runnable.append(step)
    return runnable, notes


def score_conditions(bundle, config: FeatureConfig, named: NamedSet, conditions,
                     settings: dict) -> tuple[np.ndarray, dict[int, str]]:
    """The bundle's score of every file under every condition (NaN where it failed), and the
    first error met under each condition."""
    scores = np.full((len(conditions), len(named.dataset)), np.nan)
    first_errors: dict[int, str] = {}

    def consume(start, chunk_rows, errors):
        for c in range(len(conditions)):
            ok = np.array([e is None for e in errors[c]])
            if ok.any():
                scores[c, start + np.flatnonzero(ok)] = bundle.predict_proba(chunk_rows[c][ok])
            message = next((e for e in errors[c] if e is not None), None)
            if message and c not in first_errors:
                first_errors[c] = message

    map_chunks(named.dataset, config, conditions, settings, consume, desc=f"score {named.name}")
    return scores, first_errors


def set_rows(named: NamedSet, conditions, scores: np.ndarray,
             first_errors: dict[int, str]) -> tuple[list[dict], list[str]]:
    """One result row per condition (the first is 'as is', the baseline of ``delta_auc``)."""
    rows, notes = [], []
    y = np.asarray(named.dataset.targets)
    baseline = None
    for c, steps in enumerate(conditions):
        found = condition_metrics(y, scores[c])
        label = condition_label(steps)
        if not steps:
            baseline = found["auc"]
        name, strength = steps[0] if steps else (AS_IS, None)
        rows.append({"set": named.name, "perturbation": name, "strength": strength,
                     "label": label, **found,
                     "delta_auc": None if found["auc"] is None or baseline is None
                     else found["auc"] - baseline})
        if found["n_failed"]:
            notes.append(f"{named.name}, {label}: {found['n_failed']} file(s) not scored, e.g. "
                         f"{first_errors.get(c)}")
        if found["auc"] is None:
            notes.append(f"{named.name}, {label}: one class has no scored file; no metric")
    return rows, notes


def robustness(bundle, named_sets: Sequence[NamedSet], grid: Sequence[perturbations.Step],
               settings: dict) -> dict:
    """Score every set as it is and under each step of the grid; the JSON-ready result."""
    manifest = bundle.manifest
    config = FeatureConfig.from_mapping(manifest["feature_config"]["modality"],
                                        manifest["feature_config"]["families"])
    check_features(manifest, cached_extractor(config).names)
    provenance.warn_on_feature_version(manifest)
    runnable, notes = runnable_grid(grid)
    conditions = [()] + [(step,) for step in runnable]
    rows = []
    for named in named_sets:
        if named.dataset.targets is None:
            raise ValueError(f"set {named.name}: no target column; evaluation needs labels")
        scores, first_errors = score_conditions(bundle, config, named, conditions, settings)
        if is_training_set(manifest, named.dataset):
            notes.append(f"{named.name} is the set the model was trained on: its scores are "
                         "in-sample (optimistic); measure robustness on a held-out set")
        found_rows, found_notes = set_rows(named, conditions, scores, first_errors)
        rows += found_rows
        notes += found_notes
    notes += unreliable_notes(rows)
    return {
        "kind": "robustness",
        "model": str(bundle.folder),
        "feature_fingerprint": manifest.get("feature_fingerprint"),
        "modality": config.modality,
        "seed": settings["seed"],
        "sets": [{"name": s.name, "data_root": str(s.dataset.root),
                  "label_file": str(s.dataset.label_file) if s.dataset.label_file else None,
                  "n_files": len(s.dataset), "training_set": is_training_set(manifest, s.dataset)}
                 for s in named_sets],
        "perturbations": {name: {"strength": p.strength, "stronger_when": p.stronger_when}
                          for name, p in perturbations.PERTURBATIONS[config.modality].items()},
        "grid": [list(step) for step in runnable],
        "rows": rows,
        "notes": notes,
        "versions": provenance.versions(),
    }


def is_training_set(manifest: dict, dataset: Dataset) -> bool:
    """Whether ``dataset`` is the one the bundle was fitted on (same names and targets)."""
    return manifest.get("data_fingerprint") == provenance.data_fingerprint(dataset.names,
                                                                           dataset.targets)


def unreliable_notes(rows: Sequence[dict]) -> list[str]:
    """One note per set and FPR target whose TPR rests on too few negatives."""
    notes, seen = [], set()
    for row in rows:
        for key, item in (row["tpr_at_fpr"] or {}).items():
            if not item["reliable"] and (row["set"], key) not in seen:
                seen.add((row["set"], key))
                notes.append(f"{row['set']}: TPR@FPR={key} rests on {item['n_negatives']} "
                             f"negatives (fewer than {10 / item['target_fpr']:.0f}); the FPR "
                             f"reached is reported beside it")
    return notes


CSV_HEADER = ["set", "perturbation", "strength", "auc", "auc_ci_low", "auc_ci_high", "delta_auc",
              "tpr_at_fpr_0.001", "fpr_reached_0.001", "tpr_at_fpr_0.01", "fpr_reached_0.01",
              "n_negatives", "n_positives", "n", "n_failed"]


def _number(value) -> str:
    return "" if value is None else f"{value:.6g}"


def csv_row(row: dict) -> list:
    from pipelines.outputs import safe_cell

    tpr = row["tpr_at_fpr"] or {}
    interval = row["auc_ci"] or {}
    cells = [safe_cell(row["set"]), row["perturbation"], _number(row["strength"]),
             _number(row["auc"]), _number(interval.get("ci_low")), _number(interval.get("ci_high")),
             _number(row["delta_auc"])]
    for key in (f"{t:g}" for t in TARGET_FPRS):
        item = tpr.get(key) or {}
        cells += [_number(item.get("tpr")), _number(item.get("fpr_reached"))]
    return cells + [row["n_negatives"], row["n_positives"], row["n"], row["n_failed"]]


def write_robustness(result: dict, out: Path) -> None:
    from pipelines.outputs import write_csv_atomic

    write_text_atomic(out / "robustness.json", json.dumps(result, indent=2))
    write_csv_atomic(out / "robustness.csv", CSV_HEADER, [csv_row(r) for r in result["rows"]])
    write_text_atomic(out / "robustness.html", robustness_page(result))


# ---------------------------------------------------------------------------------------------
# HTML


def robustness_section(result: dict, figures) -> str:
    """HTML of the robustness results: curves against strength, the table, the notes.

    ``figures`` is a ``pipelines.report.Figures``; the page embedding this must load plotly.js
    (``build_report`` does), so the main report can include this section as it is.
    """
    from html import escape

    parts = []
    names = dict.fromkeys(r["perturbation"] for r in result["rows"])
    for name in (n for n in names if n != AS_IS):
        perturbation = result["perturbations"][name]
        plots = [figures.html(strength_figure(result["rows"], name, perturbation, metric))
                 for metric in ("auc", "0.01", "0.001")]
        parts.append(f"<h3>{escape(name)}: {escape(perturbation['strength'])} "
                     f"<small>(damage grows as it gets {escape(perturbation['stronger_when'])})"
                     f"</small></h3><div class='grid'>"
                     + "".join(f"<div>{p}</div>" for p in plots) + "</div>")
    header = "".join(f"<th>{escape(h)}</th>" for h in
                     ("set", "condition", "AUC [95 % CI]", "ΔAUC", "TPR@FPR=1e-3", "TPR@FPR=1e-2",
                      "negatives", "positives", "failed"))
    body = "".join(_table_row(r) for r in result["rows"])
    notes = "".join(f"<div class='warn'>{escape(n)}</div>" for n in result["notes"])
    return ("".join(parts) + f"<h3>All conditions</h3><table><tr>{header}</tr>{body}</table>{notes}"
            "<p><small>TPR@FPR: the largest TPR among ROC points whose FPR is at most the target "
            "(the FPR reached in parentheses); ⚠: fewer than 10/FPR negatives. AUC interval: "
            "DeLong. Noise perturbations are seeded per file.</small></p>")


def _table_row(row: dict) -> str:
    from html import escape

    def tpr(key):
        item = (row["tpr_at_fpr"] or {}).get(key)
        return (f"{item['tpr']:.4f} <small>(FPR {item['fpr_reached']:.2g})</small>"
                + ("" if item["reliable"] else " ⚠")) if item else "–"

    interval = row["auc_ci"]
    auc = "–" if row["auc"] is None else f"{row['auc']:.4f}"
    if interval:
        auc += f" <small>[{interval['ci_low']:.3f}, {interval['ci_high']:.3f}]</small>"
    delta = "" if row["delta_auc"] is None or row["perturbation"] == AS_IS \
        else f"{row['delta_auc']:+.4f}"
    cells = [escape(row["set"]), escape(row["label"]), auc, delta, tpr("0.001"), tpr("0.01"),
             row["n_negatives"], row["n_positives"], row["n_failed"]]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def strength_figure(rows: Sequence[dict], name: str, perturbation: dict, metric: str):
    """One metric (``auc`` or an FPR target key) against the strength of ``name``, per set; the
    as-is value is a dotted line of the same colour."""
    import plotly.graph_objects as go
    from plotly.colors import DEFAULT_PLOTLY_COLORS as colours

    def value(row):
        if metric == "auc":
            return row["auc"]
        return (row["tpr_at_fpr"] or {}).get(metric, {}).get("tpr")

    figure = go.Figure()
    for k, set_name in enumerate(dict.fromkeys(r["set"] for r in rows)):
        colour = colours[k % len(colours)]
        points = sorted((r["strength"], value(r)) for r in rows
                        if r["set"] == set_name and r["perturbation"] == name)
        figure.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points],
                                    mode="lines+markers", name=set_name, line=dict(color=colour)))
        as_is = next((value(r) for r in rows
                      if r["set"] == set_name and r["perturbation"] == AS_IS), None)
        if as_is is not None:
            figure.add_hline(y=as_is, line_dash="dot", line_color=colour)
    title = "AUC" if metric == "auc" else f"TPR at FPR = {float(metric):g}"
    figure.update_layout(title=f"{title} under {name} (dotted: as is)", yaxis_title=title,
                         xaxis_title=perturbation["strength"], height=340)
    return figure


def robustness_page(result: dict) -> str:
    from html import escape

    from plotly.offline import get_plotlyjs

    from pipelines.report import STYLE, Figures

    sets = ", ".join(s["name"] for s in result["sets"])
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>Robustness: {escape(sets)}</title><style>{STYLE}</style>"
            f"<script>{get_plotlyjs()}</script></head><body><header><h1>Robustness to "
            f"processing</h1><p>model {escape(result['model'])} on {escape(sets)}</p></header>"
            f"<main><section>{robustness_section(result, Figures())}</section></main>"
            "</body></html>")


# ---------------------------------------------------------------------------------------------
# Cross-dataset matrix


def set_name_of(path: Path, taken: set[str]) -> str:
    """The folder's name, made unique with a numeric suffix."""
    base = Path(path).resolve().name or "set"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def launder_step(modality: str) -> perturbations.Step:
    return "launder", float(perturbations.get_perturbation("launder", modality).default)


@dataclass
class CrossSet:
    """One set of a cross-dataset matrix. Its features (``X``) and, with ``--launder``, those of
    its laundered copies (``laundered``) are streamed from their tables a row group at a time by
    every fit and score; ``laundered_rows`` gives, for each row of ``X``, its laundered copy's
    row in ``laundered`` (-1 where laundering or decoding it failed)."""
    name: str
    dataset: Dataset
    X: TableRows
    y: np.ndarray
    groups: np.ndarray | None
    laundered: TableRows | None = None
    laundered_rows: np.ndarray | None = None

    @property
    def laundered_ok(self) -> np.ndarray:
        return self.laundered_rows >= 0


def prepare_cross_set(name: str, root: str, config: FeatureConfig, out: Path,
                      settings: dict) -> CrossSet:
    from pipelines.fit import read_groups

    dataset = load_dataset(root, require_targets=True, modality=config.modality)
    table = extract_cross_table(dataset, config, out / "features" / f"{name}.parquet", settings)
    groups = read_groups(table, settings["group_column"], None) \
        if settings["group_column"] else None
    item = CrossSet(name, dataset, table.rows, table.y, groups)
    if settings["launder"]:
        # Written as a table too: at the competition's 500,000 images the laundered features
        # (6.5 GiB at the default preset) are not held in memory beside the fits.
        steps = [((launder_step(config.modality),), 0)] * len(dataset)
        laundered = extract_cross_table(dataset, config,
                                        out / "features" / f"{name}.laundered.parquet",
                                        settings, steps)
        position = {n: i for i, n in enumerate(laundered.names)}
        item.laundered = TableRows(laundered.path, table.feature_names)
        item.laundered_rows = np.array([position.get(n, -1) for n in table.names], np.int64)
    return item


def extract_cross_table(dataset: Dataset, config: FeatureConfig, path: Path, settings: dict,
                        steps: list | None = None):
    """Extract ``dataset`` (each file perturbed by ``steps``, if given) into the table at
    ``path`` as ``pipelines.extract`` does (resumable chunks, atomic write), and load it."""
    from pipelines.extract import extract_dataset
    from pipelines.fit import load_feature_table

    extract_dataset(dataset, config, path, n_jobs=settings["n_jobs"],
                    chunk_size=settings["chunk_size"],
                    options={"max_pixels": settings["max_pixels"]}, steps=steps)
    return load_feature_table(path)


def laundered_scores(model, item: CrossSet, rows: np.ndarray | None = None) -> np.ndarray:
    """The model's scores of the laundered copies of ``item``'s rows (all if None), NaN where
    there is no laundered copy."""
    file_rows = item.laundered_rows if rows is None else item.laundered_rows[rows]
    scores = np.full(len(file_rows), np.nan)
    ok = file_rows >= 0
    if ok.any():
        scores[ok] = model.predict_proba(item.laundered.subset(file_rows[ok]))[:, 1]
    return scores


def cross_cell(train: CrossSet, test: CrossSet, version: str, kind: str,
               scores: np.ndarray, keep: np.ndarray | None = None) -> dict:
    y = test.y if keep is None else test.y[keep]
    scores = scores if keep is None else scores[keep]
    found = condition_metrics(y, scores)
    return {"train_set": train.name, "test_set": test.name, "version": version, "kind": kind,
            **found}


def cross_matrix(set_dirs: Sequence[str], config: FeatureConfig, out: Path,
                 settings: dict) -> dict:
    if len(set_dirs) < 2:
        raise ValueError("--cross needs at least two sets")
    params = boosting.plain_params(config.modality, settings.get("lightgbm"))
    seed = settings["seed"]
    taken: set[str] = set()
    sets = [prepare_cross_set(set_name_of(Path(d), taken), d, config, out, settings)
            for d in set_dirs]
    cells, notes = [], []
    for train in sets:
        plan = plan_folds(train.y, train.groups, settings["folds"], seed)
        if plan.note:
            notes.append(f"{train.name}: {plan.note}")
        oof = boosting.out_of_fold(train.X, train.y, plan, params, seed)
        kind = f"{plan.n_splits}-fold out-of-fold"
        cells.append(cross_cell(train, train, "as_is", kind, oof))
        if settings["launder"]:
            cells.append(cross_cell(train, train, "laundered", kind,
                                    laundered_oof(train, plan, params, seed), train.laundered_ok))
        model = boosting.fit_full(train.X, train.y, params, seed)
        for test in sets:
            if test is train:
                continue
            cells.append(cross_cell(train, test, "as_is", "transfer",
                                    model.predict_proba(test.X)[:, 1]))
            if settings["launder"]:
                cells.append(cross_cell(train, test, "laundered", "transfer",
                                        laundered_scores(model, test), test.laundered_ok))
    names = [s.name for s in sets]
    versions = ["as_is", "laundered"] if settings["launder"] else ["as_is"]
    matrices = {v: [[next(c["auc"] for c in cells if c["train_set"] == a and c["test_set"] == b
                          and c["version"] == v) for b in names] for a in names] for v in versions}
    return {
        "kind": "cross_matrix", "sets": names, "data_roots": [str(s.dataset.root) for s in sets],
        "modality": config.modality,
        "feature_config": {"modality": config.modality, "families": config.to_mapping()},
        "feature_fingerprint": config.fingerprint(),
        "launder": launder_step(config.modality) if settings["launder"] else None,
        "folds": settings["folds"], "group_column": settings["group_column"], "seed": seed,
        "lightgbm_params": params,
        "auc": matrices, "cells": cells, "notes": notes, "versions": provenance.versions(),
    }


def laundered_oof(train: CrossSet, plan, params: dict, seed: int) -> np.ndarray:
    """Each fold's model (trained on the files as they are) scoring the laundered held-out fold."""
    scores = np.full(len(train.y), np.nan)
    for fit_rows, test_rows in plan.folds:
        rows = boosting.rows_of(train.X, fit_rows)
        model = boosting.fit_full(rows, train.y[fit_rows], params, seed)
        scores[test_rows] = laundered_scores(model, train, test_rows)
    return scores


CROSS_HEADER = ["train_set", "test_set", "version", "kind", "auc", "auc_ci_low", "auc_ci_high",
                "tpr_at_fpr_0.001", "fpr_reached_0.001", "tpr_at_fpr_0.01", "fpr_reached_0.01",
                "n_negatives", "n_positives", "n", "n_failed"]


def write_cross(result: dict, out: Path) -> None:
    from pipelines.outputs import safe_cell, write_csv_atomic

    rows = []
    for cell in result["cells"]:
        interval = cell["auc_ci"] or {}
        line = [safe_cell(cell["train_set"]), safe_cell(cell["test_set"]), cell["version"],
                cell["kind"], _number(cell["auc"]), _number(interval.get("ci_low")),
                _number(interval.get("ci_high"))]
        for key in (f"{t:g}" for t in TARGET_FPRS):
            item = (cell["tpr_at_fpr"] or {}).get(key) or {}
            line += [_number(item.get("tpr")), _number(item.get("fpr_reached"))]
        rows.append(line + [cell["n_negatives"], cell["n_positives"], cell["n"], cell["n_failed"]])
    write_text_atomic(out / "cross_matrix.json", json.dumps(result, indent=2))
    write_csv_atomic(out / "cross_matrix.csv", CROSS_HEADER, rows)


def format_matrix(result: dict) -> str:
    names = result["sets"]
    width = max(12, *(len(n) + 2 for n in names))
    lines = []
    for version, matrix in result["auc"].items():
        lines.append(f"AUC, {version.replace('_', ' ')} (rows: trained on; columns: scored on; "
                     "diagonal: out-of-fold)")
        lines.append(" " * width + "".join(f"{n:>{width}}" for n in names))
        for name, values in zip(names, matrix):
            lines.append(f"{name:<{width}}" + "".join(
                f"{'-' if v is None else f'{v:.4f}':>{width}}" for v in values))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str] | None):
    parser = build_parser("pipelines.evaluate", __doc__.splitlines()[0], OPTIONS)
    parser.add_argument("--data-root", action="append", default=None,
                        help=LIST_OPTIONS[0].help)
    parser.add_argument("--perturb", nargs="+", default=None, metavar="NAME=V1,V2",
                        help=LIST_OPTIONS[1].help)
    parser.add_argument("--cross", nargs="+", default=None, metavar="SET_DIR",
                        help=LIST_OPTIONS[2].help)
    return parser, parser.parse_args(argv)


def _from_config(value: Any, args: argparse.Namespace, name: str) -> Any:
    """A path of the config file, relative to it (command-line values are left as they are)."""
    if getattr(args, name, None) is not None or args.config is None or value is None:
        return value
    return str(Path(args.config).parent / value)


def named_sets(settings: dict, args: argparse.Namespace, modality: str) -> list[NamedSet]:
    """The labelled sets to score: --data-root (repeatable) or the config's ``sets`` list."""
    roots = settings["data_root"]
    entries = [{"data_root": r} for r in ([roots] if isinstance(roots, str) else roots or [])]
    if settings["labels"]:
        if len(entries) != 1:
            raise ValueError("--labels applies to a single --data-root; list several sets with "
                             "'sets: [{data_root, labels}]' in --config")
        entries[0]["labels"] = settings["labels"]
    for entry in settings.get("sets") or []:
        if not isinstance(entry, dict) or "data_root" not in entry or \
                set(entry) - {"data_root", "labels", "name"}:
            raise ValueError(f"config 'sets': each entry needs data_root (and optionally labels, "
                             f"name), got {entry!r}")
        entries.append({k: v if k == "name" else _from_config(v, args, "sets")
                        for k, v in entry.items()})
    if not entries:
        raise ValueError("no set to evaluate: give --data-root (or 'sets' in --config)")
    taken: set[str] = set()
    result = []
    for entry in entries:
        name = entry.get("name")
        if name in taken:
            raise ValueError(f"config 'sets': two sets are named {name!r}")
        name = name or set_name_of(Path(entry["data_root"]), taken)
        taken.add(name)
        result.append(NamedSet(name, load_dataset(entry["data_root"], entry.get("labels"),
                                                  require_targets=True, modality=modality)))
    return result


def run_robustness(settings: dict, args: argparse.Namespace) -> tuple[dict, Path]:
    if not settings["model"]:
        raise ValueError("--model is required (the run folder written by pipelines.fit)")
    bundle = load_bundle(settings["model"])
    modality = bundle.manifest["feature_config"]["modality"]
    perturb = settings["perturb"]
    grid = perturbations.parse_perturb_grid([perturb] if isinstance(perturb, str)
                                            else perturb or [], modality)
    if isinstance(settings["data_root"], list):
        settings["data_root"] = [_from_config(r, args, "data_root") for r in settings["data_root"]]
    sets = named_sets(settings, args, modality)
    run_folder = bundle.folder.parent if bundle.folder.name == "model" else bundle.folder
    out = Path(settings["out"] or run_folder / "robustness")
    result = robustness(bundle, sets, grid, settings)
    write_robustness(result, out)
    return result, out


def format_robustness(result: dict) -> str:
    lines = [f"{'set':<24}{'condition':<22}{'AUC':>8}{'ΔAUC':>9}{'TPR@1e-3':>10}{'TPR@1e-2':>10}"
             f"{'n':>7}"]
    for row in result["rows"]:
        tpr = row["tpr_at_fpr"] or {}
        cells = [("-" if row["auc"] is None else f"{row['auc']:.4f}"),
                 ("" if row["perturbation"] == AS_IS or row["delta_auc"] is None
                  else f"{row['delta_auc']:+.4f}"),
                 *(f"{tpr[k]['tpr']:.4f}" if k in tpr else "-" for k in ("0.001", "0.01"))]
        lines.append(f"{row['set'][:23]:<24}{row['label'][:21]:<22}{cells[0]:>8}{cells[1]:>9}"
                     f"{cells[2]:>10}{cells[3]:>10}{row['n']:>7}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    parser, args = parse_args(argv)
    started = time.time()
    try:
        settings = resolve(args, "evaluate", OPTIONS + LIST_OPTIONS)
        if settings["cross"]:
            from pipelines.extract import feature_config
            clashing = [f"--{k.replace('_', '-')}" for k in ("model", "data_root", "labels",
                                                             "perturb", "sets") if settings[k]]
            if clashing:
                raise ValueError(f"--cross trains its own models on sets with labels.csv; it "
                                 f"does not take {', '.join(clashing)}")
            dirs = [_from_config(d, args, "cross") for d in settings["cross"]]
            config = feature_config(settings)
            out = Path(settings["out"] or "reports/cross")
            result = cross_matrix(dirs, config, out, settings)
            write_cross(result, out)
            print(format_matrix(result))
            written = f"{out / 'cross_matrix.json'} and .csv"
        else:
            result, out = run_robustness(settings, args)
            print(format_robustness(result))
            written = f"{out / 'robustness.html'} (and robustness.json, robustness.csv)"
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for note in result["notes"]:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {written} in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
