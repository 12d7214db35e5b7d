"""Bitmap fonts and the glyph atlas the renderer draws cells from.

This module owns:

- ``BitmapFont``: the GNU Unifont ``.hex`` format (one ``CODEPOINT:BITS`` line per
  glyph, 32 hex digits for an 8x16 glyph, 64 for a 16x16 one, rows top to bottom,
  most significant bit leftmost), the lazy decoding of glyph bits, and the box drawn
  for a code point the font lacks;
- the shipped default font, ``fonts/unifont.hex`` (package ``vzvnc.fonts``),
  loaded once per process and mapped read-only from the installed file, so its
  pages are shared by every console process on the host instead of being a
  private copy in each;
- ``GlyphAtlas``: the mapping from (code point, style, half) to a row of one mask
  array, and with it every rule about how a glyph lands in a cell.

Rules of the atlas (cells are ``cell_width`` x ``cell_height``, 8x16 for Unifont):

- Halves. A cell with ``ATTR_WIDE_LEFT`` shows the left ``cell_width`` columns of
  its glyph drawn across a two-cell canvas, ``ATTR_WIDE_RIGHT`` the right ones. A
  16-wide glyph fills the canvas; a narrow glyph in a wide pair (the terminal and
  the font disagree, or the glyph is missing) is centred on the canvas, so each
  cell shows half of it and the pair reads as one character. A cell without
  either bit is narrow: a 16-wide glyph there shows its left half, which keeps
  the grid intact and is usually recognisable. If both bits are set, left wins.
- Styles are synthesised on the canvas (so strokes cross the boundary between
  the two halves of a wide character), in this order:
  bold: the mask ORed with itself shifted right by one pixel (pixels pushed past
  the canvas's right edge are dropped); italic: each row shifted right by
  ``(baseline - row) // 5`` pixels, ``baseline = cell_height - 3`` (row 13, where
  Unifont's letters stand), i.e. for 16 rows: rows 0-3 +2, rows 4-8 +1,
  rows 9-13 0, descender rows 14-15 -1, a slope of about 11 degrees with steps
  of whole pixels so it stays crisp; underline: row ``cell_height - 2`` (row 14,
  where Unifont draws ``_``) set across the canvas; strike: row
  ``cell_height // 2 + 1`` (row 9, where Unifont draws ``-``, through the middle
  of both lower and upper case letters) set across the canvas. The lines are drawn
  after the slant so they stay straight and join from cell to cell.
  ``ATTR_INVISIBLE``, dim, blink and reverse are colour matters, not handled here.
- U+0000 is drawn as a space (an emulator may leave NUL in cells); every code
  point the font lacks shares one missing-glyph box.
- The atlas is bounded: once it holds ``max_keys`` distinct keys it starts over
  (see ``GlyphAtlas.generation``), so output that cycles through every code
  point and style cannot grow the process without limit.
"""

from __future__ import annotations

import binascii
import functools
import importlib.resources
import mmap
import pathlib

import numpy as np
import numpy.typing as npt

from vzvnc.term.cells import (
    ATTR_BOLD,
    ATTR_ITALIC,
    ATTR_STRIKE,
    ATTR_UNDERLINE,
    ATTR_WIDE_LEFT,
    ATTR_WIDE_RIGHT,
)

__all__ = [
    "BOLD",
    "DEFAULT_FONT_RESOURCE",
    "ITALIC",
    "STRIKE",
    "STYLE_MASK",
    "UNDERLINE",
    "BitmapFont",
    "GlyphAtlas",
    "default_atlas",
]

BoolArray = npt.NDArray[np.bool_]
FontData = bytes | mmap.mmap
"""A font file's bytes: read into memory, or mapped read-only."""

DEFAULT_FONT_RESOURCE = "unifont.hex"
"""File name of the default font inside the package ``vzvnc.fonts``."""

BOLD = ATTR_BOLD
ITALIC = ATTR_ITALIC
UNDERLINE = ATTR_UNDERLINE
STRIKE = ATTR_STRIKE
STYLE_MASK = BOLD | ITALIC | UNDERLINE | STRIKE
"""The attribute bits the atlas draws; ``attrs & STYLE_MASK`` selects them."""

_HALF_MASK = ATTR_WIDE_LEFT | ATTR_WIDE_RIGHT
_KEY_ATTRS = STYLE_MASK | _HALF_MASK
_KEY_SHIFT = 16  # a key is code point << 16 | (attrs & _KEY_ATTRS); attrs are uint16

