"""``Terminal``: the emulator's public face for the rest of vzvnc.

It owns one ``CellScreen`` and the ``SafeByteStream`` feeding it, and exposes
only what the console, renderer, keymap and state code need: bytes in, cells
and cursor out, the modes that change how input is encoded, and the things the
terminal owes its owner (replies for the pty, bells, title changes, scroll
hints). It does no I/O and reads no clock.
"""

from __future__ import annotations

from pyte import modes as mo

from vzvnc.term.screen import BRACKETED_PASTE, DECCKM, Cells, CellScreen
from vzvnc.term.stream import SafeByteStream


class Terminal:
    """A terminal emulator of a fixed (but resizable) size."""

    def __init__(self, columns: int, lines: int) -> None:
        self._screen = CellScreen(columns, lines)
        self._stream = SafeByteStream(self._screen)

    # -- size ---------------------------------------------------------------

    @property
    def columns(self) -> int:
        return int(self._screen.columns)

    @property
    def lines(self) -> int:
        return int(self._screen.lines)

    def resize(self, columns: int, lines: int) -> None:
        """Change the size; content that fits is kept (see ``CellScreen.resize``).

        Pending scroll events are dropped: they describe the old geometry.
        """
        if columns < 1 or lines < 1:
            raise ValueError(f"terminal size must be positive, got {columns}x{lines}")
        self._screen.resize(lines=lines, columns=columns)

    # -- input from the application -----------------------------------------

    def feed(self, data: bytes) -> None:
        """Apply output of the application; never raises for any bytes.

        UTF-8 is decoded incrementally, so a character split across calls is
        kept; invalid input shows as U+FFFD.
        """
        self._stream.feed(data)

    @property
    def handler_errors(self) -> int:
        """How many times a malformed sequence made a handler fail (and was skipped)."""
        return self._stream.errors

    # -- what the terminal owes its owner -------------------------------------

    def take_replies(self) -> bytes:
        """Bytes to write back to the application (DA, DSR, CPR); cleared on read."""
        return self._screen.take_replies()

    def take_bells(self) -> int:
        """Number of BEL received since the last call."""
        return self._screen.take_bells()

    @property
    def title(self) -> str:
        """The window title, from OSC 0 / OSC 2."""
        return str(self._screen.title)

    def take_title_changed(self) -> bool:
        """Whether the title changed (to a different value) since the last call."""
        return self._screen.take_title_changed()

    def take_scrolls(self) -> list[tuple[int, int, int]]:
        """Scroll events since the last call, oldest first.

        ``(top, bottom, n)``: logical rows ``top..bottom`` (inclusive) had their
        content shifted up by ``n`` rows (down by ``-n`` when negative); the
        vacated rows are blank (in the background colour then in effect:
        compare ``cells()`` to repaint them). Consecutive shifts of the same
        region in the same direction are merged; ``|n|`` never exceeds the
        region's height, and ``|n| == height`` means nothing survived. After
        more than a thousand unmergeable events the list restarts with
        ``(0, lines - 1, lines)``, which tells the consumer to repaint all.
        """
        return self._screen.take_scrolls()

    # -- the screen -----------------------------------------------------------

    def cells(self) -> Cells:
        """Fresh ``(chars, fg, bg, attrs)`` arrays of shape (lines, columns); see ``cells.py``."""
        return self._screen.cells()

    def text_lines(self) -> list[str]:
        """The screen as text, one string per line.

        Follows pyte's ``display``: a wide character appears once and its right
        half contributes nothing, so a line is ``columns`` cells wide and its
        ``len()`` is ``columns`` minus the number of wide characters on it.
        """
        return self._screen.text_lines()

    @property
    def cursor_x(self) -> int:
        """Cursor column, clamped to ``columns - 1`` (a pending wrap shows on the last column)."""
        return min(int(self._screen.cursor.x), self._screen.columns - 1)

    @property
    def cursor_y(self) -> int:
        return int(self._screen.cursor.y)

    # -- modes that change input or drawing -----------------------------------

    @property
    def cursor_visible(self) -> bool:
        """DECTCEM (``CSI ? 25 h`` / ``l``)."""
        return mo.DECTCEM in self._screen.mode

    @property
    def application_cursor_keys(self) -> bool:
        """DECCKM (``CSI ? 1 h`` / ``l``)."""
        return DECCKM in self._screen.mode

    @property
    def application_keypad(self) -> bool:
        """DECKPAM (``ESC =``) / DECKPNM (``ESC >``)."""
        return self._screen.application_keypad

    @property
    def bracketed_paste(self) -> bool:
        """Mode 2004."""
        return BRACKETED_PASTE in self._screen.mode
