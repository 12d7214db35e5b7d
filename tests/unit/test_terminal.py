"""The Terminal facade: robustness, chunking independence, replies, modes, reference output."""

from __future__ import annotations

import itertools

import numpy as np
import pyte
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vzvnc.term import cells
from vzvnc.term.terminal import Terminal

ESC = b"\x1b"
CSI = b"\x1b["

# Pieces real programs send, plus the nasty ones, so random streams reach deep states.
FRAGMENTS = [
    b"hello",
    b"ls -la",
    b" ",
    b"\r\n",
    b"\n",
    b"\r",
    b"\t",
    b"\x08",
    b"\x07",
    b"\x0e",
    b"\x0f",
    b"\x00",
    b"\x7f",
    b"\x18",
    b"\x1a",
    ESC,
    CSI,
    b"\x1b]",
    b"\x1bP",
    b"\x1b_",
    b"\x1b\\",
    b"\x1b7",
    b"\x1b8",
    b"\x1bM",
    b"\x1bD",
    b"\x1bE",
    b"\x1bc",
    b"\x1b#8",
    b"\x1b(0",
    b"\x1b(B",
    b"\x1b=",
    b"\x1b>",
    b"\x1b%@",
    b"\xc2\x9b",
    b"\xc2\x9d",
    b"\xc2\x90",
    b"\xc2\x9c",
    b"\x1b[31m",
    b"\x1b[1;4;7m",
    b"\x1b[38;5;196m",
    b"\x1b[48;2;1;2;3m",
    b"\x1b[38:2::1:2:3m",
    b"\x1b[58:2::1:2:3m",
    b"\x1b[?4m",
    b"\x1b[>4;1m",
    b"\x1b[0m",
    b"\x1b[H",
    b"\x1b[5;10H",
    b"\x1b[99;99H",
    b"\x1b[2J",
    b"\x1b[K",
    b"\x1b[1K",
    b"\x1b[3L",
    b"\x1b[2M",
    b"\x1b[4@",
    b"\x1b[3P",
    b"\x1b[2X",
    b"\x1b[S",
    b"\x1b[2T",
    b"\x1b[3b",
    b"\x1b[Z",
    b"\x1b[2;4r",
    b"\x1b[r",
    b"\x1b[4h",
    b"\x1b[4l",
    b"\x1b[20h",
    b"\x1b[?7l",
    b"\x1b[?7h",
    b"\x1b[?6h",
    b"\x1b[?6l",
    b"\x1b[?25l",
    b"\x1b[?1h",
    b"\x1b[?2004h",
    b"\x1b[6n",
    b"\x1b[?6n",
    b"\x1b[c",
    b"\x1b[>c",
    b"\x1b[!p",
    b"\x1b[ q",
    b"\x1b[s",
    b"\x1b[u",
    b"\x1b[1;2;3A",
    b"\x1b[99999999999999999999C",
    b"\x1b]0;title\x07",
    b"\x1b]2;t\x1b\\",
    b"\xe4\xb8\xad",
    b"\xe4\xb8",
    b"\xad",
    b"\xf0\x9f\x98\x80",
    b"\xcc\x81",
    b"\xef\xb8\x8f",
    b"\xe2\x80\x8d",
    b"\xff",
    b"\xe2\x94\x80",
    b"lqkxj",
    # Buffers, history, modes, replies and characters of the terminal-fidelity work.
    b"\x1b[?1049h",
    b"\x1b[?1049l",
    b"\x1b[?47h",
    b"\x1b[?47l",
    b"\x1b[?1047h",
    b"\x1b[?1047l",
    b"\x1b[?1048h",
    b"\x1b[?1048l",
    b"\x1b[3J",
    b"\x1b[?1000h",
    b"\x1b[?1002h",
    b"\x1b[?1003h",
    b"\x1b[?1000l",
    b"\x1b[?9h",
    b"\x1b[?1006h",
    b"\x1b[?1005h",
    b"\x1b[?1015h",
    b"\x1b[?1006l",
    b"\x1b[?1004h",
    b"\x1b[2 q",
    b"\x1b[5 q",
    b"\x1b[9 q",
    b"\x1b]10;?\x07",
    b"\x1b]11;?\x1b\\",
    b"\x1b]4;1;?\x07",
    b"\x1b]12;?;?\x07",
    b"\x1b[=c",
    b"\x1b[>0c",
    b"\x1b[3g",
    b"\x1b[g",
    b"\x1bH",
    b"\x1b[2I",
    b"\x1b[3d",
    b"\x1b[5`",
    b"\x1b[2j",
    b"\x1b[k",
    b"\x1b[E",
    b"\x1b[F",
    b"\x1b[99b",
    b"\x1b[1;3r",
    b"\x1b)0",
    b"e\xcc\x81",
    b"\xcc\x80\xcc\x81",
    b"\xe2\x9d\xa4\xef\xb8\x8f",
    b"\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd",
    b"\xe2\x80\x8b",
]

