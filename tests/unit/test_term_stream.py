"""The parser front end: strings swallowed, aborts, limits, recovery from failing handlers."""

from __future__ import annotations

import pyte
import pytest

from vzvnc.term import cells
from vzvnc.term.screen import CellScreen
from vzvnc.term.stream import MAX_PARAM_CHARS, SafeByteStream, parse_params, parse_sgr_params
from vzvnc.term.terminal import Terminal


def lines_after(data: bytes, columns: int = 20, lines: int = 2) -> list[str]:
    t = Terminal(columns, lines)
    t.feed(data)
    assert t.handler_errors == 0
    return t.text_lines()


def lines_bytewise(data: bytes, columns: int = 20, lines: int = 2) -> list[str]:
    t = Terminal(columns, lines)
    for i in range(len(data)):
        t.feed(data[i : i + 1])
    return t.text_lines()


@pytest.mark.parametrize(
    "data",
    [
        b"a\x1bPq#0;2;0;0;0#0!10~-\x1b\\b",  # sixel DCS
        b"a\x1bP+q544e\x1b\\b",  # XTGETTCAP
        b"a\x1b_Gf=100;AAAA\x1b\\b",  # kitty graphics APC
        b"a\x1b^privacy\x1b\\b",  # PM
        b"a\x1bXstring\x1b\\b",  # SOS
        "a\u0090body\u009cb".encode(),  # C1 DCS ... ST
        b"a\x1bPbody\x18b",  # CAN aborts the string
    ],
)
def test_string_bodies_are_swallowed(data: bytes) -> None:
    expected = ["ab" + " " * 18, " " * 20]
    assert lines_after(data) == expected
    assert lines_bytewise(data) == expected


def test_string_body_is_ended_by_any_escape_sequence() -> None:
    assert lines_after(b"a\x1bPunterminated\x1b[31mb")[0].startswith("ab")


def test_stock_pyte_prints_dcs_bodies() -> None:
    """The reference point: stock pyte shows the body as text."""
    screen = pyte.Screen(20, 1)
    pyte.ByteStream(screen).feed(b"a\x1bPbody\x1b\\b")
    assert "body" in screen.display[0]


def test_stock_pyte_applies_greater_than_sgr_as_plain_sgr() -> None:
    """The reference point for ``CSI > 4;1 m`` being ignored here."""
    screen = pyte.Screen(10, 1)
    pyte.ByteStream(screen).feed(b"\x1b[>4;1mx")
    assert screen.buffer[0][0].underscore
    t = Terminal(10, 1)
    t.feed(b"\x1b[>4;1mx")
    assert int(t.cells()[3][0, 0]) == 0


def test_can_and_sub_abort_a_control_sequence() -> None:
    assert lines_after(b"\x1b[31\x18x\x1b[1\x1ay")[0].startswith("xy")
    t = Terminal(5, 1)
    t.feed(b"\x1b[31\x18x")
    assert int(t.cells()[1][0, 0]) == cells.DEFAULT_COLOUR


def test_escape_inside_a_control_sequence_starts_a_new_one() -> None:
    t = Terminal(5, 1)
    t.feed(b"\x1b[3\x1b[32mx")
    assert t.text_lines() == ["x    "]
    assert int(t.cells()[1][0, 0]) == cells.indexed(2)


def test_controls_inside_a_control_sequence_are_executed() -> None:
    # xterm executes C0 controls met in the middle of a sequence.
    assert lines_after(b"abc\x1b[\r2Cx") == ["abx" + " " * 17, " " * 20]


def test_c1_csi_and_osc() -> None:
    t = Terminal(10, 1)
    t.feed("\u009b31mx\u009d2;c1 title\u0007".encode())
    assert t.text_lines() == ["x" + " " * 9]
    assert int(t.cells()[1][0, 0]) == cells.indexed(1)
    assert t.title == "c1 title"


def test_osc_ended_by_escape_then_next_sequence() -> None:
    t = Terminal(10, 1)
    t.feed(b"\x1b]2;abc\x1b[31mx")
    assert t.title == "abc"
    assert int(t.cells()[1][0, 0]) == cells.indexed(1)


def test_overlong_osc_is_discarded() -> None:
    t = Terminal(10, 1)
    t.feed(b"\x1b]2;" + b"x" * 10000 + b"\x07after")
    assert t.title == ""
    assert t.text_lines() == ["after     "]


def test_charset_switch_to_latin1_is_ignored() -> None:
    assert lines_after("\x1b%@é".encode(), columns=3, lines=1) == ["é  "]


