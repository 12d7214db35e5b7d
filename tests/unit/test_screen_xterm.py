"""Cursor, margins, editing, tabs, resets and modes, against xterm's documented behaviour.

Each expected screen is written out by hand. Where xterm and pyte differ, the
test names the xterm rule (``ctlseqs``, or the function in xterm's source).
"""

from __future__ import annotations

import pytest

from vzvnc.term import cells
from vzvnc.term.terminal import Terminal

ESC = "\x1b"
CSI = "\x1b["


def term(text: str = "", columns: int = 5, lines: int = 3) -> Terminal:
    t = Terminal(columns, lines)
    t.feed(text.encode())
    return t


def cursor(t: Terminal) -> tuple[int, int]:
    return t.cursor_x, t.cursor_y


# -- the pending wrap ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("motion", "expected"),
    [
        # xterm's CursorUp/CursorDown/CursorSet/xtermIndex all ResetWrap: the next
        # character lands on the last column instead of wrapping.
        (f"{CSI}A", ["abcdX", "12345", "     "]),
        (f"{CSI}B", ["abcde", "1234X", "     "]),
        ("\n", ["abcde", "1234X", "     "]),
        (f"{ESC}D", ["abcde", "1234X", "     "]),
        (f"{ESC}M", ["    X", "abcde", "12345"]),  # RI on the top margin scrolls down
        (f"{CSI}2d", ["abcde", "1234X", "     "]),
        (f"{CSI}1;5H", ["abcdX", "12345", "     "]),
        (f"{CSI}5G", ["abcdX", "12345", "     "]),
        (f"{CSI}C", ["abcdX", "12345", "     "]),
        (f"{CSI}K", ["abcdX", "12345", "     "]),
        (f"{CSI}X", ["abcdX", "12345", "     "]),
    ],
)
def test_motions_and_edits_end_the_pending_wrap(motion: str, expected: list[str]) -> None:
    t = term(f"\r\n12345{CSI}1;1Habcde")
    assert cursor(t) == (4, 0)
    t.feed(f"{motion}X".encode())
    assert t.text_lines() == expected


def test_linefeed_at_the_bottom_ends_the_pending_wrap() -> None:
    t = term("\r\n\r\nabcde\nX")
    assert t.text_lines() == ["     ", "abcde", "    X"]


def test_backspace_in_pending_wrap_goes_to_the_second_last_column() -> None:
    t = term("abcde\x08X")
    assert t.text_lines()[0] == "abcXe"


def test_decsc_saves_the_pending_wrap() -> None:
    """xterm's CursorSave keeps ``do_wrap``; DECRC restores it (``wrap_flag``)."""
    t = term(f"abcde{ESC}7{CSI}3;1H{ESC}8X")
    assert t.text_lines() == ["abcde", "X    ", "     "]


# -- cursor addressing and origin mode ------------------------------------------------------


def test_cup_in_origin_mode_counts_from_the_top_margin_and_clamps_to_the_bottom() -> None:
    t = term(f"{CSI}2;3r{CSI}?6h{CSI}1;1HA{CSI}9;9HB", lines=4)
    assert t.text_lines() == ["     ", "A    ", "    B", "     "]


def test_cup_outside_origin_mode_clamps_to_the_screen() -> None:
    t = term(f"{CSI}2;3r{CSI}9;9HB", lines=4)
    assert t.text_lines() == ["     ", "     ", "     ", "    B"]


def test_decom_homes_to_the_top_margin_on_set_and_to_row_0_on_reset() -> None:
    t = term(f"{CSI}2;3r{CSI}3;3H{CSI}?6h", lines=4)
    assert cursor(t) == (0, 1)
    t.feed(f"{CSI}3;3H{CSI}?6l".encode())
    assert cursor(t) == (0, 0)


def test_origin_mode_motion_stays_inside_the_region() -> None:
    t = term(f"{CSI}2;3r{CSI}?6h{CSI}9B{CSI}9d", lines=4)
    assert cursor(t) == (0, 2)
    t.feed(f"{CSI}9A".encode())
    assert cursor(t) == (0, 1)


def test_decrc_in_origin_mode_keeps_the_row_inside_the_margins() -> None:
    t = term(f"{CSI}?6h{CSI}4;1H{ESC}7{CSI}2;3r{ESC}8X", lines=4)
    # Saved absolute row 3 with DECOM on; the margins set since end at row 2.
    assert t.text_lines() == ["     ", "     ", "X    ", "     "]


def test_decrc_without_save_homes_resets_rendition_and_charsets() -> None:
    t = term(f"{CSI}?6h{CSI}31m{ESC}(0{CSI}3;3H{ESC}8q")
    assert t.text_lines()[0] == "q    "
    assert int(t.cells()[1][0, 0]) == cells.DEFAULT_COLOUR