terminal_bytes = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=6)), max_size=60
).map(b"".join)
sizes = st.tuples(st.integers(1, 12), st.integers(1, 6))
histories = st.integers(0, 8)


def state(t: Terminal) -> tuple[object, ...]:
    chars, fg, bg, attrs = t.cells()
    return (
        chars.tobytes(),
        fg.tobytes(),
        bg.tobytes(),
        attrs.tobytes(),
        tuple(t.text_lines()),
        t.cursor_x,
        t.cursor_y,
        t.cursor_visible,
        t.application_cursor_keys,
        t.application_keypad,
        t.bracketed_paste,
        t.alternate_screen,
        t.mouse_mode,
        t.mouse_sgr,
        t.mouse_encoding,
        t.focus_events,
        t.cursor_shape,
        t.history_size,
        tuple(t.view_text(t.history_size)),
        tuple(a.tobytes() for a in t.view_cells(t.history_size)),
        t.title,
        t.take_title_changed(),
        t.take_replies(),
        t.take_bells(),
        tuple(t.take_scrolls()),
    )


def check_consistent(t: Terminal) -> None:
    chars, fg, bg, attrs = t.cells()
    shape = (t.lines, t.columns)
    assert chars.shape == fg.shape == bg.shape == attrs.shape == shape
    assert chars.dtype == cells.CHAR_DTYPE
    assert fg.dtype == bg.dtype == cells.COLOUR_DTYPE
    assert attrs.dtype == cells.ATTR_DTYPE
    assert 0 <= t.cursor_x < t.columns
    assert 0 <= t.cursor_y < t.lines
    # Wide halves always come in pairs.
    left = (attrs & cells.ATTR_WIDE_LEFT) != 0
    right = (attrs & cells.ATTR_WIDE_RIGHT) != 0
    assert not (left & right).any()
    assert (left[:, :-1] == right[:, 1:]).all()
    assert not left[:, -1].any()
    assert not right[:, 0].any()
    assert (chars[:, :-1][left[:, :-1]] == chars[:, 1:][right[:, 1:]]).all()
    # Combining characters sit only on flagged cells, never on right halves.
    flagged = (attrs & cells.ATTR_COMBINING) != 0
    marks = [[t.combining_at(y, x) for x in range(t.columns)] for y in range(t.lines)]
    has_marks = np.array([[bool(m) for m in row] for row in marks], dtype=bool).reshape(shape)
    assert (has_marks == flagged).all()
    assert not (has_marks & right).any()
    lines = t.text_lines()
    assert len(lines) == t.lines
    for y, line in enumerate(lines):
        extra = sum(len(m) for m in marks[y])
        assert len(line) == t.columns - int(left[y].sum()) + extra
    # The history and the views keep the same shapes.
    assert t.history_size >= 0
    view = t.view_cells(t.history_size)
    assert all(a.shape == shape for a in view)
    assert len(t.view_text(t.history_size)) == t.lines
    if not t.alternate_screen:
        assert t.view_text(0) == lines
    for top, bottom, n in t.take_scrolls():
        assert 0 <= top <= bottom < t.lines
        assert n != 0 and abs(n) <= bottom - top + 1


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(data=st.binary(max_size=400), size=sizes)
def test_arbitrary_bytes_never_raise(data: bytes, size: tuple[int, int]) -> None:
    t = Terminal(*size)
    t.feed(data)
    check_consistent(t)


