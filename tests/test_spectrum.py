import cv2
import numpy as np
import pytest

from features.context import ImageContext
from features.spectrum import (_rings, _spectrum_names, fft, hann_power_spectrum,
                               packed_dft_power, spectrum_values)

N_BINS = 32


def _features(image: np.ndarray, n_bins: int = N_BINS, n_bands: int = 4) -> dict[str, float]:
    image = image.astype(np.float32)
    values = spectrum_values(hann_power_spectrum(image), image.shape, n_bins, n_bands)
    return dict(zip(_spectrum_names(n_bins, n_bands), values.tolist()))


def _profile(features: dict[str, float], prefix: str = "", n_bins: int = N_BINS) -> np.ndarray:
    return np.array([features[f"{prefix}azimuthal__bin_{k}"] for k in range(n_bins)])


def _grey(image: np.ndarray) -> ImageContext:
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return ImageContext(np.dstack([pixels] * 3))


def _power_law_noise(size: int, exponent: float, seed: int) -> np.ndarray:
    """Gaussian noise whose power spectrum falls as 1 / f**exponent (periodic, no border jump)."""
    rng = np.random.default_rng(seed)
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    radius = np.hypot(fy, fx)
    radius[0, 0] = 1.0
    spectrum = np.fft.fft2(rng.normal(size=(size, size))) / radius ** (exponent / 2)
    return np.real(np.fft.ifft2(spectrum))


@pytest.mark.parametrize("ky, kx", [(0, 70), (70, 0), (40, 56), (10, 20)])
def test_sinusoid_peaks_in_the_ring_of_its_radius(ky, kx):
    size = 256
    y, x = np.mgrid[:size, :size]
    image = 128 + 100 * np.cos(2 * np.pi * (ky * y + kx * x) / size)
    # kx / size cycles per pixel is kx / (size / 2) of the Nyquist frequency (0.5 cycle / pixel).
    radius = np.hypot(ky, kx) / (size / 2)
    assert np.argmax(_profile(_features(image))) == int(radius * N_BINS)


def test_band_energy_of_a_sinusoid_lies_in_its_annulus():
    size = 256
    x = np.arange(size)
    high = _features(np.tile(100 * np.cos(2 * np.pi * 80 * x / size), (size, 1)))  # r = 0.625
    low = _features(np.tile(100 * np.cos(2 * np.pi * 20 * x / size), (size, 1)))   # r = 0.156
    assert high["band_energy__band_2"] > 0.999 and high["hf_ratio"] > 0.999
    assert low["band_energy__band_0"] > 0.999 and low["hf_ratio"] < 1e-3


def test_band_shares_sum_to_one_and_white_noise_fills_bands_by_area():
    noise = np.random.default_rng(0).normal(size=(256, 256))
    features = _features(noise, n_bands=4)
    bands = np.array([features[f"band_energy__band_{k}"] for k in range(4)])
    assert bands.sum() == pytest.approx(1.0)
    # A flat spectrum puts energy in proportion to the annulus areas: (k+1)^2 - k^2 over 16.
    np.testing.assert_allclose(bands, np.array([1, 3, 5, 7]) / 16, atol=0.01)
    assert features["hf_ratio"] == pytest.approx(0.75, abs=0.01)


def test_spectral_slope_of_white_noise_is_zero():
    noise = np.random.default_rng(1).normal(size=(256, 256))
    assert _features(noise)["spectral_slope"] == pytest.approx(0.0, abs=0.1)


@pytest.mark.parametrize("exponent", [1.0, 2.0, 3.0])
def test_spectral_slope_of_power_law_noise_is_minus_its_exponent(exponent):
    image = _power_law_noise(256, exponent, seed=2)
    assert _features(image)["spectral_slope"] == pytest.approx(-exponent, abs=0.1)


def test_slope_survives_8_bit_quantisation_of_a_natural_like_image():
    image = _power_law_noise(256, 2.0, seed=3)
    features = fft(_grey(128 + 40 * image / image.std()))
    assert features["y_full__spectral_slope"] == pytest.approx(-2.0, abs=0.15)


def test_profile_ignores_brightness_and_contrast():
    image = _power_law_noise(128, 2.0, seed=4)
    base = _profile(_features(image))
    # Equal up to the tiny power floor, which a 25 times larger power hides a little more.
    np.testing.assert_allclose(_profile(_features(10 + 5 * image)), base, atol=0.01)
    assert base.mean() == pytest.approx(0.0, abs=1e-9)


def test_constant_image_has_no_ac_energy():
    features = fft(ImageContext(np.full((64, 64, 3), 77, np.uint8)))
    bands = [v for k, v in features.items() if "band_energy" in k or "hf_ratio" in k]
    assert bands == [0.0] * len(bands)
    np.testing.assert_allclose(_profile(features, "y_full__"), 0.0, atol=1e-6)
    assert features["y_full__spectral_slope"] == pytest.approx(0.0, abs=1e-6)


