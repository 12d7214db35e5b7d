"""The terminal screen: pyte's ``Screen`` with numpy cell storage.

This module owns the screen's state: the cells (in the encoding of
``cells.py``), the cursor and the current rendition (the "pen"), margins,
modes, tab stops, character sets, the saved cursor, and what the screen owes
its owner (replies to the application, bells, title changes, scroll events).

pyte parses; ``CellScreen`` keeps pyte's cursor-motion, tab and charset logic
where it is right and replaces every method that touched pyte's dict-of-dicts
``buffer``, which is never created here (any stray use fails loudly).

Storage is a ``CellGrid``: four physical ``(lines, columns)`` arrays plus a
row permutation mapping logical rows to physical ones, so scrolling rotates
``lines`` integers and blanks the recycled rows instead of moving every cell.

Conventions kept from pyte:

- ``cursor.x == columns`` is the pending-wrap state after writing the last
  column; the next printable character wraps (when DECAWM is on).
- Private DEC modes are stored in ``mode`` shifted left by 5 (``pyte.modes``).
- ``display`` (and ``text_lines``) gives one string per line in which a wide
  character appears once and its right half contributes nothing, so a line's
  ``len()`` is ``columns`` minus the number of wide characters on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import pyte
from pyte import charsets as cs
from pyte import modes as mo
from pyte.screens import Cursor, Margins
from wcwidth import wcwidth as _wcwidth

from vzvnc.term import cells

_width = lru_cache(maxsize=4096)(_wcwidth)

CharArray = npt.NDArray[np.uint32]
ColourArray = npt.NDArray[np.uint32]
AttrArray = npt.NDArray[np.uint16]
Cells = tuple[CharArray, ColourArray, ColourArray, AttrArray]

# Private modes in pyte's shifted encoding.
DECCKM = 1 << 5
BRACKETED_PASTE = 2004 << 5
MOUSE_X10 = 9 << 5
MOUSE_NORMAL = 1000 << 5
MOUSE_BUTTON_EVENT = 1002 << 5
MOUSE_ANY_EVENT = 1003 << 5
FOCUS_EVENTS = 1004 << 5
MOUSE_UTF8 = 1005 << 5
MOUSE_SGR = 1006 << 5
MOUSE_URXVT = 1015 << 5
CURSOR_BLINK = 12 << 5

# Only modes someone acts on are stored, so hostile input cannot grow the set.
# DECCOLM (132 columns) and DECSCNM (reverse screen) are deliberately absent:
# a console has a fixed size, and reverse screen has no cell encoding yet.
KNOWN_MODES = frozenset(
    {
        mo.IRM,
        mo.LNM,
        DECCKM,
        mo.DECOM,
        mo.DECAWM,
        mo.DECTCEM,
        CURSOR_BLINK,
        MOUSE_X10,
        MOUSE_NORMAL,
        MOUSE_BUTTON_EVENT,
        MOUSE_ANY_EVENT,
        FOCUS_EVENTS,
        MOUSE_UTF8,
        MOUSE_SGR,
        MOUSE_URXVT,
        BRACKETED_PASTE,
    }
)
DEFAULT_MODES = frozenset({mo.DECAWM, mo.DECTCEM})

DA1_REPLY = "\x1b[?1;2c"  # VT100 with advanced video option, as tmux answers.
MAX_REPLY_BYTES = 1 << 20  # nobody draining replies must not grow memory without bound
MAX_SCROLL_EVENTS = 1024  # see take_scrolls()

_WIDE = cells.ATTR_WIDE_LEFT | cells.ATTR_WIDE_RIGHT
_NOT_WIDE = np.uint16(~_WIDE & 0xFFFF)
_DEFAULT = cells.DEFAULT_COLOUR

_SGR_FLAGS = {
    1: cells.ATTR_BOLD,
    2: cells.ATTR_DIM,
    3: cells.ATTR_ITALIC,
    4: cells.ATTR_UNDERLINE,
    5: cells.ATTR_BLINK,
    6: cells.ATTR_BLINK,
    7: cells.ATTR_REVERSE,
    8: cells.ATTR_INVISIBLE,
    9: cells.ATTR_STRIKE,
    # ECMA-48 21 is "doubly underlined" (xterm, tmux, VTE, Linux >= 4.17); we have one underline.
    21: cells.ATTR_UNDERLINE,
}
_SGR_RESETS = {
    22: cells.ATTR_BOLD | cells.ATTR_DIM,
    23: cells.ATTR_ITALIC,
    24: cells.ATTR_UNDERLINE,
    25: cells.ATTR_BLINK,
    27: cells.ATTR_REVERSE,
    28: cells.ATTR_INVISIBLE,
    29: cells.ATTR_STRIKE,
}


class CellGrid:
    """Cells of one screen buffer: physical arrays plus logical->physical row map.

    ``rows[y]`` is the physical row shown at logical row ``y`` (a list: cheaper
    than numpy for single lookups and small rotations). ``wide[p]`` is False
    only when physical row ``p`` certainly holds no wide character, which lets
    plain writes skip the check for half-overwritten pairs. Callers speak
    logical rows except where a method says otherwise.
    """

    __slots__ = ("attrs", "bg", "chars", "columns", "fg", "lines", "rows", "wide")

    def __init__(self, columns: int, lines: int) -> None:
        self.columns = columns
        self.lines = lines
        shape = (lines, columns)
        self.chars: CharArray = np.full(shape, cells.BLANK, dtype=cells.CHAR_DTYPE)
        self.fg: ColourArray = np.full(shape, _DEFAULT, dtype=cells.COLOUR_DTYPE)
        self.bg: ColourArray = np.full(shape, _DEFAULT, dtype=cells.COLOUR_DTYPE)
        self.attrs: AttrArray = np.zeros(shape, dtype=cells.ATTR_DTYPE)
        self.rows: list[int] = list(range(lines))
        self.wide: list[bool] = [False] * lines

    def logical(self) -> Cells:
        """Fresh copies of the four arrays in logical row order."""
        rows = self.rows
        return self.chars[rows], self.fg[rows], self.bg[rows], self.attrs[rows]

    def blank(self, y: int, x0: int, x1: int, bg: int) -> None:
        """Blank cells ``x0..x1-1`` of logical row ``y`` with background ``bg``."""
        if x1 <= x0:
            return
        p = self.rows[y]
        self.chars[p, x0:x1] = cells.BLANK
        self.fg[p, x0:x1] = _DEFAULT
        self.bg[p, x0:x1] = bg
        self.attrs[p, x0:x1] = 0
        if x0 == 0 and x1 >= self.columns:
            self.wide[p] = False

    def blank_rows(self, y0: int, y1: int, bg: int) -> None:
        """Blank whole logical rows ``y0..y1-1``."""
        if y1 <= y0:
            return
        phys: int | list[int]
        if y1 - y0 == 1:
            phys = self.rows[y0]  # plain indexing is several times cheaper than a list
            self.wide[phys] = False
        else:
            phys = self.rows[y0:y1]
            for p in phys:
                self.wide[p] = False
        self.chars[phys] = cells.BLANK
        self.fg[phys] = _DEFAULT
        self.bg[phys] = bg
        self.attrs[phys] = 0

    def shift(self, top: int, bottom: int, n: int, bg: int) -> int:
        """Shift rows ``top..bottom`` up by ``n`` (down if negative); return the shift done.

        The returned magnitude is capped at the region's height; vacated rows are blank.
        """
        height = bottom - top + 1
        amount = min(abs(n), height)
        if amount == 0:
            return 0
        rows = self.rows
        end = bottom + 1
        if n > 0:
            rows[top:end] = rows[top + amount : end] + rows[top : top + amount]
            self.blank_rows(end - amount, end, bg)
            return amount
        rows[top:end] = rows[end - amount : end] + rows[top : end - amount]
        self.blank_rows(top, top + amount, bg)
        return -amount

    def fix_wide(self, y: int) -> None:
        """Blank half wide characters left on row ``y`` by an edit that split a pair."""
        p = self.rows[y]
        if not self.wide[p]:
            return
        row = self.attrs[p]
        left = (row & cells.ATTR_WIDE_LEFT) != 0
        right = (row & cells.ATTR_WIDE_RIGHT) != 0
        if not (left.any() or right.any()):
            self.wide[p] = False
            return
        orphan = left.copy()
        orphan[:-1] &= ~right[1:]
        lonely_right = right.copy()
        lonely_right[1:] &= ~left[:-1]
        orphan |= lonely_right
        if orphan.any():
            self.chars[p, orphan] = cells.BLANK
            row[orphan] &= _NOT_WIDE

    def unpair(self, p: int, x0: int, x1: int) -> None:
        """Before overwriting ``x0..x1-1`` of physical row ``p``: blank wide halves
        whose partner is outside that range."""
        row = self.attrs[p]
        if x0 > 0 and row[x0] & cells.ATTR_WIDE_RIGHT:
            self.chars[p, x0 - 1] = cells.BLANK
            row[x0 - 1] &= _NOT_WIDE
        if x1 < self.columns and row[x1 - 1] & cells.ATTR_WIDE_LEFT:
            self.chars[p, x1] = cells.BLANK
            row[x1] &= _NOT_WIDE

    def shift_cells(self, y: int, x: int, n: int, bg: int) -> None:
        """Move cells ``x..`` of row ``y`` right by ``n`` (left if negative), blanking the gap."""
        columns = self.columns
        p = self.rows[y]
        amount = min(abs(n), columns - x)
        if amount <= 0:
            return
        for array in (self.chars, self.fg, self.bg, self.attrs):
            row = array[p]
            # numpy copes with the overlap of source and destination.
            if n > 0:
                row[x + amount :] = row[x : columns - amount]
            else:
                row[x : columns - amount] = row[x + amount :]
        if n > 0:
            self.blank(y, x, x + amount, bg)
        else:
            self.blank(y, columns - amount, columns, bg)
        self.fix_wide(y)

    def write_wide(self, y: int, x: int, codepoint: int, fg: int, bg: int, attrs: int) -> None:
        """Write a wide character on cells ``x`` and ``x + 1``."""
        p = self.rows[y]
        if self.wide[p]:
            self.unpair(p, x, x + 2)
        self.wide[p] = True
        self.chars[p, x : x + 2] = codepoint
        self.fg[p, x : x + 2] = fg
        self.bg[p, x : x + 2] = bg
        self.attrs[p, x] = attrs | cells.ATTR_WIDE_LEFT
        self.attrs[p, x + 1] = attrs | cells.ATTR_WIDE_RIGHT

    def fill(self, codepoint: int) -> None:
        """Fill every cell with ``codepoint`` in default colours (DECALN)."""
        self.chars[...] = codepoint
        self.fg[...] = _DEFAULT
        self.bg[...] = _DEFAULT
        self.attrs[...] = 0
        self.wide = [False] * self.lines

    def resized(self, columns: int, lines: int, first: int) -> CellGrid:
        """A new grid of the given size showing logical rows ``first..`` of this one.

        Rows and columns that fit are kept; new ones are blank.
        """
        grid = CellGrid(columns, lines)
        count = max(0, min(lines, self.lines - first))
        width = min(columns, self.columns)
        if count:
            rows = self.rows[first : first + count]
            grid.chars[:count, :width] = self.chars[rows, :width]
            grid.fg[:count, :width] = self.fg[rows, :width]
            grid.bg[:count, :width] = self.bg[rows, :width]
            grid.attrs[:count, :width] = self.attrs[rows, :width]
            grid.wide[:count] = [self.wide[p] for p in rows]
        for y in range(count):
            grid.fix_wide(y)
        return grid

    def row_is_blank(self, y: int) -> bool:
        """True when logical row ``y`` shows only default blank cells."""
        p = self.rows[y]
        return bool(
            (self.chars[p] == cells.BLANK).all()
            and (self.bg[p] == _DEFAULT).all()
            and not self.attrs[p].any()
        )

    def text(self, y: int) -> str:
        """Logical row ``y`` as text; the right half of a wide character is skipped."""
        p = self.rows[y]
        codepoints = self.chars[p]
        if self.wide[p]:
            codepoints = codepoints[(self.attrs[p] & cells.ATTR_WIDE_RIGHT) == 0]
        data: bytes = codepoints.astype("<u4").tobytes()
        return data.decode("utf-32-le", errors="replace")


@dataclass(frozen=True, slots=True)
class SavedCursor:
    """What DECSC saves (one slot, as on a VT: a second save overwrites the first)."""

    x: int
    y: int
    fg: int
    bg: int
    attrs: int
    g0_charset: str
    g1_charset: str
    charset: int
    origin: bool


class CellScreen(pyte.Screen):
    """A pyte screen whose cells live in numpy arrays (see the module docstring)."""

    def __init__(self, columns: int, lines: int) -> None:
        # pyte's __init__ is not called: it builds the dict buffer replaced here.
        if columns < 1 or lines < 1:
            raise ValueError(f"screen size must be positive, got {columns}x{lines}")
        self.columns = columns
        self.lines = lines
        self.savepoints = []  # pyte's attribute; the single DECSC slot is ``_saved``
        self.dirty: set[int] = set()  # pyte's attribute; not maintained, diff cells()
        self.margins: Margins | None = None
        self.title = ""
        self.icon_name = ""
        self._grid = CellGrid(columns, lines)
        self._replies = bytearray()
        self._bells = 0
        self._title_changed = False
        self._scrolls: list[tuple[int, int, int]] = []
        self.reset()

    # -- owner-facing state -------------------------------------------------

    def cells(self) -> Cells:
        """Fresh ``(chars, fg, bg, attrs)`` arrays in logical row order."""
        return self._grid.logical()

    def text_lines(self) -> list[str]:
        """The screen as text, one string per line (see the module docstring)."""
        return [self._grid.text(y) for y in range(self.lines)]

    @property
    def display(self) -> list[str]:
        """pyte's name for ``text_lines()``."""
        return self.text_lines()

    def take_replies(self) -> bytes:
        data = bytes(self._replies)
        self._replies.clear()
        return data

    def take_bells(self) -> int:
        count, self._bells = self._bells, 0
        return count

    def take_title_changed(self) -> bool:
        changed, self._title_changed = self._title_changed, False
        return changed

    def take_scrolls(self) -> list[tuple[int, int, int]]:
        events, self._scrolls = self._scrolls, []
        return events

    @property
    def application_keypad(self) -> bool:
        return self._keypad_application

    # -- reset and size -----------------------------------------------------

    def reset(self) -> None:
        """RIS: blank screen, default modes, pen, margins, tabs, charsets.

        The title is kept, as xterm keeps it.
        """
        self._grid.blank_rows(0, self.lines, _DEFAULT)
        self.margins = None
        self.mode = set(DEFAULT_MODES)
        self.charset = 0
        self.g0_charset = cs.LAT1_MAP
        # G1 starts as ASCII, as in xterm and tmux, so a stray SO shows text, not line art.
        self.g1_charset = cs.LAT1_MAP
        self.tabstops = set(range(8, self.columns, 8))
        self.cursor = Cursor(0, 0)
        self.saved_columns = None
        self._pen_fg = _DEFAULT
        self._pen_bg = _DEFAULT
        self._pen_attrs = 0
        self._saved: SavedCursor | None = None
        self._keypad_application = False
        self._last_char = ""

    def soft_reset(self, *args: Any, **kwargs: Any) -> None:
        """DECSTR (``CSI ! p``): modes and pen to defaults; the cells stay.

        Autowrap is left on (VT510 would turn it off; xterm and tmux users expect it on).
        """
        self.mode.difference_update({mo.IRM, mo.DECOM, DECCKM})
        self.mode.update(DEFAULT_MODES)
        self.cursor.hidden = False
        self.margins = None
        self.charset = 0
        self.g0_charset = cs.LAT1_MAP
        self.g1_charset = cs.LAT1_MAP
        self._pen_fg = _DEFAULT
        self._pen_bg = _DEFAULT
        self._pen_attrs = 0
        self._saved = None
        self._keypad_application = False

    def resize(self, lines: int | None = None, columns: int | None = None) -> None:
        """Change the size, keeping the content that fits.

        When lines shrink, blank rows below the cursor go first, then rows from
        the top, so the cursor's row stays on screen (tmux's rule). Columns are
        cut or added on the right. Margins are reset, pending scroll events dropped.
        """
        lines = lines or self.lines
        columns = columns or self.columns
        if lines < 1 or columns < 1:
            raise ValueError(f"screen size must be positive, got {columns}x{lines}")
        if lines == self.lines and columns == self.columns:
            return
        first = 0
        cursor = self.cursor
        if lines < self.lines:
            excess = self.lines - lines
            bottom = self.lines - 1
            while excess and bottom > cursor.y and self._grid.row_is_blank(bottom):
                bottom -= 1
                excess -= 1
            first = excess
        self._grid = self._grid.resized(columns, lines, first)
        old_columns = self.columns
        self.lines, self.columns = lines, columns
        cursor.y = min(max(cursor.y - first, 0), lines - 1)
        cursor.x = min(cursor.x, columns - 1)
        self.margins = None
        # Pending scroll events describe the old geometry; a resize repaints all anyway.
        self._scrolls.clear()
        kept = {stop for stop in self.tabstops if stop < columns}
        kept.update(range((old_columns + 7) // 8 * 8, columns, 8))
        self.tabstops = kept

    # -- writing text -------------------------------------------------------

    def draw(self, data: str, **kwargs: Any) -> None:
        """Write printable text at the cursor (pyte's ``draw``, rewritten).

        Zero-width characters (combining marks, VS16, ZWJ) are dropped for now
        without dropping the rest of the run; control characters never print.
        """
        charset = self.g1_charset if self.charset else self.g0_charset
        if charset is not cs.LAT1_MAP:
            data = data.translate(charset)
        self._draw_translated(data)

    def _draw_translated(self, data: str) -> None:
        if data.isascii() and data.isprintable():
            # The fast path: all narrow, written with numpy slices, no width lookups.
            if data:
                self._put_run(data)
            return
        run: list[str] = []
        for char in data:
            width = _width(char)
            if width == 1:
                run.append(char)
            elif width == 2:
                if run:
                    self._put_run("".join(run))
                    run.clear()
                self._put_wide(char)
            # width 0 (combining, VS16, ZWJ): no cell of its own and no storage
            # for marks yet, so it is dropped; width -1: a control, never printed.
        if run:
            self._put_run("".join(run))

    def _put_run(self, text: str) -> None:
        """Write a run of narrow characters, wrapping at the right margin."""
        if text.isascii():
            codepoints: npt.NDArray[Any] = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
        else:
            codepoints = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        self._last_char = text[-1]
        grid = self._grid
        cursor = self.cursor
        columns = self.columns
        autowrap = mo.DECAWM in self.mode
        insert = mo.IRM in self.mode
        fg, bg, attrs = self._pen_fg, self._pen_bg, self._pen_attrs
        count = len(codepoints)
        pos = 0
        while pos < count:
            x = cursor.x
            if x >= columns:
                if autowrap:
                    self.carriage_return()
                    self.index()
                    x = 0
                else:
                    x = columns - 1
            room = columns - x
            left = count - pos
            if autowrap or left <= room:
                take = min(room, left)
                chunk = codepoints[pos : pos + take]
            else:
                # Without autowrap everything past the margin lands on the last
                # column, so only the run's final character survives there.
                take = room
                chunk = np.concatenate((codepoints[pos : pos + room - 1], codepoints[-1:]))
                pos = count - take
            if insert:
                grid.shift_cells(cursor.y, x, take, self._pen_bg)
            # Written here rather than through a CellGrid method: the hot path for text.
            p = grid.rows[cursor.y]
            end = x + take
            if grid.wide[p]:
                grid.unpair(p, x, end)
            grid.chars[p, x:end] = chunk
            grid.fg[p, x:end] = fg
            grid.bg[p, x:end] = bg
            grid.attrs[p, x:end] = attrs
            cursor.x = end
            pos += take

    def _put_wide(self, char: str) -> None:
        columns = self.columns
        if columns < 2:
            return  # a wide character cannot be shown on a one-column screen
        self._last_char = char
        cursor = self.cursor
        x = cursor.x
        if x >= columns - 1:
            if mo.DECAWM in self.mode:
                # Wrap whole rather than split the character across lines.
                self.carriage_return()
                self.index()
                x = 0
            else:
                x = columns - 2
        if mo.IRM in self.mode:
            self._grid.shift_cells(cursor.y, x, 2, self._pen_bg)
        self._grid.write_wide(cursor.y, x, ord(char), self._pen_fg, self._pen_bg, self._pen_attrs)
        cursor.x = x + 2

    def repeat_character(self, count: int | None = None, *args: Any, **kwargs: Any) -> None:
        """REP (``CSI n b``): repeat the last printed character."""
        if self._last_char:
            self._draw_translated(self._last_char * min(count or 1, self.columns * self.lines))

    # -- scrolling and lines ------------------------------------------------

    def _region(self) -> tuple[int, int]:
        margins = self.margins
        if margins is None:
            return 0, self.lines - 1
        return margins.top, margins.bottom

    def _scroll(self, top: int, bottom: int, n: int) -> None:
        """Shift ``top..bottom`` by ``n`` (up if positive) and record the event."""
        done = self._grid.shift(top, bottom, n, self._pen_bg)
        if done == 0:
            return
        events = self._scrolls
        if events:
            last_top, last_bottom, last = events[-1]
            # Two shifts the same way compose into one; vacated rows are blank either way.
            if last_top == top and last_bottom == bottom and (last > 0) == (done > 0):
                height = bottom - top + 1
                total = max(-height, min(height, last + done))
                events[-1] = (top, bottom, total)
                return
        if len(events) >= MAX_SCROLL_EVENTS:
            # Too many to be worth replaying: say "everything moved out", which
            # makes the consumer repaint the whole screen from cells().
            events.clear()
            events.append((0, self.lines - 1, self.lines))
        events.append((top, bottom, done))

    def index(self, *args: Any, **kwargs: Any) -> None:
        """IND / LF: down one row, scrolling the region at its bottom margin."""
        top, bottom = self._region()
        y = self.cursor.y
        if y == bottom:
            self._scroll(top, bottom, 1)
        elif y < self.lines - 1:
            # Below the region the cursor still moves, up to the last line.
            self.cursor.y = y + 1

    def reverse_index(self, *args: Any, **kwargs: Any) -> None:
        """RI: up one row, scrolling the region down at its top margin."""
        top, bottom = self._region()
        y = self.cursor.y
        if y == top:
            self._scroll(top, bottom, -1)
        elif y > 0:
            self.cursor.y = y - 1

    def next_line(self, *args: Any, **kwargs: Any) -> None:
        """NEL: carriage return and index, whatever LNM says."""
        self.carriage_return()
        self.index()

    def scroll_up(self, count: int | None = None, *args: Any, **kwargs: Any) -> None:
        """SU (``CSI n S``): scroll the region up; the cursor stays."""
        top, bottom = self._region()
        self._scroll(top, bottom, count or 1)

    def scroll_down(self, count: int | None = None, *args: Any, **kwargs: Any) -> None:
        """SD (``CSI n T``); with more parameters it is xterm's mouse highlight, ignored."""
        if args:
            return
        top, bottom = self._region()
        self._scroll(top, bottom, -(count or 1))

    def insert_lines(self, count: int | None = None, *args: Any, **kwargs: Any) -> None:
        """IL: open blank lines at the cursor row inside the region."""
        top, bottom = self._region()
        y = self.cursor.y
        if top <= y <= bottom:
            self._scroll(y, bottom, -(count or 1))
            self.carriage_return()

    def delete_lines(self, count: int | None = None, *args: Any, **kwargs: Any) -> None:
        """DL: remove lines at the cursor row; the region below moves up."""
        top, bottom = self._region()
        y = self.cursor.y
        if top <= y <= bottom:
            self._scroll(y, bottom, count or 1)
            self.carriage_return()

    # -- editing within a line ----------------------------------------------

    def _edit_column(self) -> int:
        # Editing clears the pending wrap: it works on the last column.
        x = min(self.cursor.x, self.columns - 1)
        self.cursor.x = x
        return x

    def insert_characters(self, count: int | None = None, *args: Any, **kwargs: Any) -> None:
        """ICH: shift the rest of the line right, opening blanks (current background)."""
        x = self._edit_column()
        self._grid.shift_cells(self.cursor.y, x, count or 1, self._pen_bg)

    def delete_characters(self, count: int | None = None, *args: Any, **kwargs: Any) -> None:
        """DCH: shift the rest of the line left; blanks come in at the right."""
        x = self._edit_column()
        self._grid.shift_cells(self.cursor.y, x, -(count or 1), self._pen_bg)

    def erase_characters(self, count: int | None = None, *args: Any, **kwargs: Any) -> None:
        """ECH: blank ``count`` cells from the cursor."""
        x = self._edit_column()
        y = self.cursor.y
        self._grid.blank(y, x, min(self.columns, x + (count or 1)), self._pen_bg)
        self._grid.fix_wide(y)

    def erase_in_line(self, how: int = 0, private: bool = False, *args: Any, **kwargs: Any) -> None:
        """EL 0/1/2: to the right (inclusive), to the left (inclusive), whole line."""
        x = self._edit_column()
        y = self.cursor.y
        if how == 0:
            self._grid.blank(y, x, self.columns, self._pen_bg)
        elif how == 1:
            self._grid.blank(y, 0, x + 1, self._pen_bg)
        elif how == 2:
            self._grid.blank(y, 0, self.columns, self._pen_bg)
        else:
            return
        self._grid.fix_wide(y)

    def erase_in_display(self, how: int = 0, *args: Any, **kwargs: Any) -> None:
        """ED 0/1/2; ED 3 clears scrollback only (xterm), which this screen has not."""
        y = self.cursor.y
        if how == 0:
            self.erase_in_line(0)
            self._grid.blank_rows(y + 1, self.lines, self._pen_bg)
        elif how == 1:
            self.erase_in_line(1)
            self._grid.blank_rows(0, y, self._pen_bg)
        elif how == 2:
            self._grid.blank_rows(0, self.lines, self._pen_bg)

    def alignment_display(self, *args: Any, **kwargs: Any) -> None:
        """DECALN: fill with ``E``, reset margins, home the cursor."""
        self._grid.fill(ord("E"))
        self.margins = None
        self.cursor.x = self.cursor.y = 0

    # -- cursor -------------------------------------------------------------

    def cursor_up(self, count: int | None = None, *args: Any, **kwargs: Any) -> None:
        """CUU: stops at the top margin, or at row 0 when above the region."""
        top, _bottom = self._region()
        y = self.cursor.y
        limit = top if y >= top else 0
        self.cursor.y = max(y - (count or 1), limit)

    def cursor_down(self, count: int | None = None, *args: Any, **kwargs: Any) -> None:
        """CUD: stops at the bottom margin, or at the last row when below the region."""
        _top, bottom = self._region()
        y = self.cursor.y
        limit = bottom if y <= bottom else self.lines - 1
        self.cursor.y = min(y + (count or 1), limit)

    def cursor_to_line(self, line: int | None = None, *args: Any, **kwargs: Any) -> None:
        """VPA; relative to the top margin under DECOM (pyte asserts there)."""
        y = (line or 1) - 1
        if mo.DECOM in self.mode and self.margins is not None:
            y += self.margins.top
        self.cursor.y = y
        self.ensure_vbounds()

    def cursor_forward_tab(self, count: int | None = None, *args: Any, **kwargs: Any) -> None:
        """CHT (``CSI n I``)."""
        for _ in range(min(count or 1, self.columns)):
            self.tab()

    def cursor_back_tab(self, count: int | None = None, *args: Any, **kwargs: Any) -> None:
        """CBT (``CSI n Z``): back to the previous tab stop, or column 0."""
        for _ in range(min(count or 1, self.columns)):
            x = min(self.cursor.x, self.columns - 1)
            earlier = [stop for stop in self.tabstops if stop < x]
            self.cursor.x = max(earlier) if earlier else 0

    def set_margins(
        self, top: int | None = None, bottom: int | None = None, *args: Any, **kwargs: Any
    ) -> None:
        """DECSTBM; 0 or missing means the screen edge; a valid change homes the cursor."""
        lines = self.lines
        first = min(max((top or 1) - 1, 0), lines - 1)
        last = min(max((bottom or lines) - 1, 0), lines - 1)
        if last - first < 1:
            return
        self.margins = None if (first == 0 and last == lines - 1) else Margins(first, last)
        self.cursor_position()

    def save_cursor(self, *args: Any, **kwargs: Any) -> None:
        """DECSC (``ESC 7``, ``CSI s``): one slot, overwritten by the next save."""
        self._saved = SavedCursor(
            x=self.cursor.x,
            y=self.cursor.y,
            fg=self._pen_fg,
            bg=self._pen_bg,
            attrs=self._pen_attrs,
            g0_charset=self.g0_charset,
            g1_charset=self.g1_charset,
            charset=self.charset,
            origin=mo.DECOM in self.mode,
        )

    def restore_cursor(self, *args: Any, **kwargs: Any) -> None:
        """DECRC (``ESC 8``, ``CSI u``): the slot stays, so restoring twice is the same."""
        saved = self._saved
        if saved is None:
            self.mode.discard(mo.DECOM)
            self._pen_fg = self._pen_bg = _DEFAULT
            self._pen_attrs = 0
            self.cursor.x = self.cursor.y = 0
            return
        self.g0_charset = saved.g0_charset
        self.g1_charset = saved.g1_charset
        self.charset = saved.charset
        if saved.origin:
            self.mode.add(mo.DECOM)
        else:
            self.mode.discard(mo.DECOM)
        self._pen_fg, self._pen_bg, self._pen_attrs = saved.fg, saved.bg, saved.attrs
        self.cursor.x = min(saved.x, self.columns - 1)
        self.cursor.y = min(saved.y, self.lines - 1)

    # -- modes --------------------------------------------------------------

    def set_mode(self, *modes: int, **kwargs: Any) -> None:
        """SM / DECSET for the modes in ``KNOWN_MODES``; others are ignored."""
        shift = 5 if kwargs.get("private") else 0
        for number in modes:
            code = number << shift
            if code not in KNOWN_MODES:
                continue
            self.mode.add(code)
            if code == mo.DECOM:
                self.cursor_position()
            elif code == mo.DECTCEM:
                self.cursor.hidden = False

    def reset_mode(self, *modes: int, **kwargs: Any) -> None:
        """RM / DECRST for the modes in ``KNOWN_MODES``; others are ignored."""
        shift = 5 if kwargs.get("private") else 0
        for number in modes:
            code = number << shift
            if code not in KNOWN_MODES:
                continue
            self.mode.discard(code)
            if code == mo.DECOM:
                self.cursor_position()
            elif code == mo.DECTCEM:
                self.cursor.hidden = True

    def set_tab_stop(self, *args: Any, **kwargs: Any) -> None:
        """HTS; a pending wrap sets the stop on the last column, not past it."""
        self.tabstops.add(min(self.cursor.x, self.columns - 1))

    def keypad_application_mode(self, *args: Any, **kwargs: Any) -> None:
        """DECKPAM (``ESC =``)."""
        self._keypad_application = True

    def keypad_numeric_mode(self, *args: Any, **kwargs: Any) -> None:
        """DECKPNM (``ESC >``)."""
        self._keypad_application = False

    # -- rendition ----------------------------------------------------------

    def select_graphic_rendition(self, *attrs: int, **kwargs: Any) -> None:
        """SGR. Colon forms arrive already flattened by the stream.

        A private SGR (``CSI ? ... m``) is not SGR at all and is ignored.
        """
        if kwargs.get("private"):
            return
        fg, bg, flags = self._pen_fg, self._pen_bg, self._pen_attrs
        if not attrs:
            attrs = (0,)
        count = len(attrs)
        i = 0
        while i < count:
            code = attrs[i]
            i += 1
            if code == 0:
                fg, bg, flags = _DEFAULT, _DEFAULT, 0
            elif code in _SGR_FLAGS:
                flags |= _SGR_FLAGS[code]
            elif code in _SGR_RESETS:
                flags &= ~_SGR_RESETS[code]
            elif 30 <= code <= 37:
                fg = cells.indexed(code - 30)
            elif code == 39:
                fg = _DEFAULT
            elif 40 <= code <= 47:
                bg = cells.indexed(code - 40)
            elif code == 49:
                bg = _DEFAULT
            elif 90 <= code <= 97:
                fg = cells.indexed(code - 90 + 8)
            elif 100 <= code <= 107:
                bg = cells.indexed(code - 100 + 8)
            elif code in (38, 48, 58):
                # 58 (underline colour) is parsed only so its arguments are not
                # mistaken for attributes.
                colour, i = _extended_colour(attrs, i)
                if colour is None:
                    continue
                if code == 38:
                    fg = colour
                elif code == 48:
                    bg = colour
        self._pen_fg, self._pen_bg, self._pen_attrs = fg, bg, flags

    # -- replies and notifications ------------------------------------------

    def report_device_attributes(self, mode: int = 0, *args: Any, **kwargs: Any) -> None:
        """DA1 (``CSI c`` / ``CSI 0 c``)."""
        if mode == 0 and not kwargs.get("private"):
            self.write_process_input(DA1_REPLY)

    def report_device_status(self, mode: int = 0, *args: Any, **kwargs: Any) -> None:
        """DSR 5 (status), DSR 6 (CPR), and DECXCPR (``CSI ? 6 n``)."""
        private = bool(kwargs.get("private"))
        if mode == 5 and not private:
            self.write_process_input("\x1b[0n")
        elif mode == 6:
            x = min(self.cursor.x, self.columns - 1) + 1
            y = self.cursor.y + 1
            if mo.DECOM in self.mode and self.margins is not None:
                y -= self.margins.top
            self.write_process_input(f"\x1b[{'?' if private else ''}{y};{x}R")

    def write_process_input(self, data: str) -> None:
        if len(self._replies) < MAX_REPLY_BYTES:
            self._replies += data.encode("utf-8")

    def bell(self, *args: Any) -> None:
        self._bells += 1

    def set_title(self, param: str) -> None:
        if param != self.title:
            self.title = param
            self._title_changed = True

    def set_icon_name(self, param: str) -> None:
        self.icon_name = param


def _extended_colour(params: tuple[int, ...], i: int) -> tuple[int | None, int]:
    """Parse ``5;n`` or ``2;r;g;b`` at ``params[i:]``; return (colour or None, next index)."""
    if i >= len(params):
        return None, i
    kind = params[i]
    if kind == 5:
        if i + 1 >= len(params):
            return None, len(params)
        index = params[i + 1]
        return (cells.indexed(index) if index <= 255 else None), i + 2
    if kind == 2:
        if i + 3 >= len(params):
            return None, len(params)
        red, green, blue = params[i + 1 : i + 4]
        if max(red, green, blue) > 255:
            return None, i + 4
        return cells.rgb(red, green, blue), i + 4
    # Unknown colour space: skip just its selector, as xterm does.
    return None, i + 1
