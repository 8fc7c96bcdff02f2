"""Per-sample contexts: decode once, compute shared transforms once, let every family reuse them.

Families receive a context instead of a raw array so that, for example, the YCbCr conversion, the
grey-level FFT or a high-pass residual is computed once per image however many families use it.
"""
from __future__ import annotations

from functools import cached_property
from typing import Any, Callable

import cv2
import numpy as np

CHANNELS = ("y", "cb", "cr", "h", "s", "v", "r", "g", "b")
# Full scale of each channel as ``ImageContext.channel`` returns it; the rest are 0..255.
_FULL_SCALE = {"h": 360.0, "s": 1.0, "v": 1.0}
_DIFFERENCE_CHANNELS = {"r_g": ("r", "g"), "g_b": ("g", "b"), "b_r": ("b", "r")}
# Plane index of each channel in ``ycrcb8`` (OpenCV's order: Y, Cr, Cb) and in ``rgb_planes``.
YCRCB_PLANES = {"y": 0, "cr": 1, "cb": 2}
RGB_PLANES = {"r": 0, "g": 1, "b": 2}


class ImageContext:
    """A decoded RGB image and its lazily computed, cached transforms.

    Parameters
    ----------
    rgb : ndarray of shape (H, W, 3), uint8
        The image in RGB order.
    """

    def __init__(self, rgb: np.ndarray):
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 uint8 RGB array, got {rgb.dtype} {rgb.shape}")
        self.rgb = rgb
        self._shared: dict[Any, Any] = {}

    @property
    def shape(self) -> tuple[int, int]:
        return self.rgb.shape[:2]

    @cached_property
    def ycrcb8(self) -> np.ndarray:
        """uint8 (H, W, 3): OpenCV's 8-bit Y, Cr, Cb (ITU-R BT.601 full range, as JPEG), rounded."""
        return cv2.cvtColor(self.rgb, cv2.COLOR_RGB2YCrCb)

    @cached_property
    def ycrcb_planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """uint8 (H, W) contiguous Y, Cr and Cb planes of ``ycrcb8``."""
        return tuple(cv2.split(self.ycrcb8))

    @cached_property
    def rgb_planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """uint8 (H, W) contiguous R, G and B planes."""
        return tuple(cv2.split(self.rgb))

    @cached_property
    def rgb_extremes(self) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (H, W) per-pixel max(R, G, B) and min(R, G, B)."""
        red, green, blue = self.rgb_planes
        return cv2.max(cv2.max(red, green), blue), cv2.min(cv2.min(red, green), blue)

    @cached_property
    def hsv(self) -> np.ndarray:
        """float32 (H, W, 3): hue in [0, 360), saturation and value in [0, 1]."""
        return cv2.cvtColor(self.rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)

    @cached_property
    def gray(self) -> np.ndarray:
        """float32 (H, W): luma Y in [0, 255]."""
        return self.channel("y")

    def channel(self, name: str) -> np.ndarray:
        """One channel as a contiguous float32 (H, W) array, by name (see ``CHANNELS``)."""
        if name not in CHANNELS:
            raise ValueError(f"unknown channel {name!r}; known: {CHANNELS}")
        return self.shared(("channel", name), lambda: self._channel(name))

    def _channel(self, name: str) -> np.ndarray:
        # Single planes straight from the 8-bit data: a full float conversion of all three
        # channels (and OpenCV's float HSV) costs several times more than the planes used.
        plane = self.plane_8bit(name)
        if plane is not None:
            return plane.astype(np.float32)
        if name == "h":
            return np.ascontiguousarray(self.hsv[..., 0])
        brightest, darkest = self.rgb_extremes
        if name == "v":
            return brightest.astype(np.float32) * np.float32(1 / 255)
        # HSV saturation (max - min) / max, 0 where max = 0, as OpenCV defines it: one float32
        # division of the 8-bit planes (0 / 0 gives NaN, patched to 0), no float temporaries.
        saturation = cv2.divide(cv2.subtract(brightest, darkest), brightest, dtype=cv2.CV_32F)
        return cv2.patchNaNs(saturation, 0)

    def plane_8bit(self, name: str) -> np.ndarray | None:
        """A channel's uint8 (H, W) plane if it has one (y, cb, cr, r, g, b), else None.

        ``channel`` and ``channel_8bit`` hold the same values as float32; integer-exact steps
        (comparisons, differences) can run on this quarter-size copy instead.
        """
        if name in YCRCB_PLANES:
            return self.ycrcb_planes[YCRCB_PLANES[name]]
        if name in RGB_PLANES:
            return self.rgb_planes[RGB_PLANES[name]]
        return None

    def channel_8bit(self, name: str) -> np.ndarray:
        """A channel as float32 on the 0..255 scale of 8-bit grey steps (cached).

        Besides ``CHANNELS``, the inter-channel differences ``r_g``, ``g_b`` and ``b_r`` (range
        -255..255) are available. Texture and residual codes count steps of this scale.
        """
        def compute() -> np.ndarray:
            if name in _DIFFERENCE_CHANNELS:
                first, second = _DIFFERENCE_CHANNELS[name]
                return cv2.subtract(self.channel(first), self.channel(second))
            scale = _FULL_SCALE.get(name)
            return self.channel(name) if scale is None else \
                self.channel(name) * np.float32(255 / scale)

        return self.shared(("channel_8bit", name), compute)

    def shared(self, key: Any, compute: Callable[[], Any]) -> Any:
        """Return the cached value for ``key``, computing it once with ``compute()``."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]