@FUZZ
@given(data=terminal_bytes, size=sizes, history=histories)
def test_terminal_like_bytes_never_raise(data: bytes, size: tuple[int, int], history: int) -> None:
    t = Terminal(*size, history=history)
    t.feed(data)
    check_consistent(t)
    assert t.history_size <= history
    assert t.handler_errors == 0


@FUZZ
@given(
    data=st.one_of(terminal_bytes, st.binary(max_size=300)),
    size=sizes,
    cuts=st.lists(st.integers(0, 2000), max_size=12),
    history=histories,
)
def test_chunking_does_not_change_the_result(
    data: bytes, size: tuple[int, int], cuts: list[int], history: int
) -> None:
    whole = Terminal(*size, history=history)
    whole.feed(data)
    bytewise = Terminal(*size, history=history)
    for i in range(len(data)):
        bytewise.feed(data[i : i + 1])
    chunked = Terminal(*size, history=history)
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for start, end in itertools.pairwise(points):
        chunked.feed(data[start:end])
    expected = state(whole)
    assert state(bytewise) == expected
    assert state(chunked) == expected


@FUZZ
@given(
    first=terminal_bytes,
    second=terminal_bytes,
    size=sizes,
    new_size=sizes,
    history=histories,
)
def test_resize_at_any_point_stays_consistent(
    first: bytes,
    second: bytes,
    size: tuple[int, int],
    new_size: tuple[int, int],
    history: int,
) -> None:
    t = Terminal(*size, history=history)
    t.feed(first)
    before = t.history_size
    t.resize(*new_size)
    check_consistent(t)
    assert before <= t.history_size <= history
    t.feed(second)
    check_consistent(t)


@FUZZ
@given(data=terminal_bytes, size=sizes, history=histories)
def test_history_only_grows_at_its_end_with_rows_that_left_the_screen(
    data: bytes, size: tuple[int, int], history: int
) -> None:
    """Fed one byte at a time: lines already in the history never change, and a
    linefeed that adds one adds the row that was on top of the primary screen."""
    t = Terminal(*size, history=history)
    for i in range(len(data)):
        byte = data[i : i + 1]
        alternate = t.alternate_screen
        top_before = t.view_text(0)[0]
        old = [t.view_text(j)[0] for j in range(1, t.history_size + 1)]
        t.feed(byte)
        added = t.history_size - len(old)
        if alternate or t.alternate_screen:
            continue  # the views show the alternate screen then
        if added < 0 or t.history_size >= history:
            continue  # cleared (ED 3, RIS), or full and dropping its oldest lines
        assert [t.view_text(added + j)[0] for j in range(1, len(old) + 1)] == old
        # A linefeed alone (no incomplete UTF-8 before it, which it would turn into U+FFFD).
        plain = i == 0 or data[i - 1] < 0x80
        if byte in (b"\n", b"\x0b", b"\x0c") and added and plain:
            assert added == 1
            assert t.view_text(1)[0] == top_before


def test_extra_parameters_are_dropped_not_fatal() -> None:
    t = Terminal(20, 3)
    t.feed(b"a\x1b[1;2;3Bb\x1b[2;3;4;5Hc\x1b[1;2;3Cd\x1b[31;1;2;3;4;5;6;7;8;9mc")
    assert t.text_lines() == ["a" + " " * 19, " bc dc" + " " * 14, " " * 20]
    assert t.handler_errors == 0


def test_split_utf8_across_calls_and_invalid_bytes() -> None:
    t = Terminal(10, 1)
    for piece in (b"\xe4", b"\xb8", b"\xadx", b"\xffy"):
        t.feed(piece)
    assert t.text_lines() == ["中x\ufffdy     "]


# -- replies, bells, title -------------------------------------------------------------


def test_device_attributes_and_status_replies() -> None:
    t = Terminal(80, 24)
    t.feed(b"\x1b[c\x1b[0c\x1b[5n\x1b[3;7H\x1b[6n")
    assert t.take_replies() == b"\x1b[?1;2c\x1b[?1;2c\x1b[0n\x1b[3;7R"
    assert t.take_replies() == b""