_MAX_CODE_POINT = 0x10FFFF
_MISSING_CP = _MAX_CODE_POINT + 1  # stands for every code point the font lacks
_SPACE = 0x20
_MAX_CP_DIGITS = 6

_NEWLINE = ord("\n")
_COLON = ord(":")
_HEX_DIGITS = b"0123456789ABCDEFabcdef"
_HEX_VALUE = np.full(256, -1, dtype=np.int8)
for _value, _digit in enumerate(b"0123456789ABCDEF"):
    _HEX_VALUE[_digit] = _value
for _value, _digit in enumerate(b"abcdef", start=10):
    _HEX_VALUE[_digit] = _value
_IS_STRAY = _HEX_VALUE < 0  # bytes that have no place in a .hex file
_IS_STRAY[[_NEWLINE, _COLON]] = False

# Unifont's two glyph sizes: number of hex digits after the colon -> glyph width.
_GLYPH_HEIGHT = 16
_WIDTH_BY_DIGITS = {32: 8, 64: 16}


def _missing_box(height: int, width: int) -> BoolArray:
    """The outline rectangle shown for a code point the font has no glyph for.

    It is inset from the cell's edges so that a run of missing glyphs reads as
    separate boxes rather than as a grid.
    """
    box = np.zeros((height, width), dtype=np.bool_)
    top, bottom = 2, height - 3
    left, right = 1, width - 2
    box[top, left : right + 1] = True
    box[bottom, left : right + 1] = True
    box[top : bottom + 1, left] = True
    box[top : bottom + 1, right] = True
    return box


def _diagnose(line: bytes) -> str:
    """Say what is wrong with one malformed ``.hex`` line (for the error message)."""
    if line.count(b":") != 1:
        return "expected exactly one ':' between code point and glyph bits"
    cp, bits = line.split(b":")
    if not 1 <= len(cp) <= _MAX_CP_DIGITS or cp.translate(None, _HEX_DIGITS):
        return f"code point must be 1 to {_MAX_CP_DIGITS} hex digits"
    if bits.translate(None, _HEX_DIGITS):
        return "glyph bits must be hex digits"
    if len(bits) not in _WIDTH_BY_DIGITS:
        return f"glyph must be 32 (8x16) or 64 (16x16) hex digits, not {len(bits)}"
    return "malformed line"


def _line_error(
    data: FontData, start: int, end: int, line_index: int, reason: str = ""
) -> ValueError:
    line = data[start:end]
    reason = reason or _diagnose(line)
    shown = line[:80].decode("utf-8", "replace")
    return ValueError(f"font line {line_index + 1}: {reason}: {shown!r}")


class BitmapFont:
    """A bitmap font in Unifont's ``.hex`` format, decoded glyph by glyph on demand.

    Only an index is built when loading (sorted code points, offsets into the text,
    and widths); a glyph's bits are decoded when ``glyph`` is asked for it.
    """

    cell_width: int
    cell_height: int

    def __init__(
        self,
        data: FontData,
        code_points: npt.NDArray[np.uint32],
        offsets: npt.NDArray[np.uint32],
        wide: BoolArray,
    ) -> None:
        """Wrap an index built by ``from_hex``/``default``; not meant to be called directly."""
        self.cell_width = 8
        self.cell_height = _GLYPH_HEIGHT
        self._data = data
        self._code_points = code_points
        self._offsets = offsets
        self._wide = wide
        self._missing = _missing_box(self.cell_height, self.cell_width)
        self._missing.flags.writeable = False

    @classmethod
    def default(cls) -> BitmapFont:
        """The shipped GNU Unifont; loaded once per process and shared."""
        return _default_font()

    @classmethod
    def from_hex(cls, text: str) -> BitmapFont:
        """Parse ``.hex`` text; a malformed line raises ``ValueError`` naming its number.

        Empty lines are skipped; ``\\r\\n`` line ends are accepted; a code point
        defined twice or beyond U+10FFFF is refused.
        """
        # Non-ASCII characters become bytes >= 0x80 (and lone surrogates '?'),
        # which the parser refuses on the right line.
        data = text.replace("\r\n", "\n").encode("utf-8", "replace")
        return cls._from_bytes(data)

    @classmethod
    def _from_bytes(cls, data: FontData) -> BitmapFont:
        code_points, offsets, wide = _index_hex(data)
        return cls(data, code_points, offsets, wide)

    def __len__(self) -> int:
        """Number of glyphs in the font."""
        return int(self._code_points.size)

    def _find(self, cp: int) -> int:
        if not 0 <= cp <= _MAX_CODE_POINT:
            return -1
        i = int(np.searchsorted(self._code_points, cp))
        if i < self._code_points.size and int(self._code_points[i]) == cp:
            return i
        return -1

    def has_glyph(self, cp: int) -> bool:
        """Whether the font has its own glyph for code point ``cp``."""
        return self._find(cp) >= 0

    def glyph_width(self, cp: int) -> int:
        """Width in pixels of the glyph ``glyph(cp)`` returns (8 or 16)."""
        i = self._find(cp)
        if i < 0:
            return self.cell_width
        return 16 if self._wide[i] else 8

    def glyph(self, cp: int) -> BoolArray:
        """A fresh bool array (cell_height, 8 or 16) for ``cp``.

        A code point without a glyph gets a visible box 8 wide. Space is blank
        whatever the font says.
        """
        if cp == _SPACE:  # blank cells hold spaces: never draw anything there
            return np.zeros((self.cell_height, self.cell_width), dtype=np.bool_)
        i = self._find(cp)
        if i < 0:
            return self._missing.copy()
        start = int(self._offsets[i])
        digits = 64 if self._wide[i] else 32
        raw = binascii.unhexlify(self._data[start : start + digits])
        bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8)).astype(np.bool_)
        return bits.reshape(self.cell_height, _WIDTH_BY_DIGITS[digits])


