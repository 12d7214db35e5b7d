"""ZRLE's batch tile encoder and its columns of glyph cells for dense damage.

A real terminal and renderer draw a top-like screen frame after frame; each
frame's damage goes through ``encodings.arrange`` and ``encode_damage`` as the
server sends it, and the independent decoder in ``tests.decoders``, fed the
rectangles in order on one zlib stream, must end every frame with exactly the
renderer's framebuffer.
"""

from __future__ import annotations

import random
import struct
import sys
import zlib
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
from vzvnc.rfb.encodings import TightEncoder, ZRLEEncoder
from vzvnc.rfb.encodings.common import cpixel_packer
from vzvnc.rfb.encodings.zrle import (
    DENSE_CELLS_PER_COLUMN,
    cell_columns,
    encode_tile,
    encode_tiles,
    encode_tiles_at,
)
from vzvnc.rfb.pixelformat import SERVER_PIXEL_FORMAT, PixelFormat
from vzvnc.term.terminal import Terminal

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import toplike

ZRLE = int(Encoding.ZRLE)
SCREEN = Rect(0, 0, 640, 400)
# bpp, depth, big endian, true colour, maxima, shifts
RGB565_BE = PixelFormat(16, 16, True, True, 31, 63, 31, 11, 5, 0)


def top_frames(count: int) -> list[bytes]:
    rng = random.Random(7)
    tasks = toplike.make_tasks(rng, 40)
    frames = []
    for number in range(count):
        toplike.step(rng, tasks, 0.1)
        frames.append(toplike.frame(rng, tasks, number * 0.1))
    return frames


def replay(
    frames: list[bytes], pixel_format: PixelFormat, *, use_cells: bool = True
) -> list[list[Rect]]:
    """Send each frame's damage as the server does; the rectangles sent per frame."""
    terminal = Terminal(80, 25)
    display = Display(terminal)
    renderer = Renderer(default_atlas(), 80, 25)
    renderer.render(display)
    encoder = ZRLEEncoder()
    decoder = Decoder(pixel_format, 640, 400)
    fb = renderer.framebuffer
    cells = fb.cells if use_cells else None
    sent: list[list[Rect]] = []
    for number, data in enumerate([b"", *frames]):
        terminal.feed(data)
        result = renderer.render(display)
        damage = [SCREEN] if number == 0 else list(result.changed)
        rects = encodings.arrange(encoder, damage, (8, 16), SCREEN)
        for rect, parts in zip(
            rects,
            encodings.encode_damage(encoder, fb.pixels, rects, pixel_format, cells),
            strict=True,
        ):
            for part in parts:
                decoder.decode(ZRLE, rect.x, rect.y, part.width, part.height, part.payload)
        want = pixel_format.to_native(pixel_format.convert(fb.pixels), 640, 400)
        got = decoder.fb
        assert np.array_equal(got[:, :, :3], want[:, :, :3]), f"frame {number} differs"
        sent.append(rects)
    return sent


@pytest.mark.parametrize("use_cells", [True, False], ids=["cell-map", "pixels"])
@pytest.mark.parametrize("pixel_format", [SERVER_PIXEL_FORMAT, RGB565_BE], ids=["32", "16be"])
def test_a_top_like_screen_goes_as_cell_columns_and_decodes_exactly(
    pixel_format: PixelFormat, use_cells: bool
) -> None:
    sent = replay(top_frames(12), pixel_format, use_cells=use_cells)
    # The first, full screen: one rectangle per column of cells.
    assert sent[0] == [Rect(x, 0, 8, 400) for x in range(0, 640, 8)]
    # The redraws are dense too: columns, each one cell wide.
    for rects in sent[1:]:
        assert rects and all(rect.width == 8 and rect.x % 8 == 0 for rect in rects)


