"""What viewers are shown of a terminal: the live screen or scrollback, plus the selection.

``Display`` adapts a ``Terminal`` into the renderer's ``CellSource``: scrolled
back by ``offset`` lines it shows history (and no cursor), and selected cells
are drawn in reverse video. Scroll hints pass through only while the live
screen is shown unaltered, since they describe the live screen.
"""

from __future__ import annotations

import numpy as np

from vzvnc.term.cells import ATTR_REVERSE
from vzvnc.term.selection import Selection
from vzvnc.term.terminal import Terminal


class Display:
    def __init__(self, terminal: Terminal) -> None:
        self.terminal = terminal
        self.offset = 0
        self.selection: Selection | None = None

    @property
    def columns(self) -> int:
        return self.terminal.columns

    @property
    def lines(self) -> int:
        return self.terminal.lines

    @property
    def cursor_x(self) -> int:
        return self.terminal.cursor_x

    @property
    def cursor_y(self) -> int:
        return self.terminal.cursor_y

    @property
    def cursor_visible(self) -> bool:
        return self.terminal.cursor_visible and self.offset == 0

    @property
    def cursor_shape(self) -> int:
        return self.terminal.cursor_shape

    def combining_at(self, y: int, x: int) -> str:
        if self.offset == 0:
            return self.terminal.combining_at(y, x)
        return self.terminal.view_combining_at(self.offset, y, x)

    def scroll(self, lines: int) -> bool:
        """Scroll back (positive) or forward; returns whether the view moved."""
        history = 0 if self.terminal.alternate_screen else self.terminal.history_size
        offset = max(0, min(self.offset + lines, history))
        moved = offset != self.offset
        self.offset = offset
        return moved

    def cells(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self.offset:
            chars, fg, bg, attrs = self.terminal.view_cells(self.offset)
        else:
            chars, fg, bg, attrs = self.terminal.cells()
        if self.selection is not None:
            mask = self.selection.mask(self.lines, self.columns)
            attrs = attrs ^ np.where(mask, ATTR_REVERSE, 0).astype(attrs.dtype)
        return chars, fg, bg, attrs

    def selected_text(self) -> str:
        if self.selection is None:
            return ""
        chars, _, _, attrs = self.cells()
        return self.selection.text(chars, attrs)

    def take_scrolls(self) -> list[tuple[int, int, int]]:
        scrolls = self.terminal.take_scrolls()
        return scrolls if self.offset == 0 and self.selection is None else []