def _scan(
    buf: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """Offsets of the newlines, the colons and any other non-hex bytes in ``buf``.

    The scan goes slice by slice, keeping its temporaries small: the allocator
    tends to keep large freed blocks resident, so whole-file temporaries (3.7 MB
    each for Unifont) would be paid for as long as the process lives.
    """
    step = 1 << 16
    found: tuple[list[npt.NDArray[np.int32]], ...] = ([], [], [])
    for at in range(0, buf.size, step):
        chunk = buf[at : at + step]
        found[0].append((np.flatnonzero(chunk == _NEWLINE) + at).astype(np.int32))
        found[1].append((np.flatnonzero(chunk == _COLON) + at).astype(np.int32))
        found[2].append((np.flatnonzero(_IS_STRAY[chunk]) + at).astype(np.int32))
    empty = np.zeros(0, dtype=np.int32)
    newlines, colons, strays = (np.concatenate(parts) if parts else empty for parts in found)
    return newlines, colons, strays


def _line_structure(
    starts: npt.NDArray[np.int32],
    ends: npt.NDArray[np.int32],
    colons: npt.NDArray[np.int32],
    strays: npt.NDArray[np.int32],
) -> tuple[BoolArray, npt.NDArray[np.int32]]:
    """Per line: is it malformed, and where is its colon; the slow, thorough check."""
    n_lines = ends.size
    bad = np.zeros(n_lines, dtype=np.bool_)
    bad[np.searchsorted(ends, strays)] = True
    colon_line = np.searchsorted(ends, colons)
    one_colon = np.bincount(colon_line, minlength=n_lines) == 1
    colon = np.zeros(n_lines, dtype=np.int32)
    single = one_colon[colon_line]
    colon[colon_line[single]] = colons[single]
    cp_digits = colon - starts
    bit_digits = ends - colon - 1
    bad |= ~one_colon
    bad |= (cp_digits < 1) | (cp_digits > _MAX_CP_DIGITS)
    bad |= (bit_digits != 32) & (bit_digits != 64)
    bad &= starts != ends
    return bad, colon


def _index_hex(
    data: FontData,
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32], BoolArray]:
    """Validate ``.hex`` bytes and index them: (sorted code points, bit offsets, wide).

    Vectorised so that the 57,000 lines of Unifont load in milliseconds, with
    int32 arrays of one entry per line as the largest temporaries. Only when the
    quick structural check fails is every line examined on its own; the error
    names the first bad line of any kind, and that line alone is looked at again
    in Python to say what is wrong with it.
    """
    if len(data) >= 1 << 31:
        raise ValueError("font file too large")
    buf = np.frombuffer(data, dtype=np.uint8)
    ends, colons, strays = _scan(buf)
    if buf.size and buf[-1] != _NEWLINE:
        ends = np.append(ends, np.int32(buf.size))  # last line without its newline
    starts = np.empty_like(ends)
    starts[:1] = 0
    starts[1:] = ends[:-1] + 1

    # (line index, reason) of the first problem found so far; "" lets
    # _diagnose give the reason.
    problems: list[tuple[int, str]] = []
    lines = np.flatnonzero(starts != ends)  # empty lines are skipped
    # Colons and lines both ascend, so as many colons as lines with each colon
    # inside its line means exactly one colon per line.
    well_formed = not strays.size and colons.size == lines.size
    if well_formed:
        cp_digits = colons - starts[lines]
        bit_digits = ends[lines] - colons - 1
        well_formed = bool(
            np.all((cp_digits >= 1) & (cp_digits <= _MAX_CP_DIGITS))
            and np.all((bit_digits == 32) | (bit_digits == 64))
        )
    if not well_formed:
        bad, colon_of_line = _line_structure(starts, ends, colons, strays)
        problems.append((int(np.argmax(bad)), ""))
        lines = np.flatnonzero(~bad & (starts != ends))
        colons = colon_of_line[lines]
        cp_digits = colons - starts[lines]
        bit_digits = ends[lines] - colons - 1

    line_starts = starts[lines]
    code_points = np.zeros(lines.size, dtype=np.int32)
    for k in range(_MAX_CP_DIGITS):
        more = np.flatnonzero(cp_digits > k)
        if not more.size:
            break
        digit = _HEX_VALUE[buf[line_starts[more] + k]]
        code_points[more] = code_points[more] * 16 + digit
    too_big = code_points > _MAX_CODE_POINT
    if too_big.any():
        problems.append((int(lines[np.argmax(too_big)]), "code point beyond U+10FFFF"))

    offsets = (colons + 1).astype(np.uint32)
    wide = bit_digits == 64
    if code_points.size > 1 and not np.all(code_points[1:] > code_points[:-1]):
        order = np.argsort(code_points, kind="stable")
        code_points, offsets, wide = code_points[order], offsets[order], wide[order]
        repeated = np.flatnonzero(code_points[1:] == code_points[:-1])
        if repeated.size:
            # With a stable sort the later definition follows the earlier one.
            later = order[repeated + 1]
            which = int(np.argmin(later))
            first = int(lines[order[repeated[which]]]) + 1
            cp = int(code_points[repeated[which]])
            problems.append(
                (int(lines[later[which]]), f"U+{cp:04X} already defined on line {first}")
            )
    if problems:
        line_index, reason = min(problems)
        raise _line_error(data, int(starts[line_index]), int(ends[line_index]), line_index, reason)
    return code_points.astype(np.uint32), offsets, wide


