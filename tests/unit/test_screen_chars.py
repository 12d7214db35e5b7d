"""Characters: DEC line drawing in UTF-8 mode, wide characters, combining and zero-width ones.

The width policy under test is the one in ``screen.py``'s docstring: each code
point's own ``wcwidth`` (0.7.0), no shaping of sequences.
"""

from __future__ import annotations

import pytest

from vzvnc.term import cells
from vzvnc.term.terminal import Terminal

ESC = "\x1b"
CSI = "\x1b["
SO = "\x0e"
SI = "\x0f"
WIDE = cells.ATTR_WIDE_LEFT | cells.ATTR_WIDE_RIGHT


def term(text: str = "", columns: int = 6, lines: int = 2) -> Terminal:
    t = Terminal(columns, lines)
    t.feed(text.encode())
    return t


# -- DEC special graphics ------------------------------------------------------------------


def test_g0_line_drawing_maps_the_vt100_set() -> None:
    # The DEC Special Graphics set (VT100 User Guide, table 3-9).
    t = term(f"{ESC}(0jklmnqtuvwx`a~{ESC}(Bjq", columns=18, lines=1)
    assert t.text_lines() == ["┘┐┌└┼─├┤┴┬│◆▒·jq  "]


def test_g1_line_drawing_with_shift_out_and_shift_in() -> None:
    t = term(f"{ESC})0a{SO}lqk{SI}q{SO}x", columns=8, lines=1)
    assert t.text_lines() == ["a┌─┐q│  "]


def test_shift_out_without_designation_shows_ascii() -> None:
    assert term(f"{SO}lqk{SI}").text_lines()[0] == "lqk   "


def test_line_drawing_survives_chunk_boundaries() -> None:
    t = Terminal(6, 1)
    for piece in (b"\x1b", b"(", b"0", b"lq", b"\x1b(", b"Bk"):
        t.feed(piece)
    assert t.text_lines() == ["┌─k   "]


def test_line_drawing_leaves_non_ascii_alone() -> None:
    assert term(f"{ESC}(0qé中").text_lines()[0] == "─é中  "


def test_charsets_are_saved_and_restored_with_the_cursor() -> None:
    t = term(f"{ESC}(0{ESC}7{ESC}(Bq{ESC}8q")
    assert t.text_lines()[0] == "─     "


# -- wide characters ---------------------------------------------------------------------


def test_wide_character_wraps_whole_at_the_last_column() -> None:
    t = term("abcde中")
    assert t.text_lines() == ["abcde ", "中    "]
    assert (t.cursor_x, t.cursor_y) == (2, 1)


def test_wide_character_on_pending_wrap_wraps() -> None:
    t = term("abcdef中")
    assert t.text_lines() == ["abcdef", "中    "]


def test_wide_over_the_halves_of_two_wide_characters_blanks_both_partners() -> None:
    t = term(f"中中{CSI}1;2H文")
    assert t.text_lines()[0] == " 文   "
    attrs = t.cells()[3][0]
    assert [int(a) & WIDE for a in attrs[:4]] == [
        0,
        cells.ATTR_WIDE_LEFT,
        cells.ATTR_WIDE_RIGHT,
        0,
    ]


@pytest.mark.parametrize(("column", "expected"), [(1, "x 中  "), (2, " x中  ")])
def test_narrow_over_either_half_blanks_the_other(column: int, expected: str) -> None:
    t = term(f"中中{CSI}1;{column}Hx")
    assert t.text_lines()[0] == expected


def test_emoji_presentation_is_wide_and_text_presentation_narrow() -> None:
    # U+1F600 has default emoji presentation (width 2); U+2764 does not (width 1),
    # and VS16 after it does not widen it.
    t = term("\U0001f600|\u2764\ufe0f|", columns=8, lines=1)
    chars = t.cells()[0][0]
    assert [chr(int(c)) for c in chars[:5]] == ["\U0001f600", "\U0001f600", "|", "\u2764", "|"]
    assert t.combining_at(0, 3) == "\ufe0f"


