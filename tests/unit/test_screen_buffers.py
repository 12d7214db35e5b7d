"""The alternate screen (47/1047/1048/1049), the primary screen's history and its views.

Expected screens are written out by hand from xterm's documented behaviour
(ctlseqs "Alternate Screen Buffer", and ``xtermScroll`` keeping lines that
leave a region whose top margin is row 0).
"""

from __future__ import annotations

import pytest

from vzvnc.term import cells
from vzvnc.term.terminal import Terminal

ESC = "\x1b"
CSI = "\x1b["


def term(text: str = "", columns: int = 4, lines: int = 3, history: int = 2000) -> Terminal:
    t = Terminal(columns, lines, history=history)
    t.feed(text.encode())
    return t


def numbered(count: int) -> str:
    """Lines "0", "1", ... separated by CR LF (no newline after the last)."""
    return "\r\n".join(str(i) for i in range(count))


# -- the alternate screen ----------------------------------------------------------


def test_1049_saves_cursor_switches_clears_and_restores() -> None:
    t = term(f"one\r\ntwo{CSI}?1049h", columns=5)
    assert t.alternate_screen
    assert t.text_lines() == ["     "] * 3
    assert (t.cursor_x, t.cursor_y) == (3, 1)  # the cursor does not move on the switch
    t.feed(f"{CSI}HALT{CSI}3;2Hx".encode())
    assert t.text_lines() == ["ALT  ", "     ", " x   "]
    t.feed(f"{CSI}?1049l".encode())
    assert not t.alternate_screen
    assert t.text_lines() == ["one  ", "two  ", "     "]
    assert (t.cursor_x, t.cursor_y) == (3, 1)


def test_1049_clears_the_alternate_screen_each_time() -> None:
    t = term(f"{CSI}?1049hold{CSI}?1049l{CSI}?1049h")
    assert t.text_lines() == ["    "] * 3


def test_1049_clears_with_the_current_background() -> None:
    t = term(f"{CSI}44m{CSI}?1049h")
    assert (t.cells()[2] == cells.indexed(4)).all()


def test_47_keeps_the_alternate_content_and_does_not_move_the_cursor() -> None:
    t = term(f"ab{CSI}?47hXY{CSI}?47l")
    assert t.text_lines() == ["ab  ", "    ", "    "]
    assert (t.cursor_x, t.cursor_y) == (3, 0)  # shared cursor, no restore
    t.feed(f"{CSI}?47h".encode())
    assert t.text_lines() == ["  XY", "    ", "    "]


def test_1047_clears_the_alternate_screen_when_leaving_it() -> None:
    t = term(f"{CSI}?1047hXY{CSI}?1047l")
    assert t.text_lines() == ["    "] * 3
    t.feed(f"{CSI}?47h".encode())
    assert t.text_lines() == ["    "] * 3


def test_leaving_when_not_in_the_alternate_screen_changes_nothing() -> None:
    t = term(f"ab{CSI}?47l{CSI}?1047l")
    assert t.text_lines() == ["ab  ", "    ", "    "]
    assert not t.alternate_screen


def test_1048_saves_and_restores_the_cursor() -> None:
    t = term(f"{CSI}2;3H{CSI}?1048h{CSI}H{CSI}?1048lX")
    assert t.text_lines() == ["    ", "  X ", "    "]
    assert not t.alternate_screen


def test_each_buffer_has_its_own_saved_cursor() -> None:
    t = term(f"{CSI}2;3H{ESC}7{CSI}?47h{CSI}3;4H{ESC}7{CSI}H{ESC}8")
    assert (t.cursor_x, t.cursor_y) == (3, 2)
    t.feed(f"{CSI}?47l{ESC}8".encode())
    assert (t.cursor_x, t.cursor_y) == (2, 1)


def test_1049_twice_restores_the_first_save() -> None:
    """xterm: the second 1049h saves into the alternate screen's slot; 1049l restores the
    primary screen's."""
    t = term(f"{CSI}2;2H{CSI}?1049h{CSI}3;3H{CSI}?1049h{CSI}3;4H{CSI}?1049l")
    assert not t.alternate_screen
    assert (t.cursor_x, t.cursor_y) == (1, 1)