def test_sparse_damage_keeps_its_rectangles() -> None:
    echoed_key = [Rect(16, 32, 16, 16)]
    assert cell_columns(echoed_key, 8, 16, SCREEN) is None
    new_line = [Rect(0, 384, 640, 16)]
    assert cell_columns(new_line, 8, 16, SCREEN) is None
    # Just under the density threshold, then at it.
    rows = DENSE_CELLS_PER_COLUMN
    assert cell_columns([Rect(0, 0, 80, (rows - 1) * 16)], 8, 16, SCREEN) is None
    assert cell_columns([Rect(0, 0, 80, rows * 16)], 8, 16, SCREEN) == [
        Rect(x, 0, 8, rows * 16) for x in range(0, 80, 8)
    ]


def test_columns_span_from_the_first_to_the_last_change_and_stay_within() -> None:
    damage = [Rect(0, 0, 16, 16), Rect(0, 16 * 20, 16, 16 * 4), Rect(8, 16 * 10, 8, 16 * 8)]
    assert cell_columns(damage, 8, 16, SCREEN) == [Rect(0, 0, 8, 384), Rect(8, 0, 8, 384)]
    # A request that starts inside a cell row: the columns start where it does.
    within = Rect(0, 10, 640, 390)
    clipped = [rect.intersect(within) for rect in damage]
    assert cell_columns(clipped, 8, 16, within) == [Rect(0, 10, 8, 374), Rect(8, 10, 8, 374)]


def test_columns_only_when_the_client_asked_for_one_area() -> None:
    damage = [Rect(0, 0, 640, 400)]
    assert encodings.arrange(ZRLEEncoder(), damage, (8, 16), None) == damage
    # Other encodings cut rectangles their own way.
    assert encodings.arrange(TightEncoder(), damage, (8, 16), SCREEN) == damage


