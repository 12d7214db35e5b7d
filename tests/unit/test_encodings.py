"""Every encoder round-trips through an independent decoder, bit-exact against Raw.

The decoders are in ``tests/decoders.py``, written from rfbproto without the
encoders' code. "Bit-exact against Raw" means: what the decoder's framebuffer
shows equals ``pixel_format.to_native(pixel_format.convert(image))``, what a
client would show for the same pixels sent as Raw.

Run as a module for the encode time and size table on rendered terminal
screens (640x400 and 1280x800)::

    python -m tests.unit.test_encodings
"""

from __future__ import annotations

import dataclasses
import struct
import sys
import time
import warnings
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.decoders import RAW, DecodeError, Decoder
from vzvnc.fb.font import BitmapFont
from vzvnc.rfb import encodings
from vzvnc.rfb.encodings import (
    TIGHT_PNG,
    EncoderSelector,
    HextileEncoder,
    PixelEncoder,
    RawEncoder,
    RREEncoder,
    TightEncoder,
    ZlibEncoder,
    ZRLEEncoder,
    choose,
)
from vzvnc.rfb.encodings import tight as tight_module
from vzvnc.rfb.encodings.common import cpixel_packer, tpixel_packer
from vzvnc.rfb.pixelformat import SERVER_PIXEL_FORMAT, PixelFormat

Pixels = npt.NDArray[np.uint8]

# -- pixel formats ---------------------------------------------------------------

NATIVE = SERVER_PIXEL_FORMAT  # 32 bpp little endian, B G R X bytes
RGB888_BE = PixelFormat(32, 24, True, True, 255, 255, 255, 16, 8, 0)
RGBX_LE = PixelFormat(32, 24, False, True, 255, 255, 255, 0, 8, 16)  # noVNC's
HIGH_BYTES_LE = PixelFormat(32, 24, False, True, 255, 255, 255, 24, 16, 8)
HIGH_BYTES_BE = dataclasses.replace(HIGH_BYTES_LE, big_endian=True)
NATIVE_DEPTH32 = dataclasses.replace(SERVER_PIXEL_FORMAT, depth=32)
ODD_SHIFTS_BE = PixelFormat(32, 24, True, True, 31, 63, 31, 3, 9, 17)
RGB101010 = PixelFormat(32, 30, False, True, 1023, 1023, 1023, 20, 10, 0)
MIDDLE_565_LE = PixelFormat(32, 16, False, True, 31, 63, 31, 19, 13, 8)
MIDDLE_565_BE = dataclasses.replace(MIDDLE_565_LE, big_endian=True)
RGB565_LE = PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0)
RGB565_BE = dataclasses.replace(RGB565_LE, big_endian=True)
BGR555_BE = PixelFormat(16, 15, True, True, 31, 31, 31, 0, 5, 10)
BGR233 = PixelFormat(8, 8, False, True, 7, 7, 3, 0, 3, 6)
TINY = PixelFormat(8, 3, True, True, 1, 1, 1, 7, 0, 4)

FORMATS = {
    "native": NATIVE,
    "rgb888-be": RGB888_BE,
    "rgbx-le": RGBX_LE,
    "high-bytes-le": HIGH_BYTES_LE,
    "high-bytes-be": HIGH_BYTES_BE,
    "depth32": NATIVE_DEPTH32,
    "odd-shifts-be": ODD_SHIFTS_BE,
    "rgb101010": RGB101010,
    "middle565-be": MIDDLE_565_BE,
    "rgb565-le": RGB565_LE,
    "rgb565-be": RGB565_BE,
    "bgr555-be": BGR555_BE,
    "bgr233": BGR233,
    "tiny": TINY,
}

# -- encoders ----------------------------------------------------------------------

ENCODINGS = {
    "raw": RAW,
    "rre": 2,
    "hextile": 5,
    "zlib": 6,
    "tight": 7,
    "zrle": 16,
    "tightpng": TIGHT_PNG,
}

# -- images ------------------------------------------------------------------------

