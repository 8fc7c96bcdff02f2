"""The model bundle: a folder that a user can receive and load without running code from it.

Layout::

    model/
      manifest.json   format, model kind, feature names in order (all that the extractor
                      produces), the model's features (the subset it uses, in its input order;
                      all of them when absent), feature configuration, versions, training
                      metrics, fallback score
      lightgbm.txt    LightGBM's own text model           (kind "lightgbm")
      stack/          each learner in its own safe format (kind "stack", see models.serialize)

Nothing is unpickled: LightGBM parses its text format, the stack loads JSON and library-native
model files. The manifest's feature list is compared with what the current code would extract
for the recorded configuration, so a bundle never silently receives shifted columns.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

FORMAT = "deepfake-forensics-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class BundleError(ValueError):
    """A bundle that is missing, malformed, or does not match the feature extractor."""


@dataclass(frozen=True)
class Bundle:
    folder: Path
    manifest: dict
    _predict: Callable[[np.ndarray], np.ndarray]

    @property
    def feature_names(self) -> list[str]:
        """Every feature the extractor produces for the bundle's configuration, in order."""
        return list(self.manifest["feature_names"])

    @property
    def model_features(self) -> list[str]:
        """The features the model uses, in its input order (a subset of ``feature_names``)."""
        return model_features(self.manifest)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of 'fake' for each row of ``X`` (columns in ``feature_names`` order)."""
        X = _matrix(X, len(self.feature_names))
        position = {name: j for j, name in enumerate(self.feature_names)}
        return self.predict_proba_used(X[:, [position[n] for n in self.model_features]])

    def predict_proba_used(self, X: np.ndarray) -> np.ndarray:
        """Probability of 'fake' for each row of ``X`` (columns in ``model_features`` order)."""
        return np.asarray(self._predict(_matrix(X, len(self.model_features))), dtype=np.float64)


def _matrix(X: np.ndarray, n_columns: int) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != n_columns:
        raise BundleError(f"expected {n_columns} feature columns, got "
                          f"{X.shape[1] if X.ndim == 2 else X.shape}")
    return X


def model_features(manifest: dict) -> list[str]:
    """The manifest's model features; bundles written before feature selection use them all."""
    return list(manifest.get("model_features", manifest["feature_names"]))


def write_bundle(folder: Path, manifest: dict, write_model: Callable[[Path], dict]) -> None:
    """Write a bundle atomically: build it in a temporary folder, then rename it into place.

    ``write_model(tmp_folder)`` writes the model files and returns the manifest's ``model`` entry.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model_entry = write_model(tmp)
        full = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest,
                "model": model_entry}
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2), encoding="utf-8")
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def lightgbm_writer(model) -> Callable[[Path], dict]:
    def write(folder: Path) -> dict:
        model.booster_.save_model(str(folder / "lightgbm.txt"))
        return {"kind": "lightgbm", "file": "lightgbm.txt"}
    return write


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{folder}: no {MANIFEST}; not a model bundle (option --model)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{path}: not valid JSON ({error})") from error
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format version {manifest.get('format_version')} "
                          f"is not supported (this version reads {FORMAT_VERSION})")
    for key in ("feature_names", "feature_config", "model"):
        if key not in manifest:
            raise BundleError(f"{path}: missing '{key}'")
    used = manifest.get("model_features")
    if used is not None and (not isinstance(used, list) or not used
                             or not all(isinstance(n, str) for n in used)
                             or len(set(used)) != len(used)
                             or not set(used) <= set(manifest["feature_names"])):
        raise BundleError(f"{path}: 'model_features' must be a non-empty list of distinct "
                          "names taken from 'feature_names'")
    return manifest


def load_bundle(folder: str | Path) -> Bundle:
    """Load a bundle; executes no code from it."""
    folder = Path(folder)
    if (folder / "model" / MANIFEST).is_file():  # a run folder was given
        folder = folder / "model"
    manifest = read_manifest(folder)
    kind = manifest["model"].get("kind")
    if kind == "lightgbm":
        predict = _load_lightgbm(folder / _inside(folder, manifest["model"]["file"]),
                                 len(model_features(manifest)))
    elif kind == "stack":
        from models.serialize import load_stack
        stack = load_stack(folder / _inside(folder, manifest["model"]["folder"]))
        predict = lambda X: stack.predict_proba(X)[:, 1]  # noqa: E731
    else:
        raise BundleError(f"{folder}: unknown model kind {kind!r}")
    return Bundle(folder, manifest, predict)


def _inside(folder: Path, name: Any) -> str:
    if not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts:
        raise BundleError(f"{folder}: model file name {name!r} leaves the bundle")
    return name


def _load_lightgbm(path: Path, n_features: int) -> Callable[[np.ndarray], np.ndarray]:
    import lightgbm
    if not path.is_file():
        raise BundleError(f"{path}: model file missing")
    try:
        booster = lightgbm.Booster(model_file=str(path))
    except lightgbm.basic.LightGBMError as error:
        raise BundleError(f"{path}: not a LightGBM text model ({error})") from error
    if booster.num_feature() != n_features:
        raise BundleError(f"{path}: the model takes {booster.num_feature()} features but the "
                          f"manifest lists {n_features} model features")
    return lambda X: booster.predict(X)


def check_features(manifest: dict, extractor_names: list[str] | tuple[str, ...]) -> None:
    """Refuse a bundle whose feature list differs from what the extractor will produce."""
    expected = list(manifest["feature_names"])
    actual = list(extractor_names)
    if expected == actual:
        return
    missing = [n for n in expected if n not in set(actual)]
    extra = [n for n in actual if n not in set(expected)]
    detail = (f"{len(missing)} missing (e.g. {missing[:3]}), {len(extra)} unexpected "
              f"(e.g. {extra[:3]})" if missing or extra else "same names in another order")
    raise BundleError(f"the bundle expects {len(expected)} features but the extractor's "
                      f"configuration gives {len(actual)}: {detail}. Re-extract and re-fit with "
                      "this version, or predict with the feature configuration of the bundle")
