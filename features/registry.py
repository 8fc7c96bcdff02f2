"""The feature registry: which families exist, what they cost, and which presets use them.

A *family* is a plain, keyword-only function of a per-sample context (``ImageContext`` or
``AudioContext``) returning an ordered ``dict`` of ``name -> float``. The registry prefixes each
name with the family name, so a column reads ``family__feature__param`` (tsfresh's convention),
for example ``fft__azimuthal__bin_17``. Names use ``[a-z0-9_]`` only, and a family's names depend
on its parameters only, never on the input, so a table's columns are known before extraction.

Presets are data (``configs/features/*.yaml``): a mapping ``family -> parameters``. Validation
rejects unknown families and unknown parameters instead of silently ignoring them.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

NAME_PATTERN = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$")
COLUMN_PATTERN = re.compile(r"^[a-z0-9_]+$")
COSTS = ("cheap", "moderate", "costly")
MODALITIES = ("image", "audio", "clip")
# A clip row holds image features of its frames and audio features of its track.
ACCEPTED_MODALITIES = {"clip": ("image", "audio", "clip")}
PRESET_DIR = Path(__file__).resolve().parent.parent / "configs" / "features"
# What the families compute, as one number, raised by any release that changes a family's values
# (not only its names). A configuration's fingerprint includes it, so a resumed extraction never
# mixes rows of two versions; tables and model bundles record it, and predict and evaluate warn
# when a model was fitted on another version's features. 1: until 2026-11-28; 2: the face box of
# the two-pass cascade scan (``features.face``); 3: ``coherence`` integrates σ >= 2 at half size.
FEATURE_VERSION = 3


class FeatureConfigError(ValueError):
    """A feature configuration names an unknown family, parameter or preset."""


@dataclass(frozen=True)
class Family:
    """One registered feature family."""

    name: str
    modality: str
    function: Callable[..., dict[str, float]]
    cost: str
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.function) or ""
        return doc.splitlines()[0] if doc else ""

    def resolve_params(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults overridden by ``params``; unknown keys are an error."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise FeatureConfigError(
                f"family '{self.name}' has no parameter(s) {unknown}; "
                f"known: {sorted(self.defaults)}")
        return {**self.defaults, **params}

    def compute(self, context: Any, params: Mapping[str, Any]) -> dict[str, float]:
        values = self.function(context, **params)
        return dict(zip(self.column_names(values), map(float, values.values())))

    def column_names(self, keys: Iterable[str]) -> list[str]:
        """Column names ``family__key`` of the keys a family returns."""
        return [f"{self.name}__{key}" for key in keys]


REGISTRY: dict[str, Family] = {}


def register(*, name: str, modality: str, cost: str) -> Callable:
    """Decorator registering a family; its defaults are its keyword-only parameters."""
    if not NAME_PATTERN.match(name):
        raise ValueError(f"family name {name!r} must match {NAME_PATTERN.pattern}")
    if modality not in MODALITIES or cost not in COSTS:
        raise ValueError(f"family {name!r}: modality must be in {MODALITIES}, cost in {COSTS}")

    def wrap(function: Callable) -> Callable:
        signature = inspect.signature(function)
        parameters = list(signature.parameters.values())
        if any(p.kind is not inspect.Parameter.KEYWORD_ONLY for p in parameters[1:]):
            raise TypeError(f"family {name!r}: parameters after the context must be keyword-only")
        defaults = {p.name: p.default for p in parameters[1:]}
        if name in REGISTRY:
            raise ValueError(f"family {name!r} is registered twice")
        REGISTRY[name] = Family(name, modality, function, cost, defaults)
        return function

    return wrap


def families(modality: str | None = None) -> list[Family]:
    _import_all()
    return [f for f in REGISTRY.values() if modality is None or f.modality == modality]


def get_family(name: str) -> Family:
    _import_all()
    if name not in REGISTRY:
        raise FeatureConfigError(f"unknown feature family {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name]


def _import_all() -> None:
    # Importing the family modules fills REGISTRY; kept lazy so `registry` has no import cycle.
    from features import families as _  # noqa: F401


@dataclass(frozen=True)
class FeatureConfig:
    """A validated, ordered choice of families with their full parameters."""

    modality: str
    families: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]

    @classmethod
    def from_mapping(cls, modality: str, mapping: Mapping[str, Any] | None) -> "FeatureConfig":
        if not mapping:
            raise FeatureConfigError("the feature configuration selects no family")
        chosen = []
        for name, params in mapping.items():
            family = get_family(name)
            if family.modality not in ACCEPTED_MODALITIES.get(modality, (modality,)):
                raise FeatureConfigError(
                    f"family {name!r} is for {family.modality}, not {modality}")
            if params is not None and not isinstance(params, Mapping):
                raise FeatureConfigError(f"parameters of family {name!r} must be a mapping")
            resolved = family.resolve_params(params)
            chosen.append((name, tuple(sorted((k, _freeze(v)) for k, v in resolved.items()))))
        return cls(modality, tuple(chosen))

    @classmethod
    def from_preset(cls, preset: str, modality: str = "image") -> "FeatureConfig":
        return cls.from_mapping(modality, load_preset(preset, modality))

    def to_mapping(self) -> dict[str, dict[str, Any]]:
        return {name: {k: _thaw(v) for k, v in params} for name, params in self.families}

    def fingerprint(self) -> str:
        """What the features of this configuration are: its families, their parameters and the
        code's ``FEATURE_VERSION``."""
        text = json.dumps({"modality": self.modality, "families": self.to_mapping(),
                           "feature_version": FEATURE_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def items(self) -> list[tuple[Family, dict[str, Any]]]:
        return [(get_family(name), {k: _thaw(v) for k, v in params})
                for name, params in self.families]


def load_preset(preset: str, modality: str = "image") -> dict[str, Any]:
    path = PRESET_DIR / f"{modality}_{preset}.yaml"
    if not path.is_file():
        known = sorted(p.stem.split("_", 1)[1] for p in PRESET_DIR.glob(f"{modality}_*.yaml"))
        raise FeatureConfigError(f"unknown {modality} preset {preset!r}; known: {known}")
    with open(path) as handle:
        data = yaml.safe_load(handle) or {}
    return data.get("families", data)


class FrozenMapping(tuple):
    """A mapping parameter (``face_crop``'s families) frozen for hashing: (key, value) pairs in
    key order."""


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return FrozenMapping(sorted(((key, _freeze(v)) for key, v in value.items()),
                                    key=lambda pair: str(pair[0])))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, FrozenMapping):
        return {key: _thaw(v) for key, v in value}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value