def test_window_removes_the_border_jump_of_a_ramp():
    # A ramp is periodic-discontinuous: without a window its border jump leaks power into every
    # frequency as 1/f^2; tapered, almost all its energy stays in the lowest band.
    ramp = np.tile(np.linspace(0, 255, 256), (256, 1))
    assert _features(ramp)["band_energy__band_0"] > 0.999


def test_crop_region_sees_only_the_centre():
    rng = np.random.default_rng(5)
    image = 128 + rng.normal(0, 30, (128, 128))
    image[32:96, 32:96] = 128  # the centred crop (half the short side) is flat
    features = fft(_grey(image), crop=0.5)
    assert features["y_crop__hf_ratio"] == 0.0
    # The full image is mostly white noise: the annulus r >= 1/2 holds about 3/4 of the disc.
    assert features["y_full__hf_ratio"] == pytest.approx(0.75, abs=0.05)


def test_names_do_not_depend_on_image_size_and_values_are_finite():
    rng = np.random.default_rng(6)
    params = dict(channels=["y", "cr", "g"], n_bins=16, n_bands=3, crop=0.4)
    names = None
    for shape in [(64, 64, 3), (333, 517, 3), (8, 8, 3), (9, 7, 3)]:
        features = fft(ImageContext(rng.integers(0, 256, shape, dtype=np.uint8)), **params)
        assert names is None or list(features) == names
        names = list(features)
        assert np.isfinite(list(features.values())).all()
    assert len(names) == 3 * 2 * (16 + 3 + 2)
    assert "y_full__azimuthal__bin_15" in names and "g_crop__hf_ratio" in names
    assert "cr_full__band_energy__band_2" in names and "y_crop__spectral_slope" in names


@pytest.mark.parametrize("shape", [(6, 8), (7, 8), (6, 9), (7, 9), (2, 2), (1, 8), (8, 1), (1, 1),
                                   (64, 96)])
def test_packed_dft_power_is_the_squared_magnitude_of_the_half_plane_spectrum(shape):
    image = np.random.default_rng(8).normal(size=shape).astype(np.float32)
    expected = np.abs(np.fft.rfft2(image.astype(np.float64))) ** 2
    power = packed_dft_power(cv2.dft(image))
    assert power.shape == expected.shape
    np.testing.assert_allclose(power, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("height, width", [(16, 16), (15, 22)])
def test_ring_sums_count_every_full_plane_frequency_once(height, width):
    # Over the full (unshifted) frequency grid, count the frequencies of each ring k/8 <= r <
    # (k+1)/8 of the disc 0 < r < 1; summing ones over the half plane must give the same numbers.
    fy, fx = np.meshgrid(np.fft.fftfreq(height) * 2, np.fft.fftfreq(width) * 2, indexing="ij")
    radius = np.hypot(fy, fx)
    inside = (radius > 0) & (radius < 1)
    expected = np.bincount((radius[inside] * 8).astype(int), minlength=8)
    rings, size = _rings(height, width, 8)
    np.testing.assert_array_equal(rings @ np.ones(height * (width // 2 + 1)), expected)
    np.testing.assert_array_equal(size, expected)


def test_power_spectra_are_shared_through_the_context():
    ctx = ImageContext(np.random.default_rng(7).integers(0, 256, (64, 96, 3), dtype=np.uint8))
    fft(ctx)
    assert ("fft_power", "y", 0, 0, 64, 96) in ctx._shared
    assert ("fft_power", "y", 16, 32, 32, 32) in ctx._shared


@pytest.mark.parametrize("params", [dict(channels=["h"]), dict(channels=[]), dict(n_bins=1),
                                    dict(n_bands=0), dict(crop=0), dict(crop=1.5)])
def test_invalid_parameters_are_rejected(params):
    with pytest.raises(ValueError):
        fft(ImageContext(np.zeros((16, 16, 3), np.uint8)), **params)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1)])
def test_an_image_one_pixel_wide_is_refused_by_name(shape):
    # A one-pixel periodic Hann window is 0 everywhere: there is no spectrum to normalise.
    with pytest.raises(ValueError, match=rf"at least 2 x 2 pixels, got {shape[0]} x {shape[1]}"):
        fft(ImageContext(np.full((*shape, 3), 100, np.uint8)))


def test_the_smallest_image_gets_finite_features():
    rgb = np.array([[[0, 0, 0], [255, 255, 255]], [[255, 255, 255], [0, 0, 0]]], np.uint8)
    assert np.isfinite(list(fft(ImageContext(rgb)).values())).all()
