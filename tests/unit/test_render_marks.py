"""Combining marks are drawn over their base character, exactly the font's pixels."""

from __future__ import annotations

import numpy as np

from vzvnc.fb.font import BitmapFont
from vzvnc.fb.snapshot import render_rgb
from vzvnc.term.terminal import Terminal


def lit(text: str) -> np.ndarray:
    terminal = Terminal(4, 1)
    terminal.feed(b"\x1b[?25l" + text.encode())  # no cursor in the picture
    return (render_rgb(terminal)[:, :8] != 0).any(axis=2)


def test_a_combining_mark_adds_exactly_its_glyph_to_the_base_cell() -> None:
    font = BitmapFont.default()
    expected = font.glyph(ord("e")) | font.glyph(0x0301)
    assert (lit("e\u0301") == expected).all()
    assert (lit("e") == font.glyph(ord("e"))).all()


def test_two_marks_on_one_cell_are_both_drawn() -> None:
    font = BitmapFont.default()
    expected = font.glyph(ord("a")) | font.glyph(0x0301) | font.glyph(0x0323)
    assert (lit("a\u0301\u0323") == expected).all()