def test_pen_and_modes_are_shared_between_buffers() -> None:
    t = term(f"{CSI}31m{CSI}?1049hA{CSI}?25l{CSI}?1049lB")
    assert int(t.cells()[1][0, 0]) == cells.indexed(1)
    assert not t.cursor_visible


def test_alternate_screen_adds_nothing_to_history() -> None:
    t = term(f"{CSI}?1049h" + numbered(10) + f"{CSI}S{CSI}M")
    assert t.history_size == 0
    assert t.text_lines() == ["8   ", "9   ", "    "]
    t.feed(f"{CSI}?1049l".encode())
    assert t.history_size == 0
    assert t.text_lines() == ["    "] * 3


def test_views_show_the_alternate_screen_whatever_the_offset() -> None:
    t = term(numbered(5) + f"{CSI}?1049hALT")
    assert t.history_size == 2
    assert t.view_text(2) == t.text_lines() == ["    ", "    ", " ALT"]
    for mine, live in zip(t.view_cells(2), t.cells(), strict=True):
        assert (mine == live).all()


def test_switching_drops_pending_scroll_events() -> None:
    t = term(numbered(5))
    t.feed(f"{CSI}?1049h".encode())
    assert t.take_scrolls() == []
    t.feed(b"\r\n")
    assert t.take_scrolls() == [(0, 2, 1)]
    t.feed(f"{CSI}?1049l".encode())
    assert t.take_scrolls() == []


def test_resize_keeps_both_buffers_and_moves_the_saved_cursor() -> None:
    t = term(numbered(4), columns=4, lines=4)
    t.feed(f"{CSI}?1049h{CSI}1;1Halt".encode())
    t.resize(3, 2)
    # The primary screen's saved cursor (row 3) stands for its cursor: rows 0-1 go to history.
    assert t.history_size == 2
    assert t.text_lines() == ["alt", "   "]
    t.feed(f"{CSI}?1049l".encode())
    assert t.text_lines() == ["2  ", "3  "]
    assert (t.cursor_x, t.cursor_y) == (1, 1)
    assert t.view_text(2) == ["0  ", "1  "]


def test_ris_leaves_the_alternate_screen_and_clears_history() -> None:
    t = term(numbered(6) + f"{CSI}?1049hx{ESC}c")
    assert not t.alternate_screen
    assert t.history_size == 0
    assert t.text_lines() == ["    "] * 3
    assert (t.cursor_x, t.cursor_y) == (0, 0)


# -- history ---------------------------------------------------------------------------


def test_lines_scrolled_off_the_top_enter_history_in_order() -> None:
    t = term(numbered(6))
    assert t.text_lines() == ["3   ", "4   ", "5   "]
    assert t.history_size == 3
    assert t.view_text(1) == ["2   ", "3   ", "4   "]
    assert t.view_text(3) == ["0   ", "1   ", "2   "]


def test_view_offset_is_clamped_and_zero_is_the_live_screen() -> None:
    t = term(numbered(5))
    assert t.view_text(-4) == t.view_text(0) == t.text_lines() == ["2   ", "3   ", "4   "]
    assert t.view_text(99) == t.view_text(2) == ["0   ", "1   ", "2   "]
    for mine, live in zip(t.view_cells(0), t.cells(), strict=True):
        assert (mine == live).all()


def test_view_deeper_than_a_screen_shows_only_history() -> None:
    t = term(numbered(9))
    assert t.history_size == 6
    assert t.view_text(5) == ["1   ", "2   ", "3   "]
    assert t.view_text(6) == ["0   ", "1   ", "2   "]


def test_history_is_bounded_and_keeps_the_newest() -> None:
    t = term(numbered(10), history=3)
    assert t.history_size == 3
    assert t.view_text(3) == ["4   ", "5   ", "6   "]
    t.feed(b"\r\n\r\n")
    assert t.history_size == 3
    assert t.view_text(3) == ["6   ", "7   ", "8   "]