@settings(max_examples=150, deadline=None)
@given(
    boxes=st.lists(
        st.tuples(
            st.integers(0, 199), st.integers(0, 149), st.integers(1, 150), st.integers(1, 150)
        ),
        min_size=1,
        max_size=6,
    ),
    colours=st.integers(1, 40),
    per_cell=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_the_batch_decodes_like_each_rectangle_alone(
    boxes: list[tuple[int, int, int, int]], colours: int, per_cell: int, seed: int
) -> None:
    """Rectangles of any size and place in one array, tiles of every shape, one batch.

    The pixels are glyph-like: each 8x16 cell draws from ``per_cell`` of the
    colours, so solid, two-colour and many-colour tiles all occur.
    """
    rng = np.random.default_rng(seed)
    packer = cpixel_packer(SERVER_PIXEL_FORMAT)
    palette = rng.integers(0, 1 << 24, colours).astype(np.uint32)
    cell_colours = rng.integers(0, colours, (19, 44, per_cell))
    choice = rng.integers(0, per_cell, (304, 352))
    cells = cell_colours[np.arange(304)[:, None] // 16, np.arange(352)[None, :] // 8, choice]
    values = palette[cells][:300, :350]
    rects = [Rect(x, y, min(w, 350 - x), min(h, 300 - y)) for x, y, w, h in boxes]
    batch = encode_tiles_at(values, rects, packer)
    assert batch == [encode_tiles(values[r.y : r.bottom, r.x : r.right], packer) for r in rects]
    for rect, data in zip(rects, batch, strict=True):
        decoder = Decoder(SERVER_PIXEL_FORMAT, rect.width, rect.height)
        stream = zlib.compressobj()
        compressed = stream.compress(data) + stream.flush(zlib.Z_SYNC_FLUSH)
        decoder.decode(
            ZRLE, 0, 0, rect.width, rect.height, struct.pack(">I", len(compressed)) + compressed
        )
        got = decoder.fb.view("<u4")[:, :, 0] & 0xFFFFFF
        assert np.array_equal(got, values[rect.y : rect.bottom, rect.x : rect.right])


def test_photographic_tiles_still_get_the_smallest_form() -> None:
    packer = cpixel_packer(SERVER_PIXEL_FORMAT)
    noisy = np.random.default_rng(0).integers(0, 1 << 24, (64, 64)).astype(np.uint32)
    assert encode_tiles(noisy, packer) == encode_tile(noisy, packer)


def test_columns_of_known_cells_come_from_the_map_alone() -> None:
    """Given a blank picture and the cell map, the decoded screen is still the real one."""
    terminal = Terminal(80, 25)
    renderer = Renderer(default_atlas(), 80, 25)
    terminal.feed(b"".join(top_frames(20)))
    renderer.render(Display(terminal))
    fb = renderer.framebuffer
    rects = [Rect(x, 16 * (x % 5), 8, 400 - 16 * (x % 5)) for x in range(0, 640, 8)]
    blank = np.zeros_like(fb.pixels)
    payloads = ZRLEEncoder().encode_many(blank, rects, SERVER_PIXEL_FORMAT, fb.cells)
    decoder = Decoder(SERVER_PIXEL_FORMAT, 640, 400)
    for rect, payload in zip(rects, payloads, strict=True):
        decoder.decode(ZRLE, rect.x, rect.y, rect.width, rect.height, payload)
    real = fb.pixels.view("<u4")[:, :, 0] & 0xFFFFFF
    got = decoder.fb.view("<u4")[:, :, 0] & 0xFFFFFF
    for rect in rects:
        area = (slice(rect.y, rect.bottom), slice(rect.x, rect.right))
        assert np.array_equal(got[area], real[area])


@settings(max_examples=80, deadline=None)
@given(
    colours=st.integers(1, 12),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([1, 2]),
    forget=st.booleans(),
)
def test_columns_of_any_colours_decode_exactly(
    colours: int, seed: int, scale: int, forget: bool
) -> None:
    """A made-up cell map (random bits, inks and papers from ``colours`` colours, cells
    8x16 or 16x32) and its pixels: columns of any height decode to the pixels, from the
    map or, with a cell forgotten, from the pixels."""
    from vzvnc.fb.cellmap import CellMap

    rng = np.random.default_rng(seed)
    cw, ch, columns, lines = 8 * scale, 16 * scale, 12, 9
    cells = CellMap(cw, ch, columns, lines)
    palette = rng.integers(0, 1 << 24, colours).astype(np.uint32)
    count = columns * lines
    masks = rng.random((count, ch, cw)) < rng.random()
    ys, xs = np.divmod(np.arange(count), columns)
    ink, paper = palette[rng.integers(0, colours, (2, count))]
    cells.paint(ys, xs, masks, ink, paper)
    words = np.where(masks, ink[:, None, None], paper[:, None, None]).astype(np.uint32)
    words = words.reshape(lines, columns, ch, cw).transpose(0, 2, 1, 3).reshape(lines * ch, -1)
    pixels = np.ascontiguousarray(words).view(np.uint8).reshape(lines * ch, columns * cw, 4)
    if forget:
        cells.forget(Rect(0, 0, 1, 1))
    tops = rng.integers(0, lines, columns)
    rects = [
        Rect(column * cw, int(top) * ch, cw, int(rng.integers(1, lines - top + 1)) * ch)
        for column, top in enumerate(tops)
    ]
    payloads = ZRLEEncoder().encode_many(pixels, rects, SERVER_PIXEL_FORMAT, cells)
    decoder = Decoder(SERVER_PIXEL_FORMAT, columns * cw, lines * ch)
    for rect, payload in zip(rects, payloads, strict=True):
        decoder.decode(ZRLE, rect.x, rect.y, rect.width, rect.height, payload)
    got = decoder.fb.view("<u4")[:, :, 0] & 0xFFFFFF
    for rect in rects:
        area = (slice(rect.y, rect.bottom), slice(rect.x, rect.right))
        assert np.array_equal(got[area], words[area] & 0xFFFFFF)
