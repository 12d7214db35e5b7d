"""Screen behaviour, checked on the cells: rendition, wide characters, editing, scrolling."""

from __future__ import annotations

import numpy as np
import pyte
import pytest

from vzvnc.term import cells
from vzvnc.term.screen import CellScreen
from vzvnc.term.terminal import Terminal

ESC = "\x1b"
CSI = "\x1b["


def term(text: str = "", columns: int = 20, lines: int = 5) -> Terminal:
    t = Terminal(columns, lines)
    t.feed(text.encode())
    return t


def cell(t: Terminal, x: int, y: int) -> tuple[str, int, int, int]:
    chars, fg, bg, attrs = t.cells()
    return chr(int(chars[y, x])), int(fg[y, x]), int(bg[y, x]), int(attrs[y, x])


# -- rendition -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sgr", "fg", "bg"),
    [
        ("31", cells.indexed(1), cells.DEFAULT_COLOUR),
        ("37;44", cells.indexed(7), cells.indexed(4)),
        ("91;105", cells.indexed(9), cells.indexed(13)),
        ("38;5;196", cells.indexed(196), cells.DEFAULT_COLOUR),
        ("48;5;17", cells.DEFAULT_COLOUR, cells.indexed(17)),
        ("38;2;1;2;3;48;2;250;128;0", cells.rgb(1, 2, 3), cells.rgb(250, 128, 0)),
        ("31;39;41;49", cells.DEFAULT_COLOUR, cells.DEFAULT_COLOUR),
        ("38:5:196", cells.indexed(196), cells.DEFAULT_COLOUR),
        ("38:2:1:2:3", cells.rgb(1, 2, 3), cells.DEFAULT_COLOUR),
        ("38:2::1:2:3;48:5:9", cells.rgb(1, 2, 3), cells.indexed(9)),
    ],
)
def test_sgr_colours_are_stored_encoded(sgr: str, fg: int, bg: int) -> None:
    t = term(f"{CSI}{sgr}mX")
    assert cell(t, 0, 0) == ("X", fg, bg, 0)


@pytest.mark.parametrize(
    ("sgr", "attrs"),
    [
        ("1", cells.ATTR_BOLD),
        ("2", cells.ATTR_DIM),
        ("3", cells.ATTR_ITALIC),
        ("4", cells.ATTR_UNDERLINE),
        ("4:3", cells.ATTR_UNDERLINE),
        ("5", cells.ATTR_BLINK),
        ("6", cells.ATTR_BLINK),
        ("7", cells.ATTR_REVERSE),
        ("8", cells.ATTR_INVISIBLE),
        ("9", cells.ATTR_STRIKE),
        ("1;2;3;4;5;7;8;9", 0xFF),
        ("1;2;22", 0),
        ("3;23", 0),
        ("4;24", 0),
        ("4;4:0", 0),
        ("5;25", 0),
        ("7;27", 0),
        ("8;28", 0),
        ("9;29", 0),
        ("1;4;0", 0),
        ("1;4;", 0),  # an empty parameter is 0: reset
        ("1;21", cells.ATTR_BOLD | cells.ATTR_UNDERLINE),
    ],
)
def test_sgr_attributes(sgr: str, attrs: int) -> None:
    assert cell(term(f"{CSI}{sgr}mX"), 0, 0)[3] == attrs


def test_sgr_reset_clears_colours_and_empty_sgr_resets() -> None:
    t = term(f"{CSI}1;31;42mA{CSI}mB{CSI}1;31;42m{CSI}0mC")
    for x in (1, 2):
        assert cell(t, x, 0)[1:] == (cells.DEFAULT_COLOUR, cells.DEFAULT_COLOUR, 0)
    assert cell(t, 0, 0)[1:] == (cells.indexed(1), cells.indexed(2), cells.ATTR_BOLD)


def test_sgr_underline_colour_arguments_are_not_attributes() -> None:
    # 58;2;r;g;b: "2" must not become DIM nor "0" a reset.
    t = term(f"{CSI}1m{CSI}58;2;255;0;0mA{CSI}58:2::9:9:9mB{CSI}58;5;1mC")
    for x in range(3):
        assert cell(t, x, 0)[3] == cells.ATTR_BOLD


def test_truncated_extended_colours_do_not_crash_or_apply() -> None:
    t = term(f"{CSI}31m{CSI}38;5mA{CSI}38;2;1;2mB{CSI}38;5;300mC{CSI}38mD")
    assert t.text_lines()[0].startswith("ABCD")
    assert t.handler_errors == 0
    for x in range(4):
        assert cell(t, x, 0)[1] == cells.indexed(1)


