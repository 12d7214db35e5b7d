"""Client-side decoders for the RFB encodings, written from rfbproto for the tests.

These are deliberately plain: a byte cursor, loops over tiles, runs and
subrectangles, and one pixel at a time where the spec describes pixels one at
a time. They share no code with ``vzvnc.rfb.encodings`` (only ``PixelFormat``
for its ``to_native``, the definition of what a pixel value looks like), so a
round trip through them checks the encoders against the spec rather than
against themselves.

A ``Decoder`` is one client connection: it owns the framebuffer, the zlib
streams (one for zlib, one for ZRLE, four for Tight), and decodes rectangles in
the order they arrive. The framebuffer holds what the client would show, as
native ``(h, w, 4)`` B, G, R, 0 pixels: every pixel value received is turned
into that with ``PixelFormat.to_native``.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import numpy.typing as npt
from PIL import Image

from vzvnc.rfb.pixelformat import PixelFormat

RAW, COPY_RECT, RRE, HEXTILE, ZLIB, TIGHT, ZRLE = 0, 1, 2, 5, 6, 7, 16
TIGHT_PNG = -260

Native = npt.NDArray[np.uint8]


class DecodeError(Exception):
    """The payload does not follow the spec."""


class Reader:
    """A cursor over one rectangle's payload."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DecodeError(f"payload too short: need {n} at {self.pos} of {len(self.data)}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.read(1)[0]

    def u16(self) -> int:
        value: int = struct.unpack(">H", self.read(2))[0]
        return value

    def u32(self) -> int:
        value: int = struct.unpack(">I", self.read(4))[0]
        return value

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise DecodeError(f"{len(self.data) - self.pos} bytes left over")