def test_hpa_vpa_hpr_vpr_hpb_vpb() -> None:
    t = term(f"{CSI}3`{CSI}2d", lines=4)
    assert cursor(t) == (2, 1)
    t.feed(f"{CSI}2a{CSI}e".encode())  # HPR, VPR
    assert cursor(t) == (4, 2)
    t.feed(f"{CSI}3j{CSI}2k".encode())  # HPB, VPB
    assert cursor(t) == (1, 0)


def test_cnl_and_cpl() -> None:
    t = term(f"{CSI}2;4H{CSI}E", lines=4)
    assert cursor(t) == (0, 2)
    t.feed(f"{CSI}1;4H{CSI}3;3H{CSI}2F".encode())
    assert cursor(t) == (0, 0)


# -- scrolling regions and lines ---------------------------------------------------------


def test_il_and_dl_move_to_column_0_even_outside_the_region() -> None:
    """xterm's CASE_IL / CASE_DL set the column to the left margin before anything."""
    t = term(f"a\r\nb\r\nc\r\nd{CSI}2;3r{CSI}4;3H{CSI}L", lines=4)
    assert t.text_lines() == ["a    ", "b    ", "c    ", "d    "]
    assert cursor(t) == (0, 3)
    t.feed(f"{CSI}2;3H{CSI}M".encode())
    assert t.text_lines() == ["a    ", "c    ", "     ", "d    "]
    assert cursor(t) == (0, 1)


def test_il_and_dl_use_the_current_background() -> None:
    t = term(f"a\r\nb\r\nc{CSI}42m{CSI}1;1H{CSI}L{CSI}3;1H{CSI}M")
    _chars, _fg, bg, _attrs = t.cells()
    assert (bg[0] == cells.indexed(2)).all()
    assert (bg[2] == cells.indexed(2)).all()
    assert (bg[1] == cells.DEFAULT_COLOUR).all()
    assert t.text_lines() == ["     ", "a    ", "     "]


def test_su_and_sd_inside_a_region_with_background() -> None:
    t = term(f"a\r\nb\r\nc\r\nd{CSI}2;3r{CSI}44m{CSI}S", lines=4)
    assert t.text_lines() == ["a    ", "c    ", "     ", "d    "]
    assert (t.cells()[2][2] == cells.indexed(4)).all()
    t.feed(f"{CSI}2T".encode())
    assert t.text_lines() == ["a    ", "     ", "     ", "d    "]


def test_decstbm_invalid_is_ignored_and_valid_homes() -> None:
    t = term(f"{CSI}2;2H{CSI}3;2r", lines=4)
    assert cursor(t) == (1, 1)
    t.feed(f"{CSI}2;3r".encode())
    assert cursor(t) == (0, 0)


# -- editing with background colour erase ------------------------------------------------


def test_ech_erases_with_background_and_clears_wide_halves() -> None:
    t = term(f"a中bc{CSI}45m{CSI}1;3H{CSI}2X", columns=6, lines=1)
    assert t.text_lines() == ["a   c "]
    _chars, _fg, bg, attrs = t.cells()
    assert [int(v) for v in bg[0]] == [0, 0, cells.indexed(5), cells.indexed(5), 0, 0]
    assert not (attrs & (cells.ATTR_WIDE_LEFT | cells.ATTR_WIDE_RIGHT)).any()


def test_ich_and_dch_counts_are_capped_at_the_line() -> None:
    t = term(f"abcde{CSI}1;2H{CSI}99@", lines=1)
    assert t.text_lines() == ["a    "]
    t = term(f"abcde{CSI}1;2H{CSI}99P", lines=1)
    assert t.text_lines() == ["a    "]


def test_insert_mode_pushes_text_off_the_right_edge() -> None:
    t = term(f"abcde{CSI}4h{CSI}1;2HXY", lines=1)
    assert t.text_lines() == ["aXYbc"]
    assert cursor(t) == (3, 0)


def test_insert_mode_with_a_wide_character() -> None:
    t = term(f"abcde{CSI}4h{CSI}1;1H中", lines=1)
    assert t.text_lines() == ["中abc"]


def test_insert_mode_reset_overwrites_again() -> None:
    t = term(f"abcde{CSI}4h{CSI}4l{CSI}1;1HX", lines=1)
    assert t.text_lines() == ["Xbcde"]