@pytest.mark.parametrize("sequence", [f"{CSI}?4m", f"{CSI}>4;1m", f"{CSI}>4m", f"{CSI}=1m"])
def test_private_sgr_is_ignored_and_text_after_it_still_appears(sequence: str) -> None:
    t = term(f"{CSI}32mab{sequence}cd")
    assert t.text_lines()[0].startswith("abcd")
    assert t.handler_errors == 0
    for x in range(4):
        assert cell(t, x, 0)[1:] == (cells.indexed(2), cells.DEFAULT_COLOUR, 0)


def test_stock_pyte_would_fail_on_private_sgr() -> None:
    """The reference point for the test above: stock pyte raises on ``CSI ? 4 m``."""
    stream = pyte.ByteStream(pyte.Screen(10, 2))
    with pytest.raises(TypeError):
        stream.feed(b"\x1b[?4m")


# -- wide characters and wrapping -------------------------------------------------


def test_wide_character_occupies_two_flagged_cells() -> None:
    t = term("a中b")
    default = cells.DEFAULT_COLOUR
    assert cell(t, 1, 0) == ("中", default, default, cells.ATTR_WIDE_LEFT)
    assert cell(t, 2, 0) == ("中", default, default, cells.ATTR_WIDE_RIGHT)
    assert cell(t, 3, 0)[0] == "b"
    assert t.cursor_x == 4
    assert t.text_lines()[0] == "a中b" + " " * 16


def test_wide_character_at_last_column_wraps_whole() -> None:
    t = term("x" * 9 + "中", columns=10)
    assert t.text_lines()[0] == "x" * 9 + " "
    assert t.text_lines()[1] == "中" + " " * 8
    assert cell(t, 0, 1)[3] == cells.ATTR_WIDE_LEFT
    assert cell(t, 1, 1)[3] == cells.ATTR_WIDE_RIGHT
    assert (t.cursor_x, t.cursor_y) == (2, 1)


def test_wide_character_at_last_column_without_autowrap_lands_on_last_two() -> None:
    t = term(f"{CSI}?7l" + "x" * 9 + "中", columns=10)
    assert t.text_lines()[0] == "x" * 8 + "中"
    assert t.text_lines()[1] == " " * 10


@pytest.mark.parametrize(("column", "expected"), [(1, "aZ b"), (2, "a Zb")])
def test_overwriting_half_of_wide_character_blanks_the_other_half(
    column: int, expected: str
) -> None:
    t = term(f"a中b{CSI}1;{column + 1}HZ")
    line = t.text_lines()[0]
    assert line.startswith(expected)
    assert len(line) == 20
    assert not (t.cells()[3][0] & (cells.ATTR_WIDE_LEFT | cells.ATTR_WIDE_RIGHT)).any()


def test_zero_width_characters_do_not_drop_the_rest_of_the_run() -> None:
    # e + COMBINING ACUTE, heart + VS16, ZWJ sequence, then plain text.
    t = term("e\u0301x\u2764\ufe0fy\U0001f468\u200d\U0001f469z")
    assert t.text_lines()[0] == "e\u0301x\u2764\ufe0fy\U0001f468\u200d\U0001f469z" + " " * 11
    assert t.handler_errors == 0


def test_stock_pyte_drops_the_run_after_vs16() -> None:
    """The reference point for the test above."""
    screen = pyte.Screen(20, 1)
    pyte.ByteStream(screen).feed("\u2764\ufe0fafter".encode())
    assert "after" not in screen.display[0]


def test_pending_wrap_at_last_column() -> None:
    t = term("abcde", columns=5)
    assert t.text_lines()[:2] == ["abcde", "     "]
    assert (t.cursor_x, t.cursor_y) == (4, 0)
    t.feed(b"f")
    assert t.text_lines()[:2] == ["abcde", "f    "]
    assert (t.cursor_x, t.cursor_y) == (1, 1)


def test_carriage_return_cancels_pending_wrap() -> None:
    t = term("abcde\r\nx", columns=5)
    assert t.text_lines()[:3] == ["abcde", "x    ", "     "]


