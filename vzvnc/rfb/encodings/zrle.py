"""ZRLE encoding (rfbproto "ZRLE Encoding"): 64x64 tiles, palettes and runs, one zlib stream.

Each tile is sent in whichever subencoding is smallest before compression,
computed exactly from the tile's colours and runs: solid (1), packed palette
(2-16 colours at 1, 2 or 4 bits per pixel, rows padded to a byte), palette RLE
(2-127 colours), plain RLE, or raw ``CPIXEL``s. A terminal tile is one or two
colours per glyph cell, so it is usually a 1-bit packed palette or palette RLE.
Pixels are ``CPIXEL``s (rule in ``common``). The whole rectangle is compressed
with the connection's single zlib stream and sent as a ``U32`` length and the
data.
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt

from vzvnc.rfb.constants import Encoding
from vzvnc.rfb.encodings.common import (
    PixelPacker,
    ZlibStreamEncoder,
    cpixel_packer,
    pixel_values,
    rle_bytes,
    rle_length_bytes,
    run_lengths,
)
from vzvnc.rfb.pixelformat import PixelFormat

TILE = 64

_SOLID = 1
_PLAIN_RLE = 128


def _palette_bits(colours: int) -> int:
    return 1 if colours == 2 else 2 if colours <= 4 else 4


def _pack_indices(indices: npt.NDArray[np.uint8], bits: int) -> bytes:
    """Row-padded big-endian bit fields (rfbproto "ZRLE Encoding", packed palette)."""
    height, width = indices.shape
    per_byte = 8 // bits
    padded_width = -(-width // per_byte) * per_byte
    if padded_width != width:
        grown = np.zeros((height, padded_width), dtype=np.uint8)
        grown[:, :width] = indices
        indices = grown
    if bits == 1:
        return np.packbits(indices.astype(np.bool_), axis=1).tobytes()
    groups = indices.reshape(height, padded_width // per_byte, per_byte)
    packed = np.zeros(groups.shape[:2], dtype=np.uint8)
    for slot in range(per_byte):
        packed |= groups[:, :, slot] << np.uint8(8 - bits * (slot + 1))
    return packed.tobytes()


def encode_tile(tile: npt.NDArray[np.uint32], packer: PixelPacker) -> bytes:
    """One tile's subencoding byte and data (uncompressed)."""
    height, width = tile.shape
    flat = tile.reshape(-1)
    first = flat[0]
    differs = flat != first
    if not differs.any():
        return bytes((_SOLID,)) + packer.pack_one(int(first))

    bpc = packer.nbytes
    pixels = flat.size
    # Runs first: the palette is the set of run values, far fewer than pixels.
    starts, lengths = run_lengths(flat)
    runs = starts.size
    heads_values = flat[starts]
    other = flat[int(np.argmax(differs))]
    two = bool(np.all((heads_values == first) | (heads_values == other)))
    palette = np.array([first, other], dtype=np.uint32) if two else np.unique(heads_values)
    colours = palette.size

    costs: dict[str, int] = {"raw": pixels * bpc}
    if colours <= 16:
        row_bytes = -(-width * _palette_bits(colours) // 8)
        costs["packed"] = colours * bpc + row_bytes * height
    # Each run costs at least a pixel and a length byte (plain) or an index
    # byte (palette RLE): weigh the runs exactly only if RLE could win.
    floor = runs * (bpc + 1)
    if colours <= 127:
        floor = min(floor, colours * bpc + runs)
    if floor < min(costs.values()):
        length_bytes = rle_length_bytes(lengths)
        costs["plain"] = int(runs * bpc + length_bytes.sum())
        if colours <= 127:
            costs["palette_rle"] = colours * bpc + int(
                np.where(lengths == 1, 1, 1 + length_bytes).sum()
            )
    best = min(costs, key=lambda name: costs[name])

    if best == "raw":
        return b"\x00" + packer.pack(flat).tobytes()
    if best == "plain":
        heads = packer.pack(heads_values)
        return bytes((_PLAIN_RLE,)) + rle_bytes(
            heads, lengths, np.ones(lengths.size, dtype=np.bool_)
        )
    palette_bytes = packer.pack(palette).tobytes()
    if best == "packed":
        # searchsorted on the sorted palette: much faster than unique's inverse.
        indices = differs if two else np.searchsorted(palette, flat)
        grid = indices.astype(np.uint8).reshape(height, width)
        return bytes((colours,)) + palette_bytes + _pack_indices(grid, _palette_bits(colours))
    run_index = (heads_values != first) if two else np.searchsorted(palette, heads_values)
    long_run = lengths > 1
    heads = (run_index.astype(np.uint8) | (long_run.astype(np.uint8) << np.uint8(7))).reshape(-1, 1)
    return bytes((_PLAIN_RLE + colours,)) + palette_bytes + rle_bytes(heads, lengths, long_run)


def encode_tiles(values: npt.NDArray[np.uint32], packer: PixelPacker) -> bytes:
    """The uncompressed ZRLE data of a rectangle: its tiles in order."""
    height, width = values.shape
    parts = [
        encode_tile(values[y : y + TILE, x : x + TILE], packer)
        for y in range(0, height, TILE)
        for x in range(0, width, TILE)
    ]
    return b"".join(parts)


class ZRLEEncoder(ZlibStreamEncoder):
    """ZRLE with this connection's zlib stream."""

    encoding = int(Encoding.ZRLE)

    def encode(self, pixels: npt.NDArray[np.uint8], pixel_format: PixelFormat) -> bytes:
        values = pixel_values(pixels, pixel_format)
        data = self._stream.compress(encode_tiles(values, cpixel_packer(pixel_format)))
        return struct.pack(">I", len(data)) + data
