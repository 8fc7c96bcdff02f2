"""What produced an output: library versions and a fingerprint of the input data."""
from __future__ import annotations

import hashlib
import platform
from importlib import metadata

import numpy as np

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
