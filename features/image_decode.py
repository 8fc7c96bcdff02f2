"""Decode an image file into an RGB uint8 array, once, with a decompression-bomb limit.

Every family works on the decoded array; compression metadata (quantisation tables, file size) is
deliberately not passed on, so it cannot become a feature by accident (see the data README's label
leaks). Grayscale, RGBA, 16-bit and CMYK inputs are converted to 8-bit RGB; EXIF orientation is
applied, as a viewer would show the image.

Only the raster formats in ``PILLOW_FORMATS`` are accepted: Pillow would otherwise open, for
example, an EPS file renamed ``.jpg`` and hand it to Ghostscript, an interpreter that untrusted
files must never reach.
"""
from __future__ import annotations

import io
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 64_000_000
MIN_SIDE = 8
PILLOW_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF", "PPM")
JPEG_START_OF_SCAN, JPEG_END_OF_IMAGE = 0xDA, b"\xff\xd9"
_PILLOW_LIMIT = threading.Lock()


class ImageDecodeError(ValueError):
    """A file that cannot be decoded into an image; the message names the file."""


def read_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ImageDecodeError(f"{path}: cannot read file ({error.strerror or error})") from error


@contextmanager
def _open_with_pillow(data: bytes) -> Iterator[Image.Image]:
    # Pillow's own bomb check (a process-wide setting, fixed near 179 Mpixels) would make a
    # max_pixels above it unusable and hide ours behind its message: our limit is applied to the
    # header instead, so Pillow's is lifted while the header is read, under a lock.
    with _PILLOW_LIMIT:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            image = Image.open(io.BytesIO(data), formats=PILLOW_FORMATS)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    with image:
        yield image


def image_size(data: bytes, name: str) -> tuple[int, int]:
    """(width, height) from the header alone, before any pixel is decoded."""
    if not data:
        raise ImageDecodeError(f"{name}: empty file")
    try:
        with _open_with_pillow(data) as image:
            return image.size
    except UnidentifiedImageError as error:
        raise ImageDecodeError(f"{name}: not an image in a supported format "
                               f"({', '.join(PILLOW_FORMATS)})") from error
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageDecodeError(f"{name}: unreadable image header ({error})") from error


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
    if data[:2] == b"\xff\xd8" and not _jpeg_has_end(data):
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


def _jpeg_has_end(data: bytes) -> bool:
    """Whether an end-of-image marker follows the first scan.

    The header segments are skipped by their lengths, so an EXIF thumbnail's own end marker does
    not count, and bytes appended after the end (camera trailers) do not hide it.
    """
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
        elif marker == JPEG_START_OF_SCAN:
            break
        else:
            position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    return data.find(JPEG_END_OF_IMAGE, position) != -1


def _decode_with_pillow(data: bytes, name: str) -> np.ndarray:
    # OpenCV refuses some valid files (e.g. CMYK variants, palette PNGs); Pillow is the fallback.
    try:
        with _open_with_pillow(data) as image:
            image.load()
            rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageDecodeError(f"{name}: truncated or corrupt image ({error})") from error
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def load_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read and decode one file (see ``decode_image``)."""
    return decode_image(read_bytes(path), name=str(path), max_pixels=max_pixels)
