"""``Terminal``: the emulator's public face for the rest of vzvnc.

It owns one ``CellScreen`` and the ``SafeByteStream`` feeding it, and exposes
only what the console, renderer, keymap and state code need: bytes in, cells
and cursor out (live, or scrolled back into the history), the modes that
change how input is encoded, and the things the terminal owes its owner
(replies for the pty, bells, title changes, scroll hints). It does no I/O and
reads no clock. The screen's rules (buffers, history, widths) are in the
docstring of ``screen.py``.
"""

from __future__ import annotations

from pyte import modes as mo

from vzvnc.term import flood
from vzvnc.term.screen import (
    BRACKETED_PASTE,
    DECCKM,
    DEFAULT_HISTORY,
    FOCUS_EVENTS,
    MOUSE_ENCODINGS,
    MOUSE_SGR,
    MOUSE_TRACKING,
    Cells,
    CellScreen,
)
from vzvnc.term.stream import SafeByteStream

# Below this size a chunk cannot hold enough lines for fast-forwarding to pay.
FLOOD_MIN_BYTES = 32 * 1024


class Terminal:
    """A terminal emulator of a fixed (but resizable) size."""

    def __init__(self, columns: int, lines: int, *, history: int = DEFAULT_HISTORY) -> None:
        """A blank terminal; ``history`` is how many lines the primary screen keeps
        once they scroll off its top (0 for none)."""
        self._screen = CellScreen(columns, lines, history)
        self._history_limit = history
        self._stream = SafeByteStream(self._screen)

    def internals(self) -> tuple[CellScreen, SafeByteStream]:
        """The screen and the parser themselves, for ``state.py`` (snapshot and restore) only."""
        return self._screen, self._stream

    # -- size ---------------------------------------------------------------

    @property
    def columns(self) -> int:
        return int(self._screen.columns)

    @property
    def lines(self) -> int:
        return int(self._screen.lines)

    def resize(self, columns: int, lines: int) -> None:
        """Change the size; content that fits is kept in both screens, and the history
        (see ``CellScreen.resize``).

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
        self._stream.feed(self.fast_forward(data))

    def fast_forward(self, data: bytes) -> bytes:
        """``data`` or an equivalent shorter chunk: lines that would scroll away unseen
        are skipped when that is exact now (see ``vzvnc.term.flood``)."""
        if len(data) > FLOOD_MIN_BYTES and self._can_fast_forward():
            return flood.rewrite(data, self.lines, self._history_limit) or data
        return data

    def _can_fast_forward(self) -> bool:
        """Whether skipped lines would only scroll away (see ``vzvnc.term.flood``)."""
        screen = self._screen
        stream = self._stream
        return (
            bool(stream._taking_plain_text)
            and not stream.utf8_decoder.getstate()[0]
            and screen.margins in (None, (0, self.lines - 1))
            and not screen.mode & {mo.DECOM, mo.IRM}
        )

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
        half contributes nothing, and combining characters follow their base
        character, so a line is ``columns`` cells wide and its ``len()`` is
        ``columns`` minus the number of wide characters plus the number of
        combining characters on it.
        """
        return self._screen.text_lines()

    def combining_at(self, y: int, x: int) -> str:
        """Combining and zero-width characters attached to the cell at row ``y``, column
        ``x`` of the screen shown ("" for none, and outside the screen).

        They belong to the left half of a wide character; cells that have some
        carry ``ATTR_COMBINING``. ``text_lines()`` puts them after their base character.
        """
        return self._screen.combining_at(y, x)

    def view_combining_at(self, offset: int, y: int, x: int) -> str:
        """``combining_at`` for the screen as ``view_cells(offset)`` shows it."""
        return self._screen.view_combining_at(offset, y, x)

    # -- the alternate screen and the history -----------------------------------

    @property
    def alternate_screen(self) -> bool:
        """Whether the alternate screen is shown (modes 47, 1047, 1049)."""
        return self._screen.alternate_screen

    @property
    def history_size(self) -> int:
        """Lines in the primary screen's history (whichever screen is shown)."""
        return self._screen.history_size

    def view_cells(self, offset: int) -> Cells:
        """The screen as seen scrolled back ``offset`` lines, as fresh arrays like ``cells()``.

        ``offset`` is clamped to ``0..history_size``: the last ``offset`` history
        lines on top, then the first ``lines - offset`` rows of the live primary
        screen (only history when ``offset >= lines``). ``view_cells(0)`` equals
        ``cells()``. While the alternate screen is shown the offset is ignored
        and the alternate screen is returned.
        """
        return self._screen.view_cells(offset)

    def view_text(self, offset: int) -> list[str]:
        """``view_cells(offset)`` as text lines, in the convention of ``text_lines()``."""
        return self._screen.view_text(offset)

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

    @property
    def mouse_mode(self) -> int:
        """Mouse tracking asked for: 0 (off), 9 (X10), 1000 (normal), 1002 (button
        events) or 1003 (any event).

        As in xterm one mode is active at a time: setting one replaces the
        other, and resetting any of them turns tracking off.
        """
        mode = self._screen.mode
        for code in MOUSE_TRACKING:
            if code in mode:
                return code >> 5
        return 0

    @property
    def mouse_sgr(self) -> bool:
        """SGR mouse encoding (mode 1006) is the active coordinate encoding."""
        return MOUSE_SGR in self._screen.mode

    @property
    def mouse_encoding(self) -> int:
        """The coordinate encoding: 0 (X10 bytes), 1005 (UTF-8), 1006 (SGR) or 1015 (urxvt).

        One at a time, as in xterm; resetting one that is not active does nothing.
        """
        mode = self._screen.mode
        for code in MOUSE_ENCODINGS:
            if code in mode:
                return code >> 5
        return 0

    @property
    def focus_events(self) -> bool:
        """Mode 1004: the application wants ``CSI I`` / ``CSI O`` on focus changes."""
        return FOCUS_EVENTS in self._screen.mode

    @property
    def cursor_shape(self) -> int:
        """DECSCUSR: 0 or 1 blinking block, 2 steady block, 3 blinking underline,
        4 steady underline, 5 blinking bar, 6 steady bar. 0 after RIS and DECSTR."""
        return int(self._screen.cursor_shape)
