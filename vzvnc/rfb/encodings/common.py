"""Machinery the encodings share: pixel values, compact pixels, zlib streams, runs, subrects.

Every encoder works on *pixel values*: the framebuffer region converted to the
client's ``PIXEL_FORMAT`` (``PixelFormat.convert``), read back as one unsigned
integer per pixel with every bit that no channel uses cleared, so that two pixels
with the same colour always have the same value and palettes are counted in the
colours the client will see. ``wire_bytes`` turns values back into ``PIXEL``
bytes in the client's byte order.

Compact pixels (one ``PixelPacker`` per format, cached):

- ``CPIXEL`` (rfbproto "ZRLE Encoding"): for 32 bits per pixel whose used bits
  fit in three bytes, only those three bytes are sent. The spec's text adds
  "depth 24 or less" and, when both the three least and the three most
  significant bytes would do, picks the least significant ones. The decoders in
  use (TigerVNC's, from the RealVNC code where ZRLE was defined, and
  libvncclient's) look at the channel bits only, not at ``depth``, and prefer
  the first three bytes *on the wire* when the last wire byte is unused: for
  big endian with every channel in the middle two bytes that is the most
  significant three. We follow the decoders, which agree with the spec in every format a
  real client asks for (depth 24, bits in the low three bytes of either byte
  order, or in the high three): send wire bytes 0-2 if wire byte 3 carries no
  channel bit, else wire bytes 1-3 if wire byte 0 carries none, else all four.
- ``TPIXEL`` (rfbproto "Tight Encoding"): for a true-colour format with 32 bits
  per pixel, depth 24 and every channel maximum 255, the three bytes red,
  green, blue in that order whatever the shifts and byte order; otherwise a
  full ``PIXEL``.

``ZlibStream`` is one zlib stream of one connection (zlib, ZRLE, and each of
Tight's four). Every rectangle ends with a partial flush (zlib's
``Z_PARTIAL_FLUSH``): the client can inflate all of it, and the flush costs an
empty 10-bit block instead of a sync flush's 4-byte empty stored block, which
is 5% of a full-screen ZRLE update sent as 80 columns and more of a small one.
The stream lives as long as the connection: a client that sends SetEncodings
again keeps inflating the same stream. A new compression level is applied by
continuing the stream with a fresh raw-deflate compressor at the new level:
the old compressor is first ended with a sync flush, which puts the stream at
a byte boundary between blocks, and blocks that refer only to their own data
are a valid continuation of any deflate stream.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from vzvnc.rfb.pixelformat import PixelFormat

__all__ = [
    "DEFAULT_COMPRESS_LEVEL",
    "EncodedPart",
    "PixelPacker",
    "SingleRectEncoder",
    "Subrects",
    "ToValues",
    "ZlibStream",
    "ZlibStreamEncoder",
    "colour_values",
    "cpixel_packer",
    "find_subrects",
    "is_native_layout",
    "is_tight_888",
    "most_common",
    "native_words",
    "peel_palettes",
    "pixel_values",
    "rle_bytes",
    "row_modes",
    "run_lengths",
    "tpixel_packer",
    "used_bits",
    "wire_bytes",
    "wire_dtype",
]

U8 = npt.NDArray[np.uint8]
U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]

DEFAULT_COMPRESS_LEVEL: Final = 6
"""zlib level when the client sends no Compression Level pseudo-encoding.

Measured on rendered terminal screens (``python -m tests.unit.test_encodings``):
palette, bitmap and run-length coding leave zlib little work, so for ZRLE and
Tight level 6 costs about 10% more time than level 1 for 15-25% fewer bytes,
and level 9 buys almost nothing more. Only the zlib encoding (Raw pixels)
doubles its time at 6, and clients that offer it offer better ones first.
"""

ZLIB_MEM_LEVEL: Final = 5
"""zlib's memLevel for every stream: 144 KB of compressor state instead of 256 KB.

