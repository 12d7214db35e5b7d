"""Raw encoding (rfbproto "Raw Encoding"): pixels in the client's format, row-major.

Bits of a ``PIXEL`` that no colour channel uses are sent as ones, not zeros.
rfbproto leaves them undefined, but noVNC takes the spare byte of its 32-bit
format as alpha, and its Raw decoder (1.3, as in Debian 12) makes only the first
chunk of each rectangle opaque: with zeros there, the rest of a large Raw
rectangle was drawn transparent.
"""

from __future__ import annotations

import numpy as np

from vzvnc.rfb.encodings.common import used_bits, wire_dtype
from vzvnc.rfb.pixelformat import PixelFormat


def encode(pixels: np.ndarray, pixel_format: PixelFormat) -> bytes:
    data = pixel_format.convert(pixels)
    spare = ~used_bits(pixel_format) & ((1 << pixel_format.bits_per_pixel) - 1)
    if not spare or not data:
        return data
    words = np.frombuffer(data, dtype=wire_dtype(pixel_format)) | spare
    return words.astype(wire_dtype(pixel_format), copy=False).tobytes()


def decode(data: bytes, width: int, height: int, pixel_format: PixelFormat) -> np.ndarray:
    """The inverse, for tests: wire bytes back to (h, w, 4) BGRX."""
    return pixel_format.to_native(data, width, height)
