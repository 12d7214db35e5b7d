"""Terminal cells to framebuffer pixels, redrawing only cells that changed.

The renderer keeps a shadow of the cells it last drew (code point, colours,
attributes, and whether the cursor was on the cell). Each ``render`` compares the
terminal's cells with the shadow and redraws the differing cells in one
vectorised pass: glyph masks from the shared atlas, colours resolved by the
palette, scattered into the framebuffer through a (rows, cell_h, cols, cell_w)
view. The invariant is that the shadow describes the framebuffer exactly.

Scrolling is a hint from the terminal: when a frame saw one net scroll of one
region, the framebuffer's pixels and the shadow are shifted together (a copy the
clients can replay with CopyRect) before the diff, so only the new lines are
drawn. Hints never affect correctness, since the diff runs afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from vzvnc.fb.cellmap import CellMap
from vzvnc.fb.damage import Copy, Rect, Region
from vzvnc.fb.font import GlyphAtlas
from vzvnc.fb.framebuffer import Framebuffer
from vzvnc.term.cells import ATTR_COMBINING, ATTR_REVERSE, ATTR_WIDE_LEFT, ATTR_WIDE_RIGHT
from vzvnc.term.palette import resolve_colours

# Marks shadow cells whose pixels are unknown, so the next diff redraws them.
_UNKNOWN = np.uint32(0xFFFFFFFF)
# Shadow attribute bits meaning "the cursor was drawn here, in this shape";
# not terminal attributes (those stay below bit 13).
_CURSOR = np.uint16(1 << 15)
_CURSOR_SHAPE_SHIFT = 13
_CURSOR_BITS = np.uint16(0b111 << _CURSOR_SHAPE_SHIFT)
SHAPE_BLOCK, SHAPE_UNDERLINE, SHAPE_BAR = 0, 1, 2


def cursor_shape_from_decscusr(ps: int) -> int:
    """DECSCUSR's Ps (0-6) to our shape; blinking and steady look the same (we never blink)."""
    if ps in (3, 4):
        return SHAPE_UNDERLINE
    if ps in (5, 6):
        return SHAPE_BAR
    return SHAPE_BLOCK


