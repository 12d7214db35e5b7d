"""zlib encoding (rfbproto "zlib Encoding"): Raw pixels through the connection's zlib stream.

One stream per connection, rectangles compressed in order, each sent as a
``U32`` length and the compressed bytes. Bits no channel uses are sent as 0.
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt

from vzvnc.rfb.constants import Encoding
from vzvnc.rfb.encodings.common import (
    ZlibStreamEncoder,
    pixel_values,
    wire_bytes,
)
from vzvnc.rfb.pixelformat import PixelFormat


class ZlibEncoder(ZlibStreamEncoder):
    """zlib with this connection's stream."""

    encoding = int(Encoding.ZLIB)

    def encode(self, pixels: npt.NDArray[np.uint8], pixel_format: PixelFormat) -> bytes:
        data = self._stream.compress(wire_bytes(pixel_values(pixels, pixel_format), pixel_format))
        return struct.pack(">I", len(data)) + data