def test_no_autowrap_overwrites_last_column() -> None:
    t = term(f"{CSI}?7labcdefgh", columns=5)
    assert t.text_lines()[:2] == ["abcdh", "     "]
    t.feed(f"{CSI}?7h\rABCDEFG".encode())
    assert t.text_lines()[:2] == ["ABCDE", "FG   "]


def test_long_run_wraps_over_several_lines_and_scrolls() -> None:
    t = term("0123456789" * 7, columns=10, lines=3)
    assert t.text_lines() == ["0123456789"] * 3
    assert t.take_scrolls() == [(0, 2, 3)]


def test_insert_mode_shifts_existing_text() -> None:
    t = term(f"abcdef\r{CSI}4hXY{CSI}4lZ", columns=10)
    assert t.text_lines()[0] == "XYZbcdef  "


def test_dec_line_drawing_charset() -> None:
    t = term(f"{ESC}(0lqk{ESC}(Bq\x0eq\x0f")
    assert t.text_lines()[0].startswith("┌─┐qq")


def test_rep_repeats_last_character() -> None:
    t = term(f"x{CSI}4b中{CSI}2b")
    assert t.text_lines()[0].startswith("xxxxx中中中")


# -- erasing and editing ---------------------------------------------------------


def test_erase_uses_current_background_colour() -> None:
    t = term(f"abcdefghij{CSI}44m{CSI}1;4H{CSI}K", columns=10, lines=2)
    assert t.text_lines()[0] == "abc       "
    for x in range(3, 10):
        assert cell(t, x, 0) == (" ", cells.DEFAULT_COLOUR, cells.indexed(4), 0)
    assert cell(t, 2, 0)[2] == cells.DEFAULT_COLOUR


def test_erase_in_line_variants() -> None:
    t = term(f"abcdefghij{CSI}1;4H{CSI}1K", columns=10)
    assert t.text_lines()[0] == "    efghij"
    t.feed(f"{CSI}2K".encode())
    assert t.text_lines()[0] == " " * 10


def test_erase_in_display_variants() -> None:
    base = "aaaa\r\nbbbb\r\ncccc"
    t = term(base + f"{CSI}2;3H{CSI}J", columns=4, lines=3)
    assert t.text_lines() == ["aaaa", "bb  ", "    "]
    t = term(base + f"{CSI}2;3H{CSI}1J", columns=4, lines=3)
    assert t.text_lines() == ["    ", "   b", "cccc"]
    t = term(base + f"{CSI}42m{CSI}2J", columns=4, lines=3)
    assert t.text_lines() == ["    "] * 3
    assert (t.cells()[2] == cells.indexed(2)).all()
    t = term(base + f"{CSI}3J", columns=4, lines=3)
    assert t.text_lines() == ["aaaa", "bbbb", "cccc"]


def test_erase_characters_with_background() -> None:
    t = term(f"abcdef{CSI}41m{CSI}1;2H{CSI}3X", columns=6, lines=1)
    assert t.text_lines() == ["a   ef"]
    assert [cell(t, x, 0)[2] for x in range(6)] == [0, *[cells.indexed(1)] * 3, 0, 0]


def test_insert_and_delete_characters() -> None:
    t = term(f"abcdef{CSI}1;2H{CSI}2@", columns=6, lines=1)
    assert t.text_lines() == ["a  bcd"]
    t.feed(f"{CSI}43m{CSI}3P".encode())
    assert t.text_lines() == ["acd   "]
    assert [cell(t, x, 0)[2] for x in range(6)] == [0, 0, 0, *[cells.indexed(3)] * 3]


def test_delete_characters_splitting_wide_character_blanks_its_half() -> None:
    t = term(f"a中bc{CSI}1;2H{CSI}P", columns=6, lines=1)
    attrs = t.cells()[3]
    assert t.text_lines() == ["a bc  "]
    assert not (attrs & (cells.ATTR_WIDE_LEFT | cells.ATTR_WIDE_RIGHT)).any()


def test_insert_characters_pushing_wide_character_off_the_edge() -> None:
    t = term(f"abcd中{CSI}1;1H{CSI}@", columns=6, lines=1)
    assert t.text_lines() == [" abcd "]
    assert not (t.cells()[3] & (cells.ATTR_WIDE_LEFT | cells.ATTR_WIDE_RIGHT)).any()


def test_alignment_display() -> None:
    t = term(f"{CSI}2;3r{CSI}3;3H{ESC}#8", columns=3, lines=3)
    assert t.text_lines() == ["EEE"] * 3
    assert (t.cursor_x, t.cursor_y) == (0, 0)