def test_no_reply_to_unknown_or_private_queries() -> None:
    t = Terminal(80, 24)
    t.feed(b"\x1b[?c\x1b[1c\x1b[>1c\x1b[=1c\x1b[<c\x1b[>!c\x1b[7n")
    assert t.take_replies() == b""


def test_secondary_and_tertiary_device_attributes() -> None:
    """xterm's forms: DA2 ``CSI > 41 ; version ; 0 c``; DA3 the DECRPTUI DCS string."""
    t = Terminal(80, 24)
    t.feed(b"\x1b[>c\x1b[>0c")
    assert t.take_replies() == b"\x1b[>41;354;0c" * 2
    t.feed(b"\x1b[=c\x1b[=0c")
    assert t.take_replies() == b"\x1bP!|00000000\x1b\\" * 2


def test_cursor_position_report_in_pending_wrap_and_origin_mode() -> None:
    t = Terminal(5, 5)
    t.feed(b"abcde\x1b[6n")
    assert t.take_replies() == b"\x1b[1;5R"
    t.feed(b"\x1b[2;4r\x1b[?6h\x1b[2;3H\x1b[6n\x1b[?6n")
    assert t.take_replies() == b"\x1b[2;3R\x1b[?2;3R"
    assert (t.cursor_x, t.cursor_y) == (2, 2)


def test_bells_are_counted_outside_strings() -> None:
    t = Terminal(10, 2)
    t.feed(b"\x07a\x07\x1b]0;x\x07\x1bPq\x07\x1b\\\x07")
    assert t.take_bells() == 3
    assert t.take_bells() == 0


def test_title_from_osc_0_and_2_only() -> None:
    t = Terminal(10, 2)
    assert t.title == ""
    assert not t.take_title_changed()
    t.feed(b"\x1b]0;first\x07")
    assert t.title == "first"
    assert t.take_title_changed()
    assert not t.take_title_changed()
    t.feed(b"\x1b]2;second\x1b\\")
    assert (t.title, t.take_title_changed()) == ("second", True)
    t.feed(b"\x1b]2;second\x07")
    assert not t.take_title_changed()
    t.feed(b"\x1b]1;icon\x07\x1b]10;?\x07\x1b]7;file:///x\x07\x1b]2\x07")
    assert (t.title, t.take_title_changed()) == ("second", False)
    t.feed("\x1b]2;ünï 中\x07".encode())
    assert t.title == "ünï 中"
    assert t.text_lines() == [" " * 10] * 2


def test_title_survives_chunk_boundaries() -> None:
    t = Terminal(10, 2)
    for piece in (b"\x1b]", b"2;ab", b"c", b"\x1b", b"\\z"):
        t.feed(piece)
    assert t.title == "abc"
    assert t.text_lines()[0].startswith("z")


# -- modes -------------------------------------------------------------------------------


def modes(t: Terminal) -> tuple[bool, bool, bool, bool]:
    """(cursor_visible, application_cursor_keys, application_keypad, bracketed_paste)"""
    return (t.cursor_visible, t.application_cursor_keys, t.application_keypad, t.bracketed_paste)


def test_mode_flags() -> None:
    t = Terminal(10, 2)
    assert modes(t) == (True, False, False, False)
    t.feed(b"\x1b[?25l\x1b[?1h\x1b=\x1b[?2004h")
    assert modes(t) == (False, True, True, True)
    t.feed(b"\x1b[?25h\x1b[?1l\x1b>\x1b[?2004l")
    assert modes(t) == (True, False, False, False)


def test_modes_need_the_private_marker() -> None:
    t = Terminal(10, 2)
    t.feed(b"\x1b[25l\x1b[1h\x1b[2004h")
    assert (t.cursor_visible, t.application_cursor_keys, t.bracketed_paste) == (True, False, False)


def test_several_modes_in_one_sequence_and_unknown_ignored() -> None:
    t = Terminal(10, 2)
    t.feed(b"\x1b[?1;2004;31337;25l\x1b[?1;2004h")
    assert (t.cursor_visible, t.application_cursor_keys, t.bracketed_paste) == (False, True, True)


