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


def test_marks_scrolled_into_history_are_drawn_when_scrolled_back() -> None:
    from vzvnc.fb.display import Display
    from vzvnc.fb.font import default_atlas
    from vzvnc.fb.render import Renderer

    font = BitmapFont.default()
    terminal = Terminal(4, 2, history=10)
    terminal.feed(b"\x1b[?25le\xcc\x81\r\nx\r\ny\r\nz")  # "e" + U+0301 leaves the screen
    display = Display(terminal)
    renderer = Renderer(default_atlas(), 4, 2)
    display.scroll(3)  # back to the line with the mark, at the top
    renderer.render(display)
    assert display.combining_at(0, 0) == "\u0301"
    top_left = (renderer.framebuffer.pixels[:16, :8, :3] != 0).any(axis=2)
    assert (top_left == (font.glyph(ord("e")) | font.glyph(0x0301))).all()
