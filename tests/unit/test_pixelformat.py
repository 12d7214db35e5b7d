"""PIXEL_FORMAT: wire form, validation, and conversion from the native framebuffer.

Conversions are checked against a slow per-pixel reference written here from
rfbproto's description ("Shift right by red-shift, AND with red-max"), in the
other direction, and against a few values worked out by hand.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vzvnc.errors import LocalProtocolError, RemoteProtocolError
from vzvnc.rfb.pixelformat import SERVER_PIXEL_FORMAT, PixelFormat

Pixels = npt.NDArray[np.uint8]

# -- named formats ------------------------------------------------------------

BGR233 = PixelFormat(8, 8, False, True, 7, 7, 3, 0, 3, 6)
RGB565_LE = PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0)
RGB565_BE = dataclasses.replace(RGB565_LE, big_endian=True)
RGB555_LE = PixelFormat(16, 15, False, True, 31, 31, 31, 10, 5, 0)
BGR555_BE = PixelFormat(16, 15, True, True, 31, 31, 31, 0, 5, 10)
RGB888_BE = PixelFormat(32, 24, True, True, 255, 255, 255, 16, 8, 0)
RGBX_LE = PixelFormat(32, 24, False, True, 255, 255, 255, 0, 8, 16)  # what noVNC asks for
XBGR_BE = PixelFormat(32, 24, True, True, 255, 255, 255, 0, 8, 16)
NATIVE_DEPTH32 = dataclasses.replace(SERVER_PIXEL_FORMAT, depth=32)
RGB101010 = PixelFormat(32, 30, False, True, 1023, 1023, 1023, 20, 10, 0)
ODD_SHIFTS_BE = PixelFormat(32, 24, True, True, 31, 63, 31, 3, 9, 17)
WIDE_RED = PixelFormat(32, 32, False, True, 65535, 255, 255, 16, 8, 0)
TINY = PixelFormat(8, 3, True, True, 1, 1, 1, 7, 0, 4)

NAMED_FORMATS = [
    SERVER_PIXEL_FORMAT,
    NATIVE_DEPTH32,
    BGR233,
    RGB565_LE,
    RGB565_BE,
    RGB555_LE,
    BGR555_BE,
    RGB888_BE,
    RGBX_LE,
    XBGR_BE,
    RGB101010,
    ODD_SHIFTS_BE,
    WIDE_RED,
    TINY,
]
FORMAT_IDS = [
    "native",
    "native-depth32",
    "bgr233",
    "rgb565le",
    "rgb565be",
    "rgb555le",
    "bgr555be",
    "rgb888be",
    "rgbx-le",
    "xbgr-be",
    "rgb101010",
    "odd-shifts-be",
    "wide-red",
    "tiny",
]


# -- slow references ----------------------------------------------------------


def reference_convert(fmt: PixelFormat, pixels: Pixels) -> bytes:
    """Per pixel, per channel, in plain Python."""
    order: Literal["big", "little"] = "big" if fmt.big_endian else "little"
    out = bytearray()
    for row in pixels.tolist():
        for blue, green, red, _unused in row:
            value = 0
            for level, maximum, shift in (
                (red, fmt.red_max, fmt.red_shift),
                (green, fmt.green_max, fmt.green_shift),
                (blue, fmt.blue_max, fmt.blue_shift),
            ):
                scaled = round_half_up(level * maximum, 255)
                value |= scaled << shift
            out += value.to_bytes(fmt.bytes_per_pixel, order)
    return bytes(out)


def round_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator to the nearest integer, halves up (via divmod, not // 255)."""
    quotient, remainder = divmod(numerator, denominator)
    return quotient + (1 if 2 * remainder >= denominator else 0)


def reference_expand(level: int, maximum: int) -> int:
    """A channel value back to 8 bits, rfbproto's max as full scale."""
    return round_half_up(level * 255, maximum)


def reference_decode(fmt: PixelFormat, data: bytes, width: int, height: int) -> Pixels:
    """rfbproto's recipe per pixel: swap per big-endian-flag, shift right, AND with max."""
    size = fmt.bytes_per_pixel
    order: Literal["big", "little"] = "big" if fmt.big_endian else "little"
    out = np.zeros((height, width, 4), dtype=np.uint8)
    for index in range(width * height):
        value = int.from_bytes(data[index * size : (index + 1) * size], order)
        y, x = divmod(index, width)
        for channel, maximum, shift in (
            (2, fmt.red_max, fmt.red_shift),
            (1, fmt.green_max, fmt.green_shift),
            (0, fmt.blue_max, fmt.blue_shift),
        ):
            out[y, x, channel] = reference_expand((value >> shift) & maximum, maximum)
    return out


