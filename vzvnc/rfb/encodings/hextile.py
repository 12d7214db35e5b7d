"""Hextile encoding (rfbproto "Hextile Encoding"): 16x16 tiles of background plus subrects.

All tiles of a rectangle are analysed at once with numpy (the rectangle is
padded to whole tiles by repeating its last column and row, which adds no
colour to any tile): per tile the background (its most common colour), the
number of colours, and subrectangles from ``common.find_subrects`` (runs in a
row, stacked when the row below repeats them). Then each tile takes the
smallest form:

- solid: just the background;
- two colours (a glyph cell's usual case): background, foreground, and
  uncoloured subrects of two bytes each;
- more colours: coloured subrects;
- raw, when that is smaller (noise, photos, dense dithering).

Background and foreground are only sent when they differ from the previous
tile's. After a raw tile neither is assumed known (the spec defines carrying
them over only between non-raw tiles), and after a tile with coloured subrects
the foreground is not (decoders differ in what it then holds).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from vzvnc.rfb.constants import Encoding
from vzvnc.rfb.encodings.common import (
    SingleRectEncoder,
    find_subrects,
    pixel_values,
    row_modes,
    wire_bytes,
    wire_dtype,
)
from vzvnc.rfb.pixelformat import PixelFormat

TILE = 16

RAW = 1
BACKGROUND_SPECIFIED = 2
FOREGROUND_SPECIFIED = 4
ANY_SUBRECTS = 8
SUBRECTS_COLOURED = 16

_MAX_SUBRECTS = 255


def _tile_stack(values: npt.NDArray[np.uint32]) -> tuple[npt.NDArray[np.uint32], int, int]:
    """``(rows * cols, 16, 16)`` tiles, padded by edge repetition, and the grid size."""
    height, width = values.shape
    rows, cols = -(-height // TILE), -(-width // TILE)
    padded = np.pad(values, ((0, rows * TILE - height), (0, cols * TILE - width)), mode="edge")
    stack = padded.reshape(rows, TILE, cols, TILE).swapaxes(1, 2).reshape(rows * cols, TILE, TILE)
    return stack, rows, cols


def _backgrounds(
    flat: npt.NDArray[np.uint32],
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """Per tile (rows of ``flat``): the most common value and the number of values."""
    count, size = flat.shape
    first = flat[:, 0]
    differs = flat != first[:, None]
    other = flat[np.arange(count), np.argmax(differs, axis=1)]
    is_first = ~differs
    two = np.all(is_first | (flat == other[:, None]), axis=1)
    solid = ~differs.any(axis=1)
    colours = np.where(solid, 1, 2).astype(np.int64)
    first_count = is_first.sum(axis=1)
    background = np.where(first_count * 2 >= size, first, other).astype(np.uint32)
    many = np.flatnonzero(~two)
    if many.size:
        background[many], colours[many] = row_modes(flat[many])
    return background, colours


class HextileEncoder(SingleRectEncoder):
    """Hextile; it keeps no state between rectangles."""

    encoding = int(Encoding.HEXTILE)
    compress_level = 0

    def set_compress_level(self, level: int) -> None:
        """Hextile has no compression to tune."""

    def encode(self, pixels: npt.NDArray[np.uint8], pixel_format: PixelFormat) -> bytes:
        values = pixel_values(pixels, pixel_format)
        height, width = values.shape
        if height == 0 or width == 0:
            return b""
        bpp = pixel_format.bytes_per_pixel
        dtype = wire_dtype(pixel_format)
        stack, rows, cols = _tile_stack(values)
        count = rows * cols
        tile_w = np.minimum(TILE, width - (np.arange(count) % cols) * TILE).astype(np.int64)
        tile_h = np.minimum(TILE, height - (np.arange(count) // cols) * TILE).astype(np.int64)
        background, colours = _backgrounds(stack.reshape(count, TILE * TILE))
        subrects = find_subrects(stack, background, tile_w, tile_h)
        per_tile = subrects.counts(count)
        bounds = np.concatenate(([0], np.cumsum(per_tile)))
        mono_records = (
            (subrects.x << 4 | subrects.y).astype(np.uint8),
            ((subrects.width - 1) << 4 | (subrects.height - 1)).astype(np.uint8),
        )
        mono = np.stack(mono_records, axis=1)
        coloured = np.concatenate(
            (subrects.value.astype(dtype).view(np.uint8).reshape(-1, bpp), mono), axis=1
        )
        foreground = np.zeros(count, dtype=np.uint32)
        if subrects.tile.size:
            # Only read for two-colour tiles, where every subrect has the foreground.
            foreground[subrects.tile] = subrects.value

        background_bytes = background.astype(dtype).tobytes()
        foreground_bytes = foreground.astype(dtype).tobytes()
        out: list[bytes] = []
        last_bg: int | None = None
        last_fg: int | None = None
        for index in range(count):
            th, tw = int(tile_h[index]), int(tile_w[index])
            ty, tx = (index // cols) * TILE, (index % cols) * TILE
            n = int(per_tile[index])
            bg = int(background[index])
            ncolours = int(colours[index])
            raw_cost = 1 + th * tw * bpp
            new_bg = bg != last_bg
            head = 1 + (bpp if new_bg else 0)
            if ncolours == 1:
                cost = head
            elif ncolours == 2:
                fg = int(foreground[index])
                cost = head + (bpp if fg != last_fg else 0) + 1 + 2 * n
            else:
                cost = head + 1 + (bpp + 2) * n
            if cost > raw_cost or n > _MAX_SUBRECTS:
                out.append(bytes((RAW,)))
                out.append(wire_bytes(values[ty : ty + th, tx : tx + tw], pixel_format))
                last_bg = last_fg = None
                continue
            mask = BACKGROUND_SPECIFIED if new_bg else 0
            chunk = [background_bytes[index * bpp : (index + 1) * bpp]] if new_bg else []
            last_bg = bg
            if ncolours == 2:
                fg = int(foreground[index])
                mask |= ANY_SUBRECTS
                if fg != last_fg:
                    mask |= FOREGROUND_SPECIFIED
                    chunk.append(foreground_bytes[index * bpp : (index + 1) * bpp])
                    last_fg = fg
                chunk.append(bytes((n,)))
                chunk.append(mono[bounds[index] : bounds[index + 1]].tobytes())
            elif ncolours > 2:
                mask |= ANY_SUBRECTS | SUBRECTS_COLOURED
                chunk.append(bytes((n,)))
                chunk.append(coloured[bounds[index] : bounds[index + 1]].tobytes())
                last_fg = None
            out.append(bytes((mask,)))
            out.extend(chunk)
        return b"".join(out)
