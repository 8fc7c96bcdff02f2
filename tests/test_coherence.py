import cv2
import numpy as np
import pytest

from features.coherence import coherence
from features.context import ImageContext

INTERIOR = [(r, c) for r in range(2, 14) for c in range(2, 14)]  # cells clear of the borders


def rgb_of_gray(gray):
    return np.repeat(np.clip(np.rint(gray), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def grating(size, period, angle_degrees=0.0):
    """A sinusoid varying along ``angle_degrees``: one orientation everywhere."""
    y, x = np.mgrid[:size, :size].astype(float)
    angle = np.radians(angle_degrees)
    return 128 + 60 * np.cos(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period)


def interior_mean(features, scale):
    return np.mean([features[f"s{scale}__cell_{r}_{c}"] for r, c in INTERIOR])


@pytest.mark.parametrize("angle", [0, 30, 75])
def test_a_grating_of_one_orientation_is_fully_coherent(angle):
    # Every gradient of a sinusoidal grating is parallel: λ2 = 0, so (λ1 - λ2) / (λ1 + λ2) = 1.
    out = coherence(ImageContext(rgb_of_gray(grating(256, 8, angle))))
    assert interior_mean(out, 0) == pytest.approx(1, abs=0.01)
    assert interior_mean(out, 1) == pytest.approx(1, abs=0.01)


def test_two_crossed_gratings_have_no_orientation():
    # cos(kx) + cos(ky): averaged over a window wider than the period, Jxx = Jyy = k²/2 and
    # Jxy = 0, so λ1 = λ2 and the coherence is 0.
    plaid = 128 + 0.5 * (grating(256, 8, 0) - 128) + 0.5 * (grating(256, 8, 90) - 128)
    out = coherence(ImageContext(rgb_of_gray(plaid)))
    assert interior_mean(out, 1) < 0.1
    assert interior_mean(out, 0) < interior_mean(coherence(
        ImageContext(rgb_of_gray(grating(256, 8, 0)))), 0) - 0.3


def test_a_flat_image_has_zero_coherence():
    out = coherence(ImageContext(rgb_of_gray(np.full((64, 64), 90.0))))
    assert max(out.values()) == pytest.approx(0, abs=1e-6)


def test_cells_keep_where_the_oriented_texture_is():
    rng = np.random.default_rng(0)
    gray = 128 + 40 * rng.standard_normal((256, 256))  # isotropic: no preferred orientation
    gray[:, :128] = grating(256, 8, 45)[:, :128]
    out = coherence(ImageContext(rgb_of_gray(gray)))
    left = np.mean([out[f"s1__cell_{r}_{c}"] for r in range(2, 14) for c in range(1, 7)])
    right = np.mean([out[f"s1__cell_{r}_{c}"] for r in range(2, 14) for c in range(9, 15)])
    assert left > 0.9
    assert right < 0.5


def test_scales_are_taken_on_the_shrunk_copy():
    # A 1,024-pixel grating of period 32 shrinks to the 256-pixel grating of period 8 (area
    # averaging keeps a sinusoid a sinusoid), so both give the same cells.
    large = coherence(ImageContext(rgb_of_gray(grating(1024, 32, 20))))
    small = coherence(ImageContext(rgb_of_gray(grating(256, 8, 20))))
    assert list(large) == list(small)
    np.testing.assert_allclose(list(large.values()), list(small.values()), atol=0.05)


def test_names_do_not_depend_on_size_and_tiny_images_are_finite():
    rng = np.random.default_rng(1)
    outs = [coherence(ImageContext(rng.integers(0, 256, shape, dtype=np.uint8)))
            for shape in ((64, 64, 3), (333, 517, 3), (6, 9, 3))]
    assert list(outs[0]) == list(outs[1]) == list(outs[2])
    assert len(outs[0]) == 2 * 16 * 16
    assert all(np.isfinite(list(out.values())).all() for out in outs)


@pytest.mark.parametrize("params", [{"grid": 0}, {"side": 0}, {"sigmas": ()},
                                    {"sigmas": (1.0, 0.0)}])
def test_invalid_parameters_are_rejected(params):
    with pytest.raises(ValueError):
        coherence(ImageContext(np.zeros((32, 32, 3), np.uint8)), **params)


def full_size_coherence(gray, sigma):
    """The definition at full size: Sobel gradients, their products smoothed by a Gaussian of
    ``sigma``, then (λ1 - λ2) / (λ1 + λ2 + ε) from the eigenvalues of each 2 x 2 tensor."""
    gray = gray.astype(np.float32)
    gx, gy = cv2.Sobel(gray, cv2.CV_64F, 1, 0, ksize=3), cv2.Sobel(gray, cv2.CV_64F, 0, 1, ksize=3)
    jxx, jyy, jxy = (cv2.GaussianBlur(p, (0, 0), sigma) for p in (gx * gx, gy * gy, gx * gy))
    tensors = np.stack([np.stack([jxx, jxy], -1), np.stack([jxy, jyy], -1)], -2)
    low, high = np.moveaxis(np.linalg.eigvalsh(tensors), -1, 0)
    return (high - low) / (high + low + 1e-3)


def test_large_scales_integrated_at_half_size_match_the_definition():
    # Noise smoothed into blobs and streaks of every orientation: coherence varies from cell to
    # cell. At σ = 3 the tensor is integrated on a half-size copy; its cell means stay within
    # a few hundredths of the full-size definition's, and follow them from cell to cell.
    gray = cv2.GaussianBlur(np.random.default_rng(4).normal(128, 40, (256, 256)), (0, 0), 1.5)
    out = coherence(ImageContext(rgb_of_gray(gray)), sigmas=(3.0,))
    cells = np.array([out[f"s0__cell_{r}_{c}"] for r in range(16) for c in range(16)])
    gray8 = np.clip(np.rint(gray), 0, 255)
    expected = cv2.resize(full_size_coherence(gray8, 3.0), (16, 16),
                          interpolation=cv2.INTER_AREA).ravel()
    assert np.abs(cells - expected).max() < 0.05
    assert np.corrcoef(cells, expected)[0, 1] > 0.99


def test_small_scales_follow_the_definition_at_full_size():
    gray = cv2.GaussianBlur(np.random.default_rng(5).normal(128, 40, (128, 128)), (0, 0), 1.0)
    out = coherence(ImageContext(rgb_of_gray(gray)), sigmas=(1.0,))
    cells = np.array([out[f"s0__cell_{r}_{c}"] for r in range(16) for c in range(16)])
    expected = cv2.resize(full_size_coherence(np.clip(np.rint(gray), 0, 255), 1.0), (16, 16),
                          interpolation=cv2.INTER_AREA).ravel()
    np.testing.assert_allclose(cells, expected, atol=1e-4)