def quantised(fmt: PixelFormat, pixels: Pixels) -> Pixels:
    """What survives a trip through ``fmt``: each channel squeezed to max and expanded."""
    out = np.zeros(pixels.shape, dtype=np.uint8)
    for channel, maximum in ((2, fmt.red_max), (1, fmt.green_max), (0, fmt.blue_max)):
        for level in range(256):
            out[..., channel][pixels[..., channel] == level] = reference_expand(
                round_half_up(level * maximum, 255), maximum
            )
    return out


def random_pixels(height: int, width: int, seed: int = 0) -> Pixels:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)


def with_zero_x(pixels: Pixels) -> Pixels:
    out = pixels.copy()
    out[..., 3] = 0
    return out


# -- strategies ---------------------------------------------------------------


@st.composite
def valid_formats(draw: st.DrawFn) -> PixelFormat:
    bpp = draw(st.sampled_from([8, 16, 32]))
    widths: list[int] = []
    for remaining_channels in (2, 1, 0):
        room = bpp - sum(widths) - remaining_channels
        widths.append(draw(st.integers(1, min(16, room))))
    order = draw(st.permutations([0, 1, 2]))
    shifts = [0, 0, 0]
    position = 0
    for channel in order:
        free = bpp - position - sum(widths[c] for c in order[order.index(channel) :])
        position += draw(st.integers(0, free))
        shifts[channel] = position
        position += widths[channel]
    maxima = [(1 << width) - 1 for width in widths]
    return PixelFormat(
        bits_per_pixel=bpp,
        depth=draw(st.integers(1, bpp)),
        big_endian=draw(st.booleans()),
        true_colour=True,
        red_max=maxima[0],
        green_max=maxima[1],
        blue_max=maxima[2],
        red_shift=shifts[0],
        green_shift=shifts[1],
        blue_shift=shifts[2],
    )


def pixel_arrays(max_side: int = 7) -> st.SearchStrategy[Pixels]:
    shapes = st.tuples(st.integers(0, max_side), st.integers(0, max_side), st.just(4))
    return hnp.arrays(np.uint8, shapes)


# -- wire form ----------------------------------------------------------------


def test_server_format_wire_bytes() -> None:
    assert SERVER_PIXEL_FORMAT.pack() == bytes.fromhex("20 18 00 01 00ff 00ff 00ff 10 08 00 000000")
    assert SERVER_PIXEL_FORMAT.bytes_per_pixel == 4
    SERVER_PIXEL_FORMAT.validate()


def test_rgb565_be_wire_bytes() -> None:
    assert RGB565_BE.pack() == bytes.fromhex("10 10 01 01 001f 003f 001f 0b 05 00 000000")
    assert PixelFormat.unpack(RGB565_BE.pack()) == RGB565_BE


@pytest.mark.parametrize("fmt", NAMED_FORMATS, ids=FORMAT_IDS)
def test_named_formats_valid_and_round_trip(fmt: PixelFormat) -> None:
    fmt.validate()
    assert len(fmt.pack()) == 16
    assert PixelFormat.unpack(fmt.pack()) == fmt


@settings(max_examples=150, deadline=None)
@given(valid_formats())
def test_pack_unpack_round_trip(fmt: PixelFormat) -> None:
    fmt.validate()
    packed = fmt.pack()
    assert len(packed) == 16
    assert packed[13:] == bytes(3)
    assert PixelFormat.unpack(packed) == fmt


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=16, max_size=16))
def test_unpack_any_bytes_gives_valid_format_or_clean_error(data: bytes) -> None:
    try:
        fmt = PixelFormat.unpack(data)
    except RemoteProtocolError:
        return
    fmt.validate()
    # Flags normalise to 0/1 and padding to zero; everything else is kept.
    normalised = data[:2] + bytes([data[2] != 0, data[3] != 0]) + data[4:13] + bytes(3)
    assert fmt.pack() == normalised


def test_unpack_ignores_padding_and_reads_any_nonzero_flag_as_true() -> None:
    data = bytearray(RGB565_LE.pack())
    data[2] = 0x80  # big-endian-flag: "non-zero (true)"
    data[3] = 0xFF  # true-colour-flag
    data[13:16] = b"\xde\xad\xbe"
    assert PixelFormat.unpack(bytes(data)) == RGB565_BE


