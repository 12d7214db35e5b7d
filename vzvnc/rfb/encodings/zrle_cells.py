"""ZRLE columns of glyph cells built from the cell map, without reading pixels
(rfbproto "ZRLE Encoding", packed palette tiles).

Dense damage goes to ZRLE as rectangles one cell wide (``zrle.cell_columns``),
so each 64-pixel-high tile is a stack of at most four cells (with 8x16 cells).
When every cell is known (``vzvnc.fb.cellmap``), a tile's colours are the
papers and inks its cells show, at most eight, and its packed palette indices
follow from each cell's glyph bits: every byte of bits (8 pixels) becomes 1,
2 or 4 bytes of indices through a table indexed by the cell's paper slot, ink
slot and that byte. All cells of an update are handled in one batch of array
operations, whatever the number of columns.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

from vzvnc.fb.cellmap import CellMap
from vzvnc.fb.damage import Rect
from vzvnc.rfb.encodings.common import PixelPacker, ToValues

TILE = 64
SOLID = 1


def columns_data(
    cells: CellMap, rects: list[Rect], to_values: ToValues, packer: PixelPacker
) -> list[bytes] | None:
    """The uncompressed ZRLE data of each rectangle, if all are whole known cells one
    cell wide (else None: the caller reads the pixels)."""
    cw, ch, row_bytes = cells.cell_width, cells.cell_height, cells.row_bytes
    if not rects or cw % 8 or cw > TILE or TILE % ch:
        return None
    boxes = np.array([(r.x, r.y, r.width, r.height) for r in rects], dtype=np.int64)
    x, y, width, height = boxes.T
    if (
        (width != cw).any()
        or (x % cw).any()
        or (y % ch).any()
        or (height % ch).any()
        or (height <= 0).any()
        or (y + height > cells.lines * ch).any()
        or (x + width > cells.columns * cw).any()
    ):
        return None
    per_tile = TILE // ch
    # Every cell in sending order: rectangle by rectangle, top to bottom.
    counts = height // ch
    first_cell = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(counts)))
    owner = np.repeat(np.arange(len(rects)), counts)
    k = np.arange(int(first_cell[-1])) - first_cell[owner]
    lines, columns = y[owner] // ch + k, x[owner] // cw
    if not cells.known[lines, columns].all():
        return None
    tiles_of = -(-counts // per_tile)
    first_tile = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(tiles_of)))
    tile = first_tile[owner] + k // per_tile
    place = k % per_tile
    tiles = int(first_tile[-1])

    bits = cells.bits[lines, columns]  # (cells, ch, row_bytes)
    flat_bits = bits.reshape(bits.shape[0], -1)
    # Each tile's candidates: per cell place, its paper then its ink, if shown.
    candidates = np.zeros((tiles, per_tile, 2), dtype=np.uint32)
    shown = np.zeros((tiles, per_tile, 2), dtype=np.bool_)
    candidates[tile, place, 0] = to_values(cells.paper[lines, columns])
    candidates[tile, place, 1] = to_values(cells.ink[lines, columns])
    if flat_bits.shape[1] % 8 == 0:
        # Eight bytes at a time: far faster than any() over each byte.
        words = np.ascontiguousarray(flat_bits).view(np.uint64)
        shown[tile, place, 0] = (words != np.uint64(0xFFFFFFFFFFFFFFFF)).any(axis=1)
        shown[tile, place, 1] = (words != 0).any(axis=1)
    else:
        shown[tile, place, 0] = (flat_bits != 0xFF).any(axis=1)
        shown[tile, place, 1] = flat_bits.any(axis=1)
    slots, palette, colours = _sorted_palettes(
        candidates.reshape(tiles, -1), shown.reshape(tiles, -1)
    )
    index_bits = np.where(colours == 1, 0, np.where(colours == 2, 1, np.where(colours <= 4, 2, 4)))

    bpc = packer.nbytes
    cell_bytes = ch * row_bytes * index_bits  # per cell of each tile
    cells_in_tile = np.bincount(tile, minlength=tiles)
    length = 1 + colours * bpc + cells_in_tile * cell_bytes
    ends = np.cumsum(length)
    start = ends - length
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    out[start] = np.where(colours == 1, SOLID, colours).astype(np.uint8)
    most = int(colours.max())
    palette_bytes = packer.pack(palette[:most].T).reshape(tiles, most * bpc)
    offsets = np.arange(most * bpc)
    wanted = offsets[None, :] < (colours * bpc)[:, None]
    out[(start[:, None] + 1 + offsets[None, :])[wanted]] = palette_bytes[wanted]
    cell_start = start[tile] + 1 + colours[tile] * bpc + place * cell_bytes[tile]
    cell_slots = slots.reshape(tiles, per_tile, 2)[tile, place]
    for size in (1, 2, 4):
        which = np.flatnonzero(index_bits[tile] == size)
        if which.size == 0:
            continue
        paper_slot, ink_slot = cell_slots[which, 0], cell_slots[which, 1]
        if size == 1:
            # One bit per pixel: the glyph bits, inverted where the ink is slot 0.
            ink_mask = (ink_slot * 0xFF).astype(np.uint8)[:, None, None]
            paper_mask = (paper_slot * 0xFF).astype(np.uint8)[:, None, None]
            cell_bits = bits[which]
            indices = ((cell_bits & ink_mask) | (~cell_bits & paper_mask)).reshape(which.size, -1)
        else:
            # The table's entries as one 2- or 4-byte word each: a gather of scalars.
            slots_used = min(1 << size, 2 * per_tile)
            table = _index_table(size, slots_used).reshape(-1, size).view(f"u{size}").reshape(-1)
            entry = (paper_slot * slots_used + ink_slot)[:, None, None] * 256 + bits[which]
            indices = table[entry.reshape(-1)].view(np.uint8).reshape(which.size, -1)
        out[cell_start[which, None] + np.arange(indices.shape[1])] = indices
    bounds = np.concatenate((np.zeros(1, dtype=np.int64), ends))[first_tile].tolist()
    return [out[bounds[i] : bounds[i + 1]].tobytes() for i in range(len(rects))]


def _sorted_palettes(
    candidates: npt.NDArray[np.uint32], shown: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """Each row's distinct shown values in increasing order, and each candidate's slot.

    Returns ``(slots, palette, colours)``: slots ``(n, k)`` (meaningless where not
    shown), palette ``(k, n)`` (slot j of every row), colours ``(n,)``. Any order
    is a valid ZRLE palette; a sorted one costs a dozen array operations on rows
    of at most eight values, and the same colours always get the same slots.
    """
    count, width = candidates.shape
    # Hidden candidates repeat the row's first shown value, so they add no colour.
    first_shown = candidates[np.arange(count), shown.argmax(axis=1)]
    values = np.where(shown, candidates, first_shown[:, None])
    order = np.argsort(values, axis=1, kind="stable")
    ordered = np.take_along_axis(values, order, axis=1)
    new = np.ones((count, width), dtype=np.bool_)
    new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    rank = np.cumsum(new, axis=1) - 1  # the slot of each value in sorted order
    slots = np.empty((count, width), dtype=np.int64)
    np.put_along_axis(slots, order, rank, axis=1)
    colours = rank[:, -1] + 1
    palette = np.zeros((width, count), dtype=np.uint32)
    rows, columns = np.nonzero(new)
    palette[rank[rows, columns], rows] = ordered[rows, columns]
    return slots, palette, colours


@functools.cache
def _index_table(index_bits: int, slots: int) -> npt.NDArray[np.uint8]:
    """``table[paper, ink, byte]`` for slots below ``slots``: the ``index_bits`` bytes of
    packed indices of 8 pixels whose bits are ``byte`` (leftmost first): set bits
    ``ink``, clear ``paper``."""
    byte = np.arange(256, dtype=np.uint8)
    pixel_bits = (byte[:, None] >> np.arange(7, -1, -1, dtype=np.uint8)) & 1  # (256, 8)
    paper = np.arange(slots, dtype=np.uint8)[:, None, None, None]
    ink = np.arange(slots, dtype=np.uint8)[None, :, None, None]
    index = np.where(pixel_bits[None, None] == 1, ink, paper)  # (slots, slots, 256, 8)
    per_byte = 8 // index_bits
    grouped = index.reshape(slots, slots, 256, index_bits, per_byte)
    shifts = (index_bits * np.arange(per_byte - 1, -1, -1)).astype(np.uint8)
    table: npt.NDArray[np.uint8] = (grouped << shifts).sum(axis=4, dtype=np.uint8)
    return table


# Built at import, so that processes forked from a fork server share them: 8 KB and,
# for tiles of four 8x16 cells (at most eight colours), 64 KB.
_index_table(2, 4)
_index_table(4, 8)
