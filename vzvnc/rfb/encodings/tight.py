"""Tight encoding (rfbproto "Tight Encoding") and TightPNG, lossless only.

Wire rules followed here:

- A Tight rectangle is at most 2048 pixels wide (the spec; TigerVNC refuses
  wider ones), and we keep each at most 65536 pixels, as TightVNC, TigerVNC
  and libvncserver do, which bounds every client's buffers and keeps the
  compact length (at most 22 bits) far from its limit. ``TightEncoder.encode_rects``
  splits a region into such rectangles; ``encode`` (one rectangle) refuses
  wider ones.
- First byte *compression-control*: FillCompression ``0x80`` + one ``TPIXEL``;
  TightPNG's PngCompression ``0xA0`` + compact length + a PNG file; otherwise
  BasicCompression: bits 4-5 the zlib stream, bit 6 a *filter-id* byte follows
  (copy 0, palette 1, gradient 2). We never ask the client to reset a stream
  (bits 0-3 stay 0); a new compression level continues the stream (``common``).
- Palette filter: a byte *colours - 1*, the palette in ``TPIXEL``s, then one
  bit per pixel for 2 colours (rows padded to a byte, leftmost pixel in the
  most significant bit), else one byte per pixel.
- Gradient filter: each colour component minus the clamped prediction
  ``left + above - above_left`` (zero outside the rectangle), modulo 256. Off
  unless asked for (``gradient=True``), and then only for ``TPIXEL`` formats
  (32 bits per pixel, depth 24, 8-bit channels), where every decoder that has
  it computes it the same way. noVNC's Tight decoder throws "Gradient filter
  not implemented", and neither TigerVNC's nor TurboVNC's server ever sends
  it, so a client cannot be assumed to handle it; terminals rarely show the
  smooth full-colour content it is for.
- Filtered data shorter than 12 bytes is sent as is, with no length and
  without touching the zlib stream; anything longer is sent as a compact
  length (7 bits, 7 bits, 8 bits, each of the first two bytes flagged in its
  top bit when more follow) and that stream's output, ending with a partial flush (``common``).
- ``TPIXEL``: R, G, B bytes for 32 bits per pixel depth 24 with 8-bit
  channels, else a full ``PIXEL`` (``common.tpixel_packer``).
- JpegCompression is never used: the JPEG quality pseudo-encodings are
  accepted and ignored, so text stays sharp.

Text-aware splitting (``encode_rects``): a region becomes column strips of at
most 2048 pixels, and each strip is read as a grid of 8x16 text cells (the
console's font; a region that does not start on the grid is still encoded
correctly, only less compactly). In each row of cells, cells of the row's
background only join their neighbour, and the row is cut wherever the
foreground colour changes: a line of text becomes one two-colour rectangle per
run of one colour, sent as a 1-bit bitmap, and a word in another colour is a
rectangle of its own. A row cut into many short pieces is sent whole instead.
Rows that are one piece with the same two colours are merged (blank lines into
one fill). Each rectangle then takes the smallest filter for its colours: one
colour is a fill, two a bitmap, up to 256 a palette, more a copy or, for smooth
full-colour content (if enabled) the gradient. Each kind has its own zlib
stream (copy 0, bitmap 1, palette 2, gradient 3) so that each stream's history
holds like data.

TightPNG (encoding -260, for noVNC) uses fills and PNG images only; an image
of at most 256 colours is a palette PNG of 1, 2, 4 or 8 bits per pixel. The
PNG carries the colours the client's pixel format can show, so what noVNC
draws is exactly what Raw would give.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Final

import numpy as np
import numpy.typing as npt

from vzvnc.fb.cellmap import CellMap
from vzvnc.fb.damage import Rect
from vzvnc.rfb.constants import Encoding
from vzvnc.rfb.encodings.common import (
    DEFAULT_COMPRESS_LEVEL,
    EncodedPart,
    ToValues,
    ZlibStream,
    colour_values,
    is_tight_888,
    pixel_values,
    row_modes,
    tpixel_packer,
)
from vzvnc.rfb.pixelformat import PixelFormat

TIGHT_PNG: Final = -260
"""TightPNG's encoding number (registered as a Tight option; used by noVNC and QEMU)."""

MAX_WIDTH: Final = 2048
MAX_AREA: Final = 65536
MIN_FILL_AREA: Final = 2048
"""TightPNG: uniform rows become a separate fill only if they cover this many pixels."""
MIN_TO_COMPRESS: Final = 12
MAX_COMPACT_LENGTH: Final = (1 << 22) - 1

