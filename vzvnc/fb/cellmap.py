"""What each glyph cell of a framebuffer holds, where the painter knows it exactly.

A text console's framebuffer is a grid of cells, and almost every cell is two
colours: ink where its glyph has pixels, paper elsewhere. The renderer, which
paints every cell, records for each one its ink, its paper and its glyph as
packed bits (one bit per pixel, rows padded to a byte, leftmost pixel in the
most significant bit), so that an encoder can build a cell's data from 16
bytes instead of rediscovering its colours in 512 bytes of pixels.

The invariant: for every cell marked ``known``, its pixels in the framebuffer
are exactly ``ink`` where its bit is set and ``paper`` where it is not. Anything
that changes pixels keeps it, or marks the cells it touched unknown
(``Framebuffer.copy_rect`` moves cell-aligned copies along and forgets the
cells of any other). Colours are the framebuffer's own pixel words (B, G, R, X
as one little-endian uint32).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from vzvnc.fb.damage import Rect


class CellMap:
    """Ink, paper and glyph bits of every cell of a ``columns`` x ``lines`` grid."""

    def __init__(self, cell_width: int, cell_height: int, columns: int, lines: int) -> None:
        self.cell_width = cell_width
        self.cell_height = cell_height
        self.row_bytes = -(-cell_width // 8)
        self.ink = np.zeros((lines, columns), dtype=np.uint32)
        self.paper = np.zeros((lines, columns), dtype=np.uint32)
        self.bits = np.zeros((lines, columns, cell_height, self.row_bytes), dtype=np.uint8)
        self.known = np.zeros((lines, columns), dtype=np.bool_)

    @property
    def columns(self) -> int:
        return int(self.known.shape[1])

    @property
    def lines(self) -> int:
        return int(self.known.shape[0])

    def paint(
        self,
        ys: npt.NDArray[np.intp],
        xs: npt.NDArray[np.intp],
        masks: npt.NDArray[np.bool_],
        ink: npt.NDArray[np.uint32],
        paper: npt.NDArray[np.uint32],
    ) -> None:
        """Cells ``(ys[i], xs[i])`` now show ``masks[i]`` ((cell_height, cell_width) bools)."""
        count = ys.size
        if count == 0:
            return
        padded_width = self.row_bytes * 8
        if padded_width != self.cell_width:
            grown = np.zeros((count, self.cell_height, padded_width), dtype=np.bool_)
            grown[:, :, : self.cell_width] = masks
            masks = grown
        # One packbits over a flat array: along a short axis it is many times slower.
        packed = np.packbits(np.ascontiguousarray(masks).reshape(-1))
        self.bits[ys, xs] = packed.reshape(count, self.cell_height, self.row_bytes)
        self.ink[ys, xs] = ink
        self.paper[ys, xs] = paper
        self.known[ys, xs] = True

    def forget(self, rect: Rect) -> None:
        """The cells under ``rect`` (pixels) are no longer known."""
        cw, ch = self.cell_width, self.cell_height
        self.known[rect.y // ch : -(-rect.bottom // ch), rect.x // cw : -(-rect.right // cw)] = (
            False
        )

    def copy(self, dest: Rect, src_x: int, src_y: int) -> None:
        """Follow ``Framebuffer.copy_rect``: move cells along if the copy is on the grid."""
        cw, ch = self.cell_width, self.cell_height
        if any(v % cw for v in (dest.x, dest.width, src_x)) or any(
            v % ch for v in (dest.y, dest.height, src_y)
        ):
            self.forget(dest)
            return
        rows = slice(dest.y // ch, dest.bottom // ch)
        cols = slice(dest.x // cw, dest.right // cw)
        src_rows = slice(src_y // ch, src_y // ch + dest.height // ch)
        src_cols = slice(src_x // cw, src_x // cw + dest.width // cw)
        for grid in (self.ink, self.paper, self.bits, self.known):
            grid[rows, cols] = grid[src_rows, src_cols].copy()

    def known_block(self, rect: Rect) -> tuple[slice, slice] | None:
        """The (lines, columns) slices of the cells ``rect`` covers exactly, if it is
        whole cells of the grid, not empty, and every one of them is known."""
        grid = self.cell_grid(rect)
        if grid is None:
            return None
        line, column, lines, columns = grid
        block = (slice(line, line + lines), slice(column, column + columns))
        if lines == 0 or columns == 0 or not self.known[block].all():
            return None
        return block

    def shown(
        self, block: tuple[slice, slice]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Whether each cell of ``block`` shows its ink (a bit set) and its paper (a bit
        clear). Exact when cells are whole bytes wide (no padding bits)."""
        bits = self.bits[block]
        flat = bits.reshape(bits.shape[0], bits.shape[1], -1)
        ink: npt.NDArray[np.bool_] = np.any(flat, axis=2)
        paper: npt.NDArray[np.bool_] = np.any(flat != 0xFF, axis=2)
        return ink, paper

    def cell_grid(self, rect: Rect) -> tuple[int, int, int, int] | None:
        """``(line, column, lines, columns)`` of the cells ``rect`` covers exactly, else None."""
        cw, ch = self.cell_width, self.cell_height
        if rect.x % cw or rect.width % cw or rect.y % ch or rect.height % ch:
            return None
        line, column = rect.y // ch, rect.x // cw
        lines, columns = rect.height // ch, rect.width // cw
        if line + lines > self.lines or column + columns > self.columns:
            return None
        return line, column, lines, columns