@functools.cache
def _default_font() -> BitmapFont:
    resource = importlib.resources.files("vzvnc.fonts").joinpath(DEFAULT_FONT_RESOURCE)
    if isinstance(resource, pathlib.Path):
        # Installed as a file: map it. The glyph text is then page cache shared
        # by all consoles (a private copy was 3.7 MB per process).
        with open(resource, "rb") as f:
            data: FontData = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    else:  # inside a zip or other loader: no file to map
        data = resource.read_bytes()
    return BitmapFont._from_bytes(data)


def _italic_shifts(height: int) -> list[int]:
    baseline = height - 3
    return [(baseline - row) // 5 for row in range(height)]


class GlyphAtlas:
    """Maps (code point, style, half) to a row of ``masks``; grows on demand.

    One atlas is shared by all consoles of a process (``default_atlas``). Row 0
    is the blank cell. ``masks`` is replaced when the atlas grows, so read the
    attribute after calling ``indices``. Rows stay as they are while the atlas
    grows; only when it reaches ``max_keys`` distinct keys does it start over,
    incrementing ``generation``: indices kept from before that are then stale.
    """

    cell_width: int
    cell_height: int
    masks: BoolArray
    generation: int

    def __init__(self, font: BitmapFont, *, max_keys: int = 1 << 16) -> None:
        self.font = font
        self.cell_width = font.cell_width
        self.cell_height = font.cell_height
        self.max_keys = max_keys
        self.generation = 0
        self._italic = _italic_shifts(self.cell_height)
        self._underline_row = self.cell_height - 2
        self._strike_row = self.cell_height // 2 + 1
        self._reset()

    def _reset(self) -> None:
        self._store = np.zeros((256, self.cell_height, self.cell_width), dtype=np.bool_)
        self._count = 1  # row 0: blank
        self._rows: dict[int, int] = {_SPACE << _KEY_SHIFT: 0}
        self.masks = self._store[: self._count]

    def indices(self, chars: npt.ArrayLike, attrs: npt.ArrayLike) -> npt.NDArray[np.int32]:
        """Atlas rows (int32) for cells given as ``chars`` (uint32) and ``attrs`` (uint16).

        Python work is done once per distinct (code point, style, half) key in the
        call; everything else is numpy.
        """
        chars_a = np.asarray(chars)
        attrs_a = np.asarray(attrs)
        if chars_a.shape != attrs_a.shape:
            raise ValueError(f"chars {chars_a.shape} and attrs {attrs_a.shape} differ in shape")
        keys = (chars_a.astype(np.int64).ravel() << _KEY_SHIFT) | (
            attrs_a.astype(np.int64).ravel() & _KEY_ATTRS
        )
        unique, inverse = np.unique(keys, return_inverse=True)
        unique_keys: list[int] = unique.tolist()
        get = self._rows.get
        found = [get(key) for key in unique_keys]
        if None in found:
            new = [i for i, row in enumerate(found) if row is None]
            if len(self._rows) + len(new) > self.max_keys:
                self._reset()
                self.generation += 1
                new = list(range(len(unique_keys)))
                found = [None] * len(unique_keys)
            for i in new:
                found[i] = self._add(unique_keys[i])
            self.masks = self._store[: self._count]
        rows: npt.NDArray[np.int32] = np.array(found, dtype=np.int32)[inverse.ravel()]
        return rows.reshape(chars_a.shape)

    def _add(self, key: int) -> int:
        """Give ``key`` a row: the one of its canonical form, rendered if new."""
        cp, bits = key >> _KEY_SHIFT, key & _KEY_ATTRS
        if cp == 0:
            cp = _SPACE
        elif cp != _SPACE and not self.font.has_glyph(cp):
            cp = _MISSING_CP
        if bits & ATTR_WIDE_LEFT:
            bits &= ~ATTR_WIDE_RIGHT
        canonical = (cp << _KEY_SHIFT) | bits
        row = self._rows.get(canonical)
        if row is None:
            row = self._append(self._render(cp, bits))
            self._rows[canonical] = row
        self._rows[key] = row
        return row

    def _append(self, mask: BoolArray) -> int:
        if self._count == self._store.shape[0]:
            grown = np.zeros((2 * self._count, *self._store.shape[1:]), dtype=np.bool_)
            grown[: self._count] = self._store[: self._count]
            self._store = grown
        row = self._count
        self._store[row] = mask
        self._count += 1
        return row

    def _render(self, cp: int, bits: int) -> BoolArray:
        """Draw one canonical key: glyph on its canvas, styles, then the half."""
        glyph = self.font.glyph(cp)  # _MISSING_CP is out of range: the box
        width = self.cell_width
        if bits & _HALF_MASK:
            canvas = np.zeros((self.cell_height, 2 * width), dtype=np.bool_)
            glyph_width = min(glyph.shape[1], 2 * width)
            left = (2 * width - glyph_width) // 2
            canvas[:, left : left + glyph_width] = glyph[:, :glyph_width]
        else:
            canvas = np.zeros((self.cell_height, width), dtype=np.bool_)
            glyph_width = min(glyph.shape[1], width)
            canvas[:, :glyph_width] = glyph[:, :glyph_width]

        if bits & BOLD:
            canvas[:, 1:] |= canvas[:, :-1].copy()
        if bits & ITALIC:
            slanted = np.zeros_like(canvas)
            for row, shift in enumerate(self._italic):
                if shift > 0:
                    slanted[row, shift:] = canvas[row, :-shift]
                elif shift < 0:
                    slanted[row, :shift] = canvas[row, -shift:]
                else:
                    slanted[row] = canvas[row]
            canvas = slanted
        if bits & UNDERLINE:
            canvas[self._underline_row] = True
        if bits & STRIKE:
            canvas[self._strike_row] = True

        if bits & ATTR_WIDE_LEFT:
            return canvas[:, :width]
        if bits & ATTR_WIDE_RIGHT:
            return canvas[:, width:]
        return canvas


@functools.cache
def default_atlas() -> GlyphAtlas:
    """The process-wide atlas over ``BitmapFont.default()``."""
    return GlyphAtlas(BitmapFont.default())
