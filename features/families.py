"""Imports every family module so that each registers itself in ``features.registry``."""
# Image families.
from features import spectrum, dct, colour, compression, texture, residual, face, blend  # noqa: F401
from features import layout, coherence, eyes, face_crop  # noqa: F401
# Audio-video clips.
from features import clip  # noqa: F401
# Audio families.
from features import mfcc, lfcc, spectral, prosody, ltas, modulation, fine_structure  # noqa: F401
