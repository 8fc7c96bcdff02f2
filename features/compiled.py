"""Compiled loops: numba's ``njit``, with its on-disk cache wherever numba can write one.

The few loops that no NumPy or OpenCV call expresses in one pass (LBP patterns, 2 x 2 block sums,
layout cell sums, code counts, colour's Laplacian and correlation sums) are compiled with numba
and cached next to their module or in the user's cache folder, so each process loads them
instead of compiling them (3.5-5 s for the default preset on a 2-core AMD EPYC, against 0.5-0.8 s
to load them). A read-only install whose user has no writable home (containers run as another
user, Nix) gives numba no place for that cache, and ``njit(cache=True)`` then raises RuntimeError
as the module is imported; there the loops are compiled once per process instead.
``NUMBA_CACHE_DIR`` names a cache folder explicitly.
"""
from __future__ import annotations

from typing import Callable

import numba


def compiled(function: Callable) -> Callable:
    """``numba.njit(nogil=True)`` of ``function``, cached on disk when numba can find a place."""
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available for file ..."
        return numba.njit(nogil=True)(function)
