"""Compression family ``compression``: JPEG quality and file size, for leak diagnosis only.

These numbers describe how a file was saved, not what it shows, so they must never be in a
default preset: in several public sets the two classes were saved with different settings (see
the data README), and a model would learn the settings. Use them to *measure* such leaks, e.g.
by checking how well they alone separate the classes.

The family needs the file's bytes, which an ``ImageContext`` does not hold: the extractor puts
them into the context as ``ctx._shared["file_bytes"]`` before calling the families.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from features.registry import register

# IJG (libjpeg) standard luminance quantisation table, ITU-T T.81 Annex K.1, row-major.
IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
])


def ijg_luminance_table(quality: int) -> np.ndarray:
    """The luminance table libjpeg writes for ``quality`` 1..100 (``jpeg_quality_scaling`` and
    ``jpeg_add_quant_table`` with baseline limits)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((IJG_LUMINANCE * scale + 50) // 100, 1, 255)


_IJG_TABLES = np.stack([ijg_luminance_table(q) for q in range(1, 101)])


def jpeg_quality_from_bytes(data: bytes) -> float:
    """IJG quality (1..100) whose scaled luminance table is closest to the file's.

    The luminance table is the file's first quantisation table (``Image.quantization[0]``, in
    row-major order). Closest means the smallest sum of absolute differences, so an IJG-encoded
    file gets its exact quality and another encoder the nearest IJG equivalent. Raises
    ``ValueError`` if ``data`` is not a JPEG.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            tables = getattr(image, "quantization", None) if image.format == "JPEG" else None
    except UnidentifiedImageError as error:
        raise ValueError("not an image file") from error
    if not tables:
        raise ValueError("not a JPEG file (no quantisation table)")
    luminance = np.asarray(tables[min(tables)], dtype=np.int64)
    distances = np.abs(_IJG_TABLES - luminance).sum(axis=1)
    return float(np.argmin(distances) + 1)


def _is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"  # SOI marker followed by another marker


def compression_features(data: bytes, shape: tuple[int, ...]) -> dict[str, float]:
    """``jpeg_quality`` (0 if not a JPEG), ``bytes_per_pixel`` and ``is_jpeg`` of a file.

    ``shape`` is the decoded image's shape, (H, W) or (H, W, C).
    """
    is_jpeg = _is_jpeg(data)
    return {
        "jpeg_quality": jpeg_quality_from_bytes(data) if is_jpeg else 0.0,
        "bytes_per_pixel": len(data) / float(shape[0] * shape[1]),
        "is_jpeg": float(is_jpeg),
    }


def _missing_file_bytes() -> bytes:
    raise KeyError(
        "the 'compression' family needs the raw file bytes in the context: the extractor must set "
        "ctx._shared['file_bytes'] before calling it (it is for leak diagnosis, not for presets)")


@register(name="compression", modality="image", cost="cheap")
def compression(ctx) -> dict[str, float]:
    """JPEG quality estimate, bytes per pixel and JPEG flag of the image's file (leak diagnosis).

    * ``jpeg_quality``: the IJG quality 1..100 whose standard luminance quantisation table,
      scaled as libjpeg does (``S = 5000 / q`` for ``q < 50``, else ``200 - 2 q``;
      ``T_q = clip(floor((T_50 * S + 50) / 100), 1, 255)``), is closest (L1) to the file's first
      table; 0 for a file that is not a JPEG.
    * ``bytes_per_pixel``: file size over the number of pixels.
    * ``is_jpeg``: 1 for a JPEG file, else 0.

    These describe the encoder settings, not the content: never use them in a default preset,
    only to diagnose compression leaks between classes. Needs ``ctx._shared["file_bytes"]``.

    Reference: Independent JPEG Group, libjpeg ``jcparam.c`` (``jpeg_quality_scaling``);
    ITU-T T.81 (1992), Annex K, Table K.1.
    """
    return compression_features(ctx.shared("file_bytes", _missing_file_bytes), ctx.shape)