@pytest.mark.parametrize("length", [0, 1, 15, 17, 32])
def test_unpack_wrong_length(length: int) -> None:
    with pytest.raises(RemoteProtocolError, match="16 bytes"):
        PixelFormat.unpack(bytes(length))


# -- validation ---------------------------------------------------------------

BASE = RGB565_LE

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("bpp-0", {"bits_per_pixel": 0}, r"bits_per_pixel 0\b"),
    ("bpp-24", {"bits_per_pixel": 24, "depth": 24}, r"bits_per_pixel 24\b"),
    ("bpp-4", {"bits_per_pixel": 4, "depth": 4}, r"bits_per_pixel 4\b"),
    ("bpp-64", {"bits_per_pixel": 64}, r"bits_per_pixel 64\b"),
    ("depth-0", {"depth": 0}, r"depth 0\b"),
    ("depth-over-bpp", {"depth": 17}, r"depth 17\b"),
    ("colour-map", {"true_colour": False}, r"true_colour.*colour maps are not supported"),
    ("red-max-0", {"red_max": 0}, r"red_max 0\b"),
    ("red-max-30", {"red_max": 30}, r"red_max 30\b"),
    ("green-max-62", {"green_max": 62}, r"green_max 62\b"),
    ("green-max-64", {"green_max": 64}, r"green_max 64\b"),
    ("blue-max-2", {"blue_max": 2}, r"blue_max 2\b"),
    ("blue-max-0", {"blue_max": 0}, r"blue_max 0\b"),
    ("red-shift-past-bpp", {"red_shift": 16}, r"red_shift 16\b"),
    ("red-shift-spills", {"red_shift": 12}, r"red_shift 12\b"),
    ("green-shift-255", {"green_shift": 255}, r"green_shift 255\b"),
    ("blue-shift-spills", {"blue_shift": 12, "red_shift": 0, "green_shift": 5}, r"blue_shift 12\b"),
    ("red-over-green", {"red_shift": 6}, r"green_max/green_shift overlap red_max/red_shift"),
    ("blue-over-green", {"blue_shift": 5, "green_shift": 0}, r"overlap"),
    ("all-at-zero", {"red_shift": 0, "green_shift": 0, "blue_shift": 0}, r"overlap"),
]


@pytest.mark.parametrize(
    ("change", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_fields_refused_on_the_wire(change: dict[str, Any], message: str) -> None:
    fmt = dataclasses.replace(BASE, **change)
    with pytest.raises(RemoteProtocolError, match=message):
        fmt.validate()
    with pytest.raises(RemoteProtocolError, match=message):
        PixelFormat.unpack(fmt.pack())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"red_max": 0x1FFFF}, r"red_max 131071\b"),
        ({"red_max": -1}, r"red_max -1\b"),
        ({"blue_shift": -1}, r"blue_shift -1\b"),
        ({"bits_per_pixel": 256}, r"bits_per_pixel 256\b"),
    ],
)
def test_values_the_wire_cannot_carry_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        dataclasses.replace(BASE, **change).validate()


def test_wide_channel_at_the_top_is_valid() -> None:
    PixelFormat(32, 32, False, True, 65535, 255, 255, 16, 8, 0).validate()
    with pytest.raises(RemoteProtocolError, match="red_shift 17"):
        PixelFormat(32, 32, False, True, 65535, 255, 255, 17, 8, 0).validate()


# -- conversion: hand-worked values -------------------------------------------


def one_pixel(blue: int, green: int, red: int, unused: int = 0) -> Pixels:
    return np.array([[[blue, green, red, unused]]], dtype=np.uint8)


def test_native_is_the_bytes_unchanged() -> None:
    assert SERVER_PIXEL_FORMAT.convert(one_pixel(1, 2, 3, 4)) == b"\x01\x02\x03\x04"
    assert NATIVE_DEPTH32.convert(one_pixel(1, 2, 3, 4)) == b"\x01\x02\x03\x04"


def test_byte_shuffles_by_hand() -> None:
    assert RGBX_LE.convert(one_pixel(1, 2, 3, 4)) == b"\x03\x02\x01\x00"
    assert RGB888_BE.convert(one_pixel(1, 2, 3, 4)) == b"\x00\x03\x02\x01"
    assert XBGR_BE.convert(one_pixel(1, 2, 3, 4)) == b"\x00\x01\x02\x03"


