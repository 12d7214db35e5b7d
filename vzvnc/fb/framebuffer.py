"""The framebuffer: one numpy array of pixels and its geometry.

Pixels are ``(height, width, 4)`` uint8 in B, G, R, X order, which is exactly the
wire form of ``SERVER_PIXEL_FORMAT`` (32 bpp little-endian true colour, red shift
16): a client that keeps our format gets ``tobytes()`` of a slice.

A framebuffer painted as a grid of glyph cells may carry a ``CellMap``
(``cells``) saying what each cell holds; ``copy_rect`` keeps it true, and
``resize`` drops it (the painter makes a new one).
"""

from __future__ import annotations

import numpy as np

from vzvnc.fb.cellmap import CellMap
from vzvnc.fb.damage import Rect


class Framebuffer:
    def __init__(self, width: int, height: int) -> None:
        self.pixels = np.zeros((height, width, 4), dtype=np.uint8)
        self.cells: CellMap | None = None

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def bounds(self) -> Rect:
        return Rect(0, 0, self.width, self.height)

    def region(self, rect: Rect) -> np.ndarray:
        """A view of the pixels under ``rect`` (which must lie inside)."""
        return self.pixels[rect.y : rect.bottom, rect.x : rect.right]

    def resize(self, width: int, height: int) -> None:
        self.pixels = np.zeros((height, width, 4), dtype=np.uint8)
        self.cells = None

    def copy_rect(self, dest: Rect, src_x: int, src_y: int) -> None:
        """Move pixels within the framebuffer (overlap-safe, numpy copies the source first)."""
        source = self.pixels[src_y : src_y + dest.height, src_x : src_x + dest.width].copy()
        self.pixels[dest.y : dest.bottom, dest.x : dest.right] = source
        if self.cells is not None:
            self.cells.copy(dest, src_x, src_y)

    def rgb_image(self) -> np.ndarray:
        """An (h, w, 3) RGB copy, for PNG output and comparisons with clients' captures."""
        return np.ascontiguousarray(self.pixels[:, :, 2::-1])
