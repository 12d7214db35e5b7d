"""Console snapshots: a terminal's whole state as a versioned, checksummed file.

This module owns the snapshot: what it holds (``TerminalState``, taken from a
live ``Terminal`` by ``capture`` and turned back into one by ``restore``), its
byte format (``Snapshot.to_bytes`` / ``from_bytes``) and its file on the
domain's root filesystem (``write_snapshot`` / ``read_snapshot``). It does no
other I/O and reads no clock.

What a snapshot holds, enough for the restored terminal to behave exactly as
the captured one for any further input: both screen buffers (cells and
combining characters), the primary buffer's history, the cursor (position,
pending wrap, visibility, shape), each buffer's DECSC slot, the modes, the
keypad mode, the character sets (as designation codes, not tables), margins,
tab stops, title and icon name, the pen, the last printed character (for REP),
the size and history limit, the UTF-8 decoder's pending bytes, the escape
sequence parser's state, and the console byte offset the state corresponds
to. Not held: what the terminal owes its owner (replies, bells, title-changed
flag, scroll events: the owner drains them after every feed) and the count of
handler errors. There is no palette state: colour changes are not supported,
colours are stored unresolved in the cells. Pixels are never stored. When
the history would not fit in ``MAX_SNAPSHOT_BYTES``, its oldest lines are
left out (the only loss; never with the configured sizes' defaults).

The format (all integers big-endian)::

    magic     8 bytes  b"VZVNCST\\0"
    version   u16      FORMAT_VERSION; older versions are migrated on load
    flags     u16      0 (any other value is refused)
    raw size  u64      size of the payload once decompressed
    zsize     u64      size of the compressed payload that follows
    payload   zsize    zlib: u32 JSON length, JSON document, arrays
    checksum  32 bytes sha256 of everything before it

The JSON document (ASCII, sorted keys) holds the scalars and structures and
lists the arrays, each with its name, explicit dtype and shape; the arrays'
raw bytes follow the document in that order. Per buffer: ``chars``, ``fg``,
``bg`` (``<u4``) and ``attrs`` (``<u2``) of shape (rows, columns), the history
rows (oldest first) followed by the screen rows; ``wide`` (``|u1``, one per
row, the grid's "may hold wide characters" hint); and the combining
characters as ``mark_rows`` (``<u4``), ``mark_columns`` (``<u2``),
``mark_lengths`` (``|u1``) and ``mark_text`` (``<u4`` code points), sorted by
position. Never pickle.

Loading trusts nothing: the container's root can replace the file with
anything. The file's size is checked before it is read, the checksum before
anything is decompressed, and decompression writes into a buffer of the
declared size (at most ``MAX_SNAPSHOT_BYTES``) and stops there, so a zlib bomb
costs no more; then every key, type, range, dtype and shape is checked, the
shapes against the declared screen size before any array is made.

Files are written atomically (a temporary file created with O_EXCL and
O_NOFOLLOW relative to a directory fd, fsync, rename, fsync of the directory)
and read without following symlinks, without opening anything but a regular
file, and with a size limit. The directory's last component is never followed
either, nor any component below ``root`` when the caller names the tree the
container controls. A file that fails is moved aside to
``<name>.corrupt-<n>`` and ``SnapshotError`` tells why.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import hashlib
import itertools
import json
import logging
import os
import stat
import struct
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
from pyte.screens import Margins

from vzvnc.errors import VzvncError
from vzvnc.term import cells
from vzvnc.term.screen import _CHARSETS as CHARSETS
from vzvnc.term.screen import (
    CURSOR_SHAPES,
    KNOWN_MODES,
    MAX_COMBINING,
    AttrArray,
    CellGrid,
    CharArray,
    ColourArray,
    SavedCursor,
    ScreenInternals,
)
from vzvnc.term.stream import MAX_OSC_CHARS, ParserState, parser_state_replay
from vzvnc.term.terminal import Terminal

_log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024  # the file, and the payload once decompressed

MAGIC = b"VZVNCST\0"
_HEADER = struct.Struct(">8sHHQQ")  # magic, version, flags, raw size, compressed size
_DIGEST_BYTES = 32
_JSON_LENGTH = struct.Struct(">I")

MAX_DIMENSION = 4096  # columns, and lines
MAX_CELLS = 1 << 21  # columns * lines: both buffers must fit in a snapshot
MAX_HISTORY_LIMIT = 1_000_000
MAX_MARKS = 1 << 20  # combining-character entries per buffer
MAX_JSON_BYTES = 1 << 20
MAX_OFFSET = (1 << 63) - 1
MAX_TEXT = MAX_OSC_CHARS  # title and icon name come from an OSC
_ARRAY_BUDGET = MAX_SNAPSHOT_BYTES - MAX_JSON_BYTES - 4096  # what capture lets arrays take
_CELL_BYTES = 4 + 4 + 4 + 2  # chars, fg, bg, attrs
_INFLATE_CHUNK = 4 << 20
_MARK_BYTES = 4 + 2 + 1  # row, column, length (plus 4 per code point)
_MAX_NAME = 200  # file names, leaving room for the suffixes under NAME_MAX
_MAX_ASIDE = 100  # <name>.corrupt-1 .. -100; past that the bad file is removed

_CHARSET_CODES = tuple(sorted(CHARSETS))
_PARSER_KINDS = ("ground", "escape", "csi", "osc", "string")
_BUFFER_ARRAYS = (
    ("chars", "<u4"),
    ("fg", "<u4"),
    ("bg", "<u4"),
    ("attrs", "<u2"),
    ("wide", "|u1"),
    ("mark_rows", "<u4"),
    ("mark_columns", "<u2"),
    ("mark_lengths", "|u1"),
    ("mark_text", "<u4"),
)

# One function per version step: _MIGRATIONS[n] turns a version n document into
# a version n + 1 one (arrays follow the document unchanged unless a step says so).
_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


class SnapshotError(VzvncError):
    """A snapshot is corrupt, hostile or of an unsupported version, or its file could
    not be read or written; the message says what is wrong. The caller logs it and
    starts fresh (or goes on without a snapshot)."""

    exit_code = os.EX_DATAERR


# -- what a snapshot holds ---------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BufferState:
    """One screen buffer: ``history`` history rows (oldest first), then the screen rows.

    Arrays are read-only once the state is made. ``wide[r]`` is the grid's hint
    that row ``r`` may hold wide characters. Combining characters: entry ``i``
    attaches ``mark_lengths[i]`` code points of ``mark_text`` (consecutive,
    in entry order) to cell ``mark_columns[i]`` of row ``mark_rows[i]``.
    """

    chars: CharArray
    fg: ColourArray
    bg: ColourArray
    attrs: AttrArray
    wide: npt.NDArray[np.bool_]
    history: int
    mark_rows: npt.NDArray[np.uint32]
    mark_columns: npt.NDArray[np.uint16]
    mark_lengths: npt.NDArray[np.uint8]
    mark_text: npt.NDArray[np.uint32]

    def __post_init__(self) -> None:
        _check_buffer(self)
        for array in self.arrays():
            array.flags.writeable = False

    def arrays(self) -> tuple[npt.NDArray[Any], ...]:
        return (
            self.chars,
            self.fg,
            self.bg,
            self.attrs,
            self.wide,
            self.mark_rows,
            self.mark_columns,
            self.mark_lengths,
            self.mark_text,
        )

    @property
    def rows(self) -> int:
        return int(self.chars.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BufferState):
            return NotImplemented
        return self.history == other.history and all(
            a.dtype == b.dtype and np.array_equal(a, b)
            for a, b in zip(self.arrays(), other.arrays(), strict=True)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class SavedCursorState:
    """A DECSC slot; charsets as designation codes (``B``, ``0``, ``U``, ``V``)."""

    x: int
    y: int
    fg: int
    bg: int
    attrs: int
    g0: str
    g1: str
    shift: int  # 0: G0 active, 1: G1 (SO)
    origin: bool
    wrap: bool


@dataclass(frozen=True)
class TerminalState:
    """Everything a ``Terminal`` needs to carry on exactly (see the module docstring).

    Validated when made: a ``TerminalState`` that exists is one ``restore`` can load.
    """

    columns: int
    lines: int
    history_limit: int
    primary: BufferState
    alternate: BufferState | None  # None until the alternate buffer was first shown
    alternate_shown: bool
    cursor_x: int  # == columns in the pending-wrap state
    cursor_y: int
    cursor_hidden: bool
    cursor_shape: int
    pen_fg: int
    pen_bg: int
    pen_attrs: int
    modes: frozenset[int]  # pyte's encoding: private modes shifted left by 5
    keypad_application: bool
    g0: str
    g1: str
    shift: int
    margins: tuple[int, int] | None
    tab_stops: tuple[int, ...]
    title: str
    icon_name: str
    last_char: str
    saved_primary: SavedCursorState | None
    saved_alternate: SavedCursorState | None
    decoder_pending: bytes  # an incomplete UTF-8 sequence (0..3 bytes)
    parser: ParserState

    def __post_init__(self) -> None:
        _check_terminal(self)


@dataclass(frozen=True)
class Snapshot:
    """A terminal's state and the console byte offset (journal position) it corresponds to."""

    terminal_state: TerminalState
    offset: int

    def __post_init__(self) -> None:
        _require(_is_int(self.offset) and 0 <= self.offset <= MAX_OFFSET, "bad console offset")

    def to_bytes(self) -> bytes:
        """The file format of the module docstring; the same snapshot gives the same bytes."""
        document, arrays = _encode(self)
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        encoded = text.encode("ascii")
        if len(encoded) > MAX_JSON_BYTES:
            raise SnapshotError("snapshot document too large")
        raw = b"".join((_JSON_LENGTH.pack(len(encoded)), encoded, *arrays))
        if len(raw) > MAX_SNAPSHOT_BYTES:
            raise SnapshotError(f"snapshot too large ({len(raw)} bytes)")
        compressed = zlib.compress(raw, 6)
        body = _HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(raw), len(compressed)) + compressed
        data = body + hashlib.sha256(body).digest()
        if len(data) > MAX_SNAPSHOT_BYTES:
            raise SnapshotError(f"snapshot too large ({len(data)} bytes compressed)")
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> Snapshot:
        """Parse and fully validate; ``SnapshotError`` on anything wrong."""
        return _decode(data)