Each connection holds its streams for its whole life, reading or not, so this is
most of what an idle or stalled viewer costs. On the top-like replay and nine
recorded full-screen programs, ZRLE and Tight sent within 0.1% of the bytes they
send at the default level 8, in less time (``memLevel`` sizes the hash chains
only; the 32 KB window, which does decide the ratio here, stays).
"""


@dataclass(frozen=True, slots=True)
class EncodedPart:
    """One rectangle of an encoded region: position relative to the region, and payload."""

    x: int
    y: int
    width: int
    height: int
    payload: bytes


class SingleRectEncoder:
    """Base of the encoders that send any region as one rectangle."""

    def encode(self, pixels: npt.NDArray[np.uint8], pixel_format: PixelFormat) -> bytes:
        raise NotImplementedError

    def encode_rects(
        self, pixels: npt.NDArray[np.uint8], pixel_format: PixelFormat
    ) -> list[EncodedPart]:
        """``[the whole region]``: one rectangle."""
        height, width = pixels.shape[0], pixels.shape[1]
        return [EncodedPart(0, 0, width, height, self.encode(pixels, pixel_format))]

    def stream_state(self) -> object:
        """A copy of the connection state the payloads depend on (none here)."""
        return None

    def adopt_stream_state(self, state: object) -> None:
        """Continue from a copy of ``stream_state()`` of an encoder of the same kind."""


# -- pixel values -------------------------------------------------------------


def wire_dtype(pixel_format: PixelFormat) -> np.dtype[np.unsignedinteger[npt.NBitBase]]:
    """The numpy dtype of one ``PIXEL`` on the wire, with its byte order."""
    order = ">" if pixel_format.big_endian else "<"
    return np.dtype(f"{order}u{pixel_format.bytes_per_pixel}")


def used_bits(pixel_format: PixelFormat) -> int:
    """The mask of the bits some channel uses in a pixel value."""
    pf = pixel_format
    return (
        (pf.red_max << pf.red_shift)
        | (pf.green_max << pf.green_shift)
        | (pf.blue_max << pf.blue_shift)
    )


def is_native_layout(pixels: npt.NDArray[np.uint8], pixel_format: PixelFormat) -> bool:
    """Whether ``pixels`` are in the framebuffer's own layout and ``pixel_format`` is its format,
    so that each pixel's 4 bytes are its value as one little-endian word."""
    return (
        _is_native(pixel_format)
        and pixels.ndim == 3
        and pixels.shape[2] == 4
        and pixels.dtype == np.uint8
        and pixels.strides[2] == 1
        and pixels.size > 0
    )


def native_words(pixels: npt.NDArray[np.uint8]) -> U32:
    """``(h, w)`` uint32 view of native pixels; unused bits not masked (``is_native_layout``)."""
    words: U32 = pixels.view("<u4")[:, :, 0]
    return words


def pixel_values(pixels: npt.NDArray[np.uint8], pixel_format: PixelFormat) -> U32:
    """``(h, w)`` uint32 pixel values of native ``(h, w, 4)`` pixels in ``pixel_format``."""
    height, width = pixels.shape[0], pixels.shape[1]
    if is_native_layout(pixels, pixel_format):
        native: U32 = (native_words(pixels) & np.uint32(used_bits(pixel_format))).astype(
            np.uint32, copy=False
        )
        return native
    data = pixel_format.convert(pixels)
    words = np.frombuffer(data, dtype=wire_dtype(pixel_format)).reshape(height, width)
    return (words & used_bits(pixel_format)).astype(np.uint32)


ToValues = Callable[[U32], U32]
"""The client's pixel values of framebuffer pixel words (any shape)."""


def colour_values(pixel_format: PixelFormat) -> ToValues:
    """How framebuffer pixel words (B, G, R, X as little-endian uint32) become pixel values
    in ``pixel_format``: the same values ``pixel_values`` gives for those pixels."""
    if _is_native(pixel_format):
        mask = np.uint32(used_bits(pixel_format))

        def native(words: U32) -> U32:
            return words & mask

        return native

    def converted(words: U32) -> U32:
        pixels = np.ascontiguousarray(words, dtype=np.uint32).view(np.uint8).reshape(-1, 1, 4)
        return pixel_values(pixels, pixel_format).reshape(words.shape)

    return converted


def _is_native(pixel_format: PixelFormat) -> bool:
    pf = pixel_format
    return (
        pf.bits_per_pixel == 32
        and not pf.big_endian
        and (pf.red_max, pf.green_max, pf.blue_max) == (255, 255, 255)
        and (pf.red_shift, pf.green_shift, pf.blue_shift) == (16, 8, 0)
    )


def wire_bytes(values: npt.NDArray[np.uint32], pixel_format: PixelFormat) -> bytes:
    """Pixel values as ``PIXEL`` bytes, row-major."""
    return values.astype(wire_dtype(pixel_format)).tobytes()


