"""python -m pipelines.leakcheck: can how the files were saved alone tell the classes apart?

Computes *nuisance* features only, from each file's header and size and never from its content:

* images: file size, bytes per pixel, IJG JPEG quality estimated from the luminance quantisation
  table (``features.compression.jpeg_quality_from_bytes``), the sums of the luminance and
  chrominance quantisation tables (non-standard tables), width, height, aspect ratio, file format;
* audio: the file's own sample rate, channel count, bit depth, float or integer samples,
  duration, file size, bytes per second, container format (soundfile, or PyAV for containers
  libsndfile cannot read).

A LightGBM model is cross-validated on them (stratified folds, grouped with ``--group-column``,
``models.validation.plan_folds`` and ``models.boosting.out_of_fold``), and its out-of-fold AUC is
reported with its DeLong interval and the nuisance features that carry it.

Threshold (``--threshold``, default 0.75): nuisance features carry no information about whether
a face or a voice is real, so an honest set scores near 0.5 (on a few hundred files, the chance
spread of an AUC is about +-0.05). At 0.75 a content-blind model already ranks three pairs in
four correctly: a detector trained on such a set can learn the saving settings instead of the
forgery, and its score on the set says little. A set above the threshold is flagged *leaky*.

Partial leaks: a saving setting (JPEG quality or table, image size, format, sample rate, bit
depth ...) that at least ``MIN_EXCLUSIVE_FILES`` files of one class use and no file of the other
marks those files for any model, at zero false positives, which is what the tie-breaking metric
(TPR at FPR = 1e-3) rewards. When such settings cover ``--share-threshold`` (default 5 %) or more
of a class, the set is also flagged leaky, even if the overall AUC stays low (e.g. a quarter of
the fakes saved with a table no real uses). Evaluate a leaky set laundered too
(``pipelines.evaluate --perturb launder``, ``--cross ... --launder``).

Prints a summary and writes a JSON file (``--out``). The model is ``models.boosting``'s plain
LightGBM; a ``lightgbm:`` mapping in ``--config`` overrides its parameters.
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import numpy as np

from models import boosting, metrics
from models.validation import plan_folds
from pipelines import provenance
from pipelines.datasets import Dataset, load_dataset
from pipelines.options import (Option, build_parser, configure_logging, require_data_root,
                               resolve, write_text_atomic)

DEFAULT_THRESHOLD = 0.75
DEFAULT_SHARE_THRESHOLD = 0.05
MIN_EXCLUSIVE_FILES = 5
TOP_FEATURES = 5
IMAGE_FORMATS = ("jpeg", "png", "webp", "bmp", "tiff")
AUDIO_FORMATS = ("wav", "flac", "ogg", "mp3")
# Bits per sample of soundfile subtypes; compressed subtypes (MP3, Vorbis, Opus) have none.
SUBTYPE_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32,
                "DOUBLE": 64, "ALAW": 8, "ULAW": 8}
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
# The nuisance features that are settings chosen when saving (as opposed to sizes and durations,
# which also follow the content): a value of these used by one class only is a partial leak.
SETTINGS = {
    "image": ("jpeg_quality", "jpeg_luma_table_sum", "jpeg_chroma_table_sum", "width", "height",
              *(f"format_{f}" for f in (*IMAGE_FORMATS, "other"))),
    "audio": ("sample_rate", "channels", "bit_depth", "float_samples",
              *(f"format_{f}" for f in (*AUDIO_FORMATS, "other"))),
}

OPTIONS = (
    Option("data_root", "folder the label file's names are relative to"),
    Option("labels", "label file (default: found beside the data root)"),
    Option("modality", "kind of input", default="image", choices=("image", "audio")),
    Option("out", "JSON file to write", default="reports/leakcheck.json"),
    Option("threshold", "out-of-fold AUC above which the set is flagged leaky", type=float,
           default=DEFAULT_THRESHOLD),
    Option("share_threshold", "share of a class marked by saving settings the other class never "
           "uses above which the set is flagged leaky", type=float,
           default=DEFAULT_SHARE_THRESHOLD),
    Option("group_column", "column (label file or meta.csv) whose groups never straddle folds"),
    Option("metadata", "CSV holding --group-column (default: meta.csv in the data root)"),
    Option("folds", "number of cross-validation folds", type=int, default=5),
    Option("seed", "random seed", type=int, default=0),
    Option("n_jobs", "worker processes (-1: all cores)", type=int, default=-1),
)


def image_nuisance(path: str) -> dict[str, float]:
    """Header-level facts of an image file (NaN where the header does not say)."""
    from PIL import Image

    from features.compression import jpeg_quality_from_bytes

    data = Path(path).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        fmt = (image.format or "").lower()
        tables = (getattr(image, "quantization", None) or {}) if fmt == "jpeg" else {}
    values = {"file_size": float(len(data)), "bytes_per_pixel": len(data) / (width * height),
              "jpeg_quality": jpeg_quality_from_bytes(data) if tables else np.nan,
              "jpeg_luma_table_sum": float(sum(tables[min(tables)])) if tables else np.nan,
              "jpeg_chroma_table_sum": float(sum(tables[max(tables)])) if len(tables) > 1
              else np.nan,
              "width": float(width), "height": float(height), "aspect": width / height}
    return {**values, **_one_hot("format", fmt, IMAGE_FORMATS)}


def audio_nuisance(path: str) -> dict[str, float]:
    """Header-level facts of an audio file: its own rate, channels, bit depth, duration, size."""
    size = float(Path(path).stat().st_size)
    try:
        facts = _soundfile_facts(path)
    except RuntimeError:  # libsndfile cannot read this container (e.g. m4a, mp4)
        facts = _pyav_facts(path)
    rate, channels, bits, is_float, duration, fmt = facts
    values = {"sample_rate": rate, "channels": channels, "bit_depth": bits,
              "float_samples": is_float, "duration_s": duration, "file_size": size,
              "bytes_per_second": size / duration if duration > 0 else np.nan}
    return {**values, **_one_hot("format", fmt, AUDIO_FORMATS)}


def _soundfile_facts(path: str) -> tuple:
    import soundfile

    info = soundfile.info(path)
    return (float(info.samplerate), float(info.channels),
            float(SUBTYPE_BITS.get(info.subtype, 0)), float(info.subtype in FLOAT_SUBTYPES),
            float(info.duration), info.format.lower())


def _pyav_facts(path: str) -> tuple:
    import av

    with av.open(path) as container:
        if not container.streams.audio:
            raise ValueError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        sample_format = stream.codec_context.format
        lossless = stream.codec_context.name.startswith(("pcm_", "flac", "alac"))
        duration = float(container.duration / av.time_base) if container.duration else np.nan
        return (float(stream.rate), float(stream.channels),
                float(sample_format.bits if lossless else 0),
                float(sample_format.name.startswith(("flt", "dbl"))), duration,
                container.format.name.split(",")[0])


def _one_hot(prefix: str, value: str, known: Sequence[str]) -> dict[str, float]:
    columns = {f"{prefix}_{k}": float(value == k) for k in known}
    columns[f"{prefix}_other"] = float(value not in known)
    return columns


NUISANCE = {"image": image_nuisance, "audio": audio_nuisance}


def _chunk(paths: Sequence[str], modality: str) -> list[dict | str]:
    rows = []
    for path in paths:
        try:
            rows.append(NUISANCE[modality](path))
        except Exception as error:  # noqa: BLE001 - an unreadable header is a row of NaN
            rows.append(f"{type(error).__name__}: {error}")
    return rows


def nuisance_table(dataset: Dataset, modality: str,
                   n_jobs: int) -> tuple[np.ndarray, list[str], list[str]]:
    """(X, feature names, errors of unreadable files) in dataset order."""
    from joblib import Parallel, delayed

    paths = [str(p) for p in dataset.paths]
    size = 512
    parts = Parallel(n_jobs=n_jobs)(delayed(_chunk)(paths[i:i + size], modality)
                                    for i in range(0, len(paths), size))
    rows = [row for part in parts for row in part]
    names = next((list(r) for r in rows if isinstance(r, dict)), None)
    if names is None:
        raise ValueError(f"{dataset.root}: no file header could be read, e.g. {rows[0]}")
    X = np.array([[r[n] for n in names] if isinstance(r, dict) else [np.nan] * len(names)
                  for r in rows], dtype=np.float64)
    errors = [f"{name}: {r}" for name, r in zip(dataset.names, rows) if isinstance(r, str)]
    return X, names, errors


def separation(x: np.ndarray, y: np.ndarray) -> dict:
    """How one feature alone separates the classes: AUC of the better direction, class medians."""
    known = ~np.isnan(x)
    x, y = x[known], y[known]
    medians = {label: float(np.median(x[y == value])) if np.any(y == value) else None
               for label, value in (("real_median", 0), ("fake_median", 1))}
    if len(np.unique(y)) < 2:
        return {"auc_alone": None, **medians}
    value = metrics.auc(y, x)
    return {"auc_alone": max(value, 1.0 - value), **medians}


def exclusive_settings(X: np.ndarray, names: Sequence[str], y: np.ndarray,
                       settings: Sequence[str]) -> list[dict]:
    """Setting values used by at least ``MIN_EXCLUSIVE_FILES`` files of one class and by no file
    of the other, with the share of their class they mark."""
    found = []
    class_sizes = np.bincount(y, minlength=2)
    for j, name in enumerate(names):
        if name not in settings:
            continue
        column = X[:, j]
        known = ~np.isnan(column)
        values, inverse = np.unique(column[known], return_inverse=True)
        per_class = [np.bincount(inverse, weights=(y[known] == c), minlength=len(values))
                     for c in (0, 1)]
        for k, value in enumerate(values):
            for c, label in ((0, "real"), (1, "fake")):
                count = int(per_class[c][k])
                if count >= MIN_EXCLUSIVE_FILES and per_class[1 - c][k] == 0:
                    found.append({"feature": name, "value": float(value), "class": label,
                                  "count": count, "share_of_class": count / int(class_sizes[c])})
    return found


def largest_marked_share(exclusive: Sequence[dict]) -> dict | None:
    """The feature and class whose exclusive values together mark the largest share of a class."""
    totals: dict[tuple[str, str], float] = {}
    for item in exclusive:
        key = (item["feature"], item["class"])
        totals[key] = totals.get(key, 0.0) + item["share_of_class"]
    if not totals:
        return None
    (feature, label), share = max(totals.items(), key=lambda kv: kv[1])
    values = [i["value"] for i in exclusive if (i["feature"], i["class"]) == (feature, label)]
    return {"feature": feature, "class": label, "share_of_class": share, "values": values}


def read_groups(dataset: Dataset, column: str, metadata: str | None) -> np.ndarray:
    if column in dataset.extra:
        return np.asarray(dataset.extra[column])
    from pipelines.fit import read_groups as read_metadata_groups

    # fit's reader joins a metadata CSV on the name column; it needs only these three fields.
    table = SimpleNamespace(meta={"data_root": str(dataset.root)},
                            name_column=dataset.name_column, names=list(dataset.names))
    return read_metadata_groups(table, column, metadata)


def leak_check(dataset: Dataset, settings: dict) -> dict:
    modality = settings["modality"]
    X, names, errors = nuisance_table(dataset, modality, settings["n_jobs"])
    y = np.asarray(dataset.targets, dtype=int)
    groups = read_groups(dataset, settings["group_column"], settings["metadata"]) \
        if settings["group_column"] else None
    plan = plan_folds(y, groups, settings["folds"], settings["seed"])
    params = settings.get("lightgbm") or {}
    oof = boosting.out_of_fold(X, y, plan, params, settings["seed"])
    summary = metrics.summary(y, oof)
    model = boosting.fit_full(X, y, params, settings["seed"])
    contribution = boosting.importances(model, X)["mean_abs_contribution"]
    ranked = [{"feature": names[i], "mean_abs_contribution": float(contribution[i]),
               **separation(X[:, i], y)} for i in np.argsort(-contribution)]
    auc = summary["auc"]
    exclusive = exclusive_settings(X, names, y, SETTINGS[modality])
    marked = largest_marked_share(exclusive)
    reasons = []
    if auc > settings["threshold"]:
        reasons.append(f"nuisance features alone reach out-of-fold AUC {auc:.3f} > "
                       f"{settings['threshold']:g}")
    if marked and marked["share_of_class"] >= settings["share_threshold"]:
        reasons.append(f"{marked['share_of_class']:.0%} of the {marked['class']} files have "
                       f"{marked['feature']} in {_values(marked['values'])}, which no "
                       f"{'real' if marked['class'] == 'fake' else 'fake'} file has")
    notes = ([plan.note] if plan.note else []) + metrics.unreliable_warnings(summary)
    if errors:
        notes.append(f"{len(errors)} file header(s) unreadable (their features are missing), "
                     f"e.g. {errors[0]}")
    return {
        "data_root": str(dataset.root),
        "label_file": str(dataset.label_file) if dataset.label_file else None,
        "modality": modality, "n": int(len(y)), "n_positives": int(y.sum()),
        "n_negatives": int(len(y) - y.sum()), "n_unreadable": len(errors),
        "features": names, "n_splits": plan.n_splits, "group_column": settings["group_column"],
        "seed": settings["seed"], "threshold": settings["threshold"],
        "share_threshold": settings["share_threshold"],
        "auc": auc, "auc_ci": metrics.auc_ci(y, oof), "tpr_at_fpr": summary["tpr_at_fpr"],
        "leaky": bool(reasons), "leak_reasons": reasons,
        "largest_marked_share": marked, "exclusive_settings": exclusive,
        "top_features": ranked[:TOP_FEATURES], "all_features": ranked,
        "notes": notes, "versions": provenance.versions(),
    }


def format_summary(result: dict) -> str:
    interval = result["auc_ci"]
    verdict = ("LEAKY: " + "; ".join(result["leak_reasons"]) + "; report this set laundered too"
               if result["leaky"] else
               f"no leak found: nuisance features reach AUC {result['auc']:.3f} <= "
               f"{result['threshold']:g} and no saving setting marks "
               f"{result['share_threshold']:.0%} of a class")
    lines = [f"leak check of {result['data_root']} ({result['modality']}, {result['n']} files: "
             f"{result['n_negatives']} real, {result['n_positives']} fake)",
             f"  {verdict}",
             f"  out-of-fold AUC {result['auc']:.4f} [{interval['ci_low']:.3f}, "
             f"{interval['ci_high']:.3f}] ({result['n_splits']}-fold"
             + (f", grouped by {result['group_column']}" if result["group_column"] else "") + ")",
             "  top nuisance features (mean |contribution|; AUC alone; real / fake median):"]
    for item in result["top_features"]:
        alone = "-" if item["auc_alone"] is None else f"{item['auc_alone']:.3f}"
        lines.append(f"    {item['feature']:<24}{item['mean_abs_contribution']:>9.4f}   AUC "
                     f"{alone:>5}   {_fmt(item['real_median'])} / {_fmt(item['fake_median'])}")
    return "\n".join(lines)


def _values(values: Sequence[float]) -> str:
    return "{" + ", ".join(f"{v:g}" for v in values) + "}"


def _fmt(value) -> str:
    return "-" if value is None or np.isnan(value) else f"{value:.6g}"


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    parser = build_parser("pipelines.leakcheck", __doc__.splitlines()[0], OPTIONS)
    args = parser.parse_args(argv)
    try:
        settings = resolve(args, "leakcheck", OPTIONS)
        require_data_root(parser, settings)
        dataset = load_dataset(settings["data_root"], settings["labels"], require_targets=True,
                               modality=settings["modality"])
        result = leak_check(dataset, settings)
        out = Path(settings["out"])
        write_text_atomic(out, json.dumps(result, indent=2))
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_summary(result))
    for note in result["notes"]:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