# -- capture and restore --------------------------------------------------------------


def capture(terminal: Terminal, offset: int) -> Snapshot | None:
    """The terminal's state now, for console offset ``offset``.

    The parser and the UTF-8 decoder are captured mid-sequence too, so this is
    None only when the terminal is in a state this module does not know (a
    bug, logged). When the primary buffer's history would not fit in
    ``MAX_SNAPSHOT_BYTES`` its oldest lines are left out.
    """
    screen, stream = terminal.internals()
    parser = stream.parser_state()
    if parser is None:
        _log.error("cannot capture the terminal: unknown parser state")
        return None
    pending, flag = stream.utf8_decoder.getstate()
    if flag != 0 or not isinstance(pending, bytes):
        _log.error("cannot capture the terminal: unknown UTF-8 decoder state")
        return None
    parts = screen.internals()
    try:
        g0, g1 = _charset_code(screen.g0_charset), _charset_code(screen.g1_charset)
        saved = [_saved_state(parts.saved_primary), _saved_state(parts.saved_alternate)]
    except KeyError:
        _log.error("cannot capture the terminal: unknown character set")
        return None
    columns, lines = int(screen.columns), int(screen.lines)
    fixed = 0
    fixed_marks = 0
    screens = [parts.primary.rows]
    if parts.alternate is not None:
        screens.append(parts.alternate.rows)
    grids = [parts.primary] if parts.alternate is None else [parts.primary, parts.alternate]
    for grid, rows in zip(grids, screens, strict=True):
        cost, marks = _row_costs(grid, rows)
        fixed += int(cost.sum())
        fixed_marks += int(marks.sum())
    keep = _history_kept(parts.primary, _ARRAY_BUDGET - fixed, MAX_MARKS - fixed_marks)
    if keep is None:
        _log.error("cannot capture the terminal: %dx%d screens do not fit", columns, lines)
        return None
    history = list(parts.primary.history)
    if keep < len(history):
        _log.warning("snapshot keeps %d of %d history lines (size limit)", keep, len(history))
        history = history[len(history) - keep :]
    margins = screen.margins
    try:
        state = TerminalState(
            columns=columns,
            lines=lines,
            history_limit=int(screen.history_limit),
            primary=_buffer_state(parts.primary, history),
            alternate=None if parts.alternate is None else _buffer_state(parts.alternate, []),
            alternate_shown=parts.alternate_shown,
            cursor_x=int(screen.cursor.x),
            cursor_y=int(screen.cursor.y),
            cursor_hidden=bool(screen.cursor.hidden),
            cursor_shape=int(screen.cursor_shape),
            pen_fg=parts.pen[0],
            pen_bg=parts.pen[1],
            pen_attrs=parts.pen[2],
            modes=frozenset(int(mode) for mode in screen.mode),
            keypad_application=parts.keypad_application,
            g0=g0,
            g1=g1,
            shift=int(screen.charset),
            margins=None if margins is None else (int(margins.top), int(margins.bottom)),
            tab_stops=tuple(sorted(int(stop) for stop in screen.tabstops)),
            title=str(screen.title),
            icon_name=str(screen.icon_name),
            last_char=parts.last_char,
            saved_primary=saved[0],
            saved_alternate=saved[1],
            decoder_pending=pending,
            parser=parser,
        )
        return Snapshot(state, offset)
    except SnapshotError:
        _log.exception("cannot capture the terminal: its state does not validate")
        return None