def test_reset_restores_modes_and_clears() -> None:
    t = Terminal(10, 2)
    t.feed(b"\x1b]2;keep\x07\x1b[?25l\x1b[?1h\x1b=\x1b[31mabc\x1bc")
    assert modes(t) == (True, False, False, False)
    assert t.text_lines() == [" " * 10] * 2
    assert t.title == "keep"
    t.feed(b"x")
    assert int(t.cells()[1][0, 0]) == cells.DEFAULT_COLOUR


def test_size_properties_and_bad_size() -> None:
    t = Terminal(7, 3)
    assert (t.columns, t.lines) == (7, 3)
    t.resize(9, 4)
    assert (t.columns, t.lines) == (9, 4)
    with pytest.raises(ValueError):
        Terminal(0, 3)
    with pytest.raises(ValueError):
        t.resize(9, 0)
    assert (t.columns, t.lines) == (9, 4)


def test_cells_are_fresh_copies() -> None:
    t = Terminal(4, 2)
    t.feed(b"ab")
    chars = t.cells()[0]
    chars[0, 0] = ord("z")
    assert t.text_lines()[0] == "ab  "
    t.feed(b"\r\n\n")  # scroll: the copy taken before must not follow
    assert chr(int(chars[0, 1])) == "b"


# -- against stock pyte's display, as an independent reference ---------------------------


def pyte_display(data: bytes, columns: int, lines: int) -> list[str]:
    screen = pyte.Screen(columns, lines)
    pyte.ByteStream(screen).feed(data)
    return list(screen.display)


LS_OUTPUT = b"".join(
    f"-rw-r--r-- 1 user user {size:6d} Jan  1 12:00 file{n}.txt\r\n".encode()
    for n, size in enumerate(range(100, 3000, 97))
)

REFERENCE_STREAMS = [
    pytest.param(LS_OUTPUT, 60, 10, id="ls"),
    pytest.param(b"$ " + b"x" * 130 + b"\r\n$ ", 40, 6, id="wrapping"),
    pytest.param(b"a\tb\tc\r\n\tindented\r\n", 30, 4, id="tabs"),
    pytest.param(b"12345\x1b[3D--\x1b[2;10H@\x1b[A#\x1b[5G!\rX\x08Y", 20, 4, id="cursor-moves"),
    pytest.param(b"first line\r\nsecond\x1b[1;3H\x1b[K\x1b[2;1H\x1b[2K", 20, 3, id="erase"),
    pytest.param("中文 text ñ wide 字\r\n".encode() * 3, 12, 5, id="wide-wrap"),
    pytest.param(b"\x1b[31mred\x1b[0m \x1b[1mbold\x1b[m\r\n" * 12, 15, 5, id="sgr-scroll"),
    pytest.param(b"abcdef\x1b[1;3H\x1b[2P\x1b[2;1Hxyz\x1b[2;2H\x1b[@", 8, 3, id="dch-ich"),
]


@pytest.mark.parametrize(("data", "columns", "lines"), REFERENCE_STREAMS)
def test_display_matches_stock_pyte(data: bytes, columns: int, lines: int) -> None:
    t = Terminal(columns, lines)
    t.feed(data)
    assert t.text_lines() == pyte_display(data, columns, lines)
    screen = pyte.Screen(columns, lines)
    pyte.ByteStream(screen).feed(data)
    assert (t.cursor_x, t.cursor_y) == (min(screen.cursor.x, columns - 1), screen.cursor.y)


def test_plain_text_is_written_in_bulk_fast_enough() -> None:
    """A coarse guard against falling off the fast path (not a benchmark)."""
    import time

    t = Terminal(120, 40)
    data = LS_OUTPUT * 200
    start = time.perf_counter()
    t.feed(data)
    elapsed = time.perf_counter() - start
    # About 1 MB; stock pyte needs about a second; the fast path far less.
    assert elapsed < 2.0, elapsed
    assert np.any(t.cells()[0] != cells.BLANK)