def test_autowrap_off_keeps_overwriting_the_last_column() -> None:
    t = term(f"{CSI}?7labcdefg", lines=2)
    assert t.text_lines() == ["abcdg", "     "]
    assert cursor(t) == (4, 0)
    # xterm's dotext sets do_wrap at the margin whatever DECAWM says; with autowrap
    # back on, the next character wraps.
    t.feed(f"{CSI}?7hh".encode())
    assert t.text_lines() == ["abcdg", "h    "]


# -- repeat ---------------------------------------------------------------------------------


def test_rep_wraps_and_scrolls_like_printing() -> None:
    t = term(f"a{CSI}10b", columns=4, lines=3)
    assert t.text_lines() == ["aaaa", "aaaa", "aaa "]
    assert cursor(t) == (3, 2)


def test_rep_repeats_the_character_through_the_current_charset() -> None:
    """xterm's CASE_REP sends ``lastchar`` through ``dotext`` with the current GL set."""
    t = term(f"{ESC}(0q{ESC}(B{CSI}2b")
    assert t.text_lines()[0] == "─qq  "


def test_rep_after_a_control_sequence_still_repeats() -> None:
    t = term(f"x{CSI}31m{CSI}2b")
    assert t.text_lines()[0] == "xxx  "
    assert int(t.cells()[1][0, 2]) == cells.indexed(1)


def test_rep_after_a_zero_width_character_does_nothing() -> None:
    t = term(f"e\u0301{CSI}3b")
    assert t.text_lines()[0] == "e\u0301    "


def test_rep_with_nothing_printed_does_nothing() -> None:
    t = term(f"{CSI}5b")
    assert t.text_lines()[0] == "     "


def test_rep_with_a_huge_count_equals_printing_that_many() -> None:
    count = 65535
    repeated = Terminal(7, 3, history=5)
    repeated.feed(f"ab{CSI}{count}b".encode())
    printed = Terminal(7, 3, history=5)
    printed.feed(("ab" + "b" * count).encode())
    assert repeated.text_lines() == printed.text_lines()
    assert cursor(repeated) == cursor(printed)
    assert repeated.history_size == printed.history_size == 5
    assert repeated.view_text(5) == printed.view_text(5)
    wide = Terminal(7, 3, history=5)
    wide.feed(f"中{CSI}{count}b".encode())
    printed = Terminal(7, 3, history=5)
    printed.feed(("中" * (count + 1)).encode())
    assert wide.text_lines() == printed.text_lines() == ["中中中 ", "中中中 ", "中     "]
    assert cursor(wide) == cursor(printed)


# -- tabs --------------------------------------------------------------------------------------


def test_default_tab_stops_every_eight_columns_and_last_column() -> None:
    t = term("\tA\tB\tC", columns=20, lines=1)
    assert t.text_lines() == ["        A       B  C"]


def test_hts_and_tbc() -> None:
    t = term(f"{CSI}3g{CSI}1;4H{ESC}H{CSI}1;7H{ESC}H\r\tA\tB\tC", columns=10, lines=1)
    assert t.text_lines() == ["   A  B  C"]
    t.feed(f"{CSI}1;4H{CSI}g\r\tX".encode())  # TBC 0 clears the stop at column 3
    assert t.text_lines() == ["   A  X  C"]


def test_tbc_other_values_are_ignored() -> None:
    t = term(f"{CSI}1g{CSI}2g{CSI}4g\tX", columns=10, lines=1)
    assert t.text_lines() == ["        X "]


def test_cht_and_cbt() -> None:
    t = term(f"{CSI}2IA{CSI}3ZB{CSI}ZC", columns=30, lines=1)
    # Two stops on to 16; three back from 17 (16, 8, 0); then none left before 1.
    assert t.text_lines() == ["C               A" + " " * 13]
    t = term(f"{CSI}1;20H{CSI}ZX{CSI}2ZY", columns=30, lines=1)
    assert t.text_lines() == [" " * 8 + "Y" + " " * 7 + "X" + " " * 13]


def test_tab_stops_survive_decstr_not_ris() -> None:
    t = term(f"{CSI}3g{CSI}1;3H{ESC}H{CSI}!p\r\tA", columns=10, lines=1)
    assert t.text_lines() == ["  A       "]
    t.feed(f"{ESC}c\tB".encode())
    assert t.text_lines() == ["        B "]


# -- resets ----------------------------------------------------------------------------------


