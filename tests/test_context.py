import cv2
import numpy as np
import pytest

from features.context import CHANNELS, ImageContext


@pytest.fixture
def rgb():
    image = np.random.default_rng(3).integers(0, 256, (31, 45, 3), dtype=np.uint8)
    image[0, :5] = 0  # black pixels: saturation is defined as 0 where max(R, G, B) = 0
    return image


def test_channels_match_opencvs_float_hsv_and_jpeg_ycbcr(rgb):
    hsv = cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2HSV)
    y, cr, cb = np.moveaxis(cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb).astype(np.float32), 2, 0)
    context = ImageContext(rgb)
    expected = {"h": hsv[..., 0], "s": hsv[..., 1], "v": hsv[..., 2], "y": y, "cb": cb, "cr": cr,
                **{name: rgb[..., i].astype(np.float32) for i, name in enumerate("rgb")}}
    for name in CHANNELS:
        channel = context.channel(name)
        assert channel.dtype == np.float32 and channel.flags.c_contiguous
        np.testing.assert_allclose(channel, expected[name], atol=1e-5, err_msg=name)
    assert context.channel("s")[0, 0] == 0


def test_rgb_extremes_are_the_per_pixel_max_and_min(rgb):
    brightest, darkest = ImageContext(rgb).rgb_extremes
    np.testing.assert_array_equal(brightest, rgb.max(axis=2))
    np.testing.assert_array_equal(darkest, rgb.min(axis=2))


def test_unknown_channel_is_named_in_the_error(rgb):
    with pytest.raises(ValueError, match="'q'"):
        ImageContext(rgb).channel("q")


def test_8bit_planes_are_the_jpeg_ycbcr_and_rgb_planes(rgb):
    y, cr, cb = np.moveaxis(cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb), 2, 0)
    context = ImageContext(rgb)
    expected = {"y": y, "cb": cb, "cr": cr, "r": rgb[..., 0], "g": rgb[..., 1], "b": rgb[..., 2]}
    for name, plane in expected.items():
        got = context.plane_8bit(name)
        assert got.dtype == np.uint8 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, plane, err_msg=name)
    assert all(context.plane_8bit(name) is None for name in ("h", "s", "v", "r_g"))
