"""Text selection on the displayed cells: which cells, and what text they hold.

A selection runs from an anchor cell to the current cell in reading order
(like xterm's character selection): the rest of the first line, whole lines in
between, the start of the last. Text is taken from the cells, so the right half
of a wide character adds nothing and trailing blanks of each line are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vzvnc.term.cells import ATTR_WIDE_RIGHT


@dataclass(frozen=True, slots=True)
class Selection:
    anchor: tuple[int, int]  # (row, column)
    head: tuple[int, int]

    def ordered(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return (self.anchor, self.head) if self.anchor <= self.head else (self.head, self.anchor)

    def mask(self, lines: int, columns: int) -> np.ndarray:
        """Boolean (lines, columns): True on selected cells."""
        (row0, col0), (row1, col1) = self.ordered()
        flat = np.zeros(lines * columns, dtype=bool)
        start = max(0, min(row0 * columns + col0, lines * columns))
        end = max(0, min(row1 * columns + col1 + 1, lines * columns))
        flat[start:end] = True
        return flat.reshape(lines, columns)

    def text(self, chars: np.ndarray, attrs: np.ndarray) -> str:
        lines, columns = chars.shape
        selected = self.mask(lines, columns)
        out = []
        rows = np.flatnonzero(selected.any(axis=1))
        for row in rows.tolist():
            keep = selected[row] & ((attrs[row] & ATTR_WIDE_RIGHT) == 0)
            text = "".join(map(chr, chars[row][keep].tolist())).rstrip(" ")
            out.append(text)
        return "\n".join(out)
