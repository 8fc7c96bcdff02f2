import cv2
import numpy as np
import pytest

from features.compression import (compression, compression_features, ijg_luminance_table,
                                  jpeg_quality_from_bytes)
from features.context import ImageContext


def _photo_like(height: int = 64, width: int = 96) -> np.ndarray:
    rng = np.random.default_rng(0)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3)).astype(np.uint8), (0, 0), 3)
    return np.clip(smooth.astype(int) * 3 - 250, 0, 255).astype(np.uint8)


def _encode(image: np.ndarray, extension: str, *params: int) -> bytes:
    ok, buffer = cv2.imencode(extension, image, list(params))
    assert ok
    return buffer.tobytes()


def test_ijg_table_at_quality_50_is_the_standard_table_and_100_is_all_ones():
    assert ijg_luminance_table(50)[:8].tolist() == [16, 11, 10, 16, 24, 40, 51, 61]
    assert ijg_luminance_table(100).tolist() == [1] * 64
    # Quality 25 doubles the table (S = 200): 16 -> (16 * 200 + 50) // 100 = 32.
    assert ijg_luminance_table(25)[0] == 32


@pytest.mark.parametrize("quality", [50, 75, 90])
def test_quality_of_an_opencv_jpeg_is_recovered(quality):
    data = _encode(_photo_like(), ".jpg", cv2.IMWRITE_JPEG_QUALITY, quality)
    assert jpeg_quality_from_bytes(data) == pytest.approx(quality, abs=2)


def test_quality_of_a_non_jpeg_is_an_error():
    with pytest.raises(ValueError):
        jpeg_quality_from_bytes(_encode(_photo_like(), ".png"))
    with pytest.raises(ValueError):
        jpeg_quality_from_bytes(b"definitely not an image")


def test_compression_features_of_jpeg_and_png():
    image = _photo_like(64, 96)
    jpeg = _encode(image, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 75)
    features = compression_features(jpeg, image.shape)
    assert features["is_jpeg"] == 1.0
    assert features["jpeg_quality"] == pytest.approx(75, abs=2)
    assert features["bytes_per_pixel"] == pytest.approx(len(jpeg) / (64 * 96))
    png = _encode(image, ".png")
    assert compression_features(png, image.shape[:2]) == {
        "jpeg_quality": 0.0, "bytes_per_pixel": len(png) / (64 * 96), "is_jpeg": 0.0}


def test_family_reads_the_file_bytes_from_the_context():
    image = _photo_like()
    ctx = ImageContext(image)
    ctx._shared["file_bytes"] = _encode(image, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 90)
    features = compression(ctx)
    assert list(features) == ["jpeg_quality", "bytes_per_pixel", "is_jpeg"]
    assert features["jpeg_quality"] == pytest.approx(90, abs=2)


def test_family_without_file_bytes_says_what_is_missing():
    with pytest.raises(KeyError, match="file_bytes"):
        compression(ImageContext(_photo_like()))