def restore(snapshot: Snapshot) -> Terminal:
    """A new terminal that behaves exactly as the captured one for any further input."""
    state = snapshot.terminal_state
    columns, lines = state.columns, state.lines
    terminal = Terminal(columns, lines, history=state.history_limit)
    screen, stream = terminal.internals()
    alternate = state.alternate
    screen.load_internals(
        ScreenInternals(
            primary=_grid(state.primary, columns, lines, state.history_limit),
            alternate=None if alternate is None else _grid(alternate, columns, lines, 0),
            alternate_shown=state.alternate_shown,
            saved_primary=_saved_cursor(state.saved_primary),
            saved_alternate=_saved_cursor(state.saved_alternate),
            pen=(state.pen_fg, state.pen_bg, state.pen_attrs),
            keypad_application=state.keypad_application,
            last_char=state.last_char,
        )
    )
    screen.cursor.x = state.cursor_x
    screen.cursor.y = state.cursor_y
    screen.cursor.hidden = state.cursor_hidden
    screen.cursor_shape = state.cursor_shape
    screen.mode = set(state.modes)
    screen.g0_charset = CHARSETS[state.g0]
    screen.g1_charset = CHARSETS[state.g1]
    screen.charset = state.shift
    screen.margins = None if state.margins is None else Margins(*state.margins)
    screen.tabstops = set(state.tab_stops)
    screen.title = state.title
    screen.icon_name = state.icon_name
    stream.utf8_decoder.setstate((state.decoder_pending, 0))
    stream.load_parser_state(state.parser)
    return terminal


def _charset_code(table: str) -> str:
    """The designation code of a charset table; KeyError if it is none of ours."""
    for code in _CHARSET_CODES:
        if CHARSETS[code] is table:
            return code
    for code in _CHARSET_CODES:
        if CHARSETS[code] == table:
            return code
    raise KeyError("unknown charset table")


def _saved_state(saved: SavedCursor | None) -> SavedCursorState | None:
    if saved is None:
        return None
    g0, g1 = _charset_code(saved.g0_charset), _charset_code(saved.g1_charset)
    return SavedCursorState(
        x=saved.x,
        y=saved.y,
        fg=saved.fg,
        bg=saved.bg,
        attrs=saved.attrs,
        g0=g0,
        g1=g1,
        shift=saved.charset,
        origin=saved.origin,
        wrap=saved.wrap,
    )


def _saved_cursor(saved: SavedCursorState | None) -> SavedCursor | None:
    if saved is None:
        return None
    return SavedCursor(
        x=saved.x,
        y=saved.y,
        fg=saved.fg,
        bg=saved.bg,
        attrs=saved.attrs,
        g0_charset=CHARSETS[saved.g0],
        g1_charset=CHARSETS[saved.g1],
        charset=saved.shift,
        origin=saved.origin,
        wrap=saved.wrap,
    )


def _mark_cost(text: str) -> int:
    return _MARK_BYTES + 4 * len(text)


