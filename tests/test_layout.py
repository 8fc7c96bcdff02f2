import numpy as np
import pytest

from features.context import ImageContext
from features.layout import cell_mean_std, layout, noise_map, sharpness_map


def rgb_of_gray(gray):
    return np.repeat(np.asarray(gray, dtype=np.uint8)[..., None], 3, axis=2)


def test_constant_image_has_its_value_and_no_spread():
    out = layout(ImageContext(rgb_of_gray(np.full((64, 64), 100))), grid=4)
    assert all(out[f"y__mean__cell_{r}_{c}"] == pytest.approx(100, abs=0.5)
               for r in range(4) for c in range(4))
    assert max(v for k, v in out.items() if "__std__" in k) == pytest.approx(0, abs=1e-3)
    assert max(v for k, v in out.items() if k.startswith(("sharpness", "noise"))) == \
        pytest.approx(0, abs=1e-3)


def test_cells_follow_the_image_layout():
    gray = np.full((64, 64), 50)
    gray[:, :32] = 200  # bright left half
    out = layout(ImageContext(rgb_of_gray(gray)), grid=2, maps=("y",))
    assert out["y__mean__cell_0_0"] == pytest.approx(200, abs=1)
    assert out["y__mean__cell_0_1"] == pytest.approx(50, abs=1)


def test_noise_energy_sits_in_the_noisy_cell():
    gray = np.full((64, 64), 128)
    gray[32:, 32:] += np.random.default_rng(0).integers(-20, 21, size=(32, 32))
    out = layout(ImageContext(rgb_of_gray(gray)), grid=2, maps=("noise",))
    others = [out[f"noise__mean__cell_{r}_{c}"] for r, c in ((0, 0), (0, 1), (1, 0))]
    assert out["noise__mean__cell_1_1"] > 10 * max(others)


def test_cell_statistics_match_numpy_on_exact_cells():
    values = np.random.default_rng(1).normal(size=(40, 60)).astype(np.float32)
    mean, std = cell_mean_std(values, 4)
    blocks = values.reshape(4, 10, 4, 15).transpose(0, 2, 1, 3).reshape(4, 4, -1)
    np.testing.assert_allclose(mean, blocks.mean(axis=2), atol=1e-5)
    np.testing.assert_allclose(std, blocks.std(axis=2), atol=1e-4)


def test_names_do_not_depend_on_size_and_tiny_images_are_finite():
    rng = np.random.default_rng(2)
    small = layout(ImageContext(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    large = layout(ImageContext(rng.integers(0, 256, (333, 517, 3), dtype=np.uint8)))
    tiny = layout(ImageContext(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)))
    assert list(small) == list(large) == list(tiny)
    assert len(small) == 6 * 2 * 16 * 16
    assert np.all(np.isfinite(list(tiny.values())))


def test_bad_parameters_are_errors():
    context = ImageContext(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="grid must be >= 1"):
        layout(context, grid=0)
    with pytest.raises(ValueError, match="unknown layout maps"):
        layout(context, maps=("y", "depth"))


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_cells_that_split_pixels_weigh_them_by_area(dtype):
    # 25 / 2: cells end mid-pixel. Doubling every pixel into a 2x2 block makes the cells whole
    # (5 x 5 blocks of the 10 x 10 copy) without changing what fraction of each pixel they hold.
    values = np.random.default_rng(3).integers(0, 256, (25, 15)).astype(dtype)
    mean, std = cell_mean_std(values, 2)
    doubled = np.repeat(np.repeat(values.astype(np.float64), 2, axis=0), 2, axis=1)
    blocks = doubled.reshape(2, 25, 2, 15).transpose(0, 2, 1, 3).reshape(2, 2, -1)
    np.testing.assert_allclose(mean, blocks.mean(axis=2), rtol=1e-12)
    np.testing.assert_allclose(std, blocks.std(axis=2), rtol=1e-9)


def test_sharpness_and_noise_of_an_impulse_by_hand():
    gray = np.zeros((5, 5), np.float32)
    gray[2, 2] = 9
    out = np.full_like(gray, np.nan)  # stale contents must be overwritten
    sharpness = sharpness_map(gray, out)
    assert sharpness is out
    assert sharpness[2, 2] == 36 and sharpness[1, 2] == sharpness[2, 1] == 9  # |-4 * 9|, |1 * 9|
    assert sharpness[1, 1] == 0 and sharpness[0, 0] == 0
    noise = noise_map(gray, np.full_like(gray, np.nan))
    # box3 is 1 at the impulse and its 8 neighbours: residuals 9 - 1 = 8 and 0 - 1 = -1.
    assert noise[2, 2] == pytest.approx(64) and noise[1, 1] == pytest.approx(1)
    assert noise[0, 0] == 0
