"""Run a feature configuration over files: one decoded sample in, one float32 row out.

``FeatureExtractor`` is the pure core (a context in, a vector out); ``extract_files`` adds decoding
and per-file error capture, and is what parallel workers run on a chunk of files;
``FeatureTransformer`` wraps both in scikit-learn's transformer API over file paths.
"""
from __future__ import annotations

import ctypes
import logging
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from features.clip import AbsentInput, ClipContext, clip_items, clip_params, load_clip
from features.context import ImageContext
from features.image_decode import DEFAULT_MAX_PIXELS, read_bytes, decode_image
from features.perturbations import perturb_context
from features.registry import COLUMN_PATTERN, FeatureConfig

log = logging.getLogger(__name__)
PROBE_SHAPE = (64, 64)


class FeatureExtractor:
    """Compute the families of a ``FeatureConfig`` on one context.

    A family that raises yields NaN for its values and a logged message: one failing family never
    stops the others (pyradiomics' rule). The column names are known before any data is seen.
    """

    def __init__(self, config: FeatureConfig):
        self.config = config
        self._items = clip_items(config) if config.modality == "clip" else config.items()
        self._slices = self._probe()
        self.names = tuple(name for family, _, _, keys in self._slices
                           for name in family.column_names(keys))

    def _probe(self) -> list[tuple[Any, dict, slice, tuple[str, ...]]]:
        """Each family with its parameters, its columns' slice and its keys, from one probe."""
        context = probe_context(self.config.modality)
        slices, start, seen = [], 0, set()
        for family, params in self._items:
            keys = tuple(family.function(context, **params))
            family_names = tuple(family.column_names(keys))
            bad = [n for n in family_names if not COLUMN_PATTERN.match(n)]
            if bad:
                raise ValueError(f"family {family.name!r} produced invalid names {bad[:3]}")
            if seen & set(family_names) or len(set(family_names)) != len(family_names):
                raise ValueError(f"family {family.name!r} repeats a feature name")
            seen.update(family_names)
            slices.append((family, params, slice(start, start + len(family_names)), keys))
            start += len(family_names)
        return slices

    def transform_context(self, context: Any) -> tuple[np.ndarray, list[str]]:
        """The feature vector of one sample, and the messages of families that failed."""
        row = np.full(len(self.names), np.nan, dtype=np.float32)
        failures = []
        for family, params, where, expected in self._slices:
            try:
                # The family's own keys: prefixing thousands of names per sample costs more
                # than some families' arithmetic.
                values = family.function(context, **params)
                if tuple(values) != expected:
                    raise ValueError("returned names that depend on the input")
                row[where] = np.fromiter(values.values(), dtype=np.float64, count=len(expected))
            except AbsentInput:
                pass  # e.g. audio families on a clip without audio: NaN, and not a failure
            except Exception as error:  # noqa: BLE001 - one family must not stop the others
                failures.append(f"family {family.name}: {type(error).__name__}: {error}")
        return row, failures


def probe_context(modality: str) -> Any:
    """A small deterministic synthetic sample, used to learn each family's column names."""
    rng = np.random.default_rng(0)
    if modality == "image":
        return ImageContext(rng.integers(0, 256, size=(*PROBE_SHAPE, 3), dtype=np.uint8))
    if modality == "audio":
        from features.audio_context import AudioContext
        return AudioContext(rng.standard_normal(16000).astype(np.float32) * 0.1, 16000)
    if modality == "clip":
        frames = rng.integers(0, 256, size=(2, *PROBE_SHAPE, 3), dtype=np.uint8)
        return ClipContext(list(frames), probe_context("audio"))
    raise ValueError(f"unknown modality {modality!r}")


@lru_cache(maxsize=4)
def cached_extractor(config: FeatureConfig) -> FeatureExtractor:
    # Workers receive the same config for every chunk: build the extractor (and probe) once.
    return FeatureExtractor(config)


def _image_loader(path: str, options: dict) -> tuple[ImageContext, bytes]:
    data = read_bytes(path)
    rgb = decode_image(data, name=str(path), max_pixels=options.get("max_pixels", DEFAULT_MAX_PIXELS))
    return ImageContext(rgb), data


def _audio_loader(path: str, options: dict) -> tuple[Any, bytes | None]:
    from features.audio_context import AudioContext
    from features.audio_decode import decode_audio
    rate = options.get("sample_rate", 16000)
    return AudioContext(decode_audio(path, sample_rate=rate), rate), None


def _clip_loader(path: str, options: dict) -> tuple[ClipContext, None]:
    if "n_frames" not in options:
        raise ValueError("loading a clip needs options['n_frames']: see loader_options")
    return load_clip(path, n_frames=options["n_frames"],
                     sample_rate=options.get("sample_rate", 16000)), None


LOADERS: dict[str, Callable[[str, dict], tuple[Any, bytes | None]]] = {
    "image": _image_loader,
    "audio": _audio_loader,
    "clip": _clip_loader,
}


def loader_options(config: FeatureConfig, options: dict) -> dict:
    """The decoding options plus those the configuration implies (clips: how many frames)."""
    if config.modality == "clip":
        return {**options, "n_frames": clip_params(config)["n_frames"]}
    return options


# glibc mallopt parameters (malloc.h) and the values extraction uses.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 64 << 20
TRIM_THRESHOLD_BYTES = 256 << 20