def test_zwj_sequence_members_keep_their_own_cells() -> None:
    # MAN ZWJ WOMAN: two wide cells, the ZWJ attached to the first.
    t = term("\U0001f468\u200d\U0001f469x", columns=6, lines=1)
    assert t.text_lines() == ["\U0001f468\u200d\U0001f469x "]
    assert t.combining_at(0, 0) == "\u200d"
    assert (t.cursor_x, t.cursor_y) == (5, 0)


def test_skin_tone_modifier_takes_its_own_cells() -> None:
    t = term("\U0001f44d\U0001f3fdx", columns=6, lines=1)
    assert t.text_lines() == ["\U0001f44d\U0001f3fdx "]
    assert (t.cursor_x, t.cursor_y) == (5, 0)


# -- combining characters ---------------------------------------------------------------------


def test_combining_mark_attaches_to_the_previous_cell() -> None:
    t = term("e\u0301x")
    assert t.text_lines()[0] == "e\u0301x    "
    assert t.combining_at(0, 0) == "\u0301"
    assert t.combining_at(0, 1) == ""
    assert int(t.cells()[3][0, 0]) == cells.ATTR_COMBINING
    assert int(t.cells()[3][0, 1]) == 0
    assert (t.cursor_x, t.cursor_y) == (2, 0)


def test_several_marks_stack_in_order_and_are_capped() -> None:
    t = term("a\u0300\u0301\u0302")
    assert t.combining_at(0, 0) == "\u0300\u0301\u0302"
    t = term("a" + "\u0301" * 20)
    assert t.combining_at(0, 0) == "\u0301" * 8


def test_mark_after_a_wide_character_goes_to_its_left_half() -> None:
    t = term("中\u0301")
    assert t.combining_at(0, 0) == "\u0301"
    assert t.combining_at(0, 1) == ""
    assert t.text_lines()[0] == "中\u0301    "


def test_mark_in_pending_wrap_goes_to_the_last_column() -> None:
    t = term("abcdef\u0301")
    assert t.combining_at(0, 5) == "\u0301"
    assert t.text_lines() == ["abcdef\u0301", "      "]


def test_mark_at_column_0_is_dropped() -> None:
    t = term("\u0301x\r\u0302")
    assert t.text_lines()[0] == "x     "
    assert not (t.cells()[3] & cells.ATTR_COMBINING).any()


def test_mark_follows_the_cursor_not_the_last_character() -> None:
    t = term(f"abc{CSI}1;2H\u0301")
    assert t.combining_at(0, 0) == "\u0301"


@pytest.mark.parametrize(
    "edit",
    [
        "\rX",  # overwritten
        f"{CSI}1;1H{CSI}K",  # erased (EL)
        f"{CSI}2J",  # erased (ED)
        f"{CSI}1;1H{CSI}X",  # erased (ECH)
        f"{CSI}1;1H中",  # overwritten by a wide character
        f"{CSI}1;2H中",  # its wide partner overwritten... here the base is narrow: kept
    ],
)
def test_marks_go_when_their_cell_is_overwritten_or_erased(edit: str) -> None:
    t = term("e\u0301" + edit)
    kept = edit == f"{CSI}1;2H中"
    assert t.combining_at(0, 0) == ("\u0301" if kept else "")
    assert bool(t.cells()[3][0, 0] & cells.ATTR_COMBINING) == kept


def test_mark_on_a_wide_character_goes_when_its_other_half_is_overwritten() -> None:
    t = term(f"中\u0301{CSI}1;2Hx")
    assert t.combining_at(0, 0) == ""
    assert t.text_lines()[0] == " x    "


def test_marks_move_with_inserted_and_deleted_characters() -> None:
    t = term(f"ab\u0301cd{CSI}1;1H{CSI}2@")
    assert t.text_lines()[0] == "  ab\u0301cd"
    assert t.combining_at(0, 3) == "\u0301"
    t.feed(f"{CSI}3P".encode())
    assert t.text_lines()[0] == "b\u0301cd   "
    assert t.combining_at(0, 0) == "\u0301"
    t.feed(f"{CSI}P".encode())
    assert t.text_lines()[0] == "cd    "
    assert not (t.cells()[3] & cells.ATTR_COMBINING).any()


