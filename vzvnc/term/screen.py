"""The terminal screen: pyte's ``Screen`` with numpy cell storage.

This module owns the screen's state: the cells (in the encoding of
``cells.py``) of the primary and the alternate buffer, the primary buffer's
scrollback history, combining characters, the cursor and the current
rendition (the "pen"), margins, modes, tab stops, character sets, the saved
cursors, and what the screen owes its owner (replies to the application,
bells, title changes, scroll events).

pyte parses; ``CellScreen`` keeps pyte's cursor-motion, tab and charset logic
where it is right and replaces every method that touched pyte's dict-of-dicts
``buffer``, which is never created here (any stray use fails loudly). Where
pyte and xterm disagree, xterm's behaviour (its ``charproc.c``, ``util.c`` and
``cursor.c``, and ``ctlseqs``) is the reference.

Storage is a ``CellGrid``: four physical ``(rows, columns)`` arrays plus a
row permutation mapping logical rows to physical ones, so scrolling rotates
``lines`` integers and blanks the recycled rows instead of moving every cell.
The primary buffer's history lives in the same arrays: a line scrolled off
the top becomes a history row without being copied, and the oldest history
row is recycled once the history is full.

Conventions kept from pyte:

- ``cursor.x == columns`` is the pending-wrap state after writing the last
  column; the next printable character wraps (when DECAWM is on). Every
  cursor motion clears it, as xterm's ``ResetWrap`` does; DECSC saves it.
- Private DEC modes are stored in ``mode`` shifted left by 5 (``pyte.modes``).
- ``display`` (and ``text_lines``) gives one string per line in which a wide
  character appears once and its right half contributes nothing, so a line's
  length in cells is ``columns``; combining characters follow their base.

Buffers and history (xterm's rules):

- ``CSI ? 47 h`` / ``CSI ? 1047 h`` show the alternate buffer, which keeps its
  content between uses; ``CSI ? 1047 l`` clears it before leaving;
  ``CSI ? 1049 h`` saves the cursor (as DECSC), switches and clears the
  alternate buffer, ``CSI ? 1049 l`` switches back and restores the cursor;
  ``CSI ? 1048 h`` / ``l`` are DECSC / DECRC. Each buffer has its own DECSC
  slot; cursor, pen, modes and margins are shared.
- Lines leave through the top of the primary buffer into its history whenever
  the region being scrolled starts at row 0 (LF/IND at the bottom margin, SU,
  DL on row 0), whatever the bottom margin: xterm's ``top_marg == 0`` rule.
  The alternate buffer never adds to history. ED 3 and RIS clear it.
- Resizing keeps what fits in both buffers; rows dropped off the top of the
  primary buffer go to its history.

Width policy (one rule, everywhere): a character's width is
``wcwidth.wcwidth`` of that code point alone, with wcwidth 0.7.0 (pinned).

- Width 2 (East Asian wide, emoji with default emoji presentation such as
  U+1F600, regional indicators and skin-tone modifiers) takes two cells; at
  the last column it wraps whole to the next line (or, without autowrap,
  lands on the last two columns). Overwriting either half blanks the other.
- Width 0 (combining marks U+0300..U+036F, variation selectors VS15/VS16,
  ZWJ, ZWSP and the like) takes no cell: it is attached to the cell left of
  the cursor (the left half of a wide character; the last column in the
  pending-wrap state) and is dropped at column 0. At most
  ``MAX_COMBINING`` are kept per cell. Such a cell has ``ATTR_COMBINING``.
- Sequences are not shaped: VS16 after a narrow character (U+2764 U+FE0F)
  does not widen it, and each member of a ZWJ sequence keeps its own width
  (the ZWJ attaches to the member before it).
- Width -1 (controls) is never printed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import islice
from typing import Any

import numpy as np
import numpy.typing as npt
import pyte
from pyte import charsets as cs
from pyte import modes as mo
from pyte.screens import Cursor, Margins
from wcwidth import wcwidth as _wcwidth

from vzvnc.term import cells
from vzvnc.term.palette import DEFAULT_BG, DEFAULT_FG, palette_rgb, xterm_colour_spec

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

# Mouse tracking modes, highest first; xterm keeps one at a time, and resetting any turns all off.
MOUSE_TRACKING = (MOUSE_ANY_EVENT, MOUSE_BUTTON_EVENT, MOUSE_NORMAL, MOUSE_X10)
# Coordinate encodings: one at a time; a reset only clears the matching one (xterm).
MOUSE_ENCODINGS = (MOUSE_UTF8, MOUSE_SGR, MOUSE_URXVT)

# Private modes acted on here rather than stored.
ALTERNATE_47 = 47
ALTERNATE_1047 = 1047
SAVE_CURSOR_1048 = 1048
ALTERNATE_1049 = 1049

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
        *MOUSE_TRACKING,
        FOCUS_EVENTS,
        *MOUSE_ENCODINGS,
        BRACKETED_PASTE,
    }
)
DEFAULT_MODES = frozenset({mo.DECAWM, mo.DECTCEM})

# DEC Special Graphics as xterm and the VT100 draw it: only 0x5F-0x7E change.
# (pyte's VT100_MAP is the Linux console's variant, which also remaps "+,-./0h".)
DEC_SPECIAL_GRAPHICS = (
    cs.LAT1_MAP[:0x5F] + ("\u00a0◆▒␉␌␍␊°±␤␋┘┐┌└┼⎺⎻─⎼⎽├┤┴┬│≤≥π≠£·") + cs.LAT1_MAP[0x7F:]
)
_CHARSETS = {**cs.MAPS, "0": DEC_SPECIAL_GRAPHICS}
DA1_REPLY = "\x1b[?1;2c"  # VT100 with advanced video option, as tmux answers.
# xterm's DA2 (``CSI > 41 ; version ; 0 c``: a VT420, xterm patch 354, no ROM cartridge).
DA2_REPLY = "\x1b[>41;354;0c"
# xterm's DA3 (DECRPTUI): the unit id as a DCS string, all zeros.
DA3_REPLY = "\x1bP!|00000000\x1b\\"
MAX_REPLY_BYTES = 1 << 20  # nobody draining replies must not grow memory without bound
MAX_SCROLL_EVENTS = 1024  # see take_scrolls()
MAX_COMBINING = 8  # combining characters kept per cell; more are dropped
DEFAULT_HISTORY = 2000
CURSOR_SHAPES = range(7)  # DECSCUSR 0..6

_WIDE = cells.ATTR_WIDE_LEFT | cells.ATTR_WIDE_RIGHT
_NOT_WIDE = np.uint16(~_WIDE & 0xFFFF)
_NOT_WIDE_NOR_COMBINING = np.uint16(~(_WIDE | cells.ATTR_COMBINING) & 0xFFFF)
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
    """Cells of one screen buffer: physical arrays, logical->physical row map, history.

    ``rows[y]`` is the physical row shown at logical row ``y`` (a list: cheaper
    than numpy for single lookups and small rotations). ``wide[p]`` is False
    only when physical row ``p`` certainly holds no wide character, which lets
    plain writes skip the check for half-overwritten pairs. ``marks[p][x]``
    holds the combining characters of cell ``x`` of physical row ``p``.

    With ``history > 0``, ``history`` lists the physical rows of lines that
    left through the top (oldest first, at most ``history`` of them) and
    ``free`` the physical rows not in use; the arrays grow on demand up to
    ``lines + history`` rows. Callers speak logical rows except where a method
    says otherwise.
    """

    __slots__ = (
        "attrs",
        "bg",
        "capacity",
        "chars",
        "columns",
        "fg",
        "free",
        "history",
        "lines",
        "marks",
        "rows",
        "wide",
    )

    def __init__(self, columns: int, lines: int, history: int = 0) -> None:
        self.columns = columns
        self.lines = lines
        self.capacity = max(0, history)
        shape = (lines, columns)
        self.chars: CharArray = np.full(shape, cells.BLANK, dtype=cells.CHAR_DTYPE)
        self.fg: ColourArray = np.full(shape, _DEFAULT, dtype=cells.COLOUR_DTYPE)
        self.bg: ColourArray = np.full(shape, _DEFAULT, dtype=cells.COLOUR_DTYPE)
        self.attrs: AttrArray = np.zeros(shape, dtype=cells.ATTR_DTYPE)
        self.rows: list[int] = list(range(lines))
        self.wide: list[bool] = [False] * lines
        self.marks: dict[int, dict[int, str]] = {}
        self.history: deque[int] = deque()
        self.free: list[int] = []

    # -- physical rows and history --------------------------------------------

    def _extend(self, extra: int) -> range:
        """Append ``extra`` blank physical rows; return their indices (not put in ``free``)."""
        total = self.chars.shape[0]
        pad = (extra, self.columns)
        self.chars = np.concatenate((self.chars, np.full(pad, cells.BLANK, self.chars.dtype)))
        self.fg = np.concatenate((self.fg, np.full(pad, _DEFAULT, self.fg.dtype)))
        self.bg = np.concatenate((self.bg, np.full(pad, _DEFAULT, self.bg.dtype)))
        self.attrs = np.concatenate((self.attrs, np.zeros(pad, self.attrs.dtype)))
        self.wide.extend([False] * extra)
        return range(total, total + extra)

    def _recycle(self) -> int:
        """A physical row for a new line, after lines were added to the history."""
        if len(self.history) > self.capacity:
            return self.history.popleft()
        if not self.free:
            total = self.chars.shape[0]
            limit = self.lines + self.capacity
            new = self._extend(min(limit - total, max(total, 64)))
            self.free.extend(reversed(new))
        return self.free.pop()

    def clear_history(self) -> None:
        """Forget every history line (ED 3)."""
        marks = self.marks
        if marks:
            for p in self.history:
                marks.pop(p, None)
        self.free.extend(self.history)
        self.history.clear()

    def view_rows(self, offset: int) -> list[int]:
        """Physical rows shown when scrolled back ``offset`` lines (clamped to the history)."""
        history = self.history
        size = len(history)
        offset = max(0, min(offset, size))
        if offset == 0:
            return list(self.rows)
        start = size - offset
        shown = list(islice(history, start, min(size, start + self.lines)))
        return shown + self.rows[: self.lines - len(shown)]

    def select(self, rows: list[int]) -> Cells:
        """Fresh copies of the four arrays for the given physical rows."""
        return self.chars[rows], self.fg[rows], self.bg[rows], self.attrs[rows]

    def logical(self) -> Cells:
        """Fresh copies of the four arrays in logical row order."""
        rows = self.rows
        return self.chars[rows], self.fg[rows], self.bg[rows], self.attrs[rows]

    # -- combining characters ---------------------------------------------------

    def drop_marks(self, p: int, x0: int, x1: int) -> None:
        """Forget the combining characters of cells ``x0..x1-1`` of physical row ``p``."""
        row = self.marks.get(p)
        if row is None:
            return
        for x in [x for x in row if x0 <= x < x1]:
            del row[x]
        if not row:
            del self.marks[p]

    def add_mark(self, p: int, x: int, mark: str) -> None:
        """Attach ``mark`` to cell ``x`` of physical row ``p``."""
        row = self.marks.setdefault(p, {})
        current = row.get(x, "")
        if len(current) < MAX_COMBINING:
            row[x] = current + mark
            self.attrs[p, x] |= cells.ATTR_COMBINING

    def mark_at(self, y: int, x: int) -> str:
        row = self.marks.get(self.rows[y])
        return "" if row is None else row.get(x, "")

    # -- editing ------------------------------------------------------------------

    def blank(self, y: int, x0: int, x1: int, bg: int) -> None:
        """Blank cells ``x0..x1-1`` of logical row ``y`` with background ``bg``."""
        if x1 <= x0:
            return
        p = self.rows[y]
        self.chars[p, x0:x1] = cells.BLANK
        self.fg[p, x0:x1] = _DEFAULT
        self.bg[p, x0:x1] = bg
        self.attrs[p, x0:x1] = 0
        if self.marks:
            self.drop_marks(p, x0, x1)
        if x0 == 0 and x1 >= self.columns:
            self.wide[p] = False

    def blank_rows(self, y0: int, y1: int, bg: int) -> None:
        """Blank whole logical rows ``y0..y1-1``."""
        if y1 <= y0:
            return
        phys: int | list[int]
        marks = self.marks
        if y1 - y0 == 1:
            phys = self.rows[y0]  # plain indexing is several times cheaper than a list
            self.wide[phys] = False
            if marks:
                marks.pop(phys, None)
        else:
            phys = self.rows[y0:y1]
            for p in phys:
                self.wide[p] = False
                if marks:
                    marks.pop(p, None)
        self.chars[phys] = cells.BLANK
        self.fg[phys] = _DEFAULT
        self.bg[phys] = bg
        self.attrs[phys] = 0

    def scroll_top_one(self, bottom: int, bg: int) -> None:
        """``shift(0, bottom, 1, bg, keep=True)``, the common case (a linefeed), done quickly."""
        rows = self.rows
        p = rows.pop(0)
        if self.capacity:
            history = self.history
            history.append(p)
            if len(history) > self.capacity:
                p = history.popleft()
            elif self.free:
                p = self.free.pop()
            else:
                p = self._recycle()
        rows.insert(bottom, p)
        self.wide[p] = False
        if self.marks:
            self.marks.pop(p, None)
        self.chars[p] = cells.BLANK
        self.fg[p] = _DEFAULT
        self.bg[p] = bg
        self.attrs[p] = 0

    def shift(self, top: int, bottom: int, n: int, bg: int, keep: bool = False) -> int:
        """Shift rows ``top..bottom`` up by ``n`` (down if negative); return the shift done.

        The returned magnitude is capped at the region's height; vacated rows
        are blank. With ``keep`` (and a history), rows shifted out at the top
        go to the history instead of being recycled.
        """
        height = bottom - top + 1
        amount = min(abs(n), height)
        if amount == 0:
            return 0
        rows = self.rows
        end = bottom + 1
        if n > 0:
            if keep and self.capacity:
                gone = rows[top : top + amount]
                self.history.extend(gone)
                recycle = self._recycle
                rows[top:end] = rows[top + amount : end] + [recycle() for _ in gone]
            else:
                rows[top:end] = rows[top + amount : end] + rows[top : top + amount]
            self.blank_rows(end - amount, end, bg)
            return amount
        rows[top:end] = rows[end - amount : end] + rows[top : end - amount]
        self.blank_rows(top, top + amount, bg)
        return -amount

    def _blank_halves(self, p: int, orphan: npt.NDArray[np.bool_]) -> None:
        self.chars[p, orphan] = cells.BLANK
        self.attrs[p, orphan] &= _NOT_WIDE_NOR_COMBINING
        row = self.marks.get(p)
        if row:
            for x in np.flatnonzero(orphan).tolist():
                row.pop(x, None)
            if not row:
                del self.marks[p]

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
            self._blank_halves(p, orphan)

    def unpair(self, p: int, x0: int, x1: int) -> None:
        """Before overwriting ``x0..x1-1`` of physical row ``p``: blank wide halves
        whose partner is outside that range."""
        row = self.attrs[p]
        if x0 > 0 and row[x0] & cells.ATTR_WIDE_RIGHT:
            self.chars[p, x0 - 1] = cells.BLANK
            row[x0 - 1] &= _NOT_WIDE_NOR_COMBINING
            if self.marks:
                self.drop_marks(p, x0 - 1, x0)
        if x1 < self.columns and row[x1 - 1] & cells.ATTR_WIDE_LEFT:
            self.chars[p, x1] = cells.BLANK
            row[x1] &= _NOT_WIDE_NOR_COMBINING

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
        marks = self.marks.get(p)
        if marks:
            moved: dict[int, str] = {}
            for mx, text in marks.items():
                if mx < x:
                    moved[mx] = text
                elif n > 0:
                    if mx + amount < columns:
                        moved[mx + amount] = text
                elif mx >= x + amount:
                    moved[mx - amount] = text
            if moved:
                self.marks[p] = moved
            else:
                del self.marks[p]
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
        if self.marks:
            self.drop_marks(p, x, x + 2)
        self.wide[p] = True
        self.chars[p, x : x + 2] = codepoint
        self.fg[p, x : x + 2] = fg
        self.bg[p, x : x + 2] = bg
        self.attrs[p, x] = attrs | cells.ATTR_WIDE_LEFT
        self.attrs[p, x + 1] = attrs | cells.ATTR_WIDE_RIGHT

    def fill(self, codepoint: int) -> None:
        """Fill every cell of the screen with ``codepoint`` in default colours (DECALN)."""
        rows = self.rows
        self.chars[rows] = codepoint
        self.fg[rows] = _DEFAULT
        self.bg[rows] = _DEFAULT
        self.attrs[rows] = 0
        for p in rows:
            self.wide[p] = False
            self.marks.pop(p, None)

    def resized(self, columns: int, lines: int, first: int) -> CellGrid:
        """A new grid of the given size showing logical rows ``first..`` of this one.

        Rows and columns that fit are kept, new ones are blank, and the history
        is kept; with a history, the rows above ``first`` are added to it.
        """
        grid = CellGrid(columns, lines, self.capacity)
        width = min(columns, self.columns)
        count = max(0, min(lines, self.lines - first))
        kept = self.rows[first : first + count]
        retired: list[int] = []
        if self.capacity:
            retired = [*self.history, *self.rows[:first]][-self.capacity :]
        source = kept + retired
        target = list(range(count))
        if retired:
            new = grid._extend(len(retired))
            target += list(new)
            grid.history.extend(new)
        if source:
            grid.chars[target, :width] = self.chars[source, :width]
            grid.fg[target, :width] = self.fg[source, :width]
            grid.bg[target, :width] = self.bg[source, :width]
            grid.attrs[target, :width] = self.attrs[source, :width]
            for p, q in zip(source, target, strict=True):
                grid.wide[q] = self.wide[p]
                marks = self.marks.get(p)
                if marks:
                    kept_marks = {x: text for x, text in marks.items() if x < width}
                    if kept_marks:
                        grid.marks[q] = kept_marks
        if columns < self.columns:
            # A pair cut by the new right edge leaves its left half in the last column.
            last = columns - 1
            cut = (grid.attrs[:, last] & cells.ATTR_WIDE_LEFT) != 0
            for q in np.flatnonzero(cut).tolist():
                mask = np.zeros(columns, dtype=bool)
                mask[last] = True
                grid._blank_halves(q, mask)
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
        """Logical row ``y`` as text (see ``text_of``)."""
        return self.text_of(self.rows[y])

    def text_of(self, p: int) -> str:
        """Physical row ``p`` as text: the right half of a wide character is skipped,
        combining characters follow their base character."""
        codepoints = self.chars[p]
        marks = self.marks.get(p)
        if marks:
            chars = [chr(c) for c in codepoints.tolist()]
            for x, text in marks.items():
                chars[x] += text
            if self.wide[p]:
                right = ((self.attrs[p] & cells.ATTR_WIDE_RIGHT) != 0).tolist()
                chars = [c for c, skip in zip(chars, right, strict=True) if not skip]
            return "".join(chars)
        if self.wide[p]:
            codepoints = codepoints[(self.attrs[p] & cells.ATTR_WIDE_RIGHT) == 0]
        data: bytes = codepoints.astype("<u4").tobytes()
        return data.decode("utf-32-le", errors="replace")


@dataclass(frozen=True, slots=True)
class SavedCursor:
    """What DECSC saves (one slot per buffer, as in xterm: a second save overwrites the first)."""

    x: int
    y: int
    fg: int
    bg: int
    attrs: int
    g0_charset: str
    g1_charset: str
    charset: int
    origin: bool
    wrap: bool = False  # the pending-wrap state (xterm saves it too)


@dataclass(slots=True)
class ScreenInternals:
    """The private part of a ``CellScreen``'s state, for snapshots (``state.py``).

    The rest (cursor, mode, margins, tabstops, charsets, title, icon_name,
    cursor_shape, size, history_limit) is in the screen's public attributes.
    Owner notifications (replies, bells, title changes, scroll events) are
    not state and are not included.
    """

    primary: CellGrid
    alternate: CellGrid | None
    alternate_shown: bool
    saved_primary: SavedCursor | None  # each buffer's DECSC slot
    saved_alternate: SavedCursor | None
    pen: tuple[int, int, int]  # fg, bg, attrs
    keypad_application: bool
    last_char: str  # what REP repeats


class CellScreen(pyte.Screen):
    """A pyte screen whose cells live in numpy arrays (see the module docstring)."""

    def __init__(self, columns: int, lines: int, history: int = DEFAULT_HISTORY) -> None:
        # pyte's __init__ is not called: it builds the dict buffer replaced here.
        if columns < 1 or lines < 1:
            raise ValueError(f"screen size must be positive, got {columns}x{lines}")
        if history < 0:
            raise ValueError(f"history must not be negative, got {history}")
        self.columns = columns
        self.lines = lines
        self.history_limit = history
        self.savepoints = []  # pyte's attribute; the DECSC slots are ``_saved*``
        self.dirty: set[int] = set()  # pyte's attribute; not maintained, diff cells()
        self.margins: Margins | None = None
        self.title = ""
        self.icon_name = ""
        self._primary = CellGrid(columns, lines, history)
        self._alternate: CellGrid | None = None
        self._grid = self._primary
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
        grid = self._grid
        return [grid.text_of(p) for p in grid.rows]

    @property
    def display(self) -> list[str]:
        """pyte's name for ``text_lines()``."""
        return self.text_lines()

    @property
    def alternate_screen(self) -> bool:
        return self._grid is not self._primary

    @property
    def history_size(self) -> int:
        return len(self._primary.history)

    def view_cells(self, offset: int) -> Cells:
        """The primary screen scrolled back ``offset`` lines; the alternate screen as is."""
        grid = self._grid
        if grid is not self._primary:
            return grid.logical()
        return grid.select(grid.view_rows(offset))

    def view_text(self, offset: int) -> list[str]:
        """``view_cells`` as text lines (the ``text_lines`` convention)."""
        grid = self._grid
        rows = grid.rows if grid is not self._primary else grid.view_rows(offset)
        return [grid.text_of(p) for p in rows]

    def combining_at(self, y: int, x: int) -> str:
        """The combining characters attached to cell (x, y) ("" for none)."""
        if not (0 <= y < self.lines and 0 <= x < self.columns):
            return ""
        return self._grid.mark_at(y, x)

    def view_combining_at(self, offset: int, y: int, x: int) -> str:
        """``combining_at`` for the screen as ``view_cells(offset)`` shows it."""
        if not (0 <= y < self.lines and 0 <= x < self.columns):
            return ""
        grid = self._grid
        rows = grid.rows if grid is not self._primary else grid.view_rows(offset)
        return grid.marks.get(rows[y], {}).get(x, "")

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

    def define_charset(self, code: str, mode: str) -> None:
        """SCS: designate a character set (B, 0, U, V) into G0 (``(``) or G1 (``)``)."""
        charset = _CHARSETS.get(code)
        if charset is None:
            return
        if mode == "(":
            self.g0_charset = charset
        elif mode == ")":
            self.g1_charset = charset

    def reset(self) -> None:
        """RIS: primary buffer, blank, no history, default modes, pen, margins, tabs, charsets.

        The title is kept, as xterm keeps it.
        """
        self._primary = CellGrid(self.columns, self.lines, self.history_limit)
        self._alternate = None
        self._grid = self._primary
        self._scrolls.clear()
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
        self._saved: SavedCursor | None = None  # the shown buffer's DECSC slot
        self._saved_other: SavedCursor | None = None  # the other buffer's
        self._keypad_application = False
        self._last_char = ""
        self.cursor_shape = 0

    # -- snapshots (state.py) ---------------------------------------------------

    def internals(self) -> ScreenInternals:
        """The private state, by reference (the grids are live: copy before keeping)."""
        shown = self.alternate_screen
        return ScreenInternals(
            primary=self._primary,
            alternate=self._alternate,
            alternate_shown=shown,
            saved_primary=self._saved_other if shown else self._saved,
            saved_alternate=self._saved if shown else self._saved_other,
            pen=(self._pen_fg, self._pen_bg, self._pen_attrs),
            keypad_application=self._keypad_application,
            last_char=self._last_char,
        )

    def load_internals(self, parts: ScreenInternals) -> None:
        """Replace the private state (the grids are taken, not copied); ``ValueError``
        if a grid does not have the screen's size or the shown buffer is missing."""
        size = (self.columns, self.lines)
        grids = [parts.primary] if parts.alternate is None else [parts.primary, parts.alternate]
        if any((grid.columns, grid.lines) != size for grid in grids):
            raise ValueError("a grid's size differs from the screen's")
        if parts.alternate_shown and parts.alternate is None:
            raise ValueError("the alternate buffer is shown but missing")
        if parts.primary.capacity != self.history_limit or (
            parts.alternate is not None and parts.alternate.capacity != 0
        ):
            raise ValueError("a grid's history capacity differs from the screen's")
        shown = parts.alternate_shown
        self._primary = parts.primary
        self._alternate = parts.alternate
        self._grid = parts.alternate if shown and parts.alternate is not None else parts.primary
        self._saved = parts.saved_alternate if shown else parts.saved_primary
        self._saved_other = parts.saved_primary if shown else parts.saved_alternate
        self._pen_fg, self._pen_bg, self._pen_attrs = parts.pen
        self._keypad_application = parts.keypad_application
        self._last_char = parts.last_char
        self._scrolls.clear()

    def soft_reset(self, *args: Any, **kwargs: Any) -> None:
        """DECSTR (``CSI ! p``): modes, pen, margins, charsets to defaults; cells, tabs stay.

        As in xterm: autowrap goes back on (VT510 would turn it off), the cursor
        shows and takes the default shape, and the DECSC slot becomes "home, with
        default rendition". The cursor does not move.
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
        self._saved = SavedCursor(0, 0, _DEFAULT, _DEFAULT, 0, cs.LAT1_MAP, cs.LAT1_MAP, 0, False)
        self._keypad_application = False
        self.cursor_shape = 0

    def _first_kept_row(self, grid: CellGrid, lines: int, cursor_y: int) -> int:
        """When shrinking to ``lines``: blank rows below ``cursor_y`` go first, then top rows."""
        excess = self.lines - lines
        if excess <= 0:
            return 0
        bottom = self.lines - 1
        while excess and bottom > cursor_y and grid.row_is_blank(bottom):
            bottom -= 1
            excess -= 1
        return excess

    def resize(self, lines: int | None = None, columns: int | None = None) -> None:
        """Change the size, keeping the content that fits, in both buffers.

        When lines shrink, blank rows below the cursor go first, then rows from
        the top (to the history, for the primary buffer), so the cursor's row
        stays on screen (tmux's rule; for the buffer not shown, its saved cursor,
        if any, stands for the cursor). Columns are cut or added on the right.
        Margins are reset, pending scroll events dropped.
        """
        lines = lines or self.lines
        columns = columns or self.columns
        if lines < 1 or columns < 1:
            raise ValueError(f"screen size must be positive, got {columns}x{lines}")
        if lines == self.lines and columns == self.columns:
            return
        cursor = self.cursor
        shown = self._grid
        alternate = self.alternate_screen
        grids: list[tuple[CellGrid, bool]] = [(self._primary, not alternate)]
        if self._alternate is not None:
            grids.append((self._alternate, alternate))
        for grid, is_shown in grids:
            saved = self._saved if is_shown else self._saved_other
            cursor_y = saved.y if saved is not None and not is_shown else cursor.y
            first = self._first_kept_row(grid, lines, cursor_y)
            new = grid.resized(columns, lines, first)
            if grid is self._primary:
                self._primary = new
            else:
                self._alternate = new
            if grid is shown:
                self._grid = new
                cursor.y = min(max(cursor.y - first, 0), lines - 1)
            if saved is not None:
                moved = replace(
                    saved, x=min(saved.x, columns - 1), y=min(max(saved.y - first, 0), lines - 1)
                )
                if is_shown:
                    self._saved = moved
                else:
                    self._saved_other = moved
        old_columns = self.columns
        self.lines, self.columns = lines, columns
        cursor.x = min(cursor.x, columns - 1)
        self.margins = None
        # Pending scroll events describe the old geometry; a resize repaints all anyway.
        self._scrolls.clear()
        kept = {stop for stop in self.tabstops if stop < columns}
        kept.update(range((old_columns + 7) // 8 * 8, columns, 8))
        self.tabstops = kept

    # -- buffers ----------------------------------------------------------------

    def _switch_buffer(self, alternate: bool) -> None:
        if alternate == self.alternate_screen:
            return
        if alternate:
            grid = self._alternate
            if grid is None or (grid.columns, grid.lines) != (self.columns, self.lines):
                grid = self._alternate = CellGrid(self.columns, self.lines)
            self._grid = grid
        else:
            self._grid = self._primary
        self._saved, self._saved_other = self._saved_other, self._saved
        # Scroll events moved rows of the other buffer: they say nothing about this one.
        self._scrolls.clear()

    def _clear_screen(self) -> None:
        self._grid.blank_rows(0, self.lines, self._pen_bg)

    def _set_private(self, number: int, on: bool) -> bool:
        """Act on the private modes that are not flags; False for the others."""
        if number in (ALTERNATE_47, ALTERNATE_1047):
            if not on and number == ALTERNATE_1047 and self.alternate_screen:
                self._clear_screen()
            self._switch_buffer(on)
        elif number == ALTERNATE_1049:
            if on:
                self.save_cursor()
                self._switch_buffer(True)
                self._clear_screen()
            else:
                self._switch_buffer(False)
                self.restore_cursor()
        elif number == SAVE_CURSOR_1048:
            if on:
                self.save_cursor()
            else:
                self.restore_cursor()
        else:
            return False
        return True

    # -- writing text -------------------------------------------------------

    def draw(self, data: str, **kwargs: Any) -> None:
        """Write printable text at the cursor (pyte's ``draw``, rewritten).

        Widths follow the policy in the module docstring; zero-width characters
        attach to the previous cell and never drop the rest of the run; control
        characters never print.
        """
        if not data:
            return
        self._last_char = data[-1]  # REP repeats it untranslated, as xterm does
        charset = self.g1_charset if self.charset else self.g0_charset
        if charset is not cs.LAT1_MAP:
            data = data.translate(charset)
        if data.isascii() and data.isprintable():
            # The fast path: all narrow, written with numpy slices, no width lookups.
            self._put_run(data)
            return
        # Runs of narrow and of wide characters are written whole; marks attach one by one.
        run: list[str] = []
        run_width = 1
        for char in data:
            width = _width(char)
            if width == run_width:
                run.append(char)
                continue
            if width < 0 or char == "\x00":
                continue  # a control: never printed
            if run:
                self._flush(run, run_width)
                run.clear()
            if width == 0:
                self._attach(char)
            else:
                run.append(char)
                run_width = width
        if run:
            self._flush(run, run_width)

    def _flush(self, run: list[str], width: int) -> None:
        if width == 1:
            self._put_run("".join(run))
        else:
            self._put_wide_run(run)

    def _put_run(self, text: str) -> None:
        """Write a run of narrow characters, wrapping at the right margin."""
        if text.isascii():
            codepoints: npt.NDArray[Any] = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
        else:
            codepoints = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
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
            if grid.marks and p in grid.marks:
                grid.drop_marks(p, x, end)
            grid.chars[p, x:end] = chunk
            grid.fg[p, x:end] = fg
            grid.bg[p, x:end] = bg
            grid.attrs[p, x:end] = attrs
            cursor.x = end
            pos += take

    def _put_wide_run(self, chars: list[str]) -> None:
        """Write a run of wide characters, each wrapping whole at the right margin."""
        columns = self.columns
        if columns < 2:
            return  # a wide character cannot be shown on a one-column screen
        if mo.DECAWM not in self.mode:
            for char in chars:
                self._put_wide(char)  # each lands on the last two columns in turn
            return
        codepoints = np.array([ord(char) for char in chars], dtype=cells.CHAR_DTYPE)
        grid = self._grid
        cursor = self.cursor
        insert = mo.IRM in self.mode
        fg, bg, attrs = self._pen_fg, self._pen_bg, self._pen_attrs
        count = len(codepoints)
        pos = 0
        while pos < count:
            x = cursor.x
            if x >= columns - 1:
                # Wrap whole rather than split the character across lines.
                self.carriage_return()
                self.index()
                x = 0
            take = min((columns - x) // 2, count - pos)
            end = x + 2 * take
            if insert:
                grid.shift_cells(cursor.y, x, end - x, self._pen_bg)
            p = grid.rows[cursor.y]
            if grid.wide[p]:
                grid.unpair(p, x, end)
            if grid.marks and p in grid.marks:
                grid.drop_marks(p, x, end)
            grid.wide[p] = True
            grid.chars[p, x:end] = np.repeat(codepoints[pos : pos + take], 2)
            grid.fg[p, x:end] = fg
            grid.bg[p, x:end] = bg
            grid.attrs[p, x:end:2] = attrs | cells.ATTR_WIDE_LEFT
            grid.attrs[p, x + 1 : end : 2] = attrs | cells.ATTR_WIDE_RIGHT
            cursor.x = end
            pos += take

    def _put_wide(self, char: str) -> None:
        columns = self.columns
        if columns < 2:
            return  # a wide character cannot be shown on a one-column screen
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

    def _attach(self, mark: str) -> None:
        """Attach a zero-width character to the cell before the cursor."""
        x = min(self.cursor.x, self.columns) - 1
        if x < 0:
            return
        grid = self._grid
        p = grid.rows[self.cursor.y]
        if x > 0 and grid.attrs[p, x] & cells.ATTR_WIDE_RIGHT:
            x -= 1
        grid.add_mark(p, x, mark)

    def repeat_character(self, count: int | None = None, *args: Any, **kwargs: Any) -> None:
        """REP (``CSI n b``): repeat the last printed character if it has a width."""
        char = self._last_char
        width = _width(char) if char else 0
        if width <= 0:
            return
        count = count or 1
        # Beyond what fits on the screen and in the history the result repeats
        # with the line: cut whole lines off a huge count, the outcome is the same.
        per_line = self.columns if width == 1 else max(1, self.columns // 2)
        limit = per_line * (self.lines + self.history_limit + 2)
        if count > limit:
            count = limit + (count - limit) % per_line
        self.draw(char * count)

    # -- scrolling and lines ------------------------------------------------

    def _region(self) -> tuple[int, int]:
        margins = self.margins
        if margins is None:
            return 0, self.lines - 1
        return margins.top, margins.bottom

    def _scroll(self, top: int, bottom: int, n: int) -> None:
        """Shift ``top..bottom`` by ``n`` (up if positive) and record the event.

        Lines leaving through row 0 go to the history (only the primary buffer has one).
        """
        if n == 1 and top == 0:
            self._grid.scroll_top_one(bottom, self._pen_bg)
            done = 1
        else:
            done = self._grid.shift(top, bottom, n, self._pen_bg, top == 0)
            if done == 0:
                return
        events = self._scrolls
        if events:
            last = events[-1]
            # Two shifts the same way compose into one; vacated rows are blank either way.
            if last[0] == top and last[1] == bottom and (last[2] > 0) == (done > 0):
                height = bottom - top + 1
                total = last[2] + done
                if total > height:
                    total = height
                elif total < -height:
                    total = -height
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
        cursor = self.cursor
        if cursor.x >= self.columns:
            cursor.x = self.columns - 1  # any motion ends the pending wrap
        margins = self.margins
        if margins is None:
            top, bottom = 0, self.lines - 1
        else:
            top, bottom = margins
        y = cursor.y
        if y == bottom:
            self._scroll(top, bottom, 1)
        elif y < self.lines - 1:
            # Below the region the cursor still moves, up to the last line.
            cursor.y = y + 1

    def linefeed(self, *args: Any, **kwargs: Any) -> None:
        """LF / VT / FF: index, and carriage return under LNM."""
        self.index()
        if mo.LNM in self.mode:
            self.cursor.x = 0

    def reverse_index(self, *args: Any, **kwargs: Any) -> None:
        """RI: up one row, scrolling the region down at its top margin."""
        self._end_wrap()
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
        """IL: open blank lines at the cursor row inside the region; the cursor goes to
        column 0 (xterm does that even outside the region, where IL does nothing else)."""
        top, bottom = self._region()
        y = self.cursor.y
        self.carriage_return()
        if top <= y <= bottom:
            self._scroll(y, bottom, -(count or 1))

    def delete_lines(self, count: int | None = None, *args: Any, **kwargs: Any) -> None:
        """DL: remove lines at the cursor row; the region below moves up.

        On row 0 of the primary buffer the removed lines go to the history (xterm).
        """
        top, bottom = self._region()
        y = self.cursor.y
        self.carriage_return()
        if top <= y <= bottom:
            self._scroll(y, bottom, count or 1)

    # -- editing within a line ----------------------------------------------

    def _end_wrap(self) -> None:
        if self.cursor.x >= self.columns:
            self.cursor.x = self.columns - 1

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
        """ED 0/1/2; ED 3 clears the primary buffer's history only (xterm)."""
        y = self.cursor.y
        if how == 0:
            self.erase_in_line(0)
            self._grid.blank_rows(y + 1, self.lines, self._pen_bg)
        elif how == 1:
            self.erase_in_line(1)
            self._grid.blank_rows(0, y, self._pen_bg)
        elif how == 2:
            self._edit_column()
            self._grid.blank_rows(0, self.lines, self._pen_bg)
        elif how == 3:
            self._primary.clear_history()

    def alignment_display(self, *args: Any, **kwargs: Any) -> None:
        """DECALN: fill with ``E``, reset margins, home the cursor."""
        self._grid.fill(ord("E"))
        self.margins = None
        self.cursor.x = self.cursor.y = 0

    # -- cursor -------------------------------------------------------------

    def cursor_up(self, count: int | None = None, *args: Any, **kwargs: Any) -> None:
        """CUU: stops at the top margin, or at row 0 when above the region."""
        self._end_wrap()
        top, _bottom = self._region()
        y = self.cursor.y
        limit = top if y >= top else 0
        self.cursor.y = max(y - (count or 1), limit)

    def cursor_down(self, count: int | None = None, *args: Any, **kwargs: Any) -> None:
        """CUD: stops at the bottom margin, or at the last row when below the region."""
        self._end_wrap()
        _top, bottom = self._region()
        y = self.cursor.y
        limit = bottom if y <= bottom else self.lines - 1
        self.cursor.y = min(y + (count or 1), limit)

    def cursor_position(
        self, line: int | None = None, column: int | None = None, *args: Any, **kwargs: Any
    ) -> None:
        """CUP / HVP; under DECOM rows count from the top margin and stop at the bottom one."""
        y = (line or 1) - 1
        last = self.lines - 1
        if mo.DECOM in self.mode and self.margins is not None:
            y += self.margins.top
            last = self.margins.bottom
        self.cursor.y = min(y, last)
        self.cursor.x = min((column or 1) - 1, self.columns - 1)

    def cursor_to_line(self, line: int | None = None, *args: Any, **kwargs: Any) -> None:
        """VPA; relative to the top margin under DECOM (pyte asserts there)."""
        self._end_wrap()
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
        """DECSC (``ESC 7``, ``CSI s``): one slot per buffer, overwritten by the next save."""
        x = self.cursor.x
        self._saved = SavedCursor(
            x=min(x, self.columns - 1),
            y=self.cursor.y,
            fg=self._pen_fg,
            bg=self._pen_bg,
            attrs=self._pen_attrs,
            g0_charset=self.g0_charset,
            g1_charset=self.g1_charset,
            charset=self.charset,
            origin=mo.DECOM in self.mode,
            wrap=x >= self.columns,
        )

    def restore_cursor(self, *args: Any, **kwargs: Any) -> None:
        """DECRC (``ESC 8``, ``CSI u``): the slot stays, so restoring twice is the same.

        Without a save: home, default rendition and charsets, origin mode off.
        Under origin mode the row is kept inside the margins.
        """
        saved = self._saved
        if saved is None:
            self.mode.discard(mo.DECOM)
            self._pen_fg = self._pen_bg = _DEFAULT
            self._pen_attrs = 0
            self.charset = 0
            self.g0_charset = self.g1_charset = cs.LAT1_MAP
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
        x = min(saved.x, self.columns - 1)
        y = min(saved.y, self.lines - 1)
        if saved.origin and self.margins is not None:
            y = min(max(y, self.margins.top), self.margins.bottom)
        if saved.wrap and x == self.columns - 1:
            x = self.columns
        self.cursor.x = x
        self.cursor.y = y

    # -- modes --------------------------------------------------------------

    def set_mode(self, *modes: int, **kwargs: Any) -> None:
        """SM / DECSET for the modes in ``KNOWN_MODES`` and the buffer modes; others are ignored."""
        private = bool(kwargs.get("private"))
        shift = 5 if private else 0
        for number in modes:
            if private and self._set_private(number, True):
                continue
            code = number << shift
            if code not in KNOWN_MODES:
                continue
            if code in MOUSE_TRACKING:
                self.mode.difference_update(MOUSE_TRACKING)
            elif code in MOUSE_ENCODINGS:
                self.mode.difference_update(MOUSE_ENCODINGS)
            self.mode.add(code)
            if code == mo.DECOM:
                self.cursor_position()
            elif code == mo.DECTCEM:
                self.cursor.hidden = False

    def reset_mode(self, *modes: int, **kwargs: Any) -> None:
        """RM / DECRST for the modes in ``KNOWN_MODES`` and the buffer modes; others are ignored.

        Resetting any mouse tracking mode turns mouse tracking off (xterm).
        """
        private = bool(kwargs.get("private"))
        shift = 5 if private else 0
        for number in modes:
            if private and self._set_private(number, False):
                continue
            code = number << shift
            if code not in KNOWN_MODES:
                continue
            if code in MOUSE_TRACKING:
                self.mode.difference_update(MOUSE_TRACKING)
            self.mode.discard(code)
            if code == mo.DECOM:
                self.cursor_position()
            elif code == mo.DECTCEM:
                self.cursor.hidden = True

    def set_tab_stop(self, *args: Any, **kwargs: Any) -> None:
        """HTS; a pending wrap sets the stop on the last column, not past it."""
        self.tabstops.add(min(self.cursor.x, self.columns - 1))

    def clear_tab_stop(self, how: int = 0, *args: Any, **kwargs: Any) -> None:
        """TBC 0 (at the cursor's column) and TBC 3 (all); others are ignored."""
        if how == 0:
            self.tabstops.discard(min(self.cursor.x, self.columns - 1))
        elif how == 3:
            self.tabstops = set()

    def keypad_application_mode(self, *args: Any, **kwargs: Any) -> None:
        """DECKPAM (``ESC =``)."""
        self._keypad_application = True

    def keypad_numeric_mode(self, *args: Any, **kwargs: Any) -> None:
        """DECKPNM (``ESC >``)."""
        self._keypad_application = False

    def set_cursor_style(self, shape: int = 0, *args: Any, **kwargs: Any) -> None:
        """DECSCUSR (``CSI Ps SP q``): 0..6 are kept; other values are ignored."""
        if shape in CURSOR_SHAPES:
            self.cursor_shape = shape

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

    def report_secondary_device_attributes(self, mode: int = 0, *args: Any) -> None:
        """DA2 (``CSI > c`` / ``CSI > 0 c``)."""
        if mode == 0:
            self.write_process_input(DA2_REPLY)

    def report_tertiary_device_attributes(self, mode: int = 0, *args: Any) -> None:
        """DA3 (``CSI = c`` / ``CSI = 0 c``)."""
        if mode == 0:
            self.write_process_input(DA3_REPLY)

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

    def report_palette_colour(self, index: int, terminator: str = "\x1b\\") -> None:
        """Answer ``OSC 4 ; index ; ?`` with the default palette entry, as xterm does."""
        if 0 <= index <= 255:
            spec = xterm_colour_spec(palette_rgb(index))
            self.write_process_input(f"\x1b]4;{index};{spec}{terminator}")

    def report_dynamic_colour(self, code: int, terminator: str = "\x1b\\") -> None:
        """Answer ``OSC 10/11/12 ; ?`` (foreground, background, cursor colour)."""
        colours = {10: DEFAULT_FG, 11: DEFAULT_BG, 12: DEFAULT_FG}
        colour = colours.get(code)
        if colour is not None:
            self.write_process_input(f"\x1b]{code};{xterm_colour_spec(colour)}{terminator}")

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
