import numba
import numpy as np
import pytest
from numba.core import caching

from features.compiled import compiled


def running_sum(values):
    total = 0.0
    for value in values:
        total += value
    return total


def test_a_compiled_loop_computes_what_python_does():
    values = np.arange(10.0)
    assert compiled(running_sum)(values) == 45.0


def test_without_a_writable_cache_folder_the_loop_is_compiled_per_process(monkeypatch):
    # numba finds no place for its cache (read-only install, no writable home): njit with
    # cache=True raises as the module is imported; compiled() must still give a working loop.
    monkeypatch.setattr(numba.core.config, "CACHE_LOCATOR_CLASSES", "", raising=False)
    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])
    with pytest.raises(RuntimeError, match="no locator available"):
        numba.njit(cache=True)(running_sum)
    assert compiled(running_sum)(np.arange(4.0)) == 6.0
