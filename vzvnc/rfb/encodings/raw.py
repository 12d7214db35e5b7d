"""Raw encoding (rfbproto "Raw Encoding"): pixels in the client's format, row-major."""

from __future__ import annotations

import numpy as np

from vzvnc.rfb.pixelformat import PixelFormat


def encode(pixels: np.ndarray, pixel_format: PixelFormat) -> bytes:
    return pixel_format.convert(pixels)


def decode(data: bytes, width: int, height: int, pixel_format: PixelFormat) -> np.ndarray:
    """The inverse, for tests: wire bytes back to (h, w, 4) BGRX."""
    return pixel_format.to_native(data, width, height)