# -- compact pixels -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PixelPacker:
    """Turns pixel values into the bytes of ``CPIXEL`` or ``TPIXEL``."""

    nbytes: int
    """Bytes per packed pixel."""
    dtype: np.dtype[np.unsignedinteger[npt.NBitBase]]
    """Wire dtype of a full ``PIXEL``."""
    take: tuple[int, ...] | None
    """Which bytes of the wire ``PIXEL`` to keep (``None``: all of them)."""
    rgb_shifts: tuple[int, int, int] | None
    """For ``TPIXEL``: the red, green and blue shifts of 8-bit channels."""

    def pack(self, values: npt.NDArray[np.uint32]) -> U8:
        """``(n, nbytes)`` uint8 for ``n`` values (any shape, flattened)."""
        flat = np.ascontiguousarray(values).reshape(-1)
        if self.rgb_shifts is not None:
            out = np.empty((flat.size, 3), dtype=np.uint8)
            for column, shift in enumerate(self.rgb_shifts):
                out[:, column] = (flat >> np.uint32(shift)) & np.uint32(0xFF)
            return out
        size = self.dtype.itemsize
        raw = flat.astype(self.dtype).view(np.uint8).reshape(flat.size, size)
        if self.take is None:
            return raw
        return np.ascontiguousarray(raw[:, list(self.take)])

    def pack_one(self, value: int) -> bytes:
        return self.pack(np.array([value], dtype=np.uint32)).tobytes()


@functools.lru_cache(maxsize=32)
def cpixel_packer(pixel_format: PixelFormat) -> PixelPacker:
    """The ``CPIXEL`` packing for ``pixel_format`` (rule in the module docstring)."""
    dtype = wire_dtype(pixel_format)
    if pixel_format.bits_per_pixel == 32:
        mask = used_bits(pixel_format)
        wire_order = mask.to_bytes(4, "big" if pixel_format.big_endian else "little")
        if wire_order[3] == 0:
            return PixelPacker(3, dtype, (0, 1, 2), None)
        if wire_order[0] == 0:
            return PixelPacker(3, dtype, (1, 2, 3), None)
    return PixelPacker(pixel_format.bytes_per_pixel, dtype, None, None)


def is_tight_888(pixel_format: PixelFormat) -> bool:
    """Whether Tight sends this format's pixels as 3-byte ``TPIXEL`` (R, G, B)."""
    pf = pixel_format
    return (
        pf.true_colour
        and pf.bits_per_pixel == 32
        and pf.depth == 24
        and pf.red_max == pf.green_max == pf.blue_max == 255
    )


@functools.lru_cache(maxsize=32)
def tpixel_packer(pixel_format: PixelFormat) -> PixelPacker:
    """The ``TPIXEL`` packing for ``pixel_format``."""
    dtype = wire_dtype(pixel_format)
    if is_tight_888(pixel_format):
        shifts = (pixel_format.red_shift, pixel_format.green_shift, pixel_format.blue_shift)
        return PixelPacker(3, dtype, None, shifts)
    return PixelPacker(pixel_format.bytes_per_pixel, dtype, None, None)


# -- zlib ---------------------------------------------------------------------


class ZlibStream:
    """One connection's zlib stream: rectangles compressed in order, each one inflatable whole."""

    def __init__(self, level: int) -> None:
        self._level = level
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS, ZLIB_MEM_LEVEL)
        self._retired: Any = None  # a compressor to end before the next rectangle
        self._started = False

    @property
    def level(self) -> int:
        return self._level

    def set_level(self, level: int) -> None:
        """Use ``level`` from the next rectangle on, continuing the same stream."""
        if level == self._level:
            return
        self._level = level
        if self._started:
            # Raw deflate: no second zlib header; see the module docstring.
            if self._retired is None:
                self._retired = self._compressor
            self._compressor = zlib.compressobj(
                level, zlib.DEFLATED, -zlib.MAX_WBITS, ZLIB_MEM_LEVEL
            )
        else:
            self._compressor = zlib.compressobj(
                level, zlib.DEFLATED, zlib.MAX_WBITS, ZLIB_MEM_LEVEL
            )

    def copy(self) -> ZlibStream:
        """A stream in exactly this one's state, to continue independently."""
        twin = ZlibStream.__new__(ZlibStream)
        twin._level = self._level
        twin._compressor = self._compressor.copy()
        twin._retired = None if self._retired is None else self._retired.copy()
        twin._started = self._started
        return twin

    def compress(self, data: bytes) -> bytes:
        """``data`` compressed, with everything the client needs to inflate it."""
        self._started = True
        head = b""
        if self._retired is not None:
            # The partial flush left the old compressor mid-byte: a sync flush ends it
            # on a byte boundary, where the new compressor's blocks may follow.
            head = self._retired.flush(zlib.Z_SYNC_FLUSH)
            self._retired = None
        return head + self._compressor.compress(data) + self._compressor.flush(zlib.Z_PARTIAL_FLUSH)


