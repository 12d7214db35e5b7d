"""Pixel formats and conversion from the native framebuffer.

This module owns rfbproto's ``PIXEL_FORMAT`` structure (section "ServerInit"),
its validation when a client sends one ("SetPixelFormat"), and the translation
of framebuffer pixels into the byte layout a client asked for: the pixel values
every encoding emits (for "Raw encoding", exactly the bytes on the wire).

The framebuffer is a numpy ``(height, width, 4)`` ``uint8`` array with channels
in the order blue, green, red, unused: as little-endian 32-bit words that is
``red << 16 | green << 8 | blue``, which is ``SERVER_PIXEL_FORMAT``.

Only true colour is supported.  Colour-map formats (``true-colour-flag`` 0)
would oblige us to send ``SetColourMapEntries`` and quantise to a palette; no
viewer still in use needs them, so such a SetPixelFormat is refused.

Every conversion is a handful of whole-array numpy operations, planned once per
format and cached, so a client's format costs nothing after its first update.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from vzvnc.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["PIXEL_FORMAT_SIZE", "SERVER_PIXEL_FORMAT", "PixelFormat"]

PIXEL_FORMAT_SIZE: Final = 16
"""Length of ``PIXEL_FORMAT`` on the wire (13 bytes of fields, 3 of padding)."""

# bits-per-pixel, depth, big-endian-flag, true-colour-flag, red/green/blue-max (U16),
# red/green/blue-shift (U8), padding.  Multi-byte fields are big endian (rfbproto).
_STRUCT: Final = struct.Struct(">BBBBHHHBBB3x")

# Index of each colour's byte in a native (B, G, R, X) pixel.
_NATIVE_BLUE, _NATIVE_GREEN, _NATIVE_RED = 0, 1, 2

_ALLOWED_BPP: Final = (8, 16, 32)
_CHANNELS: Final = ("red", "green", "blue")


@dataclass(frozen=True, slots=True)
class PixelFormat:
    """rfbproto ``PIXEL_FORMAT``: how one pixel value is laid out on the wire.

    Instances are plain values; ``validate()`` says whether RFB allows them and
    ``unpack()`` only returns valid ones.
    """

    bits_per_pixel: int
    """Bits per pixel on the wire: 8, 16 or 32."""
    depth: int
    """Useful bits in a pixel (informational for true colour; at most bits_per_pixel)."""
    big_endian: bool
    """Byte order of multi-byte pixels (meaningless for 8 bits per pixel)."""
    true_colour: bool
    """Pixel values are composed of the three channels below (always True here)."""
    red_max: int
    """Largest red value, 2**n - 1 for an n-bit channel."""
    green_max: int
    """Largest green value."""
    blue_max: int
    """Largest blue value."""
    red_shift: int
    """Bit position of the red channel's least significant bit in the pixel value."""
    green_shift: int
    """Bit position of the green channel."""
    blue_shift: int
    """Bit position of the blue channel."""

    # -- wire form ---------------------------------------------------------

    def pack(self) -> bytes:
        """The 16-byte wire form (flags as 0/1, padding zero)."""
        return _STRUCT.pack(
            self.bits_per_pixel,
            self.depth,
            int(self.big_endian),
            int(self.true_colour),
            self.red_max,
            self.green_max,
            self.blue_max,
            self.red_shift,
            self.green_shift,
            self.blue_shift,
        )

    @classmethod
    def unpack(cls, data: bytes) -> PixelFormat:
        """Parse and validate a 16-byte ``PIXEL_FORMAT`` from a client.

        Flags are true when non-zero and the padding is ignored, as rfbproto
        says.  Raises ``RemoteProtocolError`` naming the offending field.
        """
        if len(data) != PIXEL_FORMAT_SIZE:
            raise RemoteProtocolError(
                f"PIXEL_FORMAT must be {PIXEL_FORMAT_SIZE} bytes, got {len(data)}"
            )
        bpp, depth, big, true, rmax, gmax, bmax, rshift, gshift, bshift = _STRUCT.unpack(data)
        fmt = cls(bpp, depth, big != 0, true != 0, rmax, gmax, bmax, rshift, gshift, bshift)
        fmt.validate()
        return fmt

    # -- validation --------------------------------------------------------

    def validate(self) -> None:
        """Raise ``RemoteProtocolError`` unless this is a format we can produce.

        Checks, each error naming its field: bits_per_pixel is 8, 16 or 32;
        depth is 1..bits_per_pixel; true colour (colour maps are not
        supported); every max is 2**n - 1 with n >= 1 and fits a U16; every
        channel (max << shift) lies within bits_per_pixel; no two channels share
        a bit (a pixel value would not say what colour it is).
        """
        bpp = self.bits_per_pixel
        if bpp not in _ALLOWED_BPP:
            raise RemoteProtocolError(f"pixel format: bits_per_pixel {bpp} is not 8, 16 or 32")
        if not 1 <= self.depth <= bpp:
            raise RemoteProtocolError(
                f"pixel format: depth {self.depth} is not between 1 and bits_per_pixel {bpp}"
            )
        if not self.true_colour:
            raise RemoteProtocolError(
                "pixel format: true_colour is 0, but colour maps are not supported"
                " (only true-colour formats)"
            )
        masks: list[tuple[str, int]] = []
        for channel, maximum, shift in zip(_CHANNELS, self._maxima(), self._shifts(), strict=True):
            if not 1 <= maximum <= 0xFFFF or maximum & (maximum + 1):
                raise RemoteProtocolError(
                    f"pixel format: {channel}_max {maximum} is not 2**n - 1 for n in 1..16"
                )
            if not 0 <= shift < bpp or maximum.bit_length() + shift > bpp:
                raise RemoteProtocolError(
                    f"pixel format: {channel}_shift {shift} puts {channel}_max {maximum}"
                    f" outside {bpp} bits per pixel"
                )
            mask = maximum << shift
            for other, other_mask in masks:
                if mask & other_mask:
                    raise RemoteProtocolError(
                        f"pixel format: {channel}_max/{channel}_shift overlap"
                        f" {other}_max/{other}_shift"
                    )
            masks.append((channel, mask))

    # -- conversion --------------------------------------------------------

    @property
    def bytes_per_pixel(self) -> int:
        """Bytes per pixel on the wire."""
        return self.bits_per_pixel // 8

    def convert(self, pixels: npt.NDArray[np.uint8]) -> bytes:
        """Encode native pixels into this format, row-major, as wire bytes.

        ``pixels`` is a ``(h, w, 4)`` ``uint8`` B, G, R, X array; any view,
        contiguous or not.  Each 8-bit channel becomes ``(v * max + 127) //
        255`` (rounded), shifted into place; bits no channel uses are zero
        except when the format is byte-for-byte the native one, where the
        pixels are copied unchanged.

        Raises ``ValueError`` for an array of the wrong shape or type and
        ``LocalProtocolError`` if this format is not valid (a format must be
        validated before pixels are sent in it).
        """
        if pixels.ndim != 3 or pixels.shape[2] != 4 or pixels.dtype != np.uint8:
            raise ValueError(
                f"expected a (h, w, 4) uint8 array, got shape {pixels.shape} {pixels.dtype}"
            )
        plan = _plan(self)
        if isinstance(plan, _Native):
            # tobytes() copies any view into C order: the whole conversion.
            return pixels.tobytes()
        if isinstance(plan, _Shuffle):
            out = np.zeros(pixels.shape, dtype=np.uint8)
            for dst, src in plan.moves:
                out[:, :, dst] = pixels[:, :, src]
            return out.tobytes()
        value = plan.red[pixels[:, :, _NATIVE_RED]]
        value |= plan.green[pixels[:, :, _NATIVE_GREEN]]
        value |= plan.blue[pixels[:, :, _NATIVE_BLUE]]
        return value.astype(plan.dtype, copy=False).tobytes()

    def to_native(self, data: bytes, width: int, height: int) -> npt.NDArray[np.uint8]:
        """Decode ``width * height`` wire pixels into a new ``(h, w, 4)`` B, G, R, X array.

        The inverse of ``convert`` for tests and clients: each channel value v
        becomes ``(v * 255 + max // 2) // max``; X is 0.  Written independently
        of ``convert`` (masks and shifts on the decoded words, no lookup
        tables) so that comparing the two is a real check.

        Raises ``ValueError`` if ``data`` is not exactly that many pixels and
        ``LocalProtocolError`` if this format is not valid.
        """
        _plan(self)  # validates
        if width < 0 or height < 0:
            raise ValueError(f"negative size {width}x{height}")
        expected = width * height * self.bytes_per_pixel
        if len(data) != expected:
            raise ValueError(
                f"{width}x{height} pixels at {self.bytes_per_pixel} bytes each"
                f" is {expected} bytes, got {len(data)}"
            )
        words = np.frombuffer(data, dtype=_wire_dtype(self)).astype(np.uint32)
        out = np.zeros((height * width, 4), dtype=np.uint8)
        for index, maximum, shift in (
            (_NATIVE_RED, self.red_max, self.red_shift),
            (_NATIVE_GREEN, self.green_max, self.green_shift),
            (_NATIVE_BLUE, self.blue_max, self.blue_shift),
        ):
            top = np.uint32(maximum)
            level = (words >> np.uint32(shift)) & top
            # level * 255 < 2**24: no overflow in uint32.
            out[:, index] = (level * np.uint32(255) + top // np.uint32(2)) // top
        return out.reshape(height, width, 4)

    # -- helpers -----------------------------------------------------------

    def _maxima(self) -> tuple[int, int, int]:
        return (self.red_max, self.green_max, self.blue_max)

    def _shifts(self) -> tuple[int, int, int]:
        return (self.red_shift, self.green_shift, self.blue_shift)


SERVER_PIXEL_FORMAT: Final = PixelFormat(
    bits_per_pixel=32,
    depth=24,
    big_endian=False,
    true_colour=True,
    red_max=255,
    green_max=255,
    blue_max=255,
    red_shift=16,
    green_shift=8,
    blue_shift=0,
)
"""The framebuffer's own layout, sent in ServerInit: B, G, R, X bytes."""


# -- conversion plans -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Native:
    """The format's bytes are the framebuffer's bytes: copy them."""


@dataclass(frozen=True, slots=True)
class _Shuffle:
    """32 bits per pixel, 8-bit channels on byte boundaries: move whole bytes."""

    moves: tuple[tuple[int, int], ...]  # (output byte, native byte) per channel


@dataclass(frozen=True, slots=True)
class _Lookup:
    """Anything else: per-channel tables of shifted, scaled values, OR-ed together."""

    red: npt.NDArray[np.uint32]
    green: npt.NDArray[np.uint32]
    blue: npt.NDArray[np.uint32]
    dtype: np.dtype[np.unsignedinteger[npt.NBitBase]]


_Plan = _Native | _Shuffle | _Lookup


def _wire_dtype(fmt: PixelFormat) -> np.dtype[np.unsignedinteger[npt.NBitBase]]:
    """The numpy dtype of one pixel value on the wire, with its byte order."""
    order = ">" if fmt.big_endian else "<"
    return np.dtype(f"{order}u{fmt.bytes_per_pixel}")


# A client keeps one format for its whole session; a few slots cover every
# client of a console, and each plan is at most three 1 KiB tables.
@functools.lru_cache(maxsize=32)
def _plan(fmt: PixelFormat) -> _Plan:
    try:
        fmt.validate()
    except RemoteProtocolError as exc:
        raise LocalProtocolError(f"cannot send pixels in an invalid format: {exc}") from exc

    native_bytes = (_NATIVE_RED, _NATIVE_GREEN, _NATIVE_BLUE)
    if fmt.bits_per_pixel == 32 and fmt._maxima() == (255, 255, 255):
        shifts = fmt._shifts()
        if all(shift % 8 == 0 for shift in shifts):
            # Byte k of a little-endian word holds bits 8k..8k+7; big endian reverses.
            positions = [shift // 8 for shift in shifts]
            if fmt.big_endian:
                positions = [3 - position for position in positions]
            moves = tuple(zip(positions, native_bytes, strict=True))
            if all(dst == src for dst, src in moves):
                return _Native()
            return _Shuffle(moves)

    levels = np.arange(256, dtype=np.uint32)
    tables = [
        ((levels * np.uint32(maximum) + np.uint32(127)) // np.uint32(255)) << np.uint32(shift)
        for maximum, shift in zip(fmt._maxima(), fmt._shifts(), strict=True)
    ]
    return _Lookup(tables[0], tables[1], tables[2], _wire_dtype(fmt))