@lru_cache(maxsize=1)
def reuse_freed_memory() -> bool:
    """Make glibc's malloc keep freed image-sized blocks for reuse in this process.

    Families allocate and free many image-sized temporaries (a 512x512 float32 plane is 1 MiB).
    With glibc's defaults such blocks are often returned to the system on free (mmap'ed blocks,
    trimmed heap tops), and the next allocation page-faults on every first write: 6.5-11 ms of
    system time per 512x512 image for the default preset, against 23 ms of computation. Blocks
    below 64 MiB now come from the heap, and up to 256 MiB of free heap top is kept, per process.
    Called once per worker by :func:`extract_files`; True when set, False off glibc (no-op).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def extract_files(paths: Sequence[str | Path], config: FeatureConfig,
                  options: dict | None = None, steps: Sequence | None = None,
                  ) -> tuple[np.ndarray, list[str | None]]:
    """Features of each file, as rows of a float32 array; a file that fails is a NaN row.

    ``steps``, when given, holds per file None or ``(perturbation chain, seed)`` applied to the
    decoded sample before any feature (augmentation, robustness evaluation).
    Returns the array (len(paths), n_features) and, per file, None or the error message
    (decoding errors; a family failure is reported but keeps the row).
    """
    reuse_freed_memory()
    options = loader_options(config, options or {})
    extractor = cached_extractor(config)
    loader = LOADERS[config.modality]
    rows = np.full((len(paths), len(extractor.names)), np.nan, dtype=np.float32)
    errors: list[str | None] = []
    for i, path in enumerate(paths):
        try:
            context, data = loader(str(path), options)
            if steps is not None and steps[i]:
                chain, seed = steps[i]
                context = perturb_context(context, chain, np.random.default_rng(seed))
            elif data is not None:  # the file's bytes describe only the unperturbed sample
                context.shared("file_bytes", lambda: data)
            rows[i], failures = extractor.transform_context(context)
            errors.append("; ".join(failures) if failures else None)
            if failures:
                log.warning("%s: %s", path, errors[-1])
        except Exception as error:  # noqa: BLE001 - recorded, the run goes on
            errors.append(f"{type(error).__name__}: {error}")
            rows[i] = np.nan
    return rows, errors


def is_decode_failure(row: np.ndarray, error: str | None) -> bool:
    """A file that produced no features at all (as opposed to one family failing)."""
    return error is not None and bool(np.all(np.isnan(row)))


def unreadable_files_message(paths: Sequence[str], rows: np.ndarray,
                             errors: Sequence[str | None], shown: int = 5) -> str | None:
    """``"K of N files could not be read: path: error; ..."`` naming the first ``shown``
    files that gave no features at all, or None when every file was read."""
    unreadable = [f"{path}: {error}" for path, row, error in zip(paths, rows, errors)
                  if is_decode_failure(row, error)]
    if not unreadable:
        return None
    return (f"{len(unreadable)} of {len(paths)} files could not be read: "
            + "; ".join(unreadable[:shown]) + (" ..." if len(unreadable) > shown else ""))


class FeatureTransformer(TransformerMixin, BaseEstimator):
    """scikit-learn transformer from file paths to feature rows.

    Parameters
    ----------
    preset : name of a preset in ``configs/features`` (ignored when ``families`` is given).
    families : mapping ``family -> parameters``, as in a preset file.
    modality : "image", "audio" or "clip".
    n_jobs : worker processes (joblib); ``None`` means 1, -1 every core.
    errors : what ``transform`` does with files it cannot read or decode: ``"raise"`` a
        ValueError naming them (after every file was tried), or give each a NaN row with a
        warning (``"nan"``, for models that accept missing values, such as LightGBM's). A family
        that fails on a file only logs a warning and leaves its own columns NaN, as in
        ``pipelines.extract``.
    verbose : show a progress bar of ``transform`` on stderr.
    """

    def __init__(self, preset: str = "default", families: dict | None = None,
                 modality: str = "image", n_jobs: int | None = None, errors: str = "raise",
                 verbose: bool = False):
        self.preset = preset
        self.families = families
        self.modality = modality
        self.n_jobs = n_jobs
        self.errors = errors
        self.verbose = verbose

    def _config(self) -> FeatureConfig:
        if self.families is not None:
            return FeatureConfig.from_mapping(self.modality, self.families)
        return FeatureConfig.from_preset(self.preset, self.modality)

    def fit(self, X=None, y=None):
        if self.errors not in ("raise", "nan"):
            raise ValueError(f"FeatureTransformer: errors must be 'raise' or 'nan', "
                             f"got {self.errors!r}")
        self.config_ = self._config()
        self.feature_names_out_ = np.asarray(cached_extractor(self.config_).names, dtype=object)
        self.n_features_in_ = 1
        return self

    def transform(self, X) -> np.ndarray:
        from joblib import Parallel, delayed, effective_n_jobs
        from sklearn.utils.validation import check_is_fitted
        from tqdm import tqdm

        check_is_fitted(self, "config_")
        paths = [str(p) for p in X]
        n_jobs = effective_n_jobs(self.n_jobs or 1)  # -1: every core
        size = max(1, -(-len(paths) // (4 * n_jobs)))
        chunks = [paths[i:i + size] for i in range(0, len(paths), size)]
        results = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(extract_files)(chunk, self.config_) for chunk in chunks)
        parts = []
        with tqdm(total=len(paths), unit="file", desc="features", disable=not self.verbose) as bar:
            for chunk, part in zip(chunks, results):
                parts.append(part)
                bar.update(len(chunk))
        if not parts:
            return np.empty((0, len(self.feature_names_out_)), dtype=np.float32)
        rows = np.vstack([chunk_rows for chunk_rows, _ in parts])
        message = unreadable_files_message(
            paths, rows, [error for _, chunk_errors in parts for error in chunk_errors])
        if message and self.errors == "raise":
            raise ValueError(message + " (errors='nan' gives them NaN rows instead)")
        if message:
            warnings.warn(message + "; their rows are NaN", stacklevel=2)
        return rows

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        from sklearn.utils.validation import check_is_fitted
        check_is_fitted(self, "config_")
        return self.feature_names_out_
