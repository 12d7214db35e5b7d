"""Tight plans its rectangles from the cell map exactly as it would from the pixels.

A real terminal and renderer draw; for every band the server would send, the
labels read from the cell map (background per row of cells, each cell blank,
one colour or mixed) must equal the labels read from the pixels, in our pixel
format and in a 16-bit one where distinct colours can become one value. Each
frame then goes through ``encode_damage`` with the map and the independent
decoder in ``tests.decoders`` must end with exactly the framebuffer.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.decoders import Decoder
from vzvnc.fb.damage import Rect
from vzvnc.fb.display import Display
from vzvnc.fb.font import default_atlas
from vzvnc.fb.render import Renderer
from vzvnc.rfb import encodings
from vzvnc.rfb.constants import Encoding
from vzvnc.rfb.encodings import TightEncoder
from vzvnc.rfb.encodings.common import EncodedPart, colour_values, pixel_values
from vzvnc.rfb.encodings.tight import _map_labels, _pixel_labels
from vzvnc.rfb.pixelformat import SERVER_PIXEL_FORMAT, PixelFormat
from vzvnc.term.terminal import Terminal

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import toplike

# bpp, depth, big endian, true colour, maxima, shifts
RGB565_BE = PixelFormat(16, 16, True, True, 31, 63, 31, 11, 5, 0)
RGB111 = PixelFormat(8, 3, False, True, 1, 1, 1, 2, 1, 0)
SCREEN = Rect(0, 0, 640, 400)
PIECES = [
    b"word ",
    b"\x1b[31m",
    b"\x1b[1;43m",
    b"\x1b[7m",
    b"\x1b[m",
    b"\x1b[38;5;%dm" % 52,
    b"\x1b[38;2;1;2;3m",
    b"\x1b[48;2;0;0;1m",
    b"\x1b[4mu",
    b"\r\n",
    b"\x1b[H",
    b"\x1b[2J",
    b"\x1b[K",
    "\u2588\u2591\u2500\u4e2d".encode(),
    b"x" * 25,
    b"\x1b[6 q",
]


def decode_all(decoder: Decoder, rects: list[Rect], sent: list[list[EncodedPart]]) -> None:
    """Feed one update's Tight rectangles (``encode_damage``'s parts) to ``decoder``."""
    for rect, parts in zip(rects, sent, strict=True):
        for part in parts:
            decoder.decode(
                int(Encoding.TIGHT),
                rect.x + part.x,
                rect.y + part.y,
                part.width,
                part.height,
                part.payload,
            )


def labels_agree(renderer: Renderer, rect: Rect, pixel_format: PixelFormat) -> None:
    fb = renderer.framebuffer
    assert fb.cells is not None
    values = pixel_values(fb.region(rect), pixel_format)
    from_map = _map_labels(fb.cells, rect.x, rect.y, values.shape, colour_values(pixel_format))
    assert from_map is not None
    background, label = _pixel_labels(values)
    assert np.array_equal(from_map[0], background)
    assert np.array_equal(from_map[1], label)


@pytest.mark.parametrize(
    "pixel_format", [SERVER_PIXEL_FORMAT, RGB565_BE, RGB111], ids=["32", "16be", "8"]
)
def test_top_like_bands_get_the_same_labels_from_the_map(pixel_format: PixelFormat) -> None:
    rng = random.Random(3)
    tasks = toplike.make_tasks(rng, 40)
    terminal = Terminal(80, 25)
    display = Display(terminal)
    renderer = Renderer(default_atlas(), 80, 25)
    encoder = TightEncoder()
    for number in range(15):
        toplike.step(rng, tasks, 0.1)
        terminal.feed(toplike.frame(rng, tasks, number * 0.1))
        result = renderer.render(display)
        for rect in encodings.arrange(encoder, list(result.changed), (8, 16), SCREEN):
            labels_agree(renderer, rect, pixel_format)


@settings(max_examples=50, deadline=None)
@given(
    chunks=st.lists(st.lists(st.sampled_from(PIECES), min_size=1, max_size=10), max_size=5),
    pixel_format=st.sampled_from([SERVER_PIXEL_FORMAT, RGB565_BE, RGB111]),
)
def test_any_screen_gets_the_same_labels_and_decodes_exactly(
    chunks: list[list[bytes]], pixel_format: PixelFormat
) -> None:
    terminal = Terminal(30, 6)
    display = Display(terminal)
    renderer = Renderer(default_atlas(), 30, 6)
    fb = renderer.framebuffer
    screen = Rect(0, 0, 240, 96)
    encoder = TightEncoder()
    decoder = Decoder(pixel_format, 240, 96)
    for number, chunk in enumerate([[b""], *chunks]):
        terminal.feed(b"".join(chunk))
        result = renderer.render(display)
        # A scroll moved pixels (the server would send a CopyRect): send the whole screen.
        damage = [screen] if number == 0 or result.copy else list(result.changed)
        rects = encodings.arrange(encoder, damage, (8, 16), screen)
        for rect in rects:
            labels_agree(renderer, rect, pixel_format)
        sent = encodings.encode_damage(encoder, fb.pixels, rects, pixel_format, fb.cells)
        decode_all(decoder, rects, sent)
        want = pixel_format.to_native(pixel_format.convert(fb.pixels), 240, 96)
        assert np.array_equal(decoder.fb[:, :, :3], want[:, :, :3]), f"frame {number}"


def test_regions_off_the_grid_or_with_unknown_cells_are_read_from_pixels() -> None:
    terminal = Terminal(10, 3)
    terminal.feed(b"hello\r\nworld")
    renderer = Renderer(default_atlas(), 10, 3)
    renderer.render(Display(terminal))
    cells = renderer.framebuffer.cells
    assert cells is not None
    native = colour_values(SERVER_PIXEL_FORMAT)
    assert _map_labels(cells, 0, 0, (48, 80), native) is not None
    assert _map_labels(cells, 4, 0, (48, 72), native) is None  # off the grid
    cells.forget(Rect(8, 16, 1, 1))
    assert _map_labels(cells, 0, 0, (48, 80), native) is None
    assert _map_labels(cells, 16, 0, (48, 64), native) is not None


def test_two_colour_text_is_sent_from_the_map_without_reading_pixels() -> None:
    """With the map, rectangles of one or two colours never read the pixels: encoding a
    blanked copy of the framebuffer still decodes to the real screen."""
    terminal = Terminal(30, 6)
    terminal.feed(b"plain text\r\n\x1b[31mred words\x1b[m and more\r\n\x1b[7m reverse \x1b[m")
    renderer = Renderer(default_atlas(), 30, 6)
    renderer.render(Display(terminal))
    fb = renderer.framebuffer
    screen = Rect(0, 0, 240, 96)
    encoder = TightEncoder()
    rects = encodings.arrange(encoder, [screen], (8, 16), screen)
    blank = np.zeros_like(fb.pixels)
    sent = encodings.encode_damage(encoder, blank, rects, SERVER_PIXEL_FORMAT, fb.cells)
    decoder = Decoder(SERVER_PIXEL_FORMAT, 240, 96)
    decode_all(decoder, rects, sent)
    assert np.array_equal(decoder.fb[:, :, :3], fb.pixels[:, :, :3])
