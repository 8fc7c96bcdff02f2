"""python -m pipelines.predict: score files with a model bundle and write a submission CSV.

The submission has one row per input, in input order: ``img_name,y_pred`` (``video_name,y_pred``
for clips), ``y_pred`` being the probability that the file is fake. A file that cannot be decoded
still gets a row, with the bundle's documented fallback score (0.5: no evidence either way); it is
listed on stderr and in ``OUT.failed.csv``.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow.parquet as pq

from features.extractor import cached_extractor
from features.registry import FeatureConfig
from models.bundle import check_features, load_bundle
from pipelines import provenance
from pipelines.datasets import load_dataset
from pipelines.extract import extract_dataset
from pipelines.options import (Option, build_parser, configure_logging, require_data_root,
                               resolve)
from pipelines.outputs import safe_cell, write_csv_atomic

log = logging.getLogger("pipelines.predict")
# Rows scored per batch: about 140 MB of float32 features at 3,500 columns.
SCORE_ROWS = 10_000

OPTIONS = (
    Option("model", "run folder (or its model/ folder) written by pipelines.fit",
           default="reports/run"),
    Option("data_root", "folder of the files to score"),
    Option("labels", "file list (img_name|img_path|video_name, target optional); default: the "
           "label file found beside the data root, or every media file under it"),
    Option("out", "submission CSV to write", default="reports/submission.csv"),
    Option("n_jobs", "worker processes (-1: all cores)", type=int, default=-1),
    Option("chunk_size", "files per chunk", type=int, default=256),
    Option("max_pixels", "largest image accepted, in pixels", type=int, default=64_000_000),
    Option("fallback_score", "score given to files that cannot be decoded (default: the "
           "bundle's, 0.5)", type=float),
)


def predict_files(model: str, data_root: str, labels: str | None, out: Path,
                  settings: dict) -> dict:
    bundle = load_bundle(model)
    feature_config = bundle.manifest["feature_config"]
    config = FeatureConfig.from_mapping(feature_config["modality"], feature_config["families"])
    if settings.get("families") is not None and \
            FeatureConfig.from_mapping(config.modality, settings["families"]) != config:
        raise ValueError("the configured feature families differ from the bundle's; "
                         "predict extracts exactly what the model was trained on")
    check_features(bundle.manifest, cached_extractor(config).names)
    provenance.warn_on_feature_version(bundle.manifest)
    modality = bundle.manifest.get("modality", config.modality)
    dataset = load_dataset(data_root, labels, require_targets=False, modality=modality)
    features_path = out.with_name(out.stem + ".features.parquet")
    extract_dataset(dataset, config, features_path, n_jobs=settings["n_jobs"],
                    chunk_size=settings["chunk_size"],
                    options={"max_pixels": settings["max_pixels"]})
    scores = score_table(bundle, features_path, dataset.name_column)
    fallback = settings["fallback_score"]
    if fallback is None:
        fallback = float(bundle.manifest.get("fallback_score", 0.5))
    failed = [n for n in dataset.names if n not in scores]
    name_column = bundle.manifest.get("submission_column", dataset.name_column)
    if name_column == "img_path":
        name_column = "img_name"
    if config.modality == "clip":  # the competition's clip track names its files video_name
        name_column = "video_name"
    write_csv_atomic(out, [name_column, "y_pred"],
                     [(safe_cell(n), f"{scores.get(n, fallback):.6f}") for n in dataset.names])
    errors = features_path.with_suffix(".errors.csv")
    write_csv_atomic(out.with_suffix(".failed.csv"), [name_column, "fallback_score"],
                     [(safe_cell(n), fallback) for n in failed])
    return {"n": len(dataset), "n_failed": len(failed), "failed": failed,
            "errors_file": errors, "fallback": fallback}


def score_table(bundle, features_path: Path, name_column: str) -> dict[str, float]:
    """The bundle's score of each row of a feature table, by name, read ``SCORE_ROWS`` rows at a
    time so memory does not grow with the table. The extractor computed every feature; the
    model reads only its own columns, by name."""
    source = pq.ParquetFile(features_path)
    scores: dict[str, float] = {}
    for batch in source.iter_batches(batch_size=SCORE_ROWS,
                                     columns=[name_column, *bundle.model_features]):
        X = np.column_stack([batch.column(c).to_numpy(zero_copy_only=False)
                             for c in bundle.model_features])
        scores.update(zip(batch.column(name_column).to_pylist(), bundle.predict_proba_used(X)))
    return scores


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    parser = build_parser("pipelines.predict", __doc__.splitlines()[0], OPTIONS)
    args = parser.parse_args(argv)
    try:
        settings = resolve(args, "predict", OPTIONS)
        require_data_root(parser, settings)
        out = Path(settings["out"])
        result = predict_files(settings["model"], settings["data_root"], settings["labels"],
                               out, settings)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name in result["failed"][:20]:
        print(f"failed to decode: {name} (scored {result['fallback']})", file=sys.stderr)
    if result["n_failed"]:
        print(f"{result['n_failed']} file(s) could not be decoded; reasons in "
              f"{result['errors_file']}", file=sys.stderr)
    print(f"wrote {result['n']} predictions to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
