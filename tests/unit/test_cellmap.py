"""The renderer's cell map says exactly what each known cell's pixels are.

Real terminal, real renderer: any bytes (text, colours, reverse video, wide and
combining characters, cursor shapes, scrolling regions) are fed in pieces, and
after every render each known cell rebuilt from its ink, paper and bits must
equal the framebuffer's pixels; after a render every cell is known.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vzvnc.fb.cellmap import CellMap
from vzvnc.fb.damage import Rect
from vzvnc.fb.display import Display
from vzvnc.fb.font import default_atlas
from vzvnc.fb.framebuffer import Framebuffer
from vzvnc.fb.render import Renderer
from vzvnc.term.terminal import Terminal

PIECES = [
    b"hello ",
    b"\x1b[31m",
    b"\x1b[1;44m",
    b"\x1b[7m",
    b"\x1b[m",
    b"\x1b[4m_u_",
    b"\x1b[9mstrike",
    b"\x1b[3mitalic",
    b"\r\n",
    b"\x1b[H",
    b"\x1b[2J",
    b"\x1b[5;2H",
    b"\x1b[2;6r",
    b"\x1b[r",
    b"\x1bM",
    b"\x1b[3S",
    b"\x1b[2T",
    b"\x1b[L",
    b"\x1b[M",
    b"\x1b[K",
    b"\x1b[38;2;10;200;30m",
    b"\x1b[48;5;200m",
    b"\x1b[?25l",
    b"\x1b[?25h",
    b"\x1b[4 q",
    b"\x1b[6 q",
    b"\x1b[2 q",
    "\u4e2d\u6587".encode(),
    "e\u0301a\u0323".encode(),
    "\u2588\u2592\u2500".encode(),
    b"x" * 30,
    b"\n" * 7,
]


def rebuilt(cells: CellMap) -> np.ndarray:
    """The pixels the map describes, as (lines, columns, cell_h, cell_w) words."""
    bits = np.unpackbits(cells.bits, axis=3)[:, :, :, : cells.cell_width].astype(np.bool_)
    return np.where(bits, cells.ink[:, :, None, None], cells.paper[:, :, None, None])


def framebuffer_cells(fb: Framebuffer, cells: CellMap) -> np.ndarray:
    words = fb.pixels.view("<u4")[:, :, 0]
    grid = words.reshape(cells.lines, cells.cell_height, cells.columns, cells.cell_width)
    return grid.transpose(0, 2, 1, 3)


def assert_map_true(renderer: Renderer) -> None:
    fb = renderer.framebuffer
    cells = fb.cells
    assert cells is not None
    known = cells.known
    assert np.array_equal(rebuilt(cells)[known], framebuffer_cells(fb, cells)[known])


@settings(max_examples=60, deadline=None)
@given(
    chunks=st.lists(
        st.lists(st.sampled_from(PIECES), min_size=1, max_size=8), min_size=1, max_size=8
    ),
    scale=st.sampled_from([1, 2]),
)
def test_known_cells_are_exactly_their_ink_paper_and_bits(
    chunks: list[list[bytes]], scale: int
) -> None:
    terminal = Terminal(12, 7, history=20)
    display = Display(terminal)
    renderer = Renderer(default_atlas(), 12, 7, scale=scale)
    for chunk in chunks:
        terminal.feed(b"".join(chunk))
        renderer.render(display)
        assert_map_true(renderer)
        cells = renderer.framebuffer.cells
        assert cells is not None and cells.known.all()


def test_underline_and_bar_cursors_are_drawn_as_ink() -> None:
    """They were never drawn before the cell map: the test of the cursor bit was always 0."""
    terminal = Terminal(4, 2)
    terminal.feed(b"\x1b[4 q ")  # underline cursor on a blank cell
    display = Display(terminal)
    renderer = Renderer(default_atlas(), 4, 2)
    renderer.render(display)
    cells = renderer.framebuffer.cells
    assert cells is not None
    assert (cells.bits[0, 1, -2:] == 0xFF).all() and not cells.bits[0, 1, :-2].any()
    lit = (renderer.framebuffer.pixels[:16, 8:16, :3] != 0).any(axis=2)
    assert lit[-2:].all() and not lit[:-2].any()
    assert_map_true(renderer)
    terminal.feed(b"\x1b[6 q")  # bar
    renderer.render(display)
    assert (cells.bits[0, 1, :, 0] == 0b11000000).all()
    assert_map_true(renderer)


def test_copies_off_the_grid_forget_their_cells_and_on_it_move_them() -> None:
    terminal = Terminal(6, 3)
    terminal.feed(b"ab\r\ncd\r\nef")
    renderer = Renderer(default_atlas(), 6, 3)
    renderer.render(Display(terminal))
    fb = renderer.framebuffer
    cells = fb.cells
    assert cells is not None
    fb.copy_rect(Rect(8, 16, 16, 16), 0, 0)  # one cell across and down: on the grid
    assert cells.known.all()
    assert_map_true(renderer)
    fb.copy_rect(Rect(3, 0, 8, 16), 0, 16)  # three pixels in: off the grid
    assert not cells.known[0, 0] and not cells.known[0, 1] and cells.known[0, 2]
    assert_map_true(renderer)
    fb.resize(8, 8)
    assert fb.cells is None


@settings(max_examples=200, deadline=None)
@given(grid=st.lists(st.lists(st.booleans(), min_size=20, max_size=20), min_size=1, max_size=9))
def test_damage_covers_changed_cells_with_near_runs_merged(grid: list[list[bool]]) -> None:
    """Rectangles are disjoint and cover, row by row, exactly the runs of changed cells
    with gaps of at most ``RUN_GAP`` cells filled (a plain loop computes those here)."""
    from vzvnc.fb.render import RUN_GAP

    changed = np.array(grid, dtype=np.bool_)
    renderer = Renderer(default_atlas(), 20, len(grid))
    region = renderer._damage(changed)
    covered = np.zeros((len(grid) * 16, 20 * 8), dtype=np.int64)
    for rect in region:
        covered[rect.y : rect.bottom, rect.x : rect.right] += 1
    assert covered.max(initial=0) <= 1
    expected = np.zeros_like(changed)
    for y, row in enumerate(grid):
        runs: list[list[int]] = []
        for x, on in enumerate(row):
            if not on:
                continue
            if runs and x - runs[-1][1] <= RUN_GAP:
                runs[-1][1] = x + 1
            else:
                runs.append([x, x + 1])
        for start, end in runs:
            expected[y, start:end] = True
    assert np.array_equal(covered[::16, ::8].astype(np.bool_), expected)
