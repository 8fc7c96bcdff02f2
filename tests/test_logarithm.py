"""natural_log: the logarithm to base e, in the caller's float type, in place when asked."""
import math

import numpy as np
import pytest

from features.logarithm import natural_log


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_natural_log_is_the_logarithm_to_base_e_within_float_precision(dtype):
    # Known values: ln 1 = 0, ln e = 1, ln 10^k = k ln 10, over the range of power spectra.
    exponents = np.arange(-30, 30, dtype=np.float64)
    values = np.concatenate([[1.0, math.e], 10.0 ** exponents]).astype(dtype)
    expected = np.concatenate([[0.0, 1.0], exponents * math.log(10.0)])
    result = natural_log(values.reshape(2, -1))  # a 2-D spectrogram-like block keeps its shape
    assert result.shape == (2, values.size // 2) and result.dtype == dtype
    tolerance = 4 * np.finfo(dtype).eps * np.maximum(np.abs(expected), 1.0)
    assert np.all(np.abs(result.ravel() - expected) <= tolerance)


def test_natural_log_of_integers_is_float64_and_of_nothing_is_empty():
    assert natural_log(np.array([1, 100])).dtype == np.float64
    assert np.allclose(natural_log(np.array([1, 100])), [0.0, math.log(100.0)], rtol=1e-12)
    assert natural_log(np.zeros((0, 4), np.float32)).shape == (0, 4)


def test_natural_log_writes_in_place_into_out():
    values = np.array([[1.0, math.e], [math.e ** 2, 10.0]], np.float32)
    result = natural_log(values, out=values)
    assert result is values
    assert np.allclose(values, [[0.0, 1.0], [2.0, math.log(10.0)]], rtol=0, atol=1e-6)


@pytest.mark.parametrize("out", [np.empty((2, 2), np.float64), np.empty(3, np.float32),
                                 np.empty((2, 4), np.float32)[:, ::2]])
def test_natural_log_refuses_an_out_it_could_not_fill_in_place(out):
    with pytest.raises(ValueError, match="out must be C-contiguous float32 of shape"):
        natural_log(np.ones((2, 2), np.float32), out=out)
