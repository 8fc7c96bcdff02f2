"""The registry's promises about every family and preset, checked on all of them."""
import inspect
import re

import pytest

from features.registry import COSTS, FeatureConfig, families

PRESETS = {"image": ("minimal", "default", "full"), "audio": ("minimal", "default", "full"),
           "clip": ("minimal", "default")}


@pytest.mark.parametrize("family", families(), ids=lambda f: f.name)
def test_every_family_states_its_cost_and_cites_its_source(family):
    doc = inspect.getdoc(family.function) or ""
    assert family.cost in COSTS
    assert family.summary, f"{family.name}: no one-line summary"
    # A feature is defined by a publication: the docstring names it, with its year.
    assert re.search(r"Reference", doc) and re.search(r"\b(19|20)\d\d\b", doc), family.name


@pytest.mark.parametrize("modality, preset",
                         [(m, p) for m, presets in PRESETS.items() for p in presets])
def test_every_preset_loads(modality, preset):
    assert FeatureConfig.from_preset(preset, modality).families


def test_compression_metadata_is_kept_out_of_the_default_image_preset():
    # It reads how a file was saved (quantisation tables, bytes per pixel), not how it was made.
    chosen = {family.name for family, _ in FeatureConfig.from_preset("default").items()}
    assert "compression" not in chosen
    assert "compression" in {f.name for f in families("image")}