# -- scrolling ---------------------------------------------------------------------


def test_linefeed_at_bottom_scrolls_and_reports() -> None:
    t = term("1\r\n2\r\n3", columns=3, lines=3)
    assert t.take_scrolls() == []
    t.feed(b"\r\n4")
    assert t.text_lines() == ["2  ", "3  ", "4  "]
    assert t.take_scrolls() == [(0, 2, 1)]
    assert t.take_scrolls() == []


def test_index_and_next_line_scroll_too() -> None:
    t = term("1\r\n2\r\n3", columns=3, lines=3)
    t.feed(f"{ESC}D{ESC}Ex".encode())
    assert t.text_lines() == ["3  ", "   ", "x  "]
    assert t.take_scrolls() == [(0, 2, 2)]


def test_scrolled_in_lines_use_current_background() -> None:
    t = term(f"1\r\n2\r\n3{CSI}45m\n", columns=3, lines=3)
    assert (t.cells()[2][2] == cells.indexed(5)).all()
    assert (t.cells()[2][:2] == cells.DEFAULT_COLOUR).all()


def test_scroll_region_linefeed() -> None:
    t = term("a\r\nb\r\nc\r\nd\r\ne", columns=3, lines=5)
    t.feed(f"{CSI}2;4r{CSI}4;1H\nX".encode())
    assert t.text_lines() == ["a  ", "c  ", "d  ", "X  ", "e  "]
    assert t.take_scrolls() == [(1, 3, 1)]


def test_linefeed_below_the_region_moves_without_scrolling() -> None:
    t = term(f"{CSI}1;2r{CSI}4;1H\n", columns=3, lines=5)
    assert t.cursor_y == 4
    t.feed(b"\n")
    assert t.cursor_y == 4
    assert t.take_scrolls() == []


def test_reverse_index_at_top_margin() -> None:
    t = term("a\r\nb\r\nc\r\nd", columns=3, lines=4)
    t.feed(f"{CSI}2;3r{CSI}2;1H{ESC}MX".encode())
    assert t.text_lines() == ["a  ", "X  ", "b  ", "d  "]
    assert t.take_scrolls() == [(1, 2, -1)]
    t.feed(f"{CSI}r{CSI}1;1H{ESC}M".encode())
    assert t.text_lines() == ["   ", "a  ", "X  ", "b  "]
    assert t.take_scrolls() == [(0, 3, -1)]


def test_su_and_sd() -> None:
    t = term("a\r\nb\r\nc\r\nd", columns=3, lines=4)
    t.feed(f"{CSI}2S".encode())
    assert t.text_lines() == ["c  ", "d  ", "   ", "   "]
    assert (t.cursor_x, t.cursor_y) == (1, 3)
    t.feed(f"{CSI}T".encode())
    assert t.text_lines() == ["   ", "c  ", "d  ", "   "]
    assert t.take_scrolls() == [(0, 3, 2), (0, 3, -1)]
    t.feed(f"{CSI}2;3r{CSI}S".encode())
    assert t.text_lines() == ["   ", "d  ", "   ", "   "]
    assert t.take_scrolls() == [(1, 2, 1)]


def test_sd_with_many_parameters_is_mouse_highlight_not_scroll() -> None:
    t = term("a\r\nb", columns=3, lines=3)
    t.feed(f"{CSI}1;2;3;4;5T".encode())
    assert t.text_lines() == ["a  ", "b  ", "   "]
    assert t.take_scrolls() == []


def test_insert_and_delete_lines() -> None:
    t = term("a\r\nb\r\nc\r\nd\r\ne", columns=3, lines=5)
    t.feed(f"{CSI}2;3H{CSI}2L".encode())
    assert t.text_lines() == ["a  ", "   ", "   ", "b  ", "c  "]
    assert (t.cursor_x, t.cursor_y) == (0, 1)
    assert t.take_scrolls() == [(1, 4, -2)]
    t.feed(f"{CSI}M".encode())
    assert t.text_lines() == ["a  ", "   ", "b  ", "c  ", "   "]
    assert t.take_scrolls() == [(1, 4, 1)]