def test_decstr_keeps_cells_and_cursor_resets_modes_pen_margins_and_saved_cursor() -> None:
    t = term(
        f"ab{CSI}2;3r{CSI}4h{CSI}?1h{ESC}={CSI}31m{CSI}?25l{CSI}4 q{ESC}(0"
        f"{CSI}3;3H{ESC}7{CSI}2;2H{CSI}!p",
        lines=4,
    )
    assert t.text_lines()[0] == "ab   "
    assert cursor(t) == (1, 1)
    assert (t.application_cursor_keys, t.application_keypad) == (False, False)
    assert t.cursor_visible
    assert t.cursor_shape == 0
    t.feed(b"q")  # ASCII again, no insert, default pen
    assert t.text_lines()[1] == " q   "
    assert int(t.cells()[1][1, 1]) == cells.DEFAULT_COLOUR
    t.feed(f"{CSI}4;1H\n".encode())  # margins reset: LF at the last row scrolls the screen
    assert t.text_lines()[0] == " q   "
    t.feed(f"{ESC}8".encode())  # the DECSC slot now says "home"
    assert cursor(t) == (0, 0)


def test_decstr_keeps_mouse_and_bracketed_paste() -> None:
    t = term(f"{CSI}?1002h{CSI}?2004h{CSI}!p")
    assert t.mouse_mode == 1002
    assert t.bracketed_paste


def test_ris_resets_everything_but_the_title() -> None:
    t = term(
        f"{ESC}]2;kept\x07ab{CSI}?1003h{CSI}?1006h{CSI}?1004h{CSI}?2004h{CSI}6 q"
        f"{CSI}2;3r{CSI}?7l{ESC}c"
    )
    assert t.text_lines() == ["     "] * 3
    assert t.title == "kept"
    assert t.mouse_mode == 0
    assert not (t.mouse_sgr or t.focus_events or t.bracketed_paste)
    assert t.cursor_shape == 0
    t.feed(b"abcdefg\n")  # autowrap on, full-screen region
    assert t.text_lines() == ["abcde", "fg   ", "     "]


# -- modes that change input ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sequence", "expected"),
    [
        ("", 0),
        (f"{CSI}?9h", 9),
        (f"{CSI}?1000h", 1000),
        (f"{CSI}?1002h", 1002),
        (f"{CSI}?1003h", 1003),
        (f"{CSI}?1000h{CSI}?1002h", 1002),
        (f"{CSI}?1003h{CSI}?1000h", 1000),  # one at a time: the last set wins (xterm)
        (f"{CSI}?1000;1003h", 1003),
        (f"{CSI}?1002h{CSI}?1000l", 0),  # resetting any turns tracking off (xterm)
        (f"{CSI}?1000h{CSI}?1001h", 1000),  # highlight tracking: not supported, ignored
        (f"{CSI}1000h", 0),  # needs the private marker
    ],
)
def test_mouse_tracking_mode(sequence: str, expected: int) -> None:
    assert term(sequence).mouse_mode == expected


@pytest.mark.parametrize(
    ("sequence", "sgr", "encoding"),
    [
        ("", False, 0),
        (f"{CSI}?1006h", True, 1006),
        (f"{CSI}?1005h", False, 1005),
        (f"{CSI}?1015h", False, 1015),
        (f"{CSI}?1006h{CSI}?1015h", False, 1015),
        (f"{CSI}?1006h{CSI}?1015l", True, 1006),  # a reset only clears the matching one
        (f"{CSI}?1006h{CSI}?1006l", False, 0),
        (f"{CSI}?1016h", False, 0),  # SGR pixels: not supported, ignored
    ],
)
def test_mouse_encoding(sequence: str, sgr: bool, encoding: int) -> None:
    t = term(sequence)
    assert (t.mouse_sgr, t.mouse_encoding) == (sgr, encoding)
    assert t.text_lines() == ["     "] * 3


def test_focus_events_mode() -> None:
    t = term(f"{CSI}?1004h")
    assert t.focus_events
    t.feed(f"{CSI}?1004l".encode())
    assert not t.focus_events


@pytest.mark.parametrize(
    ("sequence", "shape"),
    [
        ("", 0),
        (f"{CSI} q", 0),
        (f"{CSI}1 q", 1),
        (f"{CSI}2 q", 2),
        (f"{CSI}3 q", 3),
        (f"{CSI}4 q", 4),
        (f"{CSI}5 q", 5),
        (f"{CSI}6 q", 6),
        (f"{CSI}4 q{CSI}7 q", 4),  # out of range: ignored
        (f"{CSI}4 q{CSI}? 2 q", 4),  # private marker: not DECSCUSR
        (f"{CSI}4 q{CSI}2q", 4),  # no intermediate: not DECSCUSR
        (f"{CSI}2 q{CSI}0 q", 0),
    ],
)
def test_cursor_shape_decscusr(sequence: str, shape: int) -> None:
    t = term(sequence)
    assert t.cursor_shape == shape
    assert t.text_lines() == ["     "] * 3