class CellSource(Protocol):
    """What the renderer needs from a terminal."""

    @property
    def columns(self) -> int: ...
    @property
    def lines(self) -> int: ...
    @property
    def cursor_x(self) -> int: ...
    @property
    def cursor_y(self) -> int: ...
    @property
    def cursor_visible(self) -> bool: ...
    @property
    def cursor_shape(self) -> int: ...

    def cells(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...
    def take_scrolls(self) -> list[tuple[int, int, int]]: ...
    def combining_at(self, y: int, x: int) -> str: ...


@dataclass(slots=True)
class RenderResult:
    """What changed in the framebuffer: an optional copy first, then changed pixels."""

    copy: Copy | None = None
    changed: Region = field(default_factory=Region)

    def __bool__(self) -> bool:
        return self.copy is not None or bool(self.changed)


class Renderer:
    def __init__(self, atlas: GlyphAtlas, columns: int, lines: int, *, scale: int = 1) -> None:
        self.atlas = atlas
        self.scale = scale
        self.cell_width = atlas.cell_width * scale
        self.cell_height = atlas.cell_height * scale
        self.framebuffer = Framebuffer(columns * self.cell_width, lines * self.cell_height)
        self._reset_shadow(columns, lines)

    def _reset_shadow(self, columns: int, lines: int) -> None:
        self.framebuffer.cells = CellMap(self.cell_width, self.cell_height, columns, lines)
        # A new framebuffer is all zeros: cells drawn as zeros need no writing, and
        # pages never written stay shared zero pages (a blank console's 1 MB).
        self._zeroed = True
        shape = (lines, columns)
        self._chars = np.full(shape, _UNKNOWN, dtype=np.uint32)
        self._fg = np.zeros(shape, dtype=np.uint32)
        self._bg = np.zeros(shape, dtype=np.uint32)
        self._attrs = np.zeros(shape, dtype=np.uint16)

    @property
    def columns(self) -> int:
        return int(self._chars.shape[1])

    @property
    def lines(self) -> int:
        return int(self._chars.shape[0])

    def resize(self, columns: int, lines: int) -> None:
        self.framebuffer.resize(columns * self.cell_width, lines * self.cell_height)
        self._reset_shadow(columns, lines)

    def render(self, terminal: CellSource) -> RenderResult:
        if (terminal.columns, terminal.lines) != (self.columns, self.lines):
            self.resize(terminal.columns, terminal.lines)
        result = RenderResult()
        result.copy = self._apply_scroll(terminal.take_scrolls())
        chars, fg, bg, attrs = terminal.cells()
        attrs = attrs.copy()
        if terminal.cursor_visible:
            cy = min(max(terminal.cursor_y, 0), self.lines - 1)
            cx = min(max(terminal.cursor_x, 0), self.columns - 1)
            shape = cursor_shape_from_decscusr(terminal.cursor_shape)
            attrs[cy, cx] |= _CURSOR | (shape << _CURSOR_SHAPE_SHIFT)
        changed = (
            (chars != self._chars) | (fg != self._fg) | (bg != self._bg) | (attrs != self._attrs)
        )
        if changed.any():
            self._draw(changed, chars, fg, bg, attrs, terminal)
            result.changed = self._damage(changed)
        return result

    def redraw_all(self) -> None:
        """Forget the shadow: the next render repaints every cell."""
        self._chars.fill(_UNKNOWN)

    def _apply_scroll(self, scrolls: list[tuple[int, int, int]]) -> Copy | None:
        net = _net_scroll(scrolls)
        if net is None:
            return None
        top, bottom, n = net
        height = bottom - top + 1
        if n == 0 or abs(n) >= height or top < 0 or bottom >= self.lines:
            return None
        keep = height - abs(n)
        # Rows that keep their content after the shift, before and after it.
        src_top, dst_top = (top + n, top) if n > 0 else (top, top - n)
        for shadow in (self._chars, self._fg, self._bg, self._attrs):
            shadow[dst_top : dst_top + keep] = shadow[src_top : src_top + keep].copy()
        vacated = slice(top + keep, bottom + 1) if n > 0 else slice(top, top - n)
        self._chars[vacated] = _UNKNOWN
        ch = self.cell_height
        dest = Rect(0, dst_top * ch, self.framebuffer.width, keep * ch)
        self.framebuffer.copy_rect(dest, 0, src_top * ch)
        return Copy(dest, 0, (dst_top - src_top) * ch)

    def _draw(
        self,
        changed: np.ndarray,
        chars: np.ndarray,
        fg: np.ndarray,
        bg: np.ndarray,
        attrs: np.ndarray,
        source: CellSource,
    ) -> None:
        ys, xs = np.nonzero(changed)
        cell_chars = chars[ys, xs]
        cell_attrs = attrs[ys, xs]
        terminal_attrs = cell_attrs & ~_CURSOR_BITS
        glyph_rows = self.atlas.indices(cell_chars, terminal_attrs)
        masks = self.atlas.masks[glyph_rows]
        marked = np.flatnonzero(terminal_attrs & ATTR_COMBINING)
        if marked.size:
            masks = self._overlay_marks(masks, marked, ys, xs, terminal_attrs, source)
        if self.scale > 1:
            masks = masks.repeat(self.scale, axis=1).repeat(self.scale, axis=2)
        # A block cursor is its cell in reverse video.
        block = (cell_attrs & _CURSOR_BITS) == _CURSOR
        colour_attrs = terminal_attrs ^ np.where(block, ATTR_REVERSE, 0).astype(np.uint16)
        fg_rgb, bg_rgb = resolve_colours(fg[ys, xs], bg[ys, xs], colour_attrs)
        fg_bgrx = _to_bgrx(fg_rgb)
        bg_bgrx = _to_bgrx(bg_rgb)
        # Whole pixels as uint32: choosing 4-byte values is five times faster than
        # choosing each byte of a trailing axis of 4.
        count, height, width = masks.shape
        fg_word = np.ascontiguousarray(fg_bgrx).view(np.uint32).reshape(count)
        bg_word = np.ascontiguousarray(bg_bgrx).view(np.uint32).reshape(count)
        masks = self._draw_thin_cursor(masks, cell_attrs)
        # Paper, with ink xor paper added where the glyph is set: seven times faster
        # than np.where over rows of broadcast colours.
        words = bg_word[:, None, None] ^ (masks * (fg_word ^ bg_word)[:, None, None])
        pixels = words.view(np.uint8).reshape(count, height, width, 4)
        cells = self.framebuffer.cells
        if cells is not None:
            cells.paint(ys, xs, masks, fg_word, bg_word)
        fb = self.framebuffer.pixels.reshape(
            self.lines, self.cell_height, self.columns, self.cell_width, 4
        )
        if self._zeroed:
            self._zeroed = False
            inked = masks.reshape(count, -1).any(axis=1)
            drawn = np.flatnonzero((bg_word != 0) | (inked & (fg_word != 0)))
            fb[ys[drawn], :, xs[drawn]] = pixels[drawn]
        else:
            fb[ys, :, xs] = pixels
        self._chars[changed] = chars[changed]
        self._fg[changed] = fg[changed]
        self._bg[changed] = bg[changed]
        self._attrs[changed] = attrs[changed]

    def _overlay_marks(
        self,
        masks: np.ndarray,
        marked: np.ndarray,
        ys: np.ndarray,
        xs: np.ndarray,
        attrs: np.ndarray,
        source: CellSource,
    ) -> np.ndarray:
        """Combining marks drawn over their base cell (Unifont draws them in place)."""
        masks = masks.copy()
        style = attrs & np.uint16(~(ATTR_WIDE_LEFT | ATTR_WIDE_RIGHT | ATTR_COMBINING) & 0xFFFF)
        for index in marked.tolist():
            marks = source.combining_at(int(ys[index]), int(xs[index]))
            if not marks:
                continue
            codes = np.array([ord(mark) for mark in marks], dtype=np.uint32)
            rows = self.atlas.indices(codes, np.full(codes.shape, style[index], np.uint16))
            masks[index] |= self.atlas.masks[rows].any(axis=0)
        return masks

    def _draw_thin_cursor(self, masks: np.ndarray, cell_attrs: np.ndarray) -> np.ndarray:
        """Underline and bar cursors: a stroke in the cell's foreground colour, as ink."""
        thin = np.flatnonzero(
            ((cell_attrs & _CURSOR) != 0) & ((cell_attrs & _CURSOR_BITS) != _CURSOR)
        )
        if thin.size == 0:
            return masks
        masks = masks.copy()
        stroke = max(2, self.scale * 2)
        for index in thin.tolist():
            shape = (int(cell_attrs[index]) >> _CURSOR_SHAPE_SHIFT) & 0b11
            if shape == SHAPE_UNDERLINE:
                masks[index, -stroke:, :] = True
            else:
                masks[index, :, :stroke] = True
        return masks

    def _damage(self, changed: np.ndarray) -> Region:
        """Changed cells as pixel rectangles: runs per row, merged down equal runs."""
        cw, ch = self.cell_width, self.cell_height
        open_runs: dict[tuple[int, int], int] = {}  # (x0, x1) -> first row
        rects: list[Rect] = []
        last_row = -2
        current: list[tuple[int, int]] = []
        for y, runs in _runs(changed):
            if y != last_row + 1:
                for (x0, x1), y0 in open_runs.items():
                    rects.append(Rect(x0 * cw, y0 * ch, (x1 - x0) * cw, (last_row + 1 - y0) * ch))
                open_runs, current = {}, []
            for run in set(current) - set(runs):
                y0 = open_runs.pop(run)
                rects.append(Rect(run[0] * cw, y0 * ch, (run[1] - run[0]) * cw, (y - y0) * ch))
            for run in runs:
                open_runs.setdefault(run, y)
            current, last_row = runs, y
        for (x0, x1), y0 in open_runs.items():
            rects.append(Rect(x0 * cw, y0 * ch, (x1 - x0) * cw, (last_row + 1 - y0) * ch))
        return Region.from_disjoint(rects)


# Runs of changed cells closer than this are sent as one rectangle: a few
# unchanged cells cost less than another rectangle header and encoder restart.
RUN_GAP = 8


def _runs(changed: np.ndarray) -> list[tuple[int, list[tuple[int, int]]]]:
    """Each row with changes and its half-open [start, end) runs of True, near ones merged.

    Found for all rows at once: one pass over the grid instead of one per row.
    """
    lines, columns = changed.shape
    padded = np.zeros((lines, columns + 2), dtype=np.bool_)
    padded[:, 1:-1] = changed
    # Edges alternate start, end within each row (every row begins and ends False).
    edges = np.flatnonzero((padded[:, 1:] != padded[:, :-1]).reshape(-1))
    if edges.size == 0:
        return []
    starts, ends = edges[0::2], edges[1::2]
    row, first = np.divmod(starts, columns + 1)
    last = ends % (columns + 1)
    keep = np.ones(starts.size, dtype=np.bool_)
    keep[1:] = (row[1:] != row[:-1]) | (first[1:] - last[:-1] > RUN_GAP)
    begin = np.flatnonzero(keep)
    finish = np.append(begin[1:], starts.size) - 1
    out: list[tuple[int, list[tuple[int, int]]]] = []
    for y, x0, x1 in zip(
        row[begin].tolist(), first[begin].tolist(), last[finish].tolist(), strict=True
    ):
        if out and out[-1][0] == y:
            out[-1][1].append((x0, x1))
        else:
            out.append((y, [(x0, x1)]))
    return out


def _net_scroll(scrolls: list[tuple[int, int, int]]) -> tuple[int, int, int] | None:
    """One (top, bottom, n) if every scroll this frame moved the same region, else None."""
    if not scrolls:
        return None
    top, bottom, total = scrolls[0]
    for other_top, other_bottom, n in scrolls[1:]:
        if (other_top, other_bottom) != (top, bottom):
            return None
        total += n
    return top, bottom, total


def _to_bgrx(rgb: np.ndarray) -> np.ndarray:
    out = np.zeros((rgb.shape[0], 4), dtype=np.uint8)
    out[:, 0] = rgb[:, 2]
    out[:, 1] = rgb[:, 1]
    out[:, 2] = rgb[:, 0]
    return out
