"""What produced an output: library versions, a fingerprint of the input data, and whether a
model's features were computed by this release's feature code."""
from __future__ import annotations

import hashlib
import logging
import platform
from importlib import metadata

import numpy as np

from features.registry import FEATURE_VERSION

log = logging.getLogger("pipelines.provenance")

PACKAGES = ("deepfake-forensics", "numpy", "numba", "scipy", "scikit-learn", "lightgbm", "xgboost",
            "opencv-python-headless", "scikit-image", "librosa", "av", "optuna", "pyarrow")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def data_fingerprint(names, targets=None) -> str:
    """SHA-256 (first 16 hex digits) of the sample names in order and their targets."""
    digest = hashlib.sha256("\n".join(names).encode())
    if targets is not None:
        digest.update(np.asarray(targets, dtype=np.int8).tobytes())
    return digest.hexdigest()[:16]


def warn_on_feature_version(manifest: dict) -> None:
    """Warn when the model was fitted on features another release computed: the names match
    (``check_features``) but some values may have moved, so its scores are not those it was
    validated with."""
    fitted = manifest.get("feature_version")
    if fitted != FEATURE_VERSION:
        origin = f"version {fitted}" if fitted is not None else \
            "a release that did not record its version"
        log.warning("the model was fitted on features of %s; this code computes version %d, "
                    "whose values may differ (benchmarks/RESULTS.md). Re-extract and re-fit "
                    "to score with the model as it was validated", origin, FEATURE_VERSION)
