"""Mouse reports (xterm ctlseqs "Mouse Tracking") and text selection on cells."""

from __future__ import annotations

import numpy as np
import pytest

from vzvnc.term.cells import ATTR_WIDE_LEFT, ATTR_WIDE_RIGHT
from vzvnc.term.mouse import MODE_ANY, MODE_BUTTON, MODE_NORMAL, MODE_X10, MouseReporter
from vzvnc.term.selection import Selection

LEFT, MIDDLE, RIGHT, WHEEL_UP, WHEEL_DOWN = 1, 2, 4, 8, 16


def test_sgr_press_release_at_one_based_cells() -> None:
    mouse = MouseReporter()
    assert mouse.event(LEFT, 4, 9, mode=MODE_NORMAL, sgr=True) == b"\x1b[<0;5;10M"
    assert mouse.event(0, 4, 9, mode=MODE_NORMAL, sgr=True) == b"\x1b[<0;5;10m"
    assert mouse.event(RIGHT, 0, 0, mode=MODE_NORMAL, sgr=True) == b"\x1b[<2;1;1M"
    assert mouse.event(0, 0, 0, mode=MODE_NORMAL, sgr=True) == b"\x1b[<2;1;1m"


def test_legacy_encoding_adds_32_and_releases_as_button_3() -> None:
    mouse = MouseReporter()
    assert mouse.event(MIDDLE, 0, 0, mode=MODE_NORMAL, sgr=False) == b"\x1b[M\x21\x21\x21"
    assert mouse.event(0, 1, 2, mode=MODE_NORMAL, sgr=False) == b"\x1b[M\x23\x22\x23"


def test_legacy_encoding_drops_coordinates_beyond_223() -> None:
    mouse = MouseReporter()
    assert mouse.event(LEFT, 230, 0, mode=MODE_NORMAL, sgr=False) == b""
    assert mouse.event(LEFT | MIDDLE, 230, 0, mode=MODE_NORMAL, sgr=True) == b"\x1b[<1;231;1M"


def test_wheel_is_buttons_64_and_65_press_only() -> None:
    mouse = MouseReporter()
    assert mouse.event(WHEEL_UP, 2, 3, mode=MODE_NORMAL, sgr=True) == b"\x1b[<64;3;4M"
    assert mouse.event(0, 2, 3, mode=MODE_NORMAL, sgr=True) == b""
    assert mouse.event(WHEEL_DOWN, 2, 3, mode=MODE_NORMAL, sgr=True) == b"\x1b[<65;3;4M"


def test_x10_reports_presses_only_without_modifiers() -> None:
    mouse = MouseReporter()
    report = mouse.event(LEFT, 0, 0, mode=MODE_X10, sgr=False, shift=True, ctrl=True)
    assert report == b"\x1b[M\x20\x21\x21"
    assert mouse.event(0, 0, 0, mode=MODE_X10, sgr=False) == b""


def test_modifiers_add_4_8_16() -> None:
    mouse = MouseReporter()
    report = mouse.event(LEFT, 0, 0, mode=MODE_NORMAL, sgr=True, shift=True, meta=True, ctrl=True)
    assert report == b"\x1b[<28;1;1M"


@pytest.mark.parametrize(
    ("mode", "held", "expected"),
    [
        (MODE_NORMAL, LEFT, b""),
        (MODE_BUTTON, LEFT, b"\x1b[<32;6;1M"),
        (MODE_BUTTON, 0, b""),
        (MODE_ANY, 0, b"\x1b[<35;6;1M"),
        (MODE_ANY, RIGHT, b"\x1b[<34;6;1M"),
    ],
)
def test_motion_by_mode(mode: int, held: int, expected: bytes) -> None:
    mouse = MouseReporter()
    mouse.event(held, 0, 0, mode=mode, sgr=True)
    assert mouse.event(held, 5, 0, mode=mode, sgr=True) == expected
    assert mouse.event(held, 5, 0, mode=mode, sgr=True) == b""  # same cell: no report


def test_selection_mask_runs_in_reading_order() -> None:
    mask = Selection((2, 5), (0, 3)).mask(4, 8)
    expected = np.zeros((4, 8), dtype=bool)
    expected[0, 3:] = True
    expected[1, :] = True
    expected[2, :6] = True
    assert (mask == expected).all()


def test_selection_text_skips_wide_right_halves_and_trailing_blanks() -> None:
    # Row 0 is "ab中 x" (中 takes columns 2-3), row 1 is "hello".
    chars = np.full((2, 8), 0x20, dtype=np.uint32)
    attrs = np.zeros((2, 8), dtype=np.uint16)
    chars[0, :6] = [ord("a"), ord("b"), 0x4E2D, 0x4E2D, 0x20, ord("x")]
    attrs[0, 2], attrs[0, 3] = ATTR_WIDE_LEFT, ATTR_WIDE_RIGHT
    chars[1, :5] = [ord(c) for c in "hello"]
    assert Selection((0, 1), (1, 7)).text(chars, attrs) == "b中 x\nhello"
    assert Selection((1, 1), (1, 2)).text(chars, attrs) == "el"
