"""Encodings, one module each, and the choice among them (rfbproto "Encodings").

The client lists encodings in order of preference (SetEncodings); ``choose`` takes
the first pixel encoding we implement, falling back to Raw, which every client
must accept. CopyRect and pseudo-encodings are not pixel encodings: the update
builder uses them when the client listed them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np

from vzvnc.rfb.constants import Encoding
from vzvnc.rfb.encodings import raw
from vzvnc.rfb.pixelformat import PixelFormat


class PixelEncoder(Protocol):
    """Turns a framebuffer region into one rectangle's payload."""

    encoding: int

    def encode(self, pixels: np.ndarray, pixel_format: PixelFormat) -> bytes: ...


class RawEncoder:
    encoding = int(Encoding.RAW)

    def encode(self, pixels: np.ndarray, pixel_format: PixelFormat) -> bytes:
        return raw.encode(pixels, pixel_format)


def choose(client_encodings: Iterable[int]) -> PixelEncoder:
    """A fresh encoder (encoders may hold per-connection state) for the client's preference."""
    factories = {int(Encoding.RAW): RawEncoder}
    for encoding in client_encodings:
        factory = factories.get(encoding)
        if factory is not None:
            return factory()
    return RawEncoder()
