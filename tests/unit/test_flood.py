"""Fast-forwarding a flood must leave exactly the state that feeding every byte leaves."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vzvnc.term import flood, terminal
from vzvnc.term.terminal import Terminal

COLUMNS, LINES, HISTORY = 12, 4, 6

words = st.sampled_from(["ab", "hello", "x" * 15, "中文", "é", "\t", "word ", "\b"])
sgr = st.sampled_from(["\x1b[0m", "\x1b[m", "\x1b[31m", "\x1b[1;44m", "\x1b[38;5;208m", "\x1b[7m"])
line = st.lists(st.one_of(words, sgr, st.just("\x07")), max_size=6).map("".join)
flood_text = st.lists(line, min_size=25, max_size=60).map(
    lambda ls: "".join(x + "\r\n" for x in ls)
)
setup = st.sampled_from(["", "\x1b[2;3r", "\x1b[?6h", "\x1b[4h", "\x1b[?1049h", "\x1b[", "\xe4"])


def state(t: Terminal) -> tuple[object, ...]:
    views = [t.view_cells(offset) for offset in range(t.history_size + 1)]
    return (
        [np.stack(v).tobytes() for v in views],
        t.text_lines(),
        (t.cursor_x, t.cursor_y),
        t.history_size,
        t.alternate_screen,
    )


@given(setup, flood_text, st.text(max_size=5))
@settings(max_examples=200, deadline=None)
def test_fast_forward_equals_feeding_every_byte(before: str, text: str, after: str) -> None:
    data = before.encode("utf-8", "surrogatepass") + text.encode() + after.encode()
    limit = terminal.FLOOD_MIN_BYTES
    fast, slow = (
        Terminal(COLUMNS, LINES, history=HISTORY),
        Terminal(COLUMNS, LINES, history=HISTORY),
    )
    try:
        terminal.FLOOD_MIN_BYTES = 0
        fast.feed(before.encode())
        fast.feed(text.encode() + after.encode())
        fast.feed(b"X")  # drawn with the pen the flood left
    finally:
        terminal.FLOOD_MIN_BYTES = limit
    for i in range(0, len(data), 7):
        slow.feed(data[i : i + 7])
    slow.feed(b"X")
    assert state(fast) == state(slow)


def test_rewrite_keeps_the_tail_and_the_pen() -> None:
    lines = [f"line {i}\r\n".encode() for i in range(100)]
    data = b"\x1b[31mred " + b"".join(lines[:50]) + b"\x1b[0m\x1b[1m" + b"".join(lines[50:])
    out = flood.rewrite(data, 4, 6)
    assert out is not None
    assert out == b"\x1b[0m\x1b[1m" + b"\r\n" * 4 + b"".join(lines[-10:])


@pytest.mark.parametrize(
    "spoiler",
    [
        b"\x1b]2;title\x07",
        b"\x1b[6n",
        b"\x1b[H",
        b"\x0e",
        b"\xc2\x9b",
        b"\x1b(0",
        b"\x1bP1$q\x1b\\",
    ],
)
def test_rewrite_refuses_anything_but_plain_lines(spoiler: bytes) -> None:
    data = spoiler + b"".join(f"line {i}\r\n".encode() for i in range(100))
    assert flood.rewrite(data, 4, 6) is None


def test_rewrite_needs_enough_lines_to_pay() -> None:
    assert flood.rewrite(b"a\r\n" * 20, 4, 6) is None
    assert flood.rewrite(b"a\r\n" * 22, 4, 6) is not None


def test_a_bare_newline_before_the_cut_refuses() -> None:
    assert flood.rewrite(b"a\n" * 100, 4, 6) is None


@pytest.mark.parametrize(
    "data",
    [
        b"".join(b"line %d\r\n" % i for i in range(100)),
        b"\x1b[1;31mred from here on\r\n" + b"".join(b"%d\r\n" % i for i in range(100)),
        b"\x1b[44m" + b"".join(b"%d\t|\x07\r\n" % i for i in range(100)) + b"tail",
        "".join(f"{'中' * (i % 9)}\r\n" for i in range(100)).encode(),
    ],
)
def test_fast_forward_equals_feeding_every_byte_on_simple_floods(data: bytes) -> None:
    limit = terminal.FLOOD_MIN_BYTES
    fast, slow = (
        Terminal(COLUMNS, LINES, history=HISTORY),
        Terminal(COLUMNS, LINES, history=HISTORY),
    )
    try:
        terminal.FLOOD_MIN_BYTES = 0
        fast.feed(data)
    finally:
        terminal.FLOOD_MIN_BYTES = limit
    for i in range(0, len(data), 5):
        slow.feed(data[i : i + 5])
    fast.feed(b"X")
    slow.feed(b"X")
    assert state(fast) == state(slow)
    assert flood.rewrite(data, LINES, HISTORY) is not None  # the fast path was taken