class Decoder:
    """One client connection's decoding state."""

    def __init__(self, pixel_format: PixelFormat, width: int, height: int) -> None:
        self.pf = pixel_format
        self.fb: Native = np.zeros((height, width, 4), dtype=np.uint8)
        self.zlib_stream = zlib.decompressobj()
        self.zrle_stream = zlib.decompressobj()
        self.tight_streams = [zlib.decompressobj() for _ in range(4)]
        self.bpp = pixel_format.bits_per_pixel // 8

    # -- pixels -------------------------------------------------------------

    def natives(self, data: bytes, size: int) -> Native:
        """``size`` PIXELs as native pixels, shape (size, 4)."""
        return self.pf.to_native(data, size, 1).reshape(size, 4)

    def native(self, pixel: bytes) -> Native:
        one: Native = self.natives(pixel, 1)[0]
        return one

    def read_pixels(self, reader: Reader, count: int) -> Native:
        return self.natives(reader.read(count * self.bpp), count)

    # CPIXEL (rfbproto "ZRLE Encoding"), as the decoders in use read it:
    # 32 bpp whose channel bits leave one end byte of the wire form unused.
    def cpixel_layout(self) -> tuple[int, int]:
        """(bytes per CPIXEL, zero bytes to put before them to make a PIXEL)."""
        pf = self.pf
        if pf.bits_per_pixel != 32:
            return self.bpp, 0
        top = (
            pf.red_max << pf.red_shift
            | pf.green_max << pf.green_shift
            | pf.blue_max << pf.blue_shift
        )
        wire = struct.pack(">I" if pf.big_endian else "<I", top)
        if wire[3] == 0:
            return 3, 0
        if wire[0] == 0:
            return 3, 1
        return 4, 0

    def read_cpixels(self, reader: Reader, count: int) -> Native:
        size, before = self.cpixel_layout()
        out = bytearray()
        for _ in range(count):
            chunk = reader.read(size)
            if size == 3:
                chunk = b"\0" + chunk if before else chunk + b"\0"
            out += chunk
        return self.natives(bytes(out), count)

    # TPIXEL (rfbproto "Tight Encoding").
    def tpixel_is_rgb(self) -> bool:
        pf = self.pf
        return (
            pf.bits_per_pixel == 32
            and pf.depth == 24
            and (pf.red_max, pf.green_max, pf.blue_max) == (255, 255, 255)
        )

    def tpixel_size(self) -> int:
        return 3 if self.tpixel_is_rgb() else self.bpp

    def rgb_to_pixel(self, red: int, green: int, blue: int) -> bytes:
        pf = self.pf
        value = red << pf.red_shift | green << pf.green_shift | blue << pf.blue_shift
        return struct.pack(">I" if pf.big_endian else "<I", value)

    def read_tpixels(self, reader: Reader, count: int) -> Native:
        if not self.tpixel_is_rgb():
            return self.read_pixels(reader, count)
        out = bytearray()
        for _ in range(count):
            red, green, blue = reader.read(3)
            out += self.rgb_to_pixel(red, green, blue)
        return self.natives(bytes(out), count)

    # -- rectangles ---------------------------------------------------------

    def decode(self, encoding: int, x: int, y: int, w: int, h: int, payload: bytes) -> None:
        if x + w > self.fb.shape[1] or y + h > self.fb.shape[0]:
            raise DecodeError("rectangle outside the framebuffer")
        reader = Reader(payload)
        area = self.fb[y : y + h, x : x + w]
        if encoding == RAW:
            area[:] = self.read_pixels(reader, w * h).reshape(h, w, 4)
        elif encoding == RRE:
            self.rre(reader, area)
        elif encoding == HEXTILE:
            self.hextile(reader, area)
        elif encoding == ZLIB:
            self.zlib(reader, area)
        elif encoding == ZRLE:
            self.zrle(reader, area)
        elif encoding in (TIGHT, TIGHT_PNG):
            self.tight(reader, area, png=encoding == TIGHT_PNG)
        else:
            raise DecodeError(f"unknown encoding {encoding}")
        reader.finish()

    def rre(self, reader: Reader, area: Native) -> None:
        count = reader.u32()
        area[:] = self.read_pixels(reader, 1)[0]
        h, w = area.shape[:2]
        for _ in range(count):
            colour = self.read_pixels(reader, 1)[0]
            sx, sy, sw, sh = reader.u16(), reader.u16(), reader.u16(), reader.u16()
            if sw == 0 or sh == 0 or sx + sw > w or sy + sh > h:
                raise DecodeError("RRE subrectangle outside the rectangle")
            area[sy : sy + sh, sx : sx + sw] = colour

    def hextile(self, reader: Reader, area: Native) -> None:
        h, w = area.shape[:2]
        background: Native | None = None
        foreground: Native | None = None
        for ty in range(0, h, 16):
            for tx in range(0, w, 16):
                tile = area[ty : ty + 16, tx : tx + 16]
                th, tw = tile.shape[:2]
                mask = reader.u8()
                if mask & 1:
                    tile[:] = self.read_pixels(reader, tw * th).reshape(th, tw, 4)
                    background = foreground = None  # not carried over a raw tile
                    continue
                if mask & 2:
                    background = self.read_pixels(reader, 1)[0]
                if background is None:
                    raise DecodeError("hextile tile without a background")
                if mask & 4:
                    if mask & 16:
                        raise DecodeError("ForegroundSpecified with SubrectsColoured")
                    foreground = self.read_pixels(reader, 1)[0]
                tile[:] = background
                if not mask & 8:
                    continue
                for _ in range(reader.u8()):
                    if mask & 16:
                        colour = self.read_pixels(reader, 1)[0]
                    elif foreground is None:
                        raise DecodeError("hextile subrect without a foreground")
                    else:
                        colour = foreground
                    xy, wh = reader.u8(), reader.u8()
                    sx, sy = xy >> 4, xy & 15
                    sw, sh = (wh >> 4) + 1, (wh & 15) + 1
                    if sx + sw > tw or sy + sh > th:
                        raise DecodeError("hextile subrect outside its tile")
                    tile[sy : sy + sh, sx : sx + sw] = colour
                if mask & 16:
                    foreground = None  # decoders differ on what it holds now

    def zlib(self, reader: Reader, area: Native) -> None:
        h, w = area.shape[:2]
        length = reader.u32()
        data = self.zlib_stream.decompress(reader.read(length))
        inner = Reader(data)
        area[:] = self.read_pixels(inner, w * h).reshape(h, w, 4)
        inner.finish()

    def zrle(self, reader: Reader, area: Native) -> None:
        h, w = area.shape[:2]
        length = reader.u32()
        inner = Reader(self.zrle_stream.decompress(reader.read(length)))
        for ty in range(0, h, 64):
            for tx in range(0, w, 64):
                tile = area[ty : ty + 64, tx : tx + 64]
                th, tw = tile.shape[:2]
                sub = inner.u8()
                rle, size = sub & 128, sub & 127
                if not rle:
                    if size == 0:
                        tile[:] = self.read_cpixels(inner, tw * th).reshape(th, tw, 4)
                    elif size == 1:
                        tile[:] = self.read_cpixels(inner, 1)[0]
                    elif size <= 16:
                        palette = self.read_cpixels(inner, size)
                        bits = 1 if size == 2 else 2 if size <= 4 else 4
                        row_bytes = (tw * bits + 7) // 8
                        for row in range(th):
                            packed = inner.read(row_bytes)
                            for col in range(tw):
                                bit = col * bits
                                index = (packed[bit // 8] >> (8 - bits - bit % 8)) & (
                                    (1 << bits) - 1
                                )
                                if index >= size:
                                    raise DecodeError("palette index out of range")
                                tile[row, col] = palette[index]
                    else:
                        raise DecodeError(f"ZRLE subencoding {sub} is unused")
                    continue
                if size == 1:
                    raise DecodeError("ZRLE subencoding 129 is unused")
                runs_palette = self.read_cpixels(inner, size) if size else None
                out = np.zeros((th * tw, 4), dtype=np.uint8)
                done = 0
                while done < th * tw:
                    if runs_palette is None:
                        colour = self.read_cpixels(inner, 1)[0]
                        run = self.run_length(inner)
                    else:
                        index = inner.u8()
                        run = 1
                        if index & 128:
                            index &= 127
                            run = self.run_length(inner)
                        if index >= size:
                            raise DecodeError("palette index out of range")
                        colour = runs_palette[index]
                    if done + run > th * tw:
                        raise DecodeError("ZRLE run past the end of its tile")
                    out[done : done + run] = colour
                    done += run
                tile[:] = out.reshape(th, tw, 4)
        inner.finish()

    @staticmethod
    def run_length(reader: Reader) -> int:
        total = 1
        while True:
            byte = reader.u8()
            total += byte
            if byte != 255:
                return total

    # -- Tight --------------------------------------------------------------

    @staticmethod
    def compact(reader: Reader) -> int:
        b = reader.u8()
        value = b & 0x7F
        if b & 0x80:
            b = reader.u8()
            value |= (b & 0x7F) << 7
            if b & 0x80:
                value |= reader.u8() << 14
        return value

    def tight(self, reader: Reader, area: Native, *, png: bool) -> None:
        h, w = area.shape[:2]
        control = reader.u8()
        for stream in range(4):
            if control & (1 << stream):
                self.tight_streams[stream] = zlib.decompressobj()
        kind = control >> 4
        if kind == 8:
            area[:] = self.read_tpixels(reader, 1)[0]
            return
        if w > 2048:
            raise DecodeError("Tight rectangle wider than 2048")
        if kind == 9:
            raise DecodeError("JPEG in a lossless stream")
        if kind == 10:
            if not png:
                raise DecodeError("PNG in a Tight (not TightPNG) rectangle")
            image = Image.open(io.BytesIO(reader.read(self.compact(reader))))
            image.load()
            if image.size != (w, h):
                raise DecodeError(f"PNG of size {image.size} for a {w}x{h} rectangle")
            rgb = np.asarray(image.convert("RGB"))
            area[:, :, 0] = rgb[:, :, 2]
            area[:, :, 1] = rgb[:, :, 1]
            area[:, :, 2] = rgb[:, :, 0]
            area[:, :, 3] = 0
            return
        if kind > 7:
            raise DecodeError(f"invalid Tight compression control {control:#x}")
        if png:
            raise DecodeError("BasicCompression in a TightPNG rectangle")
        stream = kind & 3
        filter_id = reader.u8() if kind & 4 else 0
        palette: Native | None = None
        if filter_id == 1:
            colours = reader.u8() + 1
            if colours < 2:
                raise DecodeError("palette of one colour")
            palette = self.read_tpixels(reader, colours)
            row_bytes = (w + 7) // 8 if colours == 2 else w
        elif filter_id in (0, 2):
            if filter_id == 2 and self.bpp == 1:
                raise DecodeError("gradient filter at 8 bits per pixel")
            row_bytes = w * self.tpixel_size()
        else:
            raise DecodeError(f"unknown Tight filter {filter_id}")
        size = row_bytes * h
        if size < 12:
            data = reader.read(size)
        else:
            length = self.compact(reader)
            data = self.tight_streams[stream].decompress(reader.read(length))
            if len(data) != size:
                raise DecodeError(f"Tight data inflated to {len(data)} bytes, expected {size}")
        if palette is not None:
            for row in range(h):
                line = data[row * row_bytes : (row + 1) * row_bytes]
                for col in range(w):
                    mono = len(palette) == 2
                    index = (line[col // 8] >> (7 - col % 8)) & 1 if mono else line[col]
                    if index >= len(palette):
                        raise DecodeError("palette index out of range")
                    area[row, col] = palette[index]
        elif filter_id == 0:
            area[:] = self.read_tpixels(Reader(data), w * h).reshape(h, w, 4)
        else:
            self.gradient(data, area)

    def gradient(self, data: bytes, area: Native) -> None:
        """rfbproto's gradient filter, inverted pixel by pixel (``TPIXEL`` R, G, B only)."""
        if not self.tpixel_is_rgb():
            raise DecodeError("gradient filter test decoder supports 888 only")
        h, w = area.shape[:2]
        above = [[0, 0, 0] for _ in range(w)]
        for row in range(h):
            current: list[list[int]] = []
            left = [0, 0, 0]
            above_left = [0, 0, 0]
            for col in range(w):
                pixel = []
                for c in range(3):
                    predicted = min(255, max(0, left[c] + above[col][c] - above_left[c]))
                    pixel.append((data[(row * w + col) * 3 + c] + predicted) & 0xFF)
                current.append(pixel)
                above_left = above[col]
                left = pixel
                area[row, col] = self.native(self.rgb_to_pixel(*pixel))
            above = current