def test_no_history_when_disabled() -> None:
    t = term(numbered(10), history=0)
    assert t.history_size == 0
    assert t.view_text(5) == t.text_lines() == ["7   ", "8   ", "9   "]


def test_negative_history_is_refused() -> None:
    with pytest.raises(ValueError):
        Terminal(4, 3, history=-1)


def test_wrapping_text_scrolls_into_history() -> None:
    t = term("abcdefghijklmnop", columns=4, lines=2)
    assert t.text_lines() == ["ijkl", "mnop"]
    assert t.view_text(2) == ["abcd", "efgh"]


def test_region_starting_at_row_0_feeds_history_whatever_its_bottom() -> None:
    """xterm's ``scroll_all_lines``: top margin 0 on the primary screen."""
    t = term(f"a\r\nb\r\nc{CSI}1;2r{CSI}2;1H\nX")
    assert t.text_lines() == ["b   ", "X   ", "c   "]
    assert t.history_size == 1
    assert t.view_text(1) == ["a   ", "b   ", "X   "]


def test_region_below_row_0_feeds_no_history() -> None:
    t = term(f"a\r\nb\r\nc{CSI}2;3r{CSI}3;1H\n\n")
    assert t.text_lines() == ["a   ", "    ", "    "]
    assert t.history_size == 0


def test_scroll_up_feeds_history_and_scroll_down_takes_nothing_back() -> None:
    t = term(f"a\r\nb\r\nc{CSI}2S")
    assert t.text_lines() == ["c   ", "    ", "    "]
    assert t.view_text(2) == ["a   ", "b   ", "c   "]
    t.feed(f"{CSI}2T{CSI}H{ESC}M".encode())
    assert t.history_size == 2
    assert t.text_lines() == ["    ", "    ", "    "]


def test_delete_lines_on_row_0_feeds_history_elsewhere_not() -> None:
    """xterm's ``DeleteLine``: lines deleted at row 0 of the primary screen are kept."""
    t = term(f"a\r\nb\r\nc{CSI}2;1H{CSI}M")
    assert t.history_size == 0
    assert t.text_lines() == ["a   ", "c   ", "    "]
    t.feed(f"{CSI}H{CSI}M".encode())
    assert t.history_size == 1
    assert t.view_text(1) == ["a   ", "c   ", "    "]


def test_insert_lines_and_erase_display_feed_no_history() -> None:
    t = term(f"a\r\nb\r\nc{CSI}H{CSI}2L{CSI}2J")
    assert t.history_size == 0


def test_ed3_clears_history_only() -> None:
    t = term(numbered(5) + f"{CSI}3J")
    assert t.history_size == 0
    assert t.text_lines() == ["2   ", "3   ", "4   "]
    t.feed(b"\r\nx")
    assert t.view_text(1) == ["2   ", "3   ", "4   "]


def test_ed3_in_the_alternate_screen_clears_the_primary_history() -> None:
    t = term(numbered(5) + f"{CSI}?1049h{CSI}3J")
    assert t.history_size == 0


def test_history_keeps_colours_attributes_and_wide_characters() -> None:
    t = term(f"{CSI}1;31;44m中x{CSI}m\r\n\r\n\r\n", columns=4, lines=3)
    chars, fg, bg, attrs = t.view_cells(1)
    assert chr(int(chars[0, 0])) == chr(int(chars[0, 1])) == "中"
    assert chr(int(chars[0, 2])) == "x"
    assert int(fg[0, 2]) == cells.indexed(1)
    assert int(bg[0, 2]) == cells.indexed(4)
    assert int(attrs[0, 0]) == cells.ATTR_BOLD | cells.ATTR_WIDE_LEFT
    assert int(attrs[0, 1]) == cells.ATTR_BOLD | cells.ATTR_WIDE_RIGHT
    assert t.view_text(1)[0] == "中x "


