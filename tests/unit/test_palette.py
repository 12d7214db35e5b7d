"""Colour resolution: palette contents and the attribute rules."""

from __future__ import annotations

import numpy as np
import pytest

from vzvnc.term import cells
from vzvnc.term.palette import (
    DEFAULT_BG,
    DEFAULT_FG,
    palette_rgb,
    resolve_colours,
    xterm_colour_spec,
    xterm_palette,
)


def resolve_one(fg: int, bg: int, attrs: int = 0) -> tuple[tuple[int, ...], tuple[int, ...]]:
    fg_rgb, bg_rgb = resolve_colours(
        np.array([fg], dtype=np.uint32),
        np.array([bg], dtype=np.uint32),
        np.array([attrs], dtype=np.uint16),
    )
    return tuple(int(v) for v in fg_rgb[0]), tuple(int(v) for v in bg_rgb[0])


def test_palette_shape_and_known_entries() -> None:
    table = xterm_palette()
    assert table.shape == (256, 3)
    assert table.dtype == np.uint8
    assert tuple(table[1]) == (205, 0, 0)
    assert tuple(table[4]) == (0, 0, 238)
    assert tuple(table[7]) == (229, 229, 229)
    assert tuple(table[8]) == (127, 127, 127)
    assert tuple(table[12]) == (92, 92, 255)
    assert tuple(table[15]) == (255, 255, 255)
    # Cube: 16 + 36 r + 6 g + b with levels 0, 95, 135, 175, 215, 255.
    assert tuple(table[16]) == (0, 0, 0)
    assert tuple(table[16 + 36 * 5 + 6 * 2 + 1]) == (255, 135, 95)
    assert tuple(table[231]) == (255, 255, 255)
    assert tuple(table[232]) == (8, 8, 8)
    assert tuple(table[255]) == (238, 238, 238)


def test_palette_is_a_fresh_copy() -> None:
    table = xterm_palette()
    table[1] = (1, 2, 3)
    assert tuple(xterm_palette()[1]) == (205, 0, 0)
    assert tuple(resolve_one(cells.indexed(1), cells.DEFAULT_COLOUR)[0]) == (205, 0, 0)


def test_defaults() -> None:
    assert resolve_one(cells.DEFAULT_COLOUR, cells.DEFAULT_COLOUR) == (DEFAULT_FG, DEFAULT_BG)


def test_indexed_and_truecolour() -> None:
    fg, bg = resolve_one(cells.indexed(196), cells.rgb(1, 2, 3))
    assert fg == (255, 0, 0)
    assert bg == (1, 2, 3)


@pytest.mark.parametrize(("index", "expected"), [(1, 9), (7, 15), (0, 8)])
def test_bold_uses_bright_variant_for_low_indexed(index: int, expected: int) -> None:
    fg, _ = resolve_one(cells.indexed(index), cells.DEFAULT_COLOUR, cells.ATTR_BOLD)
    assert fg == tuple(int(v) for v in xterm_palette()[expected])


def test_bold_leaves_other_colours_alone() -> None:
    assert resolve_one(cells.indexed(9), 0, cells.ATTR_BOLD)[0] == (255, 0, 0)
    assert resolve_one(cells.indexed(100), 0, cells.ATTR_BOLD)[0] == tuple(
        int(v) for v in xterm_palette()[100]
    )
    assert resolve_one(cells.DEFAULT_COLOUR, 0, cells.ATTR_BOLD)[0] == DEFAULT_FG
    assert resolve_one(cells.rgb(1, 2, 3), 0, cells.ATTR_BOLD)[0] == (1, 2, 3)
    # Bold does not brighten the background.
    assert resolve_one(0, cells.indexed(1), cells.ATTR_BOLD)[1] == (205, 0, 0)


def test_reverse_swaps_after_defaults() -> None:
    fg, bg = resolve_one(cells.DEFAULT_COLOUR, cells.DEFAULT_COLOUR, cells.ATTR_REVERSE)
    assert (fg, bg) == (DEFAULT_BG, DEFAULT_FG)
    fg, bg = resolve_one(cells.indexed(2), cells.rgb(10, 20, 30), cells.ATTR_REVERSE)
    assert (fg, bg) == ((10, 20, 30), (0, 205, 0))


def test_dim_blends_halfway_to_background() -> None:
    fg, bg = resolve_one(cells.rgb(200, 100, 0), cells.rgb(0, 50, 100), cells.ATTR_DIM)
    assert fg == (100, 75, 50)
    assert bg == (0, 50, 100)


def test_invisible_makes_foreground_background() -> None:
    fg, bg = resolve_one(cells.indexed(1), cells.indexed(4), cells.ATTR_INVISIBLE)
    assert fg == bg == (0, 0, 238)
    fg, bg = resolve_one(
        cells.indexed(1), cells.indexed(4), cells.ATTR_INVISIBLE | cells.ATTR_REVERSE
    )
    assert fg == bg == (205, 0, 0)


def test_vectorised_over_any_shape() -> None:
    fg = np.full((3, 4, 5), cells.indexed(1), dtype=np.uint32)
    bg = np.full((3, 4, 5), cells.DEFAULT_COLOUR, dtype=np.uint32)
    attrs = np.zeros((3, 4, 5), dtype=np.uint16)
    attrs[1, 2, 3] = cells.ATTR_REVERSE
    fg_rgb, bg_rgb = resolve_colours(fg, bg, attrs)
    assert fg_rgb.shape == bg_rgb.shape == (3, 4, 5, 3)
    assert fg_rgb.dtype == bg_rgb.dtype == np.uint8
    assert tuple(fg_rgb[0, 0, 0]) == (205, 0, 0)
    assert tuple(fg_rgb[1, 2, 3]) == DEFAULT_BG
    assert tuple(bg_rgb[1, 2, 3]) == (205, 0, 0)
    assert tuple(bg_rgb[2, 3, 4]) == DEFAULT_BG


def test_unknown_colour_kind_falls_back_to_default() -> None:
    assert resolve_one(7 << 24, 9 << 24) == (DEFAULT_FG, DEFAULT_BG)


def test_palette_rgb_entries() -> None:
    assert palette_rgb(0) == (0, 0, 0)
    assert palette_rgb(4) == (0, 0, 238)
    assert palette_rgb(16 + 36 * 5 + 6 * 2 + 1) == (255, 135, 95)
    assert palette_rgb(244) == (128, 128, 128)
    assert all(type(v) is int for v in palette_rgb(100))


@pytest.mark.parametrize(
    ("colour", "spec"),
    [
        ((0, 0, 0), "rgb:0000/0000/0000"),
        ((255, 255, 255), "rgb:ffff/ffff/ffff"),
        ((229, 229, 229), "rgb:e5e5/e5e5/e5e5"),
        ((1, 128, 254), "rgb:0101/8080/fefe"),
    ],
)
def test_xterm_colour_spec_scales_to_16_bits(colour: tuple[int, int, int], spec: str) -> None:
    assert xterm_colour_spec(colour) == spec
