"""Decode an image file into an RGB uint8 array, once, with a decompression-bomb limit.

Every family works on the decoded array; compression metadata (quantisation tables, file size) is
deliberately not passed on, so it cannot become a feature by accident (see the data README's label
leaks). Grayscale, RGBA, 16-bit and CMYK inputs are converted to 8-bit RGB; EXIF orientation is
applied, as a viewer would show the image.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 64_000_000
MIN_SIDE = 8
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageDecodeError(ValueError):
    """A file that cannot be decoded into an image; the message names the file."""


def read_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ImageDecodeError(f"{path}: cannot read file ({error.strerror or error})") from error


def image_size(data: bytes, name: str) -> tuple[int, int]:
    """(width, height) from the header alone, before any pixel is decoded."""
    if not data:
        raise ImageDecodeError(f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb warning is replaced by our configurable limit below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise ImageDecodeError(f"{name}: not a readable image ({error})") from error


def decode_image(data: bytes, *, name: str = "<bytes>",
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``data`` to an (H, W, 3) uint8 RGB array.

    Raises
    ------
    ImageDecodeError
        Empty, truncated or unknown data; an image above ``max_pixels`` (decompression bomb) or
        with a side below ``MIN_SIDE`` pixels.
    """
    width, height = image_size(data, name)
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"{name}: {width}x{height} = {width * height:,} pixels exceeds the limit of "
            f"{max_pixels:,} (option max_pixels)")
    if min(width, height) < MIN_SIDE:
        raise ImageDecodeError(f"{name}: {width}x{height} is smaller than {MIN_SIDE}x{MIN_SIDE}")
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        # libjpeg fills a truncated JPEG with grey and only warns: treat it as the error it is.
        raise ImageDecodeError(f"{name}: truncated JPEG (no end-of-image marker)")
    buffer = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)  # 8-bit BGR; applies EXIF orientation
    if bgr is None:
        bgr = _decode_with_pillow(data, name)
    if bgr.shape[0] * bgr.shape[1] != width * height:
        raise ImageDecodeError(f"{name}: decoded size {bgr.shape[1]}x{bgr.shape[0]} does not "
                               f"match the header's {width}x{height}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _decode_with_pillow(data: bytes, name: str) -> np.ndarray:
    # OpenCV refuses some valid files (e.g. CMYK variants, palette PNGs); Pillow is the fallback.
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageDecodeError(f"{name}: truncated or corrupt image ({error})") from error
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def load_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read and decode one file (see ``decode_image``)."""
    return decode_image(read_bytes(path), name=str(path), max_pixels=max_pixels)
