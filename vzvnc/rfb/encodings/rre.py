"""RRE encoding (rfbproto "RRE Encoding"): a background and solid subrectangles.

The background is the rectangle's most common colour; every other pixel is
covered by subrectangles of one colour each, found with numpy by
``common.find_subrects`` (runs in each row, stacked while the rows below
repeat them, so a glyph's stems are one subrectangle each). RRE has no other
way to send pixels, so noisy content costs ``bytesPerPixel + 8`` bytes a run;
clients that offer better encodings get those.
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt

from vzvnc.rfb.constants import Encoding
from vzvnc.rfb.encodings.common import (
    SingleRectEncoder,
    find_subrects,
    most_common,
    pixel_values,
    wire_dtype,
)
from vzvnc.rfb.pixelformat import PixelFormat


class RREEncoder(SingleRectEncoder):
    """RRE; it keeps no state between rectangles."""

    encoding = int(Encoding.RRE)
    compress_level = 0

    def set_compress_level(self, level: int) -> None:
        """RRE has no compression to tune."""

    def encode(self, pixels: npt.NDArray[np.uint8], pixel_format: PixelFormat) -> bytes:
        values = pixel_values(pixels, pixel_format)
        dtype = wire_dtype(pixel_format)
        if values.size == 0:
            return struct.pack(">I", 0) + np.zeros(1, dtype=dtype).tobytes()
        background = most_common(values)
        subrects = find_subrects(values[None], np.array([background], dtype=np.uint32))
        count = subrects.tile.size
        records = np.zeros(count, dtype=[("pixel", dtype), ("geometry", ">u2", (4,))])
        records["pixel"] = subrects.value
        records["geometry"] = np.stack(
            (subrects.x, subrects.y, subrects.width, subrects.height), axis=1
        )
        head = struct.pack(">I", count) + np.array([background], dtype=dtype).tobytes()
        return head + records.tobytes()