def test_recycled_rows_come_back_blank() -> None:
    t = term(f"{CSI}41m" + "wxyz" * 20, columns=4, lines=2, history=2)
    t.feed(f"{CSI}m\r\n\r\n".encode())
    chars, _fg, bg, attrs = t.cells()
    assert (chars == cells.BLANK).all()
    assert (bg == cells.DEFAULT_COLOUR).all()
    assert not attrs.any()


def test_view_cells_are_fresh_copies() -> None:
    t = term(numbered(5))
    chars = t.view_cells(2)[0]
    chars[:] = ord("z")
    assert t.view_text(2) == ["0   ", "1   ", "2   "]


def test_shrinking_moves_top_rows_into_history() -> None:
    t = term(numbered(4), columns=4, lines=4)
    t.resize(4, 2)
    assert t.text_lines() == ["2   ", "3   "]
    assert t.view_text(2) == ["0   ", "1   "]


def test_shrinking_drops_blank_rows_below_the_cursor_first() -> None:
    t = term("a\r\nb", columns=4, lines=4)
    t.resize(4, 2)
    assert t.text_lines() == ["a   ", "b   "]
    assert t.history_size == 0


def test_resize_keeps_history_and_cuts_or_pads_its_columns() -> None:
    t = term("abcd\r\nef中\r\nx\r\ny", columns=4, lines=2)
    assert t.view_text(2) == ["abcd", "ef中"]
    t.resize(3, 2)
    assert t.view_text(2) == ["abc", "ef "]
    chars, _fg, _bg, attrs = t.view_cells(2)
    assert not (attrs & (cells.ATTR_WIDE_LEFT | cells.ATTR_WIDE_RIGHT)).any()
    assert chars[1, 2] == cells.BLANK
    t.resize(5, 2)
    assert t.view_text(2) == ["abc  ", "ef   "]
    assert t.text_lines() == ["x    ", "y    "]


def test_resize_shrinking_below_history_limit_keeps_the_newest() -> None:
    t = term(numbered(6), columns=4, lines=3, history=4)
    assert t.history_size == 3
    t.resize(4, 1)
    assert t.history_size == 4
    assert t.view_text(4) == ["1   "]
    assert t.text_lines() == ["5   "]
    assert [t.view_text(n)[0] for n in range(1, 5)] == ["4   ", "3   ", "2   ", "1   "]


def test_growing_does_not_pull_history_back() -> None:
    t = term(numbered(5))
    t.resize(4, 5)
    assert t.text_lines() == ["2   ", "3   ", "4   ", "    ", "    "]
    assert t.history_size == 2


def test_history_survives_many_scrolls_with_growth() -> None:
    """The storage grows in steps; the content stays in order across them."""
    t = term(numbered(300), columns=4, lines=3, history=250)
    assert t.history_size == 250
    assert t.view_text(250)[0] == "47  "
    assert t.view_text(1) == ["296 ", "297 ", "298 "]
    expected = [f"{i:<4}" for i in range(47, 300)]
    seen = [t.view_text(n)[0] for n in range(250, 0, -1)] + t.text_lines()
    assert seen == expected


def test_view_cells_shape_and_dtype() -> None:
    t = term(numbered(7))
    for array in t.view_cells(3):
        assert array.shape == (3, 4)
    chars, fg, bg, attrs = t.view_cells(3)
    assert chars.dtype == cells.CHAR_DTYPE
    assert fg.dtype == bg.dtype == cells.COLOUR_DTYPE
    assert attrs.dtype == cells.ATTR_DTYPE
    assert "".join(chr(int(c)) for c in chars[0]) == "1   "


def test_resize_under_47_uses_the_shared_cursor_for_the_primary_screen() -> None:
    t = term(numbered(2) + f"{CSI}?47h", columns=4, lines=4)
    t.resize(4, 2)
    t.feed(f"{CSI}?47l".encode())
    assert t.text_lines() == ["0   ", "1   "]
    assert t.history_size == 0