FILL: Final = 0x80
PNG: Final = 0xA0
EXPLICIT_FILTER: Final = 0x40
FILTER_COPY: Final = 0
FILTER_PALETTE: Final = 1
FILTER_GRADIENT: Final = 2

STREAM_COPY: Final = 0
STREAM_MONO: Final = 1
STREAM_PALETTE: Final = 2
STREAM_GRADIENT: Final = 3

_U32 = npt.NDArray[np.uint32]


def compact_length(length: int) -> bytes:
    """rfbproto's 1-3 byte compact representation of ``length`` (< 2**22)."""
    if not 0 <= length <= MAX_COMPACT_LENGTH:
        raise ValueError(f"Tight length {length} does not fit the compact representation")
    if length < 0x80:
        return bytes((length,))
    if length < 0x4000:
        return bytes((length & 0x7F | 0x80, length >> 7))
    return bytes((length & 0x7F | 0x80, (length >> 7) & 0x7F | 0x80, length >> 14))


def _palette(values: _U32) -> tuple[_U32, npt.NDArray[np.intp] | None]:
    """The distinct values, most common first when two; indices into them if at most 256."""
    flat = values.reshape(-1)
    first = flat[0]
    differs = flat != first
    if not differs.any():
        return np.array([first], dtype=np.uint32), None
    other = flat[int(np.argmax(differs))]
    if bool(np.all(~differs | (flat == other))):
        if int(np.count_nonzero(differs)) * 2 > flat.size:
            return np.array([other, first], dtype=np.uint32), (~differs).astype(np.intp)
        return np.array([first, other], dtype=np.uint32), differs.astype(np.intp)
    uniq = np.unique(flat)
    if uniq.size > 256:
        return uniq, None
    # searchsorted on the sorted palette: much faster than unique's argsort.
    return uniq, np.searchsorted(uniq, flat)