BLACK = (0, 0, 0)
GREY = (170, 170, 170)
COLOURS = [(85, 85, 255), (85, 255, 85), (255, 255, 85), (255, 85, 255), (85, 255, 255)]
WORDS = [
    *("the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "total", "drwxr-xr-x"),
    *("root", "4096", "Jan", "usr", "bin", "lib", "etc", "var", "home", "src", "main.py"),
    *("README.md", "Makefile", "build", "tests", "config.toml", "-rw-r--r--", "1", "42"),
    *("$", "ls", "-la", "cd", "git", "status", "commit"),
]


def bgrx(rgb: tuple[int, int, int]) -> Pixels:
    return np.array([rgb[2], rgb[1], rgb[0], 0], dtype=np.uint8)


def terminal_screen(cols: int, rows: int, seed: int = 0, *, colourful: bool = True) -> Pixels:
    """A console-like screen: Unifont glyphs in 8x16 cells, two colours per cell.

    Lines of words of random length, about a fifth of them blank, some words in
    one of five colours, and the last line inverted like a status bar.
    """
    font = BitmapFont.default()
    rng = np.random.default_rng(seed)
    img = np.zeros((rows * 16, cols * 8, 4), dtype=np.uint8)
    img[:] = bgrx(BLACK)
    glyphs: dict[str, npt.NDArray[np.bool_]] = {}
    for row in range(rows):
        status = row == rows - 1 and rows > 1
        if not status and rng.random() < 0.2:
            continue
        text = ""
        limit = int(rng.integers(min(5, cols), cols + 1))
        while len(text) < limit:
            text += str(rng.choice(WORDS)) + " "
        fg = bgrx(GREY)
        for col, char in enumerate(text[:limit]):
            if char == " ":
                colour = COLOURS[int(rng.integers(len(COLOURS)))]
                fg = bgrx(colour) if colourful and rng.random() < 0.3 else bgrx(GREY)
            if char not in glyphs:
                glyphs[char] = font.glyph(ord(char))[:, :8]
            cell = img[row * 16 : (row + 1) * 16, col * 8 : (col + 1) * 8]
            background, foreground = (bgrx(GREY), bgrx(BLACK)) if status else (bgrx(BLACK), fg)
            cell[:] = background
            cell[glyphs[char]] = foreground
    return img


def gradient(height: int, width: int) -> Pixels:
    y, x = np.mgrid[0:height, 0:width]
    img = np.zeros((height, width, 4), dtype=np.uint8)
    img[:, :, 0] = (x * 255 // max(1, width - 1)).astype(np.uint8)
    img[:, :, 1] = (y * 255 // max(1, height - 1)).astype(np.uint8)
    img[:, :, 2] = ((x + y) * 3 % 256).astype(np.uint8)
    return img


def palette_image(height: int, width: int, colours: int, seed: int) -> Pixels:
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (colours, 4), dtype=np.uint8)
    # Runs along rows so RLE forms have something to find.
    runs = rng.integers(0, colours, (height, (width + 3) // 4))
    return palette[np.repeat(runs, 4, axis=1)[:, :width]]


def noise(height: int, width: int, seed: int) -> Pixels:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)


def images() -> dict[str, Pixels]:
    two = np.where(
        np.random.default_rng(3).random((33, 17, 1)) < 0.25, bgrx(COLOURS[0]), bgrx(BLACK)
    )
    return {
        "1x1": noise(1, 1, 1),
        "solid": np.broadcast_to(bgrx((12, 200, 99)), (20, 70, 4)).copy(),
        "two-colour-17x33": two.astype(np.uint8),
        "text": terminal_screen(9, 4, seed=5),
        "text-mono": terminal_screen(17, 2, seed=6, colourful=False),
        "noise-37x29": noise(37, 29, 2),
        "gradient": gradient(23, 70),
        "palette-5": palette_image(70, 69, 5, 4),
        "palette-20": palette_image(19, 66, 20, 7),
        "palette-200": palette_image(40, 40, 200, 8),
        "palette-300": palette_image(30, 40, 300, 9),
        "thin-1x40": noise(40, 1, 10),
        "thin-90x2": palette_image(2, 90, 3, 11),
    }


IMAGES = images()

# -- helpers -------------------------------------------------------------------------


def expected(img: Pixels, pf: PixelFormat) -> Pixels:
    height, width = img.shape[:2]
    return pf.to_native(pf.convert(img), width, height)


def round_trip(
    encoder: PixelEncoder, img: Pixels, pf: PixelFormat, decoder: Decoder | None = None
) -> Decoder:
    height, width = img.shape[:2]
    if decoder is None:
        decoder = Decoder(pf, width, height)
    for part in encoder.encode_rects(img, pf):
        decoder.decode(encoder.encoding, part.x, part.y, part.width, part.height, part.payload)
    return decoder


def mismatch(got: Pixels, want: Pixels) -> str:
    bad = np.argwhere((got != want).any(axis=2))
    if not bad.size:
        return "equal"
    y, x = bad[0]
    return f"{len(bad)} pixels differ, first at ({x}, {y}): got {got[y, x]} want {want[y, x]}"


# -- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("pf_name", list(FORMATS))
@pytest.mark.parametrize("enc_name", list(ENCODINGS))
def test_every_image_round_trips(enc_name: str, pf_name: str) -> None:
    pf = FORMATS[pf_name]
    for img_name, img in IMAGES.items():
        decoder = round_trip(choose([ENCODINGS[enc_name]]), img, pf)
        want = expected(img, pf)
        assert np.array_equal(decoder.fb, want), f"{img_name}: {mismatch(decoder.fb, want)}"


@pytest.mark.parametrize("pf_name", ["native", "rgb565-be", "bgr233", "depth32"])
@pytest.mark.parametrize("enc_name", list(ENCODINGS))
def test_rectangles_in_sequence_share_the_streams(enc_name: str, pf_name: str) -> None:
    """Many rectangles through one encoder and one decoder; the level changes midway."""
    pf = FORMATS[pf_name]
    screen = terminal_screen(24, 7, seed=11)
    screen[40:80, 100:180] = noise(40, 80, 12)
    screen[0:20, 150:192] = gradient(20, 42)
    height, width = screen.shape[:2]
    encoder = choose([ENCODINGS[enc_name]])
    decoder = Decoder(pf, width, height)
    rects = [(0, 0, width, height), (8, 16, 64, 32), (100, 40, 80, 40), (0, 96, 192, 16)]
    rects += [(x, y, 40, 24) for x in range(0, 150, 37) for y in range(0, 80, 29)]
    for index, (x, y, w, h) in enumerate(rects):
        if index == len(rects) // 2:
            encoder.set_compress_level(9)
        if index == len(rects) - 3:
            encoder.set_compress_level(0)
        # A different picture each time, so every rectangle is new to the client.
        screen = np.roll(screen, 3 * index + 1, axis=1)
        region = screen[y : y + h, x : x + w]
        for part in encoder.encode_rects(region, pf):
            decoder.decode(
                encoder.encoding, x + part.x, y + part.y, part.width, part.height, part.payload
            )
        want = expected(region, pf)
        got = decoder.fb[y : y + h, x : x + w]
        assert np.array_equal(got, want), f"rect {index}: {mismatch(got, want)}"


def test_a_fresh_decoder_cannot_join_a_stream_midway() -> None:
    """The zlib streams really are continued (not restarted) from rectangle to rectangle."""
    img = terminal_screen(8, 2, seed=1)
    encoder = ZRLEEncoder()
    encoder.encode(img, NATIVE)
    second = encoder.encode(img, NATIVE)
    decoder = Decoder(NATIVE, img.shape[1], img.shape[0])
    with pytest.raises((zlib.error, DecodeError)):
        decoder.decode(16, 0, 0, img.shape[1], img.shape[0], second)


@pytest.mark.parametrize("enc_name", ["zlib", "zrle", "tight", "tightpng"])
def test_encoders_from_choose_share_nothing(enc_name: str) -> None:
    img = terminal_screen(10, 3, seed=2)
    first, second = choose([ENCODINGS[enc_name]]), choose([ENCODINGS[enc_name]])
    assert first is not second
    first.encode_rects(img, NATIVE)  # advances only the first one's streams
    fresh = choose([ENCODINGS[enc_name]]).encode_rects(img, NATIVE)
    assert second.encode_rects(img, NATIVE) == fresh


# -- hypothesis -------------------------------------------------------------------------


@st.composite
def pixel_formats(draw: st.DrawFn) -> PixelFormat:
    """Any valid true-colour format, plus the common ones often."""
    if draw(st.booleans()):
        return draw(st.sampled_from(list(FORMATS.values())))
    bpp = draw(st.sampled_from([8, 16, 32]))
    widths: list[int] = []
    for remaining in (2, 1, 0):
        room = bpp - sum(widths) - remaining
        widths.append(draw(st.integers(1, min(16, room))))
    order = draw(st.permutations([0, 1, 2]))
    shifts = [0, 0, 0]
    position = 0
    for i, channel in enumerate(order):
        free = bpp - position - sum(widths[c] for c in order[i:])
        position += draw(st.integers(0, free))
        shifts[channel] = position
        position += widths[channel]
    maxima = [(1 << width) - 1 for width in widths]
    return PixelFormat(bpp, draw(st.integers(1, bpp)), draw(st.booleans()), True, *maxima, *shifts)


@st.composite
def small_images(draw: st.DrawFn) -> Pixels:
    height = draw(st.integers(1, 40))
    width = draw(st.integers(1, 70))
    colours = draw(st.sampled_from([1, 2, 3, 5, 17, 300]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (colours, 4), dtype=np.uint8)
    run = draw(st.sampled_from([1, 3, 8, 64]))
    picks = rng.integers(0, colours, (height, -(-width // run)))
    return palette[np.repeat(picks, run, axis=1)[:, :width]]


@settings(max_examples=100, deadline=None)
@given(
    enc=st.sampled_from(list(ENCODINGS.values())),
    pf=pixel_formats(),
    imgs=st.lists(small_images(), min_size=1, max_size=3),
)
def test_random_images_and_formats_round_trip(
    enc: int, pf: PixelFormat, imgs: list[Pixels]
) -> None:
    encoder = choose([enc])
    decoder = Decoder(pf, 70, 40)  # one client: the streams go on from image to image
    for img in imgs:
        height, width = img.shape[:2]
        for part in encoder.encode_rects(img, pf):
            decoder.decode(enc, part.x, part.y, part.width, part.height, part.payload)
        got, want = decoder.fb[:height, :width], expected(img, pf)
        assert np.array_equal(got, want), mismatch(got, want)


# -- text-aware output ------------------------------------------------------------------


SCREEN = terminal_screen(80, 25, seed=0)


@pytest.mark.parametrize(
    ("enc_name", "limit"),
    [("hextile", 0.02), ("zrle", 0.015), ("tight", 0.015), ("tightpng", 0.015), ("rre", 0.08)],
)
def test_a_terminal_screen_is_small(enc_name: str, limit: float) -> None:
    parts = choose([ENCODINGS[enc_name]]).encode_rects(SCREEN, NATIVE)
    size = sum(12 + len(part.payload) for part in parts)
    assert size < limit * SCREEN.size


def test_hextile_sends_no_raw_tile_for_text() -> None:
    img = terminal_screen(20, 3, seed=4)
    data = HextileEncoder().encode(img, NATIVE)
    # Walk the tiles: every mask byte must lack the Raw bit.
    pos, bpp = 0, 4
    for _ty in range(0, img.shape[0], 16):
        for _tx in range(0, img.shape[1], 16):
            mask = data[pos]
            assert not mask & 1
            pos += 1 + (bpp if mask & 2 else 0) + (bpp if mask & 4 else 0)
            if mask & 8:
                count = data[pos]
                pos += 1 + count * (2 + (bpp if mask & 16 else 0))
    assert pos == len(data)


def test_tight_follows_the_text() -> None:
    """Blank lines are fills, one-colour text is 1-bit bitmaps, coloured words their own."""
    parts = TightEncoder().encode_rects(SCREEN, NATIVE)
    controls = [part.payload[0] for part in parts]
    fills = [p for p, c in zip(parts, controls, strict=True) if c == 0x80]
    bitmaps = [
        p
        for p, c in zip(parts, controls, strict=True)
        if c & 0x40 and p.payload[1] == 1 and p.payload[2] == 1
    ]
    assert fills and bitmaps
    assert len(fills) + len(bitmaps) == len(parts)  # two colours or fewer everywhere
    covered = sum(part.width * part.height for part in parts)
    assert covered == SCREEN.shape[0] * SCREEN.shape[1]


def test_zrle_picks_the_smallest_tile_form() -> None:
    from vzvnc.rfb.encodings.zrle import encode_tile

    packer = cpixel_packer(NATIVE)
    solid = np.full((64, 64), 7, dtype=np.uint32)
    assert encode_tile(solid, packer) == b"\x01\x07\x00\x00"
    stripes = np.zeros((64, 64), dtype=np.uint32)
    stripes[:, ::2] = 5  # alternate pixels: packed 1-bit beats every RLE
    assert encode_tile(stripes, packer)[0] == 2
    halves = np.zeros((64, 64), dtype=np.uint32)
    halves[32:] = 9  # two long runs: plain RLE, 2 x (CPIXEL + 9 length bytes)
    assert encode_tile(halves, packer) == b"\x80" + (b"\x00" * 3 + b"\xff" * 8 + b"\x07") + (
        b"\x09\x00\x00" + b"\xff" * 8 + b"\x07"
    )
    lines = np.zeros((64, 64), dtype=np.uint32)
    lines[::2] = 9  # 64 runs of 64: palette RLE, 2 bytes a run
    data = encode_tile(lines, packer)
    assert data[0] == 130 and len(data) == 1 + 6 + 64 * 2
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 1 << 24, (64, 64)).astype(np.uint32)
    assert encode_tile(noisy, packer)[0] == 0


# -- compact pixels ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pf", "value", "packed"),
    [
        (NATIVE, 0x030201, b"\x01\x02\x03"),  # LE: the low 3 bytes are the first 3 on the wire
        (RGB888_BE, 0x030201, b"\x03\x02\x01"),  # BE: the low 3 bytes are the last 3
        (HIGH_BYTES_LE, 0x03020100, b"\x01\x02\x03"),  # LE, channels in the high 3 bytes
        (HIGH_BYTES_BE, 0x03020100, b"\x03\x02\x01"),  # BE, channels in the high 3 bytes
        (NATIVE_DEPTH32, 0x030201, b"\x01\x02\x03"),  # depth is not looked at, as decoders do
        # Both ends free: the first three wire bytes, whichever the byte order.
        (MIDDLE_565_LE, 0x123400, b"\x00\x34\x12"),
        (MIDDLE_565_BE, 0x123400, b"\x00\x12\x34"),
        (RGB101010, 0x3FFFFFFF, b"\xff\xff\xff\x3f"),  # 30 bits: the whole PIXEL
        (RGB565_BE, 0x1234, b"\x12\x34"),  # not 32 bits per pixel: the whole PIXEL
    ],
)
def test_cpixel_rule(pf: PixelFormat, value: int, packed: bytes) -> None:
    assert cpixel_packer(pf).pack_one(value) == packed


def test_tpixel_rule() -> None:
    red, green, blue = 0x11, 0x22, 0x33
    for pf in (NATIVE, RGB888_BE, RGBX_LE, HIGH_BYTES_BE):
        value = red << pf.red_shift | green << pf.green_shift | blue << pf.blue_shift
        assert tpixel_packer(pf).pack_one(value) == b"\x11\x22\x33"
    # Depth 32 or other channel sizes: a whole PIXEL in the client's byte order.
    assert tpixel_packer(NATIVE_DEPTH32).nbytes == 4
    assert tpixel_packer(RGB565_BE).pack_one(0x1234) == b"\x12\x34"
    assert tpixel_packer(ODD_SHIFTS_BE).nbytes == 4


# -- Tight rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (10000, b"\x90\x4e"),  # the spec's example
        (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"),
        (4194303, b"\xff\xff\xff"),
    ],
)
def test_compact_length(value: int, wire: bytes) -> None:
    assert tight_module.compact_length(value) == wire


def test_compact_length_limit() -> None:
    with pytest.raises(ValueError, match="compact"):
        tight_module.compact_length(1 << 22)


@pytest.mark.parametrize("enc", [7, TIGHT_PNG])
def test_tight_splits_wide_and_large_regions(enc: int) -> None:
    img = np.concatenate([terminal_screen(270, 2, seed=3), noise(32, 2160, 5)], axis=0)
    encoder = choose([enc])
    parts = encoder.encode_rects(img, RGBX_LE)
    assert all(part.width <= 2048 for part in parts)
    if enc == 7:
        assert all(part.width * part.height <= 65536 or part.payload[0] == 0x80 for part in parts)
    decoder = round_trip(choose([enc]), img, RGBX_LE)
    assert np.array_equal(decoder.fb, expected(img, RGBX_LE))


def test_tight_encode_refuses_wide_rectangles() -> None:
    with pytest.raises(ValueError, match="2048"):
        TightEncoder().encode(np.zeros((1, 2049, 4), dtype=np.uint8), NATIVE)


def test_tight_sends_short_data_uncompressed() -> None:
    img = np.zeros((2, 5, 4), dtype=np.uint8)
    img[1, 3] = 255  # two colours: 2 bytes of bitmap, under 12
    payload = TightEncoder().encode(img, NATIVE)
    # control (stream 1, filter follows), palette filter, 2 colours, 2 TPIXELs, 2 raw bytes
    assert payload == b"\x50\x01\x01" + b"\x00\x00\x00" + b"\xff\xff\xff" + b"\x00\x10"


@pytest.mark.parametrize("rows", [11, 12])
def test_tight_compresses_from_12_bytes(rows: int) -> None:
    img = np.zeros((rows, 8, 4), dtype=np.uint8)
    img[:, 0] = 255  # a 1-bit bitmap of one byte a row
    payload = TightEncoder().encode(img, NATIVE)
    head = b"\x50\x01\x01" + b"\x00\x00\x00" + b"\xff\xff\xff"
    assert payload.startswith(head)
    if rows == 11:
        assert payload == head + b"\x80" * 11
    else:
        assert payload[len(head)] == len(payload) - len(head) - 1  # compact length, then zlib
    decoder = round_trip(TightEncoder(), img, NATIVE)
    assert np.array_equal(decoder.fb, expected(img, NATIVE))


def test_tight_fill() -> None:
    fill = TightEncoder().encode(np.broadcast_to(bgrx((1, 2, 3)), (4, 4, 4)), RGBX_LE)
    assert fill == b"\x80\x01\x02\x03"


@pytest.mark.parametrize("pf_name", ["native", "rgbx-le", "rgb888-be", "high-bytes-be"])
def test_tight_gradient_when_enabled(pf_name: str) -> None:
    pf = FORMATS[pf_name]
    smooth = gradient(32, 64)
    # Off by default (noVNC cannot decode it): copy filter, stream 0.
    assert TightEncoder().encode(smooth, pf)[0] == 0x00
    payload = TightEncoder(gradient=True).encode(smooth, pf)
    assert payload[0] == 0x70 and payload[1] == 2  # stream 3, gradient filter
    encoder, decoder = TightEncoder(gradient=True), Decoder(pf, 100, 100)
    for img in (smooth, noise(20, 30, 3), IMAGES["text"], np.roll(smooth, 7, axis=1)):
        height, width = img.shape[:2]
        round_trip(encoder, img, pf, decoder)
        assert np.array_equal(decoder.fb[:height, :width], expected(img, pf))


def test_tightpng_uses_fill_and_png_only() -> None:
    parts = TightEncoder(png=True).encode_rects(SCREEN, RGBX_LE)
    assert {part.payload[0] for part in parts} <= {0x80, 0xA0}
    assert any(part.payload[0] == 0xA0 for part in parts)
    png = next(part.payload for part in parts if part.payload[0] == 0xA0)
    length, offset = png[1] & 0x7F, 2
    if png[1] & 0x80:
        length |= (png[2] & 0x7F) << 7
        offset = 3
        if png[2] & 0x80:
            length |= png[3] << 14
            offset = 4
    assert png[offset : offset + 8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) == offset + length


# -- the registry ----------------------------------------------------------------------------


def test_choose_takes_the_first_encoding_we_implement() -> None:
    assert isinstance(choose([-239, -223, 1, 99, 16, 7]), ZRLEEncoder)
    assert isinstance(choose([7, 16]), TightEncoder)
    assert choose([TIGHT_PNG, 7]).encoding == TIGHT_PNG
    assert isinstance(choose([5]), HextileEncoder)
    assert isinstance(choose([2]), RREEncoder)
    assert isinstance(choose([6]), ZlibEncoder)
    assert isinstance(choose([1, -224, -32]), RawEncoder)
    assert isinstance(choose([]), RawEncoder)


def test_compression_level_pseudo_encoding() -> None:
    assert choose([16]).compress_level == encodings.DEFAULT_COMPRESS_LEVEL
    for level in range(10):
        assert choose([16, -256 + level, -23]).compress_level == level
        assert choose([-256 + level, 7]).compress_level == level
    assert choose([6, -250, -252]).compress_level == 6  # the first one listed
    assert choose([16, -26]).compress_level == encodings.DEFAULT_COMPRESS_LEVEL


def test_selector_keeps_one_encoder_per_encoding_per_connection() -> None:
    selector = EncoderSelector()
    zrle = selector.choose([16, -255])
    assert zrle.compress_level == 1
    tight = selector.choose([7, 16])
    assert selector.choose([16, -250]) is zrle
    assert zrle.compress_level == 6
    assert selector.choose([7]) is tight
    assert EncoderSelector().choose([16]) is not zrle


def test_selector_streams_survive_set_encodings() -> None:
    """SetEncodings again (new level, other encoding in between): the client's stream goes on."""
    img = terminal_screen(12, 3, seed=8)
    height, width = img.shape[:2]
    selector = EncoderSelector()
    decoder = Decoder(NATIVE, width, height)
    for client_list in ([16, -255], [7, 16], [16, -247], [16], [7, -250], [16, -256]):
        encoder = selector.choose(client_list)
        img = np.roll(img, 5, axis=1)
        round_trip(encoder, img, NATIVE, decoder)
        assert np.array_equal(decoder.fb, expected(img, NATIVE))


# -- an external decoder ----------------------------------------------------------------------


def vncdotool_decode(
    pf: PixelFormat, width: int, height: int, rects: Sequence[tuple[int, bytes]]
) -> Pixels:
    """Feed one FramebufferUpdate to vncdotool's client protocol, no network involved."""
    rfb = pytest.importorskip("vncdotool.rfb")
    fb = np.zeros((height, width, pf.bytes_per_pixel), dtype=np.uint8)

    def put(x: int, y: int, w: int, h: int, data: bytes) -> None:
        size = len(data) // (w * h)
        fb[y : y + h, x : x + w] = np.frombuffer(data, np.uint8).reshape(h, w, size)[
            :, :, : pf.bytes_per_pixel
        ]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # it warns about overriding the hooks

        class Client(rfb.RFBClient):  # type: ignore[misc,name-defined]
            def updateRectangle(self, x: int, y: int, w: int, h: int, data: bytes) -> None:
                put(x, y, w, h, data)

            def fillRectangle(self, x: int, y: int, w: int, h: int, colour: bytes) -> None:
                put(x, y, w, h, colour * (w * h))

    client = Client()
    client.pixel_format = rfb.PixelFormat(
        pf.bits_per_pixel,
        pf.depth,
        pf.big_endian,
        True,
        pf.red_max,
        pf.green_max,
        pf.blue_max,
        pf.red_shift,
        pf.green_shift,
        pf.blue_shift,
    )
    client._handler = client._handleExpected
    client.expect(client._handleConnection, 1)
    message = struct.pack(">BxH", 0, len(rects))
    for encoding, payload in rects:
        message += struct.pack(">HHHHi", 0, 0, width, height, encoding) + payload
    client.dataReceived(message)
    return pf.to_native(fb.tobytes(), width, height)


@pytest.mark.parametrize("pf_name", ["native", "rgb565-be", "bgr233", "odd-shifts-be"])
@pytest.mark.parametrize("encoder_class", [RREEncoder, HextileEncoder])
def test_vncdotool_agrees(encoder_class: type[Any], pf_name: str) -> None:
    pf = FORMATS[pf_name]
    encoder = encoder_class()
    for img in (IMAGES["text"], IMAGES["palette-5"], IMAGES["noise-37x29"], IMAGES["1x1"]):
        height, width = img.shape[:2]
        got = vncdotool_decode(pf, width, height, [(encoder.encoding, encoder.encode(img, pf))])
        assert np.array_equal(got, expected(img, pf))


def test_vncdotool_agrees_on_zrle() -> None:
    # vncdotool reads 3-byte CPIXELs only, and packed palette rows unpadded: whole bytes.
    for img in (terminal_screen(17, 5, seed=9), palette_image(70, 136, 5, 1), noise(9, 80, 1)):
        encoder = ZRLEEncoder()  # a new client each time
        height, width = img.shape[:2]
        got = vncdotool_decode(NATIVE, width, height, [(16, encoder.encode(img, NATIVE))])
        assert np.array_equal(got, expected(img, NATIVE))


# -- measurements (not a test) -----------------------------------------------------------------


def _measure(sizes: Sequence[tuple[int, int]], levels: Sequence[int], repeat: int) -> Iterator[str]:
    pf = NATIVE
    for cols, rows in sizes:
        screen = terminal_screen(cols, rows, seed=0)
        height, width = screen.shape[:2]
        yield f"\n{width}x{height} terminal screen ({cols}x{rows} cells), Raw {screen.size} bytes"
        yield f"{'encoding':10} {'level':>5} {'ms':>8} {'bytes':>9} {'vs raw':>8} {'rects':>6}"
        for name, number in ENCODINGS.items():
            for level in levels if number not in (RAW, 2, 5) else levels[:1]:
                best = float("inf")
                for _ in range(repeat):
                    encoder = choose([number, -256 + level])
                    start = time.perf_counter()
                    parts = encoder.encode_rects(screen, pf)
                    best = min(best, time.perf_counter() - start)
                size = sum(12 + len(part.payload) for part in parts)
                shown = "-" if number in (RAW, 2, 5) else str(level)
                yield (
                    f"{name:10} {shown:>5} {best * 1000:8.2f} {size:9d}"
                    f" {size / screen.size:8.2%} {len(parts):6d}"
                )


def main(argv: Sequence[str]) -> None:
    levels = [int(arg) for arg in argv] or [1, encodings.DEFAULT_COMPRESS_LEVEL, 9]
    print("Encode time (best of 5) and bytes on the wire (12-byte rectangle headers included)")
    for line in _measure([(80, 25), (160, 50)], levels, repeat=5):
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])


def test_raw_sends_the_spare_bits_of_a_pixel_as_ones() -> None:
    """noVNC reads the spare byte of its 32-bit format as alpha: it must be opaque."""
    novnc = dataclasses.replace(NATIVE, red_shift=0, green_shift=8, blue_shift=16)
    pixels = np.zeros((1, 2, 4), dtype=np.uint8)
    pixels[0, 0, :3] = (0x30, 0x20, 0x10)  # B, G, R
    assert RawEncoder().encode(pixels, novnc) == bytes([0x10, 0x20, 0x30, 0xFF, 0, 0, 0, 0xFF])
    # RGB565 uses every bit: nothing is spare, the bytes are the conversion's.
    rgb565 = PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0)
    assert RawEncoder().encode(pixels, rgb565) == rgb565.convert(pixels)
    assert RawEncoder().encode(pixels, rgb565)[2:] == b"\x00\x00"


# -- continuing another connection's streams (the first-update cache) -----------------


@settings(max_examples=40, deadline=None)
@given(
    enc=st.sampled_from(list(ENCODINGS.values())),
    pf=pixel_formats(),
    imgs=st.lists(small_images(), min_size=2, max_size=3),
)
def test_an_encoder_that_adopts_another_ones_streams_continues_them_exactly(
    enc: int, pf: PixelFormat, imgs: list[Pixels]
) -> None:
    """What a new connection does with a cached first update: it sends the bytes the
    first encoder made and continues from a copy of its streams; its client, which
    inflated those bytes, must decode everything that follows."""
    first, second = choose([enc]), choose([enc])
    decoder = Decoder(pf, 70, 40)
    head, *tail = imgs
    for part in first.encode_rects(head, pf):
        decoder.decode(enc, part.x, part.y, part.width, part.height, part.payload)
    second.adopt_stream_state(first.stream_state())
    first.encode_rects(tail[0], pf)  # the first connection goes on: the copy is separate
    for img in tail:
        height, width = img.shape[:2]
        for part in second.encode_rects(img, pf):
            decoder.decode(enc, part.x, part.y, part.width, part.height, part.payload)
        got, want = decoder.fb[:height, :width], expected(img, pf)
        assert np.array_equal(got, want), mismatch(got, want)


def test_tight_sends_a_dense_band_of_rows_as_one_rectangle_and_keeps_sparse_ones() -> None:
    from vzvnc.fb.damage import Rect
    from vzvnc.rfb.encodings.tight import dense_bands

    # Two rows of short runs, mostly changed: one box over both rows.
    dense = [Rect(0, 0, 40, 16), Rect(48, 0, 40, 16), Rect(0, 16, 80, 16)]
    assert dense_bands(dense) == [Rect(0, 0, 88, 32)]
    # Two cells far apart on one row: sent as they are.
    sparse = [Rect(0, 0, 8, 16), Rect(600, 0, 8, 16)]
    assert dense_bands(sparse) == sparse
    # Bands that do not touch stay apart.
    apart = [Rect(0, 0, 80, 16), Rect(0, 64, 80, 16)]
    assert dense_bands(apart) == apart


def test_tight_bands_only_inside_one_requested_rectangle() -> None:
    from vzvnc.fb.damage import Rect

    encoder = choose([ENCODINGS["tight"]])
    rects = [Rect(0, 0, 40, 16), Rect(48, 0, 40, 16)]
    assert encodings.arrange(encoder, rects, (8, 16), Rect(0, 0, 640, 400)) == [Rect(0, 0, 88, 16)]
    assert encodings.arrange(encoder, rects, (8, 16), None) == rects


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.lists(st.integers(0, 9), max_size=2), st.binary(max_size=3000)),
        min_size=1,
        max_size=8,
    ),
    copy_at=st.integers(0, 8),
)
def test_every_rectangle_inflates_whole_across_level_changes_and_copies(
    steps: list[tuple[list[int], bytes]], copy_at: int
) -> None:
    """One client inflater reads each rectangle's bytes and must get all of its data at
    once (partial flushes; a level change ends the old compressor with a sync flush),
    also when the stream was copied (as newcomers continue a cached first update)."""
    from vzvnc.rfb.encodings.common import ZlibStream

    stream = ZlibStream(6)
    inflater = zlib.decompressobj()
    for number, (levels, data) in enumerate(steps):
        for level in levels:
            stream.set_level(level)
        if number == copy_at:
            stream = stream.copy()
            inflater = inflater.copy()
        assert inflater.decompress(stream.compress(data)) == data