def _row_costs(
    grid: CellGrid, rows: list[int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Bytes and combining entries each of the physical ``rows`` takes in a snapshot."""
    cost = np.full(len(rows), grid.columns * _CELL_BYTES + 1, dtype=np.int64)
    marks = np.zeros(len(rows), dtype=np.int64)
    if grid.marks:
        where = {p: i for i, p in enumerate(rows)}
        for p, row in grid.marks.items():
            i = where.get(p)
            if i is not None and row:
                cost[i] += sum(_mark_cost(text) for text in row.values())
                marks[i] += len(row)
    return cost, marks


def _history_kept(grid: CellGrid, budget: int, mark_budget: int) -> int | None:
    """How many of the newest history lines fit in the budgets (None: not even the screens)."""
    if budget < 0 or mark_budget < 0:
        return None
    history = list(grid.history)
    cost, marks = _row_costs(grid, history)
    total_cost = np.cumsum(cost[::-1])
    total_marks = np.cumsum(marks[::-1])
    by_bytes = int(np.searchsorted(total_cost, budget, side="right"))
    by_marks = int(np.searchsorted(total_marks, mark_budget, side="right"))
    return min(len(history), by_bytes, by_marks)


def _buffer_state(grid: CellGrid, history: list[int]) -> BufferState:
    """A copy of ``grid``: the given history rows (physical, oldest first), then the screen."""
    rows = [*history, *grid.rows]
    mark_rows: list[int] = []
    mark_columns: list[int] = []
    texts: list[str] = []
    if grid.marks:
        where = {p: i for i, p in enumerate(rows)}
        found: list[tuple[int, int, str]] = []
        for p, row in grid.marks.items():
            i = where.get(p)
            if i is not None:
                found.extend((i, x, text) for x, text in row.items() if text)
        for i, x, text in sorted(found):
            mark_rows.append(i)
            mark_columns.append(x)
            texts.append(text)
    text = "".join(texts)
    return BufferState(
        chars=grid.chars[rows],
        fg=grid.fg[rows],
        bg=grid.bg[rows],
        attrs=grid.attrs[rows],
        wide=np.array([grid.wide[p] for p in rows], dtype=np.bool_),
        history=len(history),
        mark_rows=np.array(mark_rows, dtype=np.uint32),
        mark_columns=np.array(mark_columns, dtype=np.uint16),
        mark_lengths=np.array([len(t) for t in texts], dtype=np.uint8),
        mark_text=np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(
            np.uint32
        ),
    )


def _grid(buffer: BufferState, columns: int, lines: int, capacity: int) -> CellGrid:
    """A live grid from a buffer: history in physical rows 0.., the screen after it."""
    grid = CellGrid(columns, lines, capacity)
    history = buffer.history
    grid.chars = buffer.chars.copy()
    grid.fg = buffer.fg.copy()
    grid.bg = buffer.bg.copy()
    grid.attrs = buffer.attrs.copy()
    grid.wide = [bool(flag) for flag in buffer.wide.tolist()]
    grid.rows = list(range(history, history + lines))
    grid.history = deque(range(history))
    grid.free = []
    text = buffer.mark_text.astype("<u4").tobytes().decode("utf-32-le")
    start = 0
    for row, column, length in zip(
        buffer.mark_rows.tolist(),
        buffer.mark_columns.tolist(),
        buffer.mark_lengths.tolist(),
        strict=True,
    ):
        grid.marks.setdefault(row, {})[column] = text[start : start + length]
        start += length
    return grid


# -- validation ------------------------------------------------------------------------


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SnapshotError(message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_colour(value: int) -> bool:
    kind, payload = value >> 24, value & 0xFFFFFF
    if kind == cells.COLOUR_DEFAULT:
        return payload == 0
    if kind == cells.COLOUR_INDEXED:
        return payload <= 0xFF
    return kind == cells.COLOUR_RGB


def _valid_colours(array: npt.NDArray[np.uint32]) -> bool:
    kind = array >> 24
    payload = array & 0xFFFFFF
    ok = (
        ((kind == cells.COLOUR_DEFAULT) & (payload == 0))
        | ((kind == cells.COLOUR_INDEXED) & (payload <= 0xFF))
        | (kind == cells.COLOUR_RGB)
    )
    return bool(ok.all())


def _valid_code_points(array: npt.NDArray[np.uint32]) -> bool:
    return bool(((array <= 0x10FFFF) & ((array < 0xD800) | (array > 0xDFFF))).all())


_ATTR_MASK = (1 << 11) - 1  # ATTR_* bits 0..10
_PEN_MASK = (1 << 8) - 1  # what SGR can set: bold .. strike


def _check_array(array: object, dtype: type[np.generic], ndim: int, name: str) -> npt.NDArray[Any]:
    _require(isinstance(array, np.ndarray), f"{name}: not an array")
    assert isinstance(array, np.ndarray)
    _require(array.dtype == np.dtype(dtype), f"{name}: dtype {array.dtype}")
    _require(array.ndim == ndim, f"{name}: {array.ndim} dimensions")
    return array


def _check_buffer(buffer: BufferState) -> None:
    chars = _check_array(buffer.chars, np.uint32, 2, "chars")
    rows, columns = chars.shape
    for name in ("fg", "bg", "attrs"):
        kind: type[np.generic] = np.uint16 if name == "attrs" else np.uint32
        array = _check_array(getattr(buffer, name), kind, 2, name)
        _require(array.shape == chars.shape, f"{name}: shape {array.shape} != {chars.shape}")
    wide = _check_array(buffer.wide, np.bool_, 1, "wide")
    _require(wide.shape == (rows,), "wide: wrong length")
    _require(_is_int(buffer.history) and 0 <= buffer.history <= rows, "bad history length")
    _require(_valid_code_points(buffer.chars), "chars: not a Unicode code point")
    _require(_valid_colours(buffer.fg), "fg: not a colour")
    _require(_valid_colours(buffer.bg), "bg: not a colour")
    _require(not (buffer.attrs > _ATTR_MASK).any(), "attrs: unknown bits")
    mark_rows = _check_array(buffer.mark_rows, np.uint32, 1, "mark_rows")
    count = len(mark_rows)
    _require(count <= MAX_MARKS, "too many combining characters")
    mark_fields: tuple[tuple[str, type[np.generic]], ...] = (
        ("mark_columns", np.uint16),
        ("mark_lengths", np.uint8),
    )
    for name, kind in mark_fields:
        array = _check_array(getattr(buffer, name), kind, 1, name)
        _require(len(array) == count, f"{name}: wrong length")
    text = _check_array(buffer.mark_text, np.uint32, 1, "mark_text")
    if count == 0:
        _require(len(text) == 0, "mark_text: wrong length")
        return
    lengths = buffer.mark_lengths
    _require(bool(((lengths >= 1) & (lengths <= MAX_COMBINING)).all()), "mark_lengths: range")
    _require(int(lengths.sum(dtype=np.int64)) == len(text), "mark_text: wrong length")
    _require(bool((mark_rows < rows).all()), "mark_rows: out of range")
    _require(bool((buffer.mark_columns < columns).all()), "mark_columns: out of range")
    positions = mark_rows.astype(np.int64) * columns + buffer.mark_columns
    _require(bool((np.diff(positions) > 0).all()), "marks: not sorted or repeated")
    _require(_valid_code_points(text) and bool((text != 0).all()), "mark_text: bad code point")


def _check_saved(saved: SavedCursorState | None, state: TerminalState) -> None:
    if saved is None:
        return
    _require(isinstance(saved, SavedCursorState), "saved cursor: wrong type")
    _require(_is_int(saved.x) and 0 <= saved.x < state.columns, "saved cursor: bad column")
    _require(_is_int(saved.y) and 0 <= saved.y < state.lines, "saved cursor: bad row")
    _check_pen(saved.fg, saved.bg, saved.attrs, "saved cursor")
    _check_charsets(saved.g0, saved.g1, saved.shift, "saved cursor")
    _require(isinstance(saved.origin, bool) and isinstance(saved.wrap, bool), "saved cursor")


def _check_pen(fg: int, bg: int, attrs: int, where: str) -> None:
    _require(_is_int(fg) and 0 <= fg < 1 << 32 and _valid_colour(fg), f"{where}: bad colour")
    _require(_is_int(bg) and 0 <= bg < 1 << 32 and _valid_colour(bg), f"{where}: bad colour")
    _require(_is_int(attrs) and 0 <= attrs <= _PEN_MASK, f"{where}: bad attributes")


def _check_charsets(g0: str, g1: str, shift: int, where: str) -> None:
    _require(g0 in _CHARSET_CODES and g1 in _CHARSET_CODES, f"{where}: unknown charset")
    _require(_is_int(shift) and shift in (0, 1), f"{where}: bad charset shift")


def _check_text(value: object, limit: int, name: str) -> None:
    _require(isinstance(value, str) and len(value) <= limit, f"bad {name}")


def _check_terminal(state: TerminalState) -> None:
    columns, lines = state.columns, state.lines
    _require(_is_int(columns) and 1 <= columns <= MAX_DIMENSION, "bad number of columns")
    _require(_is_int(lines) and 1 <= lines <= MAX_DIMENSION, "bad number of lines")
    _require(columns * lines <= MAX_CELLS, "screen too large")
    limit = state.history_limit
    _require(_is_int(limit) and 0 <= limit <= MAX_HISTORY_LIMIT, "bad history limit")
    primary = state.primary
    _require(isinstance(primary, BufferState), "primary buffer missing")
    _require(primary.chars.shape[1] == columns, "primary buffer: wrong width")
    _require(primary.history <= limit, "more history than its limit")
    _require(primary.rows == primary.history + lines, "primary buffer: wrong height")
    alternate = state.alternate
    if alternate is not None:
        _require(isinstance(alternate, BufferState), "alternate buffer: wrong type")
        _require(alternate.chars.shape == (lines, columns), "alternate buffer: wrong shape")
        _require(alternate.history == 0, "alternate buffer with history")
    _require(isinstance(state.alternate_shown, bool), "bad alternate_shown")
    _require(not state.alternate_shown or alternate is not None, "shown alternate buffer missing")
    _require(_is_int(state.cursor_x) and 0 <= state.cursor_x <= columns, "bad cursor column")
    _require(_is_int(state.cursor_y) and 0 <= state.cursor_y < lines, "bad cursor row")
    _require(isinstance(state.cursor_hidden, bool), "bad cursor visibility")
    _require(_is_int(state.cursor_shape) and state.cursor_shape in CURSOR_SHAPES, "cursor shape")
    _check_pen(state.pen_fg, state.pen_bg, state.pen_attrs, "pen")
    _require(isinstance(state.modes, frozenset), "bad modes")
    _require(all(_is_int(m) and m in KNOWN_MODES for m in state.modes), "unknown mode")
    _require(isinstance(state.keypad_application, bool), "bad keypad mode")
    _check_charsets(state.g0, state.g1, state.shift, "charsets")
    margins = state.margins
    if margins is not None:
        _require(isinstance(margins, tuple) and len(margins) == 2, "bad margins")
        top, bottom = margins
        _require(_is_int(top) and _is_int(bottom) and 0 <= top < bottom < lines, "bad margins")
    stops = state.tab_stops
    _require(isinstance(stops, tuple) and all(_is_int(s) for s in stops), "bad tab stops")
    _require(all(0 <= s < columns for s in stops), "tab stop outside the screen")
    _require(all(a < b for a, b in itertools.pairwise(stops)), "tab stops not sorted")
    _check_text(state.title, MAX_TEXT, "title")
    _check_text(state.icon_name, MAX_TEXT, "icon name")
    _check_text(state.last_char, 1, "last character")
    _check_saved(state.saved_primary, state)
    _check_saved(state.saved_alternate, state)
    pending = state.decoder_pending
    _require(isinstance(pending, bytes) and len(pending) <= 3, "bad UTF-8 decoder state")
    if pending:
        try:
            decoded, used = codecs.utf_8_decode(pending, "strict", False)
        except UnicodeDecodeError:
            decoded, used = "?", -1
        _require(decoded == "" and used == 0, "UTF-8 decoder state is not a partial character")
    parser = state.parser
    _require(isinstance(parser, ParserState), "bad parser state")
    _require(parser.kind in _PARSER_KINDS, "unknown parser state")
    for name in ("intermediates", "marker", "params", "text"):
        _require(isinstance(getattr(parser, name), str), f"parser: bad {name}")
    for name in ("valid", "started", "overflow"):
        _require(isinstance(getattr(parser, name), bool), f"parser: bad {name}")
    try:
        parser_state_replay(parser)
    except ValueError as error:
        raise SnapshotError(f"parser: {error}") from None
    # Fields that do not belong to the state's kind must be at their defaults,
    # so that one state has one encoding.
    default = ParserState(parser.kind)
    used_fields = {
        "ground": (),
        "escape": ("intermediates",),
        "csi": ("intermediates", "marker", "params", "valid", "started"),
        "osc": ("text", "overflow"),
        "string": (),
    }[parser.kind]
    for name in ("intermediates", "marker", "params", "valid", "started", "text", "overflow"):
        if name not in used_fields:
            _require(getattr(parser, name) == getattr(default, name), f"parser: stray {name}")


# -- encoding --------------------------------------------------------------------------


def _encode(snapshot: Snapshot) -> tuple[dict[str, Any], list[bytes]]:
    state = snapshot.terminal_state
    specs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    buffers: dict[str, Any] = {}
    for name, buffer in (("primary", state.primary), ("alternate", state.alternate)):
        if buffer is None:
            buffers[name] = None
            continue
        buffers[name] = {"history": buffer.history}
        for field, dtype in _BUFFER_ARRAYS:
            array = getattr(buffer, field)
            specs.append({"name": f"{name}.{field}", "dtype": dtype, "shape": list(array.shape)})
            blobs.append(np.ascontiguousarray(array, dtype=np.dtype(dtype)).tobytes())
    parser = state.parser
    document: dict[str, Any] = {
        "offset": snapshot.offset,
        "columns": state.columns,
        "lines": state.lines,
        "history_limit": state.history_limit,
        "buffers": buffers,
        "alternate_shown": state.alternate_shown,
        "cursor": {
            "x": state.cursor_x,
            "y": state.cursor_y,
            "hidden": state.cursor_hidden,
            "shape": state.cursor_shape,
        },
        "pen": {"fg": state.pen_fg, "bg": state.pen_bg, "attrs": state.pen_attrs},
        "modes": sorted(state.modes),
        "keypad_application": state.keypad_application,
        "charsets": {"g0": state.g0, "g1": state.g1, "shift": state.shift},
        "margins": None if state.margins is None else list(state.margins),
        "tab_stops": list(state.tab_stops),
        "title": state.title,
        "icon_name": state.icon_name,
        "last_char": state.last_char,
        "saved_cursors": {
            "primary": _saved_document(state.saved_primary),
            "alternate": _saved_document(state.saved_alternate),
        },
        "decoder": state.decoder_pending.hex(),
        "parser": {
            "kind": parser.kind,
            "intermediates": parser.intermediates,
            "marker": parser.marker,
            "params": parser.params,
            "valid": parser.valid,
            "started": parser.started,
            "text": parser.text,
            "overflow": parser.overflow,
        },
        "arrays": specs,
    }
    return document, blobs


def _saved_document(saved: SavedCursorState | None) -> dict[str, Any] | None:
    if saved is None:
        return None
    return {
        "x": saved.x,
        "y": saved.y,
        "fg": saved.fg,
        "bg": saved.bg,
        "attrs": saved.attrs,
        "g0": saved.g0,
        "g1": saved.g1,
        "shift": saved.shift,
        "origin": saved.origin,
        "wrap": saved.wrap,
    }


# -- decoding --------------------------------------------------------------------------


def _decode(data: bytes) -> Snapshot:
    _require(isinstance(data, bytes | bytearray | memoryview), "not bytes")
    data = bytes(data)
    size = len(data)
    _require(size <= MAX_SNAPSHOT_BYTES, f"snapshot too large ({size} bytes)")
    _require(size >= _HEADER.size + _DIGEST_BYTES, f"truncated snapshot ({size} bytes)")
    magic, version, flags, raw_size, compressed_size = _HEADER.unpack_from(data)
    _require(magic == MAGIC, "not a vzvnc snapshot (bad magic)")
    _require(1 <= version <= FORMAT_VERSION, f"unsupported snapshot version {version}")
    _require(flags == 0, f"unknown snapshot flags {flags:#x}")
    expected = _HEADER.size + compressed_size + _DIGEST_BYTES
    _require(size == expected, f"truncated or padded snapshot ({size} bytes, {expected} declared)")
    _require(
        _JSON_LENGTH.size <= raw_size <= MAX_SNAPSHOT_BYTES,
        f"bad decompressed size {raw_size}",
    )
    body = memoryview(data)[:-_DIGEST_BYTES]
    _require(hashlib.sha256(body).digest() == data[-_DIGEST_BYTES:], "checksum mismatch")
    raw = _inflate(body[_HEADER.size :], raw_size)
    (json_size,) = _JSON_LENGTH.unpack_from(raw)
    _require(json_size <= min(MAX_JSON_BYTES, raw_size - _JSON_LENGTH.size), "bad document size")
    start = _JSON_LENGTH.size
    document = _load_json(bytes(raw[start : start + json_size]))
    for step in range(version, FORMAT_VERSION):
        document = _MIGRATIONS[step](document)
    return _parse(document, memoryview(raw)[start + json_size :])


def _inflate(compressed: memoryview, raw_size: int) -> bytearray:
    """Decompress into a buffer of exactly ``raw_size`` bytes; zlib bombs stop there."""
    inflater = zlib.decompressobj()
    raw = bytearray(raw_size)
    done = 0
    pending: bytes | memoryview = compressed
    try:
        while True:
            want = raw_size - done
            # Once full, ask for one byte more: any output means the payload is too long.
            chunk = inflater.decompress(pending, min(want, _INFLATE_CHUNK) or 1)
            pending = inflater.unconsumed_tail
            if not chunk:
                break
            _require(len(chunk) <= want, "compressed payload longer than its declared size")
            raw[done : done + len(chunk)] = chunk
            done += len(chunk)
    except zlib.error as error:
        raise SnapshotError(f"corrupt compressed payload: {error}") from None
    _require(
        done == raw_size and inflater.eof and not pending,
        "compressed payload does not match its declared size",
    )
    _require(not inflater.unused_data, "bytes after the compressed payload")
    return raw


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    _require(len(result) == len(pairs), "repeated key in the snapshot document")
    return result


def _reject_constant(name: str) -> None:
    raise SnapshotError(f"{name} in the snapshot document")


def _load_json(text: bytes) -> dict[str, Any]:
    try:
        document = json.loads(
            text.decode("ascii"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise SnapshotError(f"bad snapshot document: {error}") from None
    _require(isinstance(document, dict), "the snapshot document is not an object")
    assert isinstance(document, dict)
    return document


class _Reader:
    """Typed, strict access to the JSON document; errors name the field."""

    def __init__(self, value: object, where: str) -> None:
        self.where = where
        self.value = value

    def fields(self, *keys: str) -> dict[str, _Reader]:
        value = self.value
        _require(isinstance(value, dict), f"{self.where}: not an object")
        assert isinstance(value, dict)
        missing = sorted(set(keys) - set(value))
        extra = sorted(set(value) - set(keys))
        _require(not missing, f"{self.where}: missing {', '.join(missing)}")
        _require(not extra, f"{self.where}: unknown key {', '.join(map(str, extra))}")
        return {key: _Reader(value[key], f"{self.where}.{key}") for key in keys}

    def integer(self, low: int, high: int) -> int:
        value = self.value
        _require(_is_int(value), f"{self.where}: not an integer")
        assert isinstance(value, int)
        _require(low <= value <= high, f"{self.where}: {value} outside {low}..{high}")
        return value

    def boolean(self) -> bool:
        _require(isinstance(self.value, bool), f"{self.where}: not a boolean")
        return bool(self.value)

    def string(self, limit: int) -> str:
        value = self.value
        _require(isinstance(value, str), f"{self.where}: not a string")
        assert isinstance(value, str)
        _require(len(value) <= limit, f"{self.where}: longer than {limit}")
        return value

    def items(self, limit: int) -> list[_Reader]:
        value = self.value
        _require(isinstance(value, list), f"{self.where}: not a list")
        assert isinstance(value, list)
        _require(len(value) <= limit, f"{self.where}: more than {limit} items")
        return [_Reader(item, f"{self.where}[{i}]") for i, item in enumerate(value)]

    def is_null(self) -> bool:
        return self.value is None


_TOP_KEYS = (
    "offset",
    "columns",
    "lines",
    "history_limit",
    "buffers",
    "alternate_shown",
    "cursor",
    "pen",
    "modes",
    "keypad_application",
    "charsets",
    "margins",
    "tab_stops",
    "title",
    "icon_name",
    "last_char",
    "saved_cursors",
    "decoder",
    "parser",
    "arrays",
)


def _parse(document: dict[str, Any], blob: memoryview) -> Snapshot:
    top = _Reader(document, "snapshot").fields(*_TOP_KEYS)
    columns = top["columns"].integer(1, MAX_DIMENSION)
    lines = top["lines"].integer(1, MAX_DIMENSION)
    _require(columns * lines <= MAX_CELLS, f"screen too large ({columns}x{lines})")
    history_limit = top["history_limit"].integer(0, MAX_HISTORY_LIMIT)
    buffers = top["buffers"].fields("primary", "alternate")
    history = buffers["primary"].fields("history")["history"].integer(0, history_limit)
    has_alternate = not buffers["alternate"].is_null()
    if has_alternate:
        buffers["alternate"].fields("history")["history"].integer(0, 0)
    arrays = _arrays(top["arrays"], blob, columns, lines, history, has_alternate)

    def buffer(name: str, history: int) -> BufferState:
        wide = arrays[f"{name}.wide"]
        _require(bool((wide <= 1).all()), f"{name}.wide: not 0 or 1")
        return BufferState(
            chars=arrays[f"{name}.chars"],
            fg=arrays[f"{name}.fg"],
            bg=arrays[f"{name}.bg"],
            attrs=arrays[f"{name}.attrs"],
            wide=wide.astype(np.bool_),
            history=history,
            mark_rows=arrays[f"{name}.mark_rows"],
            mark_columns=arrays[f"{name}.mark_columns"],
            mark_lengths=arrays[f"{name}.mark_lengths"],
            mark_text=arrays[f"{name}.mark_text"],
        )

    cursor = top["cursor"].fields("x", "y", "hidden", "shape")
    pen = top["pen"].fields("fg", "bg", "attrs")
    charsets = top["charsets"].fields("g0", "g1", "shift")
    margins = top["margins"]
    saved = top["saved_cursors"].fields("primary", "alternate")
    decoder = top["decoder"].string(6)
    try:
        pending = bytes.fromhex(decoder)
    except ValueError:
        raise SnapshotError("snapshot.decoder: not hexadecimal") from None
    parser = top["parser"].fields(
        "kind", "intermediates", "marker", "params", "valid", "started", "text", "overflow"
    )
    state = TerminalState(
        columns=columns,
        lines=lines,
        history_limit=history_limit,
        primary=buffer("primary", history),
        alternate=buffer("alternate", 0) if has_alternate else None,
        alternate_shown=top["alternate_shown"].boolean(),
        cursor_x=cursor["x"].integer(0, columns),
        cursor_y=cursor["y"].integer(0, lines - 1),
        cursor_hidden=cursor["hidden"].boolean(),
        cursor_shape=cursor["shape"].integer(0, max(CURSOR_SHAPES)),
        pen_fg=pen["fg"].integer(0, (1 << 32) - 1),
        pen_bg=pen["bg"].integer(0, (1 << 32) - 1),
        pen_attrs=pen["attrs"].integer(0, _PEN_MASK),
        modes=_modes(top["modes"]),
        keypad_application=top["keypad_application"].boolean(),
        g0=charsets["g0"].string(1),
        g1=charsets["g1"].string(1),
        shift=charsets["shift"].integer(0, 1),
        margins=None if margins.is_null() else _margins(margins, lines),
        tab_stops=tuple(item.integer(0, columns - 1) for item in top["tab_stops"].items(columns)),
        title=top["title"].string(MAX_TEXT),
        icon_name=top["icon_name"].string(MAX_TEXT),
        last_char=top["last_char"].string(1),
        saved_primary=_saved(saved["primary"], columns, lines),
        saved_alternate=_saved(saved["alternate"], columns, lines),
        decoder_pending=pending,
        parser=ParserState(
            kind=parser["kind"].string(16),
            intermediates=parser["intermediates"].string(8),
            marker=parser["marker"].string(1),
            params=parser["params"].string(MAX_OSC_CHARS),
            valid=parser["valid"].boolean(),
            started=parser["started"].boolean(),
            text=parser["text"].string(MAX_OSC_CHARS),
            overflow=parser["overflow"].boolean(),
        ),
    )
    return Snapshot(state, top["offset"].integer(0, MAX_OFFSET))


def _modes(reader: _Reader) -> frozenset[int]:
    values = [item.integer(0, 1 << 20) for item in reader.items(len(KNOWN_MODES))]
    _require(len(set(values)) == len(values), "snapshot.modes: repeated mode")
    return frozenset(values)


def _margins(reader: _Reader, lines: int) -> tuple[int, int]:
    items = reader.items(2)
    _require(len(items) == 2, f"{reader.where}: not [top, bottom]")
    return items[0].integer(0, lines - 1), items[1].integer(0, lines - 1)


def _saved(reader: _Reader, columns: int, lines: int) -> SavedCursorState | None:
    if reader.is_null():
        return None
    fields = reader.fields("x", "y", "fg", "bg", "attrs", "g0", "g1", "shift", "origin", "wrap")
    return SavedCursorState(
        x=fields["x"].integer(0, columns - 1),
        y=fields["y"].integer(0, lines - 1),
        fg=fields["fg"].integer(0, (1 << 32) - 1),
        bg=fields["bg"].integer(0, (1 << 32) - 1),
        attrs=fields["attrs"].integer(0, _PEN_MASK),
        g0=fields["g0"].string(1),
        g1=fields["g1"].string(1),
        shift=fields["shift"].integer(0, 1),
        origin=fields["origin"].boolean(),
        wrap=fields["wrap"].boolean(),
    )


def _expected_arrays(
    columns: int, lines: int, history: int, has_alternate: bool
) -> Iterator[tuple[str, str, tuple[int, ...] | None]]:
    """(name, dtype, shape) of each array in order; None: a 1-D length read from the spec."""
    for name, rows in (("primary", history + lines), ("alternate", lines)):
        if name == "alternate" and not has_alternate:
            continue
        for field, dtype in _BUFFER_ARRAYS:
            shape: tuple[int, ...] | None
            if field == "wide":
                shape = (rows,)
            elif field.startswith("mark_"):
                shape = None
            else:
                shape = (rows, columns)
            yield f"{name}.{field}", dtype, shape


def _arrays(
    reader: _Reader,
    blob: memoryview,
    columns: int,
    lines: int,
    history: int,
    has_alternate: bool,
) -> dict[str, npt.NDArray[Any]]:
    """The arrays the spec list describes, checked against what the sizes imply."""
    expected = list(_expected_arrays(columns, lines, history, has_alternate))
    specs = reader.items(len(expected))
    _require(len(specs) == len(expected), f"{reader.where}: {len(specs)} arrays")
    arrays: dict[str, npt.NDArray[Any]] = {}
    offset = 0
    marks = 0
    for spec, (name, dtype, shape) in zip(specs, expected, strict=True):
        fields = spec.fields("name", "dtype", "shape")
        _require(fields["name"].string(64) == name, f"{spec.where}: expected {name}")
        _require(fields["dtype"].string(8) == dtype, f"{name}: dtype must be {dtype}")
        dims = fields["shape"].items(2)
        if shape is None:
            _require(len(dims) == 1, f"{name}: not one-dimensional")
            length = dims[0].integer(0, MAX_MARKS * MAX_COMBINING)
            if name.endswith(".mark_rows"):
                _require(length <= MAX_MARKS, f"{name}: too many combining characters")
                marks = length
            elif not name.endswith(".mark_text"):
                _require(length == marks, f"{name}: length {length} != {marks}")
            declared: tuple[int, ...] = (length,)
        else:
            declared = tuple(item.integer(0, 1 << 32) for item in dims)
            _require(declared == shape, f"{name}: shape {declared} != {shape}")
        item = np.dtype(dtype)
        size = item.itemsize * int(np.prod(declared, dtype=np.int64))
        _require(offset + size <= len(blob), f"{name}: runs past the end of the payload")
        flat = np.frombuffer(blob, dtype=item, count=size // item.itemsize, offset=offset)
        # A view of the payload where possible (it is made read-only with the state).
        arrays[name] = flat.reshape(declared).astype(item.newbyteorder("="), copy=False)
        offset += size
    _require(offset == len(blob), "bytes after the last array")
    return arrays


# -- files -----------------------------------------------------------------------------


def _check_name(name: str) -> None:
    if not name or len(name) > _MAX_NAME or name in (".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"bad snapshot file name {name!r}")


def _open_directory(directory: Path, root: Path | None) -> int:
    """An fd of ``directory``, never following a symlink at its last component, nor,
    with ``root``, at any component below ``root``. Raises ``OSError``."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    if root is None:
        return os.open(directory, flags)
    parts = directory.relative_to(root).parts
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    for part in parts:
        try:
            next_fd = os.open(part, flags, dir_fd=fd)
        finally:
            os.close(fd)
        fd = next_fd
    return fd


def _check_root(directory: Path, root: Path | None) -> None:
    if root is None:
        return
    try:
        parts = directory.relative_to(root).parts
    except ValueError:
        raise ValueError(f"{directory} is not under {root}") from None
    if ".." in parts:
        raise ValueError(f"{directory} climbs out of {root}")


def write_snapshot(
    directory: Path, snapshot: Snapshot, name: str = "snapshot", *, root: Path | None = None
) -> None:
    """Write ``snapshot`` to ``directory/name`` atomically (the old file stays until the
    new one is complete on disk); ``SnapshotError`` if it cannot be written.

    ``directory`` must exist. Its last component is never a symlink followed;
    when ``directory`` is inside a tree someone else controls (a container's
    root filesystem), pass that tree as ``root`` and no component below it is
    followed either.
    """
    _check_name(name)
    _check_root(directory, root)
    data = snapshot.to_bytes()
    try:
        dir_fd = _open_directory(directory, root)
    except OSError as error:
        raise SnapshotError(f"cannot open snapshot directory {directory}: {error}") from None
    try:
        temporary = ""
        fd = -1
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        for _attempt in range(10):
            temporary = f".{name}.tmp-{os.urandom(8).hex()}"
            try:
                fd = os.open(temporary, flags, 0o600, dir_fd=dir_fd)
                break
            except FileExistsError:
                continue
        else:
            raise SnapshotError(f"cannot create a temporary file in {directory}")
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)
    except OSError as error:
        raise SnapshotError(f"cannot write snapshot {directory / name}: {error}") from None
    finally:
        os.close(dir_fd)


def read_snapshot(
    directory: Path, name: str = "snapshot", *, root: Path | None = None
) -> Snapshot | None:
    """The snapshot in ``directory/name``, or None if there is none (nor the directory).

    A symlink is never followed and only a regular file is opened. A file that
    is not a valid snapshot is moved aside to ``<name>.corrupt-<n>`` and
    ``SnapshotError`` says why; it is also raised (without moving anything) when
    the file cannot be read. ``root`` as for ``write_snapshot``.
    """
    _check_name(name)
    _check_root(directory, root)
    try:
        dir_fd = _open_directory(directory, root)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise SnapshotError(f"cannot open snapshot directory {directory}: {error}") from None
    try:
        return _read(dir_fd, directory, name)
    finally:
        os.close(dir_fd)


def _read(dir_fd: int, directory: Path, name: str) -> Snapshot | None:
    where = directory / name
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise SnapshotError(f"cannot read snapshot {where}: {error}") from None
    if not stat.S_ISREG(info.st_mode):
        _refuse(dir_fd, where, name, f"not a regular file ({_kind(info.st_mode)})")
    if info.st_size > MAX_SNAPSHOT_BYTES:
        _refuse(dir_fd, where, name, f"too large ({info.st_size} bytes)")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            _refuse(dir_fd, where, name, "a symbolic link")
        raise SnapshotError(f"cannot read snapshot {where}: {error}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            _refuse(dir_fd, where, name, f"not a regular file ({_kind(info.st_mode)})")
        if info.st_size > MAX_SNAPSHOT_BYTES:
            _refuse(dir_fd, where, name, f"too large ({info.st_size} bytes)")
        data = _read_at_most(fd, MAX_SNAPSHOT_BYTES + 1)
    except OSError as error:
        raise SnapshotError(f"cannot read snapshot {where}: {error}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_SNAPSHOT_BYTES:
        _refuse(dir_fd, where, name, "too large")
    try:
        return Snapshot.from_bytes(data)
    except SnapshotError as error:
        _refuse(dir_fd, where, name, str(error))


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while total < limit:
        chunk = os.read(fd, min(limit - total, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    for test, kind in kinds:
        if test(mode):
            return kind
    return "unknown type"


def _refuse(dir_fd: int, where: Path, name: str, reason: str) -> NoReturn:
    """Move the bad file aside and raise ``SnapshotError`` saying why."""
    aside = _move_aside(dir_fd, name)
    raise SnapshotError(f"snapshot {where} refused: {reason}; {aside}")


def _move_aside(dir_fd: int, name: str) -> str:
    """Rename ``name`` to the first free ``name.corrupt-<n>`` (renaming never follows
    a symlink); when all are taken, remove it. Says what was done."""
    for n in range(1, _MAX_ASIDE + 1):
        target = f"{name}.corrupt-{n}"
        try:
            os.stat(target, dir_fd=dir_fd, follow_symlinks=False)
            continue
        except FileNotFoundError:
            pass
        except OSError as error:
            return f"not moved aside ({error})"
        try:
            os.rename(name, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as error:
            return f"not moved aside ({error})"
        return f"moved aside to {target}"
    try:
        if stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            return "not moved aside (too many corrupt snapshots kept)"
        os.unlink(name, dir_fd=dir_fd)
    except OSError as error:
        return f"not removed ({error})"
    return "removed (too many corrupt snapshots kept)"