def test_insert_lines_respects_region_and_outside_is_noop() -> None:
    t = term("a\r\nb\r\nc\r\nd\r\ne", columns=3, lines=5)
    t.feed(f"{CSI}2;4r{CSI}3;1H{CSI}L".encode())
    assert t.text_lines() == ["a  ", "b  ", "   ", "c  ", "e  "]
    assert t.take_scrolls() == [(2, 3, -1)]
    t.feed(f"{CSI}5;1H{CSI}L{CSI}M".encode())
    assert t.text_lines() == ["a  ", "b  ", "   ", "c  ", "e  "]
    assert t.take_scrolls() == []


def test_huge_counts_are_capped_to_the_region() -> None:
    t = term("a\r\nb\r\nc", columns=3, lines=3)
    t.feed(f"{CSI}2;1H{CSI}9999M".encode())
    assert t.text_lines() == ["a  ", "   ", "   "]
    assert t.take_scrolls() == [(1, 2, 2)]


def test_scroll_events_merge_and_stay_exact() -> None:
    t = term(columns=3, lines=4)
    t.feed(b"\n" * 3 + b"\n" * 10)
    assert t.take_scrolls() == [(0, 3, 4)]  # 10 shifts of a 4-row region: nothing survives


def test_scroll_replay_reconstructs_the_screen() -> None:
    """Applying the events to the old cells predicts every row; vacated rows are blank."""
    t = term("".join(f"{i}{i}{i}\r\n" for i in range(5)) + "555", columns=4, lines=6)
    t.take_scrolls()
    before = t.cells()[0].copy()
    t.feed(f"\n\n{CSI}2;5r{CSI}5;1H\n\n{CSI}2;1H{CSI}L{ESC}M{CSI}3;1H{CSI}2M{CSI}S{CSI}T".encode())
    shadow = before.copy()
    vacated = np.zeros(t.lines, dtype=bool)
    events = t.take_scrolls()
    assert len(events) >= 5
    for top, bottom, n in events:
        height = bottom - top + 1
        assert 0 < abs(n) <= height
        region = shadow[top : bottom + 1].copy()
        gone = vacated[top : bottom + 1].copy()
        if n > 0:
            shadow[top : bottom + 1 - n] = region[n:]
            vacated[top : bottom + 1 - n] = gone[n:]
            vacated[bottom + 1 - n : bottom + 1] = True
        else:
            shadow[top - n : bottom + 1] = region[: height + n]
            vacated[top - n : bottom + 1] = gone[: height + n]
            vacated[top : top - n] = True
    after = t.cells()[0]
    assert vacated.any()
    assert (~vacated).any()
    assert (after[~vacated] == shadow[~vacated]).all()
    assert (after[vacated] == cells.BLANK).all()


# -- cursor, margins, saved cursor -------------------------------------------------


def test_cursor_moves_and_clamps() -> None:
    t = term(f"{CSI}3;4H", columns=10, lines=5)
    assert (t.cursor_x, t.cursor_y) == (3, 2)
    t.feed(f"{CSI}99C{CSI}99B".encode())
    assert (t.cursor_x, t.cursor_y) == (9, 4)
    t.feed(f"{CSI}2D{CSI}A{CSI}G".encode())
    assert (t.cursor_x, t.cursor_y) == (0, 3)
    t.feed(f"{CSI}5`{CSI}2d".encode())
    assert (t.cursor_x, t.cursor_y) == (4, 1)


def test_save_and_restore_cursor_keep_one_slot_with_pen() -> None:
    t = term(f"{CSI}2;3H{CSI}31m{ESC}7{CSI}5;5H{CSI}0m{ESC}8X{ESC}8", columns=10, lines=5)
    assert cell(t, 2, 1)[:2] == ("X", cells.indexed(1))
    assert (t.cursor_x, t.cursor_y) == (2, 1)  # restoring twice gives the same
    t.feed(f"{CSI}4;4H{CSI}s{CSI}1;1H{CSI}uY".encode())
    assert cell(t, 3, 3)[0] == "Y"


def test_tabs() -> None:
    t = term("a\tb\tc", columns=20, lines=1)
    assert t.text_lines()[0] == "a       b       c   "
    t.feed(f"{CSI}Zd{CSI}2Ze\t\t\tf".encode())
    assert t.text_lines()[0] == "a       e       d  f"


def test_decom_cursor_to_line_does_not_crash() -> None:
    t = term(f"{CSI}?6h{CSI}3dX{CSI}2;4r{CSI}1dY{CSI}9dZ", columns=5, lines=5)
    assert t.handler_errors == 0
    # Without margins row 3 is absolute; with them rows count from the top margin.
    assert t.text_lines() == ["     ", "Y    ", "X    ", " Z   ", "     "]