# -- palettes -----------------------------------------------------------------


def peel_palettes(
    flat: npt.NDArray[np.uint32], limit: int, used: npt.NDArray[np.bool_] | None = None
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """Each row's colours in order of first appearance, and every pixel's index among them.

    Returns ``(indices, palette, colours)``: indices ``(n, pixels)``, palette
    ``(limit, n)`` (slot k of every row), colours ``(n,)``; a row with more than
    ``limit`` colours reports ``limit + 1`` and its indices are meaningless.
    One colour is peeled per pass, only from the rows that still have pixels
    left: a terminal tile has two to four colours, so this beats sorting.
    ``used``, if given, says which entries count (each row must have one);
    the others get meaningless indices.
    """
    count, pixels = flat.shape
    indices = np.zeros((count, pixels), dtype=np.uint8)
    palette = np.zeros((limit, count), dtype=np.uint32)
    colours = np.zeros(count, dtype=np.int64)
    rows = np.arange(count)
    left = np.ones((count, pixels), dtype=np.bool_) if used is None else used.copy()
    for slot in range(limit + 1):
        if rows.size == 0:
            break
        value = flat[rows, left.argmax(axis=1)]
        match = (flat[rows] == value[:, None]) & left
        colours[rows] += 1
        if slot == limit:
            break
        palette[slot, rows] = value
        indices[rows] += match.astype(np.uint8) * np.uint8(slot)
        left &= ~match
        still = left.any(axis=1)
        rows, left = rows[still], left[still]
    return indices, palette, colours


# -- runs ---------------------------------------------------------------------


def run_lengths(flat: npt.NDArray[np.uint32]) -> tuple[I64, I64]:
    """Start indices and lengths of the runs of equal values in a 1-D array."""
    size = flat.size
    if size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate((np.zeros(1, dtype=np.int64), starts.astype(np.int64)))
    lengths = np.diff(np.append(starts, size))
    return starts, lengths


def rle_length_bytes(lengths: I64) -> I64:
    """How many bytes rfbproto's run-length form takes for each run length (>= 1)."""
    return (lengths - 1) // 255 + 1


def rle_bytes(heads: U8, lengths: I64, with_length: npt.NDArray[np.bool_]) -> bytes:
    """Runs as bytes: each run's head bytes, then (where asked) its length.

    The length of a run of ``n`` pixels is ``(n - 1) // 255`` bytes of 255 and
    a final byte ``(n - 1) % 255`` (rfbproto "ZRLE Encoding", plain RLE).
    ``heads`` is ``(runs, k)``.
    """
    runs, k = heads.shape
    if runs == 0:
        return b""
    nlen = np.where(with_length, rle_length_bytes(lengths), 0)
    sizes = k + nlen
    ends = np.cumsum(sizes)
    starts = ends - sizes
    out = np.full(int(ends[-1]), 255, dtype=np.uint8)
    out[(starts[:, None] + np.arange(k)).reshape(-1)] = heads.reshape(-1)
    last = ends[with_length] - 1
    out[last] = ((lengths[with_length] - 1) % 255).astype(np.uint8)
    return out.tobytes()


def row_modes(rows: npt.NDArray[np.uint32]) -> tuple[U32, I64]:
    """Each row's most common value (ties: the smallest) and number of distinct values."""
    count, size = rows.shape
    ordered = np.sort(rows, axis=1)
    starts = np.ones(ordered.shape, dtype=np.bool_)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    positions = np.flatnonzero(starts.reshape(-1))
    lengths = np.diff(np.append(positions, ordered.size))
    row = positions // size
    # Sorted by row, then by run length: the last entry of each row is its longest run.
    best = np.lexsort((-positions, lengths, row))
    last = np.flatnonzero(np.append(row[best][1:] != row[best][:-1], True))
    modes: U32 = ordered.reshape(-1)[positions[best[last]]].astype(np.uint32)
    return modes, np.bincount(row, minlength=count).astype(np.int64)


def most_common(values: npt.NDArray[np.uint32], sample: int = 1 << 16) -> int:
    """The most frequent value (estimated from an even sample of large arrays)."""
    flat = values.reshape(-1)
    if flat.size > sample:
        flat = flat[:: flat.size // sample + 1]
    uniq, counts = np.unique(flat, return_counts=True)
    return int(uniq[int(np.argmax(counts))])


# -- subrectangles ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subrects:
    """Solid subrectangles covering every non-background pixel of a stack of tiles.

    Arrays of equal length, sorted by tile; ``x``/``y`` relative to the tile.
    """

    tile: I64
    x: I64
    y: I64
    width: I64
    height: I64
    value: U32

    def counts(self, tiles: int) -> I64:
        """Subrectangles per tile."""
        return np.bincount(self.tile, minlength=tiles).astype(np.int64)


def find_subrects(
    tiles: npt.NDArray[np.uint32],
    background: npt.NDArray[np.uint32],
    widths: I64 | None = None,
    heights: I64 | None = None,
) -> Subrects:
    """Cover each tile's non-background pixels with rectangles of one value each.

    ``tiles`` is ``(n, th, tw)``; ``background`` one value per tile. Each row's
    runs of one non-background value become rectangles, and a run exactly
    below an equal run (same columns, same value) extends that rectangle
    downwards: glyph stems and blocks become one rectangle each. All vector
    operations, no loop over pixels.

    ``widths``/``heights`` give each tile's real size when the stack was padded
    by repeating the last column and row (so padding never holds a new value
    and every run reaching into it starts inside); rectangles are clipped to it.
    """
    count, th, tw = tiles.shape
    if count == 0 or th == 0 or tw == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Subrects(empty, empty, empty, empty, empty, np.zeros(0, dtype=np.uint32))
    foreground = tiles != background[:, None, None]
    new = np.ones(tiles.shape, dtype=np.bool_)
    new[:, :, 1:] = tiles[:, :, 1:] != tiles[:, :, :-1]
    ending = np.ones(tiles.shape, dtype=np.bool_)
    ending[:, :, :-1] = new[:, :, 1:]
    t, y, x0 = (a.astype(np.int64) for a in np.nonzero(foreground & new))
    x1 = np.nonzero(foreground & ending)[2].astype(np.int64)
    value = tiles[t, y, x0]
    # A run continues the rectangle above if the row above has the same run.
    order = np.lexsort((y, value, x1, x0, t))
    t, y, x0, x1, value = t[order], y[order], x0[order], x1[order], value[order]
    same = np.zeros(t.size, dtype=np.bool_)
    same[1:] = (
        (t[1:] == t[:-1])
        & (x0[1:] == x0[:-1])
        & (x1[1:] == x1[:-1])
        & (value[1:] == value[:-1])
        & (y[1:] == y[:-1] + 1)
    )
    heads = np.flatnonzero(~same)
    height = np.diff(np.append(heads, t.size)).astype(np.int64)
    t, y, x0, x1, value = t[heads], y[heads], x0[heads], x1[heads], value[heads]
    if widths is not None and heights is not None:
        x1 = np.minimum(x1, widths[t] - 1)
        height = np.minimum(height, heights[t] - y)
        keep = (x0 <= x1) & (height > 0)
        t, y, x0, x1, value, height = (a[keep] for a in (t, y, x0, x1, value, height))
    order = np.lexsort((x0, y, t))
    return Subrects(
        t[order], x0[order], y[order], (x1 - x0 + 1)[order], height[order], value[order]
    )


class ZlibStreamEncoder(SingleRectEncoder):
    """Base of the one-rectangle encoders that compress through this connection's stream."""

    def __init__(self, compress_level: int = DEFAULT_COMPRESS_LEVEL) -> None:
        self._stream = ZlibStream(compress_level)

    @property
    def compress_level(self) -> int:
        return self._stream.level

    def set_compress_level(self, level: int) -> None:
        self._stream.set_level(level)

    def stream_state(self) -> object:
        return self._stream.copy()

    def adopt_stream_state(self, state: object) -> None:
        assert isinstance(state, ZlibStream)
        self._stream = state.copy()