def test_rgb565_by_hand() -> None:
    assert RGB565_LE.convert(one_pixel(0, 0, 255)) == b"\x00\xf8"
    assert RGB565_BE.convert(one_pixel(0, 0, 255)) == b"\xf8\x00"
    assert RGB565_LE.convert(one_pixel(0, 255, 0)) == b"\xe0\x07"
    assert RGB565_BE.convert(one_pixel(255, 0, 0)) == b"\x00\x1f"
    # Grey 128: red/blue round(128 * 31 / 255) = round(15.56) = 16,
    # green round(128 * 63 / 255) = round(31.62) = 32 -> 16 << 11 | 32 << 5 | 16 = 0x8410.
    assert RGB565_LE.convert(one_pixel(128, 128, 128)) == b"\x10\x84"
    assert RGB565_BE.convert(one_pixel(128, 128, 128)) == b"\x84\x10"


def test_bgr233_by_hand() -> None:
    assert BGR233.convert(one_pixel(255, 255, 255)) == b"\xff"
    assert BGR233.convert(one_pixel(255, 0, 0)) == b"\xc0"  # blue: 3 << 6
    assert BGR233.convert(one_pixel(0, 255, 0)) == b"\x38"  # green: 7 << 3
    assert BGR233.convert(one_pixel(0, 0, 255)) == b"\x07"  # red: 7
    # 18 * 7 / 255 = 0.494 -> 0, 19 * 7 / 255 = 0.522 -> 1: the rounding boundary.
    assert BGR233.convert(one_pixel(0, 0, 18)) == b"\x00"
    assert BGR233.convert(one_pixel(0, 0, 19)) == b"\x01"


def test_unused_bits_are_zero_outside_the_native_format() -> None:
    assert RGB101010.convert(one_pixel(255, 255, 255, 255)) == (2**30 - 1).to_bytes(4, "little")
    assert RGBX_LE.convert(one_pixel(0, 0, 0, 0xAB)) == bytes(4)


# -- conversion: against the reference ----------------------------------------


@pytest.mark.parametrize("fmt", NAMED_FORMATS, ids=FORMAT_IDS)
def test_convert_matches_reference(fmt: PixelFormat) -> None:
    pixels = with_zero_x(random_pixels(9, 13, seed=fmt.bits_per_pixel))
    data = fmt.convert(pixels)
    assert len(data) == 9 * 13 * fmt.bytes_per_pixel
    assert data == reference_convert(fmt, pixels)


@pytest.mark.parametrize("fmt", NAMED_FORMATS, ids=FORMAT_IDS)
def test_every_channel_level_matches_reference(fmt: PixelFormat) -> None:
    # All 256 levels in every channel at once, distinct per channel.
    levels = np.arange(256, dtype=np.uint16)
    channels = [levels, 255 - levels, (levels * 7) % 256, np.zeros_like(levels)]
    pixels = np.stack(channels, axis=-1).astype(np.uint8)
    pixels = pixels.reshape(16, 16, 4)
    assert fmt.convert(pixels) == reference_convert(fmt, pixels)


@pytest.mark.parametrize("fmt", NAMED_FORMATS, ids=FORMAT_IDS)
def test_round_trip_gives_the_quantised_input(fmt: PixelFormat) -> None:
    pixels = random_pixels(11, 7, seed=3)
    decoded = fmt.to_native(fmt.convert(pixels), 7, 11)
    assert decoded.shape == (11, 7, 4)
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, quantised(fmt, pixels))


@pytest.mark.parametrize("fmt", [SERVER_PIXEL_FORMAT, RGB888_BE, RGBX_LE, WIDE_RED, RGB101010])
def test_eight_bit_channels_survive_exactly(fmt: PixelFormat) -> None:
    pixels = random_pixels(5, 6, seed=9)
    np.testing.assert_array_equal(fmt.to_native(fmt.convert(pixels), 6, 5), with_zero_x(pixels))


@pytest.mark.parametrize("fmt", NAMED_FORMATS, ids=FORMAT_IDS)
def test_non_contiguous_views(fmt: PixelFormat) -> None:
    framebuffer = with_zero_x(random_pixels(20, 30, seed=5))
    views = [
        framebuffer[3:11, 4:17],  # a region: rows not adjacent in memory
        framebuffer[::2, 1::3],  # strided both ways
        framebuffer[::-1, ::-1],  # negative strides
        framebuffer.transpose(1, 0, 2),  # column-major walk
        framebuffer[5:5, 2:9],  # empty
    ]
    for view in views:
        assert not view.flags.c_contiguous or view.size == 0
        assert fmt.convert(view) == reference_convert(fmt, np.ascontiguousarray(view))


