"""Face localisation shared by every family, and the ``face`` family describing where it is.

``largest_face(ctx)`` finds the largest frontal face with OpenCV's Viola-Jones Haar cascade and
caches it in the context (``ctx.shared("face", ...)``), so every family that looks at the face
(``blend``, ...) uses one detection per image. Detection runs on a small grey copy of the image:
the competition's images are face-centred, with faces from about a quarter to most of the short
side, so a 128-pixel copy keeps them far above the cascade's 24-pixel window and makes detection
a few milliseconds. When no face is found the box falls back to a fixed central square, flagged
``fallback=True``, so downstream features stay defined and a model can tell the two cases apart.

Reference: P. Viola, M. Jones, "Rapid Object Detection using a Boosted Cascade of Simple
Features", CVPR 2001; R. Lienhart, J. Maydt, "An Extended Set of Haar-like Features for Rapid
Object Detection", ICIP 2002 (the ``haarcascade_frontalface_default`` model).
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import cv2
import numpy as np

from features.context import ImageContext
from features.registry import register

CASCADE_FILE = "haarcascade_frontalface_default.xml"
DETECTION_SIDE = 128      # longest side of the grey copy the cascade scans, in pixels
SCALE_FACTOR = 1.2        # step between the cascade's window sizes
CASCADE_WINDOW = 24       # the frontal-face cascade's own window side, in pixels
MIN_NEIGHBOURS = 3        # overlapping detections needed to accept a face
MIN_FACE_FRACTION = 0.35  # smallest face searched, as a fraction of the short side (face sets:
#                           faces fill most of the frame; each smaller scale costs ~10% more)
FALLBACK_FRACTION = 0.6   # side of the central fallback square, as a fraction of the short side
# Faster settings were measured against these (200 images each of stylegan140k_small,
# yonsei_rff and lfw_faceswap, both classes): a 96-124 pixel copy, scale factor 1.25-1.4,
# minSize 0.45-0.5 or a maxSize, the alt/alt2/alt_tree cascades. Each saved 0.3-2 ms but moved
# the detection rate by 1 point or more, or the box to a mean IoU below 0.9, on some set (a
# 120-pixel copy passed on one sample and failed on a second), so detection stays as it is,
# apart from a first scan without the smallest window size (``detect_largest_face``), which
# keeps the rate. Scanning from coarser still (leaving out the two or three smallest sizes
# first) saved 0.9-1.9 ms more, but its boxes are larger and laundered lfw_faceswap lost 0.0025
# of out-of-fold AUC (benchmarks/RESULTS.md, "Face detection from coarse to fine").


class FaceBox(NamedTuple):
    """A face box in full-resolution pixel coordinates; ``fallback`` when no face was found."""

    x: int
    y: int
    w: int
    h: int
    fallback: bool


@lru_cache(maxsize=1)
def _face_cascade() -> cv2.CascadeClassifier:
    # Loaded once per process: parsing the XML model takes longer than a detection.
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE_FILE)
    if cascade.empty():
        raise RuntimeError(f"OpenCV could not load {CASCADE_FILE} from {cv2.data.haarcascades}")
    return cascade


def central_box(shape: tuple[int, int], fraction: float = FALLBACK_FRACTION) -> FaceBox:
    """The fallback: a centred square of side ``fraction`` times the short side (at least 1)."""
    height, width = shape
    side = max(1, int(round(fraction * min(height, width))))
    return FaceBox((width - side) // 2, (height - side) // 2, side, side, True)


def detect_largest_face(gray: np.ndarray) -> FaceBox | None:
    """The largest Haar-cascade face in a grey image (0..255), or None when there is none.

    The image is shrunk (area averaging) so its longest side is at most ``DETECTION_SIDE``;
    faces smaller than ``MIN_FACE_FRACTION`` of the short side are not searched. The cascade
    first scans without its smallest window size, where a scan costs most (every position of
    the largest shrunk copy), and scans all sizes only when that finds no face: an image has a
    face exactly when the full scan finds one, but the box is grouped from the larger windows
    alone when they suffice. The box is mapped back to the input's resolution and clipped to it.
    """
    height, width = gray.shape
    scale = min(1.0, DETECTION_SIDE / max(height, width))
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) \
        if scale < 1 else gray
    small = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    min_side = max(1, int(MIN_FACE_FRACTION * min(small.shape)))
    boxes = _cascade_boxes(small, _smallest_window_side(min_side) + 1)
    if len(boxes) == 0:
        boxes = _cascade_boxes(small, min_side)
    if len(boxes) == 0:
        return None
    x, y, w, h = max(np.asarray(boxes).tolist(), key=lambda box: box[2] * box[3])
    x0, y0 = max(0, int(round(x / scale))), max(0, int(round(y / scale)))
    x1, y1 = min(width, int(round((x + w) / scale))), min(height, int(round((y + h) / scale)))
    return FaceBox(x0, y0, x1 - x0, y1 - y0, False)


def _smallest_window_side(min_side: int) -> int:
    """Side of the smallest window the cascade scans with ``minSize = min_side``: OpenCV grows
    its 24-pixel window by factors ``SCALE_FACTOR ** k``, rounds each size and skips those
    below ``min_side``."""
    factor = 1.0
    while round(CASCADE_WINDOW * factor) < min_side:
        factor *= SCALE_FACTOR
    return round(CASCADE_WINDOW * factor)


def _cascade_boxes(small: np.ndarray, min_side: int) -> np.ndarray:
    return _face_cascade().detectMultiScale(small, scaleFactor=SCALE_FACTOR,
                                            minNeighbors=MIN_NEIGHBOURS,
                                            minSize=(min_side, min_side))


def largest_face(ctx: ImageContext) -> FaceBox:
    """The largest detected face, else the central fallback square; cached as ``"face"``."""
    return ctx.shared("face", lambda: detect_largest_face(ctx.gray) or central_box(ctx.shape))


@register(name="face", modality="image", cost="moderate")
def face(ctx: ImageContext) -> dict[str, float]:
    """Whether a face was found, and the size and position of the face box.

    On the box of ``largest_face`` (x, y, w, h) in an H x W image:

    * ``found``: 1 when the Haar cascade found a face, 0 when the box is the central fallback
      square (60% of the short side), so a summary can count the fallbacks;
    * ``width`` = w / W and ``height`` = h / H: the box's relative size;
    * ``centre_x`` = (x + w / 2) / W - 1/2 and ``centre_y`` = (y + h / 2) / H - 1/2: the offset
      of its centre from the image centre, in fractions of the image (0 for a centred face).

    Face swaps and face generators produce face-centred crops whose framing can differ from
    that of real photographs; these also tell a model how far to trust the region features.

    Reference: P. Viola, M. Jones, "Rapid Object Detection using a Boosted Cascade of Simple
    Features", CVPR 2001.
    """
    box = largest_face(ctx)
    height, width = ctx.shape
    return {
        "found": 0.0 if box.fallback else 1.0,
        "width": box.w / width,
        "height": box.h / height,
        "centre_x": (box.x + box.w / 2) / width - 0.5,
        "centre_y": (box.y + box.h / 2) / height - 0.5,
    }
