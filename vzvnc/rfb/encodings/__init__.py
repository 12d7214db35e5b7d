"""Encodings, one module each, and the choice among them (rfbproto "Encodings").

The client lists encodings in order of preference (SetEncodings); ``choose`` takes
the first pixel encoding we implement, falling back to Raw, which every client
must accept. CopyRect and pseudo-encodings are not pixel encodings: the update
builder uses them when the client listed them. The pixel encodings here:

=========== ============ ==================================================
Number      Module       Notes
=========== ============ ==================================================
0           ``raw``      every client
2           ``rre``      background plus subrectangles
5           ``hextile``  16x16 tiles, two-colour tiles as bitmaps of runs
6           ``zlib``     Raw through the connection's zlib stream
7           ``tight``    fills, 1-bit bitmaps, palettes, copy; lossless
16          ``zrle``     64x64 tiles, packed palettes and runs, one zlib stream
-260        ``tight``    TightPNG (noVNC): fills and PNG images
=========== ============ ==================================================

Compression Level pseudo-encodings (-256 .. -247 for levels 0 .. 9) set the
zlib level of the chosen encoder; without one it is ``DEFAULT_COMPRESS_LEVEL``.
JPEG Quality Level pseudo-encodings (-32 .. -23) are accepted and ignored: we
only encode losslessly.

Per-connection state: zlib, ZRLE and Tight hold zlib streams that the client
mirrors for the whole connection, so an encoder must never be shared between
connections, and one connection must keep using the same stream even when the
client sends SetEncodings again (TigerVNC's viewer does so whenever its
settings change). ``EncoderSelector`` is the per-connection object that keeps
each encoding's encoder for the connection's life; ``choose`` is the
stateless shorthand that returns a fresh encoder.

An encoder turns a region into one rectangle's payload (``encode``) or into
several rectangles (``encode_rects``): Tight must split regions wider than
2048 pixels and sends blank areas as fills, so callers that can send several
rectangles should call ``encode_rects`` (the other encodings return one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from vzvnc.fb.cellmap import CellMap
from vzvnc.fb.damage import Rect
from vzvnc.rfb.constants import Encoding
from vzvnc.rfb.encodings import raw
from vzvnc.rfb.encodings.common import DEFAULT_COMPRESS_LEVEL, EncodedPart, SingleRectEncoder
from vzvnc.rfb.encodings.hextile import HextileEncoder
from vzvnc.rfb.encodings.rre import RREEncoder
from vzvnc.rfb.encodings.tight import TIGHT_PNG, TightEncoder, dense_bands
from vzvnc.rfb.encodings.zlib import ZlibEncoder
from vzvnc.rfb.encodings.zrle import ZRLEEncoder, cell_columns
from vzvnc.rfb.pixelformat import PixelFormat

__all__ = [
    "COMPRESS_LEVEL_0",
    "COMPRESS_LEVEL_9",
    "DEFAULT_COMPRESS_LEVEL",
    "PIXEL_ENCODINGS",
    "QUALITY_LEVEL_0",
    "QUALITY_LEVEL_9",
    "TIGHT_PNG",
    "EncodedPart",
    "EncoderSelector",
    "HextileEncoder",
    "PixelEncoder",
    "RREEncoder",
    "RawEncoder",
    "TightEncoder",
    "ZRLEEncoder",
    "ZlibEncoder",
    "arrange",
    "choose",
    "compress_level",
    "encode_damage",
]

COMPRESS_LEVEL_0: Final = -256
"""Compression Level pseudo-encoding for level 0; level n is ``-256 + n``."""
COMPRESS_LEVEL_9: Final = -247
QUALITY_LEVEL_0: Final = -32
"""JPEG Quality Level pseudo-encodings -32 .. -23: accepted, ignored (lossless only)."""
QUALITY_LEVEL_9: Final = -23


class PixelEncoder(Protocol):
    """Turns framebuffer regions into rectangle payloads, for one connection."""

    @property
    def encoding(self) -> int:
        """The encoding number written in each rectangle's header."""
        ...

    @property
    def compress_level(self) -> int:
        """The zlib level in use (0 for encodings without compression)."""
        ...

    def set_compress_level(self, level: int) -> None:
        """Use zlib level ``level`` (0..9) from the next rectangle on."""
        ...

    def encode(self, pixels: npt.NDArray[np.uint8], pixel_format: PixelFormat) -> bytes:
        """The payload of one rectangle covering all of ``pixels`` ((h, w, 4) B, G, R, X)."""
        ...

    def encode_rects(
        self, pixels: npt.NDArray[np.uint8], pixel_format: PixelFormat
    ) -> list[EncodedPart]:
        """The region as one or more rectangles (positions relative to the region), in order."""
        ...

    def stream_state(self) -> object:
        """A copy of what later payloads depend on (the zlib streams), or None."""
        ...

    def adopt_stream_state(self, state: object) -> None:
        """Continue as if this encoder had produced what ``state`` was copied after."""
        ...