def _visible_rgb(values: _U32, pixel_format: PixelFormat) -> npt.NDArray[np.uint8]:
    """``(..., 3)`` R, G, B bytes the client shows for pixel values (``PixelFormat.to_native``)."""
    pf = pixel_format
    out = np.empty((*values.shape, 3), dtype=np.uint8)
    for column, (top, shift) in enumerate(
        ((pf.red_max, pf.red_shift), (pf.green_max, pf.green_shift), (pf.blue_max, pf.blue_shift))
    ):
        level = (values >> np.uint32(shift)) & np.uint32(top)
        out[..., column] = (level * np.uint32(255) + np.uint32(top // 2)) // np.uint32(top)
    return out


def _gradient_residuals(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The gradient filter's output for ``(h, w, 3)`` 8-bit components."""
    value = rgb.astype(np.int16)
    height, width, _ = value.shape
    padded = np.zeros((height + 1, width + 1, 3), dtype=np.int16)
    padded[1:, 1:] = value
    predicted = padded[:-1, 1:] + padded[1:, :-1] - padded[:-1, :-1]
    np.clip(predicted, 0, 255, out=predicted)
    residuals: npt.NDArray[np.uint8] = ((value - predicted) & 0xFF).astype(np.uint8)
    return residuals


def _looks_smooth(residuals: npt.NDArray[np.uint8]) -> bool:
    """Whether the gradient filter will help: most residuals are small."""
    small = (residuals <= 2) | (residuals >= 254)
    return bool(np.count_nonzero(small) * 2 > residuals.size)


class TightEncoder:
    """Tight (or TightPNG with ``png=True``) with this connection's four zlib streams.

    ``gradient=True`` lets full-colour rectangles use the gradient filter (see
    the module docstring for why it is off by default).
    """

    def __init__(
        self,
        compress_level: int = DEFAULT_COMPRESS_LEVEL,
        *,
        png: bool = False,
        gradient: bool = False,
    ) -> None:
        self.encoding = TIGHT_PNG if png else int(Encoding.TIGHT)
        self._png = png
        self._gradient = gradient
        self._level = compress_level
        self._streams: list[ZlibStream | None] = [None, None, None, None]

    @property
    def compress_level(self) -> int:
        return self._level

    def set_compress_level(self, level: int) -> None:
        self._level = level
        for stream in self._streams:
            if stream is not None:
                stream.set_level(level)

    def stream_state(self) -> object:
        """Copies of the four zlib streams (rfbproto "Tight Encoding": 0 to 3)."""
        return tuple(None if stream is None else stream.copy() for stream in self._streams)

    def adopt_stream_state(self, state: object) -> None:
        assert isinstance(state, tuple) and len(state) == len(self._streams)
        self._streams = [None if stream is None else stream.copy() for stream in state]

    # -- the two entry points ----------------------------------------------

    def encode(self, pixels: npt.NDArray[np.uint8], pixel_format: PixelFormat) -> bytes:
        """The whole region as one Tight rectangle (at most ``MAX_WIDTH`` wide)."""
        width = pixels.shape[1]
        if width > MAX_WIDTH:
            raise ValueError(
                f"a Tight rectangle is at most {MAX_WIDTH} pixels wide, got {width}:"
                " use encode_rects"
            )
        values = pixel_values(pixels, pixel_format)
        if values.size == 0:
            return bytes((FILL,)) + tpixel_packer(pixel_format).pack_one(0)
        return self._encode_rect(values, pixel_format)

    def encode_rects(
        self,
        pixels: npt.NDArray[np.uint8],
        pixel_format: PixelFormat,
        cells: tuple[CellMap, int, int] | None = None,
    ) -> list[EncodedPart]:
        """The region as Tight rectangles: fills for blank areas, bands for the rest.

        ``cells``: the framebuffer's cell map and where the region starts in it;
        the split into rectangles then reads each cell's colours from the map.
        """
        if self._png:
            values = pixel_values(pixels, pixel_format)
            return [
                EncodedPart(
                    x, y, w, h, self._encode_rect(values[y : y + h, x : x + w], pixel_format)
                )
                for x, y, w, h in _split(values)
            ]
        shape = (pixels.shape[0], pixels.shape[1])
        known: _U32 | None = None
        labels = None
        to_values = colour_values(pixel_format)
        if cells is not None:
            labels = _map_labels(cells[0], cells[1], cells[2], shape, to_values)
        if labels is None:
            known = pixel_values(pixels, pixel_format)
        parts = []
        for x, y, w, h in _cell_split(shape, labels, known):
            drawn = None
            if labels is not None and cells is not None:
                drawn = _map_colours(cells[0], cells[1] + x, cells[2] + y, w, h, to_values)
            if drawn is not None:
                payload = self._drawn_rect(*drawn, pixel_format)
            else:
                if known is None:
                    known = pixel_values(pixels, pixel_format)
                payload = self._encode_rect(known[y : y + h, x : x + w], pixel_format)
            parts.append(EncodedPart(x, y, w, h, payload))
        return parts

    def _drawn_rect(
        self, palette: _U32, bitmap: npt.NDArray[np.uint8] | None, pixel_format: PixelFormat
    ) -> bytes:
        """A rectangle of one colour (a fill) or two (``bitmap``: set bits are the second)."""
        if bitmap is None:
            return bytes((FILL,)) + tpixel_packer(pixel_format).pack(palette).tobytes()
        return self._basic(STREAM_MONO, FILTER_PALETTE, palette, bitmap.tobytes(), pixel_format)

    # -- one rectangle -----------------------------------------------------

    def _encode_rect(self, values: _U32, pixel_format: PixelFormat) -> bytes:
        packer = tpixel_packer(pixel_format)
        palette, indices = _palette(values)
        if palette.size == 1:
            return bytes((FILL,)) + packer.pack(palette).tobytes()
        if self._png:
            return self._png_rect(values, palette, indices, pixel_format)
        height, width = values.shape
        if indices is not None and palette.size == 2:
            bits = np.packbits(indices.reshape(height, width).astype(np.bool_), axis=1)
            return self._basic(STREAM_MONO, FILTER_PALETTE, palette, bits.tobytes(), pixel_format)
        bpc = packer.nbytes
        if indices is not None and palette.size * bpc + values.size < values.size * bpc:
            data = indices.astype(np.uint8).tobytes()
            return self._basic(STREAM_PALETTE, FILTER_PALETTE, palette, data, pixel_format)
        if self._gradient and is_tight_888(pixel_format) and values.size >= MIN_TO_COMPRESS:
            residuals = _gradient_residuals(packer.pack(values).reshape(height, width, 3))
            if _looks_smooth(residuals):
                return self._basic(
                    STREAM_GRADIENT, FILTER_GRADIENT, None, residuals.tobytes(), pixel_format
                )
        return self._basic(STREAM_COPY, None, None, packer.pack(values).tobytes(), pixel_format)

    def _basic(
        self,
        stream_id: int,
        filter_id: int | None,
        palette: _U32 | None,
        data: bytes,
        pixel_format: PixelFormat,
    ) -> bytes:
        control = stream_id << 4
        head = b""
        if filter_id is not None:
            control |= EXPLICIT_FILTER
            head = bytes((filter_id,))
            if palette is not None:
                head += bytes((palette.size - 1,))
                head += tpixel_packer(pixel_format).pack(palette).tobytes()
        if len(data) < MIN_TO_COMPRESS:
            return bytes((control,)) + head + data
        compressed = self._stream(stream_id).compress(data)
        return bytes((control,)) + head + compact_length(len(compressed)) + compressed

    def _stream(self, stream_id: int) -> ZlibStream:
        stream = self._streams[stream_id]
        if stream is None:
            stream = self._streams[stream_id] = ZlibStream(self._level)
        return stream

    def _png_rect(
        self,
        values: _U32,
        palette: _U32,
        indices: npt.NDArray[np.intp] | None,
        pixel_format: PixelFormat,
    ) -> bytes:
        # Pillow costs megabytes per process; only TightPNG (noVNC) viewers need it.
        from PIL import Image

        height, width = values.shape
        out = io.BytesIO()
        if indices is not None:
            image = Image.frombytes("P", (width, height), indices.astype(np.uint8).tobytes())
            image.putpalette(_visible_rgb(palette, pixel_format).tobytes())
            bits = (
                1
                if palette.size <= 2
                else 2
                if palette.size <= 4
                else 4
                if palette.size <= 16
                else 8
            )
            image.save(out, format="PNG", compress_level=self._level, bits=bits)
        else:
            rgb = _visible_rgb(values, pixel_format)
            image = Image.frombytes("RGB", (width, height), rgb.tobytes())
            image.save(out, format="PNG", compress_level=self._level)
        data = out.getvalue()
        return bytes((PNG,)) + compact_length(len(data)) + data


# -- splitting ------------------------------------------------------------------

DENSE_BAND: Final = 0.5
"""A band of damage is sent as one rectangle when its damage covers this much of it."""


def dense_bands(rects: list[Rect]) -> list[Rect]:
    """Damage rectangles grouped into bands of touching rows; a band whose
    rectangles cover at least ``DENSE_BAND`` of its bounding box becomes that box.

    Every rectangle costs a header, a palette and a fresh pass of the cell split,
    and a full-screen program changes many short runs on many rows: on the
    top-like replay this sends 12 rectangles a frame instead of 30, 15% fewer
    bytes in half the time. A sparse band keeps its rectangles, so scattered
    changes do not resend what lies between them.
    """
    groups: list[tuple[Rect, list[Rect]]] = []
    for rect in sorted(rects, key=lambda r: (r.y, r.x)):
        if groups and rect.y <= groups[-1][0].bottom:
            box, members = groups[-1]
            left, top = min(box.x, rect.x), box.y
            right, bottom = max(box.right, rect.right), max(box.bottom, rect.bottom)
            groups[-1] = (Rect(left, top, right - left, bottom - top), [*members, rect])
        else:
            groups.append((rect, [rect]))
    out: list[Rect] = []
    for box, members in groups:
        if len(members) > 1 and sum(r.width * r.height for r in members) >= DENSE_BAND * (
            box.width * box.height
        ):
            out.append(box)
        else:
            out.extend(members)
    return out


CELL_WIDTH: Final = 8
CELL_HEIGHT: Final = 16
"""The cell grid the planner assumes (the console font's cells; regions start on it)."""

SEGMENT_CELLS: Final = 8
"""A row of cells is cut into segments only if they average at least this many cells."""

_BLANK = -1  # a cell of only the strip's background
_MIXED = -2  # a cell of two or more colours other than the background


Labels = tuple[_U32, npt.NDArray[np.int64]]
"""Each row of cells' background and each cell's label (``_BLANK``, ``_MIXED`` or its colour)."""


def _cell_split(
    shape: tuple[int, int], labels: Labels | None, values: _U32 | None
) -> Iterator[tuple[int, int, int, int]]:
    """``(x, y, w, h)`` of Tight rectangles following the text: see ``_cell_rects``.

    The cells' labels come from ``labels`` if given, else from the pixel ``values``.
    """
    width = shape[1]
    for x in range(0, width, MAX_WIDTH):
        strip_width = min(MAX_WIDTH, width - x)
        if labels is not None:
            columns = slice(x // CELL_WIDTH, (x + MAX_WIDTH) // CELL_WIDTH)
            strip = (labels[0], labels[1][:, columns])
        else:
            assert values is not None
            strip = _pixel_labels(values[:, x : x + MAX_WIDTH])
        for rx, ry, rw, rh in _cell_rects((shape[0], strip_width), strip):
            yield x + rx, ry, rw, rh


def _pixel_labels(values: _U32) -> Labels:
    """``Labels`` of a strip read from its pixels, partial cells padded with their edge."""
    height, width = values.shape
    rows, cols = -(-height // CELL_HEIGHT), -(-width // CELL_WIDTH)
    if rows * CELL_HEIGHT != height or cols * CELL_WIDTH != width:
        values = np.pad(
            values, ((0, rows * CELL_HEIGHT - height), (0, cols * CELL_WIDTH - width)), mode="edge"
        )
    cells = (
        values.reshape(rows, CELL_HEIGHT, cols, CELL_WIDTH)
        .transpose(0, 2, 1, 3)
        .reshape(rows, cols, CELL_HEIGHT * CELL_WIDTH)
    )
    background, _ = row_modes(cells[:, :, 0])
    is_background = cells == background[:, None, None]
    blank = is_background.all(axis=2)
    first_other = np.argmax(~is_background, axis=2)
    other = np.take_along_axis(cells, first_other[:, :, None], axis=2)[:, :, 0]
    single = np.all(is_background | (cells == other[:, :, None]), axis=2)
    label = np.where(blank, _BLANK, np.where(single, other.astype(np.int64), _MIXED))
    return background, label


def _map_labels(
    cells: CellMap, x: int, y: int, shape: tuple[int, ...], to_values: ToValues
) -> Labels | None:
    """``Labels`` of the region of ``shape`` at ``(x, y)`` read from the cell map, without
    its pixels; None unless the region is whole known cells of the grid the planner uses.

    A cell's colours are its paper where a bit is clear and its ink where one is
    set; its label follows from which of them differ from the row's background
    exactly as ``_pixel_labels`` finds it from the pixels.
    """
    height, width = shape
    if (cells.cell_width, cells.cell_height) != (CELL_WIDTH, CELL_HEIGHT):
        return None
    block = cells.known_block(Rect(x, y, width, height))
    if block is None:
        return None
    ink_used, paper_used = cells.shown(block)
    ink, paper = to_values(cells.ink[block]), to_values(cells.paper[block])
    top_left = np.where(cells.bits[block][:, :, 0, 0] & 0x80, ink, paper)
    background, _ = row_modes(top_left)
    row_background = background[:, None]
    ink_shows = ink_used & (ink != row_background)
    paper_shows = paper_used & (paper != row_background)
    blank = ~ink_shows & ~paper_shows
    mixed = ink_shows & paper_shows & (ink != paper)
    other = np.where(paper_shows, paper, ink).astype(np.int64)
    return background, np.where(blank, _BLANK, np.where(mixed, _MIXED, other))


def _map_colours(
    cells: CellMap, x: int, y: int, width: int, height: int, to_values: ToValues
) -> tuple[_U32, npt.NDArray[np.uint8] | None] | None:
    """The colours of a rectangle of whole known cells, read from the cell map: one
    colour (bitmap None) or two and the 1-bit bitmap of the second, rows padded to a
    byte; None if the rectangle is off the grid, not known, or of more colours."""
    if cells.cell_width % 8:
        return None
    block = cells.known_block(Rect(x, y, width, height))
    if block is None:
        return None
    bits = cells.bits[block]
    lines = bits.shape[0]
    ink_shows, paper_shows = cells.shown(block)
    ink, paper = to_values(cells.ink[block]), to_values(cells.paper[block])
    shown = np.concatenate((paper[paper_shows], ink[ink_shows]))
    first = shown[0]
    others = shown[shown != first]
    if others.size == 0:
        return np.array([first], dtype=np.uint32), None
    second = others[0]
    if bool((others != second).any()):
        return None
    ink_mask = np.where(ink == second, 0xFF, 0).astype(np.uint8)[:, :, None, None]
    paper_mask = np.where(paper == second, 0xFF, 0).astype(np.uint8)[:, :, None, None]
    drawn = (bits & ink_mask) | (~bits & paper_mask)
    bitmap = drawn.transpose(0, 2, 1, 3).reshape(lines * cells.cell_height, -1)
    return np.array([first, second], dtype=np.uint32), bitmap


def _cell_rects(shape: tuple[int, int], labels: Labels) -> Iterator[tuple[int, int, int, int]]:
    """Rectangles for one strip at most ``MAX_WIDTH`` wide, on a grid of text cells.

    Each row of cells has a background, the most common top-left cell pixel. A
    cell is blank (background only), of one foreground colour (with or without
    background), or mixed. Blank cells take the label of the cell on their left
    (or of the first labelled one); the row is cut where the label changes.
    A row cut into pieces of fewer than ``SEGMENT_CELLS`` cells on average is
    one rectangle. Consecutive rows that are one piece with the same label and
    background are merged, up to ``MAX_AREA`` pixels unless they are blank (a
    fill has no data to bound).
    """
    height, width = shape
    if height == 0 or width == 0:
        return
    rows, cols = -(-height // CELL_HEIGHT), -(-width // CELL_WIDTH)
    background, label = labels
    # Blank cells take the label of the nearest cell on their left, else on their right.
    known = label != _BLANK
    source = np.where(known, np.arange(cols), 0)
    np.maximum.accumulate(source, axis=1, out=source)
    filled = np.take_along_axis(label, source, axis=1)
    first_known = np.take_along_axis(label, np.argmax(known, axis=1)[:, None], axis=1)
    filled = np.where(np.maximum.accumulate(known, axis=1), filled, first_known)
    cuts = np.ones((rows, cols), dtype=np.bool_)
    cuts[:, 1:] = filled[:, 1:] != filled[:, :-1]

    pending: list[int] | None = None  # [y, h, label, background] of merged whole rows
    for row in range(rows):
        y = row * CELL_HEIGHT
        h = min(CELL_HEIGHT, height - y)
        starts = np.flatnonzero(cuts[row]).tolist()
        if len(starts) == 1:
            key = int(filled[row, 0])
            bg = int(background[row])
            if (
                pending is not None
                and pending[2] == key
                and pending[3] == bg
                and key != _MIXED
                and (key == _BLANK or width * (pending[1] + h) <= MAX_AREA)
            ):
                pending[1] += h
                continue
            if pending is not None:
                yield 0, pending[0], width, pending[1]
            pending = [y, h, key, bg]
            continue
        if pending is not None:
            yield 0, pending[0], width, pending[1]
            pending = None
        if len(starts) * SEGMENT_CELLS > cols:
            # Many short segments: one palette rectangle costs less than their headers.
            yield 0, y, width, h
            continue
        ends = [*starts[1:], cols]
        for start, end in zip(starts, ends, strict=True):
            x0 = start * CELL_WIDTH
            yield x0, y, min(end * CELL_WIDTH, width) - x0, h
    if pending is not None:
        yield 0, pending[0], width, pending[1]


def _split(values: _U32) -> Iterator[tuple[int, int, int, int]]:
    """TightPNG's rectangles: fills for uniform rows, bands of at most ``MAX_AREA`` pixels.

    A PNG image costs about 60 bytes of headers, so TightPNG does not follow
    the text's colours: its palette images hold up to 256 colours anyway.
    """
    width = values.shape[1]
    for x in range(0, width, MAX_WIDTH):
        strip = values[:, x : x + MAX_WIDTH]
        strip_width = strip.shape[1]
        for y, h, solid in _bands(strip):
            if solid:
                yield x, y, strip_width, h
                continue
            rows = max(1, MAX_AREA // strip_width)
            for top in range(y, y + h, rows):
                yield x, top, strip_width, min(rows, y + h - top)


def _bands(strip: _U32) -> Iterator[tuple[int, int, bool]]:
    """Row bands ``(y, h, solid)``: solid ones of one colour and at least ``MIN_FILL_AREA``."""
    height, width = strip.shape
    if height == 0 or width == 0:
        return
    uniform = np.all(strip == strip[:, :1], axis=1)
    colour = strip[:, 0]
    # Runs of uniform rows of one colour.
    breaks = np.ones(height, dtype=np.bool_)
    breaks[1:] = (colour[1:] != colour[:-1]) | (uniform[1:] != uniform[:-1])
    starts = np.flatnonzero(breaks)
    lengths = np.diff(np.append(starts, height))
    rows_needed = -(-MIN_FILL_AREA // width)
    pending = 0  # start of rows not yet yielded
    for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
        if uniform[start] and length >= rows_needed:
            if start > pending:
                yield pending, start - pending, False
            yield start, length, True
            pending = start + length
    if pending < height:
        yield pending, height - pending, False