def test_marks_pushed_off_the_right_edge_go() -> None:
    t = term(f"abcde\u0301f\u0302{CSI}1;1H{CSI}@")
    assert t.text_lines()[0] == " abcde\u0301"
    assert t.combining_at(0, 5) == "\u0301"
    t.feed(f"{CSI}@".encode())
    assert t.text_lines()[0] == "  abcd"
    assert not (t.cells()[3] & cells.ATTR_COMBINING).any()


def test_marks_scroll_with_their_rows_and_into_history() -> None:
    t = term("e\u0301\r\nx\r\ny\r\nz", columns=3, lines=2)
    assert t.text_lines() == ["y  ", "z  "]
    assert t.view_text(2) == ["e\u0301  ", "x  "]
    assert t.view_cells(2)[3][0, 0] == cells.ATTR_COMBINING
    t = term("a\u0301\r\nb\u0302\x1bM", columns=3, lines=3)
    t.feed(b"\x1b[H\x1bM")
    assert t.text_lines() == ["   ", "a\u0301  ", "b\u0302  "]
    assert t.combining_at(1, 0) == "\u0301"


def test_recycled_rows_lose_their_marks() -> None:
    t = Terminal(3, 2, history=1)
    t.feed("a\u0301\r\n".encode() + b"\r\n" * 6)
    assert t.text_lines() == ["   ", "   "]
    assert t.view_text(1) == ["   ", "   "]


def test_marks_survive_a_resize_that_keeps_their_cell() -> None:
    t = term("ab\u0301cde\u0302")
    t.resize(3, 2)
    assert t.text_lines()[0] == "ab\u0301c"
    assert t.combining_at(0, 1) == "\u0301"
    t.resize(6, 2)
    assert t.text_lines()[0] == "ab\u0301c   "


def test_combining_at_outside_the_screen_is_empty() -> None:
    t = term("a\u0301")
    assert t.combining_at(-1, 0) == t.combining_at(0, 99) == t.combining_at(5, 0) == ""


def test_alignment_pattern_clears_marks() -> None:
    t = term(f"a\u0301{ESC}#8")
    assert t.text_lines() == ["EEEEEE"] * 2
    assert t.combining_at(0, 0) == ""


def test_nul_and_controls_given_to_draw_never_attach() -> None:
    from vzvnc.term.screen import CellScreen

    screen = CellScreen(4, 1)
    screen.draw("a\x00\x01\x85b")
    assert screen.text_lines() == ["ab  "]
    assert screen.combining_at(0, 0) == ""


@pytest.mark.parametrize("columns", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize(
    "prefix",
    ["", "a", f"{CSI}4h", f"{CSI}?7l", f"{CSI}?7la", "abcdef\r", f"ab中{CSI}1;2H", "e\u0301\r"],
)
def test_a_run_of_wide_characters_equals_writing_them_one_by_one(columns: int, prefix: str) -> None:
    text = "中文字ひらがな한국"
    whole = Terminal(columns, 3, history=4)
    whole.feed((prefix + text).encode())
    single = Terminal(columns, 3, history=4)
    single.feed(prefix.encode())
    for char in text:
        single.feed(char.encode())
    assert whole.text_lines() == single.text_lines()
    assert (whole.cursor_x, whole.cursor_y) == (single.cursor_x, single.cursor_y)
    for mine, theirs in zip(whole.view_cells(4), single.view_cells(4), strict=True):
        assert (mine == theirs).all()
    for mine, theirs in zip(whole.cells(), single.cells(), strict=True):
        assert (mine == theirs).all()


def test_wide_run_wraps_each_character_whole() -> None:
    t = term("a中文字", columns=5, lines=2)
    assert t.text_lines() == ["a中文", "字   "]


def test_dec_special_graphics_changes_only_0x5f_to_0x7e_as_in_xterm() -> None:
    from vzvnc.term.terminal import Terminal

    terminal = Terminal(20, 2)
    terminal.feed(b"\x1b(0+,-./0hqxl_\x1b(B q")
    assert terminal.text_lines()[0].rstrip() == "+,-./0\u2424\u2500\u2502\u250c\u00a0 q"