class RawEncoder(SingleRectEncoder):
    encoding = int(Encoding.RAW)
    compress_level = 0

    def set_compress_level(self, level: int) -> None:
        """Raw has no compression to tune."""

    def encode(self, pixels: npt.NDArray[np.uint8], pixel_format: PixelFormat) -> bytes:
        return raw.encode(pixels, pixel_format)


_FACTORIES: Final[dict[int, Callable[[int], PixelEncoder]]] = {
    int(Encoding.RAW): lambda level: RawEncoder(),
    int(Encoding.RRE): lambda level: RREEncoder(),
    int(Encoding.HEXTILE): lambda level: HextileEncoder(),
    int(Encoding.ZLIB): ZlibEncoder,
    int(Encoding.TIGHT): TightEncoder,
    int(Encoding.ZRLE): ZRLEEncoder,
    TIGHT_PNG: lambda level: TightEncoder(level, png=True),
}

PIXEL_ENCODINGS: Final = frozenset(_FACTORIES)
"""Every pixel encoding ``choose`` can pick."""


def compress_level(client_encodings: Iterable[int]) -> int:
    """The level of the first Compression Level pseudo-encoding listed, else the default."""
    for encoding in client_encodings:
        if COMPRESS_LEVEL_0 <= encoding <= COMPRESS_LEVEL_9:
            return encoding - COMPRESS_LEVEL_0
    return DEFAULT_COMPRESS_LEVEL


def _preferred(client_encodings: Iterable[int]) -> tuple[int, int]:
    listed = list(client_encodings)
    level = compress_level(listed)
    for encoding in listed:
        if encoding in _FACTORIES:
            return encoding, level
    return int(Encoding.RAW), level


class EncoderSelector:
    """One connection's encoders: each encoding's encoder (and zlib streams) lives as long as it.

    Create one per client connection and call ``choose`` on every SetEncodings.
    """

    def __init__(self) -> None:
        self._encoders: dict[int, PixelEncoder] = {}

    def choose(self, client_encodings: Iterable[int]) -> PixelEncoder:
        """The encoder for the client's first supported encoding, at the level it asked for."""
        encoding, level = _preferred(client_encodings)
        encoder = self._encoders.get(encoding)
        if encoder is None:
            encoder = self._encoders[encoding] = _FACTORIES[encoding](level)
        else:
            encoder.set_compress_level(level)
        return encoder


def arrange(
    encoder: PixelEncoder, rects: list[Rect], cell_size: tuple[int, int], within: Rect | None
) -> list[Rect]:
    """The rectangles to encode for an update's damage ``rects``.

    ZRLE sends dense damage as columns of glyph cells (``zrle.cell_columns``),
    and Tight sends each band of touching rows that is at least half changed as
    one rectangle (``tight.dense_bands``); both may cover unchanged cells between
    changed ones, so both are only done when the client asked for one rectangle,
    ``within``, that holds all of it.
    """
    if isinstance(encoder, ZRLEEncoder) and within is not None:
        columns = cell_columns(rects, *cell_size, within)
        if columns is not None:
            return columns
    if isinstance(encoder, TightEncoder) and encoder.encoding != TIGHT_PNG and within is not None:
        return dense_bands(rects)
    return rects


def encode_damage(
    encoder: PixelEncoder,
    pixels: npt.NDArray[np.uint8],
    rects: list[Rect],
    pixel_format: PixelFormat,
    cells: CellMap | None = None,
) -> list[list[EncodedPart]]:
    """``encode_rects`` of each of ``rects`` of the framebuffer ``pixels``, in order.

    ZRLE encodes them all in one batch (``ZRLEEncoder.encode_many``); ZRLE and
    Tight use the framebuffer's cell map ``cells`` if it has one.
    """
    if isinstance(encoder, ZRLEEncoder):
        payloads = encoder.encode_many(pixels, rects, pixel_format, cells)
        return [
            [EncodedPart(0, 0, rect.width, rect.height, payload)]
            for rect, payload in zip(rects, payloads, strict=True)
        ]
    if isinstance(encoder, TightEncoder) and cells is not None:
        return [
            encoder.encode_rects(
                pixels[rect.y : rect.bottom, rect.x : rect.right],
                pixel_format,
                (cells, rect.x, rect.y),
            )
            for rect in rects
        ]
    return [
        encoder.encode_rects(pixels[rect.y : rect.bottom, rect.x : rect.right], pixel_format)
        for rect in rects
    ]


def choose(client_encodings: Iterable[int]) -> PixelEncoder:
    """A fresh encoder for the client's preference (a new connection's first SetEncodings).

    A connection that may send SetEncodings again must keep its zlib streams:
    use one ``EncoderSelector`` per connection instead.
    """
    encoding, level = _preferred(client_encodings)
    return _FACTORIES[encoding](level)