# -- the screen directly -------------------------------------------------------------


def test_screen_never_creates_pyte_buffer() -> None:
    screen = CellScreen(10, 3)
    stream_text = "hi\x1b[2J\x1b[1;1Hx\x1b[K\x1b[L\x1b[M\x1b[@\x1b[P\x1b[X\x1b#8"
    Terminal(10, 3).feed(stream_text.encode())
    screen.draw("abc")
    assert not hasattr(screen, "buffer")


def test_draw_ignores_control_characters_given_directly() -> None:
    screen = CellScreen(10, 1)
    screen.draw("a\x01b\x9bc")
    assert screen.display == ["abc       "]


def test_resize_shrink_keeps_top_content_when_rows_below_cursor_are_blank() -> None:
    t = term("one\r\ntwo\r\nthree", columns=10, lines=10)
    t.resize(6, 4)
    assert t.text_lines() == ["one   ", "two   ", "three ", "      "]
    assert (t.cursor_x, t.cursor_y) == (5, 2)
    assert t.cells()[0].shape == (4, 6)


def test_resize_shrink_drops_top_rows_to_keep_cursor_row() -> None:
    t = term("\r\n".join(str(i) for i in range(8)), columns=4, lines=8)
    t.resize(4, 3)
    assert t.text_lines() == ["5   ", "6   ", "7   "]
    assert t.cursor_y == 2


def test_resize_grow_keeps_content_and_adds_blank() -> None:
    t = term(f"{CSI}44mab\r\ncd", columns=2, lines=2)
    t.resize(4, 3)
    assert t.text_lines() == ["ab  ", "cd  ", "    "]
    assert cell(t, 1, 1) == ("d", cells.DEFAULT_COLOUR, cells.indexed(4), 0)
    assert cell(t, 3, 1)[2] == cells.DEFAULT_COLOUR
    t.feed(b"\r\nxyzw")
    assert t.text_lines() == ["ab  ", "cd  ", "xyzw"]


def test_resize_cuts_wide_character_cleanly_and_fixes_tabs() -> None:
    t = term("abc中", columns=6, lines=1)
    t.resize(4, 1)
    assert t.text_lines() == ["abc "]
    assert not (t.cells()[3] & (cells.ATTR_WIDE_LEFT | cells.ATTR_WIDE_RIGHT)).any()
    t.resize(20, 1)
    t.feed(b"\r\t\t|")
    assert t.text_lines()[0][16] == "|"


def test_private_sgr_called_directly_is_ignored() -> None:
    """pyte's own parser calls ``select_graphic_rendition(4, private=True)`` for CSI ? 4 m."""
    screen = CellScreen(5, 1)
    screen.select_graphic_rendition(31)
    screen.select_graphic_rendition(4, private=True)
    screen.select_graphic_rendition(0, private=True)
    screen.draw("x")
    _chars, fg, _bg, attrs = screen.cells()
    assert (int(fg[0, 0]), int(attrs[0, 0])) == (cells.indexed(1), 0)


@pytest.mark.parametrize(
    "name",
    [
        "insert_characters",
        "delete_characters",
        "erase_characters",
        "erase_in_line",
        "erase_in_display",
        "insert_lines",
        "delete_lines",
        "scroll_up",
        "cursor_up",
        "cursor_down",
        "cursor_to_line",
        "cursor_forward_tab",
        "cursor_back_tab",
        "repeat_character",
        "set_margins",
        "save_cursor",
        "restore_cursor",
        "set_mode",
        "reset_mode",
        "select_graphic_rendition",
        "report_device_attributes",
        "report_device_status",
        "soft_reset",
        "cursor_position",
        "clear_tab_stop",
        "scroll_down",
        "set_cursor_style",
        "linefeed",
        "index",
        "reverse_index",
    ],
)
def test_overridden_csi_handlers_accept_private_keyword(name: str) -> None:
    screen = CellScreen(5, 3)
    getattr(screen, name)(1, private=True)


def test_stock_pyte_parser_drives_cell_screen() -> None:
    """Others may still attach pyte's own stream: the screen must cope with it."""
    screen = CellScreen(10, 2)
    pyte.ByteStream(screen).feed(b"\x1b[31mab\x1b[?4mc\x1b[2;1Hd\x1b[K")
    assert screen.display == ["abc       ", "d         "]
    assert int(screen.cells()[1][0, 2]) == cells.indexed(1)