def test_native_fast_path_keeps_the_unused_byte() -> None:
    pixels = random_pixels(4, 5, seed=11)[:, 1:]
    assert SERVER_PIXEL_FORMAT.convert(pixels) == pixels.tobytes()


@pytest.mark.parametrize("fmt", NAMED_FORMATS[2:], ids=FORMAT_IDS[2:])
def test_other_formats_ignore_the_unused_byte(fmt: PixelFormat) -> None:
    pixels = random_pixels(6, 6, seed=12)
    assert fmt.convert(pixels) == fmt.convert(with_zero_x(pixels))


def test_empty_regions() -> None:
    for fmt in NAMED_FORMATS:
        assert fmt.convert(np.zeros((0, 10, 4), dtype=np.uint8)) == b""
        assert fmt.convert(np.zeros((10, 0, 4), dtype=np.uint8)) == b""
        assert fmt.to_native(b"", 0, 0).shape == (0, 0, 4)


@settings(max_examples=150, deadline=None)
@given(valid_formats(), pixel_arrays())
def test_random_formats_and_pixels(fmt: PixelFormat, pixels: Pixels) -> None:
    pixels = with_zero_x(pixels)
    height, width = pixels.shape[:2]
    data = fmt.convert(pixels)
    assert data == reference_convert(fmt, pixels)
    np.testing.assert_array_equal(fmt.to_native(data, width, height), quantised(fmt, pixels))


# -- to_native on its own -----------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(valid_formats(), st.integers(0, 5), st.integers(0, 5), st.data())
def test_to_native_matches_reference_decoder(
    fmt: PixelFormat, width: int, height: int, data: st.DataObject
) -> None:
    # Any wire bytes, including bits no channel uses.
    wire = data.draw(st.binary(min_size=width * height * fmt.bytes_per_pixel, max_size=64 * 4))
    wire = wire[: width * height * fmt.bytes_per_pixel]
    np.testing.assert_array_equal(
        fmt.to_native(wire, width, height), reference_decode(fmt, wire, width, height)
    )


def test_to_native_by_hand() -> None:
    # RGB565 BE 0x8410: red 16 -> (16 * 255 + 15) // 31 = 132, green 32 -> (32 * 255 + 31) // 63
    # = 130, blue 16 -> 132.
    assert RGB565_BE.to_native(b"\x84\x10", 1, 1).tolist() == [[[132, 130, 132, 0]]]
    assert BGR233.to_native(b"\xc0\x07", 2, 1).tolist() == [[[255, 0, 0, 0], [0, 0, 255, 0]]]


@pytest.mark.parametrize(("length", "width", "height"), [(7, 2, 1), (9, 2, 1), (0, 1, 1)])
def test_to_native_wrong_length(length: int, width: int, height: int) -> None:
    with pytest.raises(ValueError, match="bytes"):
        SERVER_PIXEL_FORMAT.to_native(bytes(length), width, height)


# -- misuse -------------------------------------------------------------------


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((2, 2, 3), dtype=np.uint8),
        np.zeros((2, 2), dtype=np.uint8),
        np.zeros((2, 2, 4), dtype=np.uint16),
        np.zeros((2, 2, 4, 1), dtype=np.uint8),
    ],
)
def test_convert_refuses_other_arrays(array: npt.NDArray[Any]) -> None:
    with pytest.raises(ValueError, match=r"\(h, w, 4\) uint8"):
        RGB565_LE.convert(array)


def test_convert_refuses_an_invalid_format_as_our_bug() -> None:
    bad = dataclasses.replace(RGB565_LE, true_colour=False)
    with pytest.raises(LocalProtocolError, match="colour maps"):
        bad.convert(one_pixel(1, 2, 3))
    with pytest.raises(LocalProtocolError):
        bad.to_native(b"\0\0", 1, 1)


def test_formats_are_hashable_values() -> None:
    assert PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0) == RGB565_LE
    assert len({RGB565_LE, RGB565_BE, dataclasses.replace(RGB565_BE, big_endian=False)}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        RGB565_LE.depth = 8  # type: ignore[misc]
