"""``repaint``: a screen's bytes, fed to a fresh terminal, give the same screen."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vzvnc.term.cells import ATTR_WIDE_LEFT
from vzvnc.term.repaint import repaint
from vzvnc.term.terminal import Terminal


def assert_same_screen(a: Terminal, b: Terminal) -> None:
    for name, left, right in zip(("chars", "fg", "bg", "attrs"), a.cells(), b.cells(), strict=True):
        differ = np.argwhere(left != right)
        assert differ.size == 0, f"{name} differ first at {differ[0].tolist()}: {a.text_lines()}"
    assert (a.cursor_x, a.cursor_y, a.cursor_visible) == (b.cursor_x, b.cursor_y, b.cursor_visible)
    assert (a.application_cursor_keys, a.application_keypad, a.bracketed_paste) == (
        b.application_cursor_keys,
        b.application_keypad,
        b.bracketed_paste,
    )


def replayed(terminal: Terminal) -> Terminal:
    copy = Terminal(terminal.columns, terminal.lines)
    copy.feed(repaint(terminal))
    return copy


def test_colours_attributes_wide_and_combining_characters_survive() -> None:
    terminal = Terminal(40, 8)
    terminal.feed(
        (
            "\x1b[1;31mbold red\x1b[0m \x1b[4;38;5;202munder 256\x1b[0m\r\n"
            "\x1b[7;48;2;10;20;30mreverse truecolour bg\x1b[0m\r\n"
            "漢字 wide, e\u0301 combining, \x1b[9mstrike\x1b[0m\r\n"
            "\x1b[2;3;5;8mdim italic blink hidden\x1b[0m\r\n"
            "\x1b[44m\x1b[K\x1b[0m\r\n"  # a line erased in blue
            "\x1b[?1h\x1b=\x1b[?2004h\x1b[?25l\x1b[6;12H"
        ).encode()
    )
    copy = replayed(terminal)
    assert_same_screen(terminal, copy)
    assert copy.text_lines()[2].startswith("漢字 wide, e\u0301 combining")
    assert copy.application_cursor_keys and not copy.cursor_visible


def test_the_last_column_is_painted_without_scrolling() -> None:
    terminal = Terminal(10, 3)
    terminal.feed(b"0123456789" * 3)  # every cell, the last one included
    assert_same_screen(terminal, replayed(terminal))


pieces = st.one_of(
    st.text(alphabet="abc XYZ-.漢字ｶ\u0301", min_size=1, max_size=12).map(str.encode),
    st.sampled_from(
        [
            *(b"\x1b[%bm" % code for code in (b"0", b"1", b"2", b"3", b"4", b"7", b"9")),
            *(b"\x1b[%bm" % code for code in (b"31", b"42", b"97", b"38;5;99", b"48;2;1;2;3")),
            *(b"\r\n", b"\x1b[H", b"\x1b[3;5H", b"\x1b[K", b"\x1b[2J", b"\x1b[?25l"),
            *(b"\x1b[?25h", b"\x1b[?1h", b"\x1b>", b"\x1b[L", b"\x1b[2P", b"\t"),
        ]
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(pieces, max_size=40))
def test_any_screen_repaints_exactly(chunks: list[bytes]) -> None:
    terminal = Terminal(20, 6)
    terminal.feed(b"".join(chunks))
    attrs = terminal.cells()[3]
    # A wide character's left half in the last column cannot be drawn alone.
    edge = (attrs[:, -1] & ATTR_WIDE_LEFT) != 0
    if edge.any():
        return
    assert_same_screen(terminal, replayed(terminal))