@pytest.mark.parametrize("extra", [0, 1])
def test_parameter_string_limit_same_whole_and_bytewise(extra: int) -> None:
    params = "0" * (MAX_PARAM_CHARS - 2 + extra) + "31"
    data = f"\x1b[{params}mx".encode()
    for feed in ("whole", "bytewise"):
        t = Terminal(4, 1)
        if feed == "whole":
            t.feed(data)
        else:
            for i in range(len(data)):
                t.feed(data[i : i + 1])
        expected = cells.DEFAULT_COLOUR if extra else cells.indexed(1)
        assert t.text_lines() == ["x   "]
        assert int(t.cells()[1][0, 0]) == expected


def test_huge_numbers_are_capped_and_overlong_sequences_ignored() -> None:
    t = Terminal(10, 2)
    t.feed(b"\x1b[" + b"9" * 30 + b"Cx")
    assert t.text_lines()[0] == " " * 9 + "x"
    # Python refuses int() of more than 4300 digits; the parser never gets there.
    t.feed(b"\r\x1b[" + b"9" * 5000 + b"Cy")
    assert t.text_lines()[0] == "y" + " " * 8 + "x"
    assert t.handler_errors == 0


def test_parse_params() -> None:
    assert parse_params("") == [0]
    assert parse_params("1;;5") == [1, 0, 5]
    assert parse_params("999999") == [65535]
    assert len(parse_params(";" * 100)) == 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", [0]),
        ("1;31", [1, 31]),
        ("38:5:196", [38, 5, 196]),
        ("38:2:1:2:3", [38, 2, 1, 2, 3]),
        ("38:2:0:1:2:3", [38, 2, 1, 2, 3]),
        ("48:2::1:2:3;1", [48, 2, 1, 2, 3, 1]),
        ("4:3", [4]),
        ("4:0", [24]),
        ("58:2::1:2:3", []),
        ("38:2:1", []),
        ("1;58:5:3;2", [1, 2]),
    ],
)
def test_parse_sgr_params(text: str, expected: list[int]) -> None:
    assert parse_sgr_params(text) == expected


# -- recovery when a handler fails -------------------------------------------------------


class BrokenBellScreen(CellScreen):
    """A real screen with one handler that fails, to exercise the stream's recovery."""

    def bell(self, *args: object) -> None:
        raise RuntimeError("bell is broken")


class BrokenDrawScreen(CellScreen):
    """A real screen whose draw fails on one character."""

    def draw(self, data: str, **kwargs: object) -> None:
        if "!" in data:
            raise RuntimeError("cannot draw '!'")
        super().draw(data)


def test_failing_handler_in_the_parser_resets_it_and_parsing_goes_on() -> None:
    screen = BrokenBellScreen(10, 1)
    stream = SafeByteStream(screen)
    stream.feed(b"a\x07b\x1b[31mc\x1b[\x07d")
    # The BEL inside the CSI failed too: that sequence is lost, "d" is text again.
    assert screen.text_lines() == ["abcd      "]
    assert stream.errors == 2
    assert int(screen.cells()[1][0, 2]) == cells.indexed(1)


def test_failing_draw_skips_only_that_run() -> None:
    screen = BrokenDrawScreen(10, 1)
    stream = SafeByteStream(screen)
    stream.feed(b"abc\rX!Y\rZ")
    assert screen.text_lines() == ["Zbc       "]
    assert stream.errors == 1


# -- strings across chunk boundaries ------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"a\x1bPq#0;2;0;0;0#0!10~-\x1b\\b",
        b"a\x1b_Gf=100;AAAA\x1b\\b",
        b"a\x1b^pm\x1b\\b",
        b"a\x1bXsos\x1b\\b",
        b"a\x1b]52;c;aGVsbG8=\x07b",
        b"a\x1b]8;;http://x/\x1b\\b",
        "a\u0090body\u009cb".encode(),
    ],
)
def test_string_bodies_are_swallowed_at_every_split_point(data: bytes) -> None:
    expected = ["ab" + " " * 18, " " * 20]
    for cut in range(1, len(data)):
        t = Terminal(20, 2)
        t.feed(data[:cut])
        t.feed(data[cut:])
        assert t.text_lines() == expected, cut
        assert t.take_replies() == b""


def test_long_dcs_body_in_many_chunks_prints_nothing() -> None:
    t = Terminal(10, 2)
    t.feed(b"\x1bP")
    for _ in range(100):
        t.feed(b"0123456789;#!~" * 50)
    t.feed(b"\x1b\\ok")
    assert t.text_lines() == ["ok        ", " " * 10]


