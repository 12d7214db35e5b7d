"""CopyRect encoding (rfbproto "CopyRect Encoding"): the client copies from its own framebuffer."""

from __future__ import annotations

import struct


def encode(src_x: int, src_y: int) -> bytes:
    return struct.pack(">HH", src_x, src_y)


def decode(payload: bytes) -> tuple[int, int]:
    src_x, src_y = struct.unpack(">HH", payload)
    return int(src_x), int(src_y)
