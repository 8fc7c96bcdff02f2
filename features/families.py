"""Imports every family module so that each registers itself in ``features.registry``."""
# Image families.
from features import spectrum, dct, colour, compression, texture, residual  # noqa: F401
