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
    def ycbcr(self) -> np.ndarray:
        """float32 (H, W, 3): Y, Cb, Cr in [0, 255] (ITU-R BT.601 full range, as JPEG)."""
        ycrcb = cv2.cvtColor(self.rgb, cv2.COLOR_RGB2YCrCb).astype(np.float32)
        return ycrcb[..., [0, 2, 1]]

    @cached_property
    def hsv(self) -> np.ndarray:
        """float32 (H, W, 3): hue in [0, 360), saturation and value in [0, 1]."""
        return cv2.cvtColor(self.rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)

    @cached_property
    def gray(self) -> np.ndarray:
        """float32 (H, W): luma Y in [0, 255]."""
        return np.ascontiguousarray(self.ycbcr[..., 0])

    def channel(self, name: str) -> np.ndarray:
        """One channel as a contiguous float32 (H, W) array, by name (see ``CHANNELS``)."""
        if name in ("y", "cb", "cr"):
            return self.shared(("channel", name),
                               lambda: np.ascontiguousarray(self.ycbcr[..., ("y", "cb", "cr").index(name)]))
        if name in ("h", "s", "v"):
            return self.shared(("channel", name),
                               lambda: np.ascontiguousarray(self.hsv[..., ("h", "s", "v").index(name)]))
        if name in ("r", "g", "b"):
            return self.shared(("channel", name),
                               lambda: self.rgb[..., ("r", "g", "b").index(name)].astype(np.float32))
        raise ValueError(f"unknown channel {name!r}; known: {CHANNELS}")

    def shared(self, key: Any, compute: Callable[[], Any]) -> Any:
        """Return the cached value for ``key``, computing it once with ``compute()``."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]