# -- OSC colour queries -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "reply"),
    [
        # xterm's defaults for the dynamic colours and palette, in X11 "rgb:" form.
        (b"\x1b]10;?\x07", b"\x1b]10;rgb:e5e5/e5e5/e5e5\x07"),
        (b"\x1b]11;?\x07", b"\x1b]11;rgb:0000/0000/0000\x07"),
        (b"\x1b]12;?\x07", b"\x1b]12;rgb:e5e5/e5e5/e5e5\x07"),
        (b"\x1b]10;?\x1b\\", b"\x1b]10;rgb:e5e5/e5e5/e5e5\x1b\\"),
        ("\x1b]11;?\u009c".encode(), b"\x1b]11;rgb:0000/0000/0000\x1b\\"),
        (b"\x1b]4;1;?\x07", b"\x1b]4;1;rgb:cdcd/0000/0000\x07"),
        (b"\x1b]4;12;?\x1b\\", b"\x1b]4;12;rgb:5c5c/5c5c/ffff\x1b\\"),
        (b"\x1b]4;196;?\x07", b"\x1b]4;196;rgb:ffff/0000/0000\x07"),
        (b"\x1b]4;232;?\x07", b"\x1b]4;232;rgb:0808/0808/0808\x07"),
        (
            b"\x1b]4;0;?;255;?\x07",
            b"\x1b]4;0;rgb:0000/0000/0000\x07\x1b]4;255;rgb:eeee/eeee/eeee\x07",
        ),
        # Each further field is the next dynamic colour: 10;?;? asks for 10 and 11.
        (
            b"\x1b]10;?;?\x07",
            b"\x1b]10;rgb:e5e5/e5e5/e5e5\x07\x1b]11;rgb:0000/0000/0000\x07",
        ),
        (b"\x1b]11;red;?\x07", b"\x1b]12;rgb:e5e5/e5e5/e5e5\x07"),
        (b"\x1b]12;?;?;?\x07", b"\x1b]12;rgb:e5e5/e5e5/e5e5\x07"),
    ],
)
def test_colour_queries_are_answered_like_xterm(query: bytes, reply: bytes) -> None:
    t = Terminal(10, 1)
    t.feed(b"a" + query + b"b")
    assert t.take_replies() == reply
    assert t.text_lines() == ["ab        "]
    bytewise = Terminal(10, 1)
    for i in range(len(query)):
        bytewise.feed(query[i : i + 1])
    assert bytewise.take_replies() == reply


@pytest.mark.parametrize(
    "query",
    [
        b"\x1b]4;256;?\x07",
        b"\x1b]4;-1;?\x07",
        b"\x1b]4;\xd9\xa1;?\x07",  # an Arabic-Indic digit is not an index
        b"\x1b]4;1;rgb:ff/00/00\x07",
        b"\x1b]4;1\x07",
        b"\x1b]10;blue\x07",
        b"\x1b]13;?\x07",
        b"\x1b]104;1\x07",
        b"\x1b]110\x07",
        b"\x1b]10;?\x18",  # cancelled
        b"\x1b]4;" + b"1;?;" * 2000 + b"\x07",  # longer than an OSC may be
    ],
)
def test_other_colour_strings_are_ignored_and_never_printed(query: bytes) -> None:
    t = Terminal(10, 1)
    t.feed(b"a" + query + b"b")
    assert t.take_replies() == b""
    assert t.text_lines() == ["ab        "]
    assert t.handler_errors == 0


# -- DA2, DA3 and DECSCUSR through the parser ----------------------------------------------


@pytest.mark.parametrize(
    ("data", "reply"),
    [
        (b"\x1b[>c", b"\x1b[>41;354;0c"),
        (b"\x1b[>0c", b"\x1b[>41;354;0c"),
        (b"\x1b[=c", b"\x1bP!|00000000\x1b\\"),
        (b"\x1b[=0c", b"\x1bP!|00000000\x1b\\"),
        (b"\x1b[>1c", b""),
        (b"\x1b[>0;1c", b"\x1b[>41;354;0c"),  # extra parameters are dropped
        (b"\x1b[>0:1c", b""),
    ],
)
def test_device_attribute_queries_whole_and_bytewise(data: bytes, reply: bytes) -> None:
    t = Terminal(10, 1)
    t.feed(data)
    assert t.take_replies() == reply
    t = Terminal(10, 1)
    for i in range(len(data)):
        t.feed(data[i : i + 1])
    assert t.take_replies() == reply


def test_decscusr_bytewise() -> None:
    t = Terminal(10, 1)
    for byte in b"\x1b[5 qx":
        t.feed(bytes([byte]))
    assert t.cursor_shape == 5
    assert t.text_lines() == ["x         "]
