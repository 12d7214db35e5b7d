"""keymap: keysyms + modifiers + terminal modes -> the bytes xterm sends.

Expected bytes are written out literally from xterm's ctlseqs ("PC-Style
Function Keys", "VT220-Style Function Keys") and X11's keysymdef.h; none is
computed with the module under test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vzvnc.term.keymap import ModifierState, key_to_bytes

# Keysyms, spelled out here rather than imported so a wrong constant in the
# module cannot make its own test pass.
SHIFT_L, SHIFT_R = 0xFFE1, 0xFFE2
CONTROL_L, CONTROL_R = 0xFFE3, 0xFFE4
CAPS_LOCK = 0xFFE5
META_L, META_R = 0xFFE7, 0xFFE8
ALT_L, ALT_R = 0xFFE9, 0xFFEA
SUPER_L, SUPER_R = 0xFFEB, 0xFFEC
HYPER_L = 0xFFED
ISO_LEVEL3_SHIFT = 0xFE03
MODE_SWITCH = 0xFF7E
NUM_LOCK = 0xFF7F

BACKSPACE, TAB, LINEFEED, RETURN, ESCAPE = 0xFF08, 0xFF09, 0xFF0A, 0xFF0D, 0xFF1B
ISO_LEFT_TAB = 0xFE20
HOME, LEFT, UP, RIGHT, DOWN = 0xFF50, 0xFF51, 0xFF52, 0xFF53, 0xFF54
PRIOR, NEXT, END, BEGIN = 0xFF55, 0xFF56, 0xFF57, 0xFF58
SELECT, INSERT, MENU, FIND, HELP = 0xFF60, 0xFF63, 0xFF67, 0xFF68, 0xFF6A
DELETE = 0xFFFF
F = {n: 0xFFBE + n - 1 for n in range(1, 36)}  # F[1] = 0xffbe ... F[35] = 0xffe0

KP_SPACE, KP_TAB, KP_ENTER = 0xFF80, 0xFF89, 0xFF8D
KP_F1, KP_F2, KP_F3, KP_F4 = 0xFF91, 0xFF92, 0xFF93, 0xFF94
KP_HOME, KP_LEFT, KP_UP, KP_RIGHT, KP_DOWN = 0xFF95, 0xFF96, 0xFF97, 0xFF98, 0xFF99
KP_PRIOR, KP_NEXT, KP_END, KP_BEGIN = 0xFF9A, 0xFF9B, 0xFF9C, 0xFF9D
KP_INSERT, KP_DELETE = 0xFF9E, 0xFF9F
KP_MULTIPLY, KP_ADD, KP_SEPARATOR, KP_SUBTRACT = 0xFFAA, 0xFFAB, 0xFFAC, 0xFFAD
KP_DECIMAL, KP_DIVIDE, KP_EQUAL = 0xFFAE, 0xFFAF, 0xFFBD
KP = {n: 0xFFB0 + n for n in range(10)}  # KP_0 .. KP_9

ESC = b"\x1b"
CSI = b"\x1b["
SS3 = b"\x1bO"

ALL_MODIFIERS = (
    SHIFT_L, SHIFT_R, CONTROL_L, CONTROL_R, CAPS_LOCK, 0xFFE6, META_L, META_R,
    ALT_L, ALT_R, SUPER_L, SUPER_R, HYPER_L, 0xFFEE, ISO_LEVEL3_SHIFT, MODE_SWITCH,
    NUM_LOCK, 0xFE01, 0xFE02, 0xFE04, 0xFE05, 0xFE11, 0xFE12, 0xFE13,
)  # fmt: skip


def hex_id(value: object) -> str | None:
    """Test ids: keysyms in hex, anything else left to pytest."""
    return hex(value) if isinstance(value, int) and not isinstance(value, bool) else None


def fkey_id(value: object) -> str | None:
    return f"F{value}" if isinstance(value, int) else None


def held(*keysyms: int) -> ModifierState:
    mods = ModifierState()
    for keysym in keysyms:
        assert mods.update(keysym, True)
    return mods


def press(keysym: int, *modifiers: int, **modes: bool) -> bytes:
    return key_to_bytes(keysym, held(*modifiers), **modes)


# xterm's modifier-code table (ctlseqs, "PC-Style Function Keys").
MODIFIER_CODES = [
    ((SHIFT_L,), 2),
    ((ALT_L,), 3),
    ((SHIFT_L, ALT_L), 4),
    ((CONTROL_L,), 5),
    ((SHIFT_L, CONTROL_L), 6),
    ((ALT_L, CONTROL_L), 7),
    ((SHIFT_L, ALT_L, CONTROL_L), 8),
    ((META_L,), 9),
    ((META_L, SHIFT_L), 10),
    ((META_L, ALT_L), 11),
    ((META_L, ALT_L, SHIFT_L), 12),
    ((META_L, CONTROL_L), 13),
    ((META_L, CONTROL_L, SHIFT_L), 14),
    ((META_L, CONTROL_L, ALT_L), 15),
    ((META_L, CONTROL_L, ALT_L, SHIFT_L), 16),
]
MODIFIER_IDS = [f"mod{code}" for _, code in MODIFIER_CODES]


# --- modifier state -------------------------------------------------------------


@pytest.mark.parametrize(("modifiers", "code"), MODIFIER_CODES, ids=MODIFIER_IDS)
def test_xterm_modifier_param(modifiers: tuple[int, ...], code: int) -> None:
    assert held(*modifiers).xterm_modifier_param() == code


@pytest.mark.parametrize(("modifiers", "code"), MODIFIER_CODES, ids=MODIFIER_IDS)
def test_right_hand_modifiers_count_the_same(modifiers: tuple[int, ...], code: int) -> None:
    right = {SHIFT_L: SHIFT_R, CONTROL_L: CONTROL_R, ALT_L: ALT_R, META_L: META_R}
    assert held(*(right[k] for k in modifiers)).xterm_modifier_param() == code


def test_no_modifiers_is_param_1_and_all_flags_off() -> None:
    mods = ModifierState()
    assert mods.xterm_modifier_param() == 1
    assert not (mods.shift or mods.ctrl or mods.alt or mods.meta or mods.altgr)


@pytest.mark.parametrize(
    ("left", "right", "flag"),
    [
        (SHIFT_L, SHIFT_R, "shift"),
        (CONTROL_L, CONTROL_R, "ctrl"),
        (ALT_L, ALT_R, "alt"),
        (META_L, META_R, "meta"),
        (ISO_LEVEL3_SHIFT, MODE_SWITCH, "altgr"),
    ],
)
def test_left_and_right_tracked_separately(left: int, right: int, flag: str) -> None:
    mods = ModifierState()
    mods.update(left, True)
    mods.update(right, True)
    mods.update(left, False)
    assert getattr(mods, flag) is True, "releasing one side keeps the other held"
    mods.update(right, False)
    assert getattr(mods, flag) is False
    # The other order too.
    mods.update(right, True)
    mods.update(left, True)
    mods.update(right, False)
    assert getattr(mods, flag) is True
    mods.update(left, False)
    assert getattr(mods, flag) is False


def test_releasing_shift_l_while_shift_r_held_still_shifts_tab() -> None:
    mods = ModifierState()
    mods.update(SHIFT_L, True)
    mods.update(SHIFT_R, True)
    mods.update(SHIFT_L, False)
    assert key_to_bytes(TAB, mods) == CSI + b"Z"
    mods.update(SHIFT_R, False)
    assert key_to_bytes(TAB, mods) == b"\t"


def test_each_flag_comes_only_from_its_keys() -> None:
    assert held(SHIFT_L).shift and not held(SHIFT_L).ctrl
    assert held(CONTROL_R).ctrl and not held(CONTROL_R).alt
    assert held(ALT_R).alt and not held(ALT_R).meta and not held(ALT_R).altgr
    assert held(META_R).meta and not held(META_R).alt
    assert held(ISO_LEVEL3_SHIFT).altgr and not held(ISO_LEVEL3_SHIFT).alt
    assert held(MODE_SWITCH).altgr and not held(MODE_SWITCH).meta
    supers = held(SUPER_L, SUPER_R, HYPER_L, CAPS_LOCK, NUM_LOCK)
    assert supers.xterm_modifier_param() == 1
    assert not (supers.shift or supers.ctrl or supers.alt or supers.meta or supers.altgr)


@pytest.mark.parametrize("keysym", ALL_MODIFIERS, ids=hex_id)
def test_update_reports_modifiers(keysym: int) -> None:
    mods = ModifierState()
    assert mods.update(keysym, True) is True
    assert mods.update(keysym, False) is True
    assert key_to_bytes(keysym, ModifierState()) == b""
    assert key_to_bytes(keysym, held(CONTROL_L, ALT_L), application_keypad=True) == b""


@pytest.mark.parametrize("keysym", [ord("a"), RETURN, UP, F[1], KP[5], 0xFF14, 0, 0x01000041])
def test_update_ignores_other_keys(keysym: int) -> None:
    mods = held(SHIFT_L)
    assert mods.update(keysym, True) is False
    assert mods.update(keysym, False) is False
    assert mods.xterm_modifier_param() == 2


def test_release_without_press_is_ignored() -> None:
    mods = ModifierState()
    assert mods.update(CONTROL_L, False) is True
    assert not mods.ctrl
    mods.update(CONTROL_L, True)
    mods.update(CONTROL_L, True)  # auto-repeat sends the press again
    mods.update(CONTROL_L, False)
    assert not mods.ctrl


def test_states_are_not_shared_between_clients() -> None:
    first, second = ModifierState(), ModifierState()
    first.update(CONTROL_L, True)
    assert first.ctrl and not second.ctrl
    assert key_to_bytes(ord("c"), second) == b"c"
    assert key_to_bytes(ord("c"), first) == b"\x03"


def test_reset_releases_everything() -> None:
    mods = held(SHIFT_L, CONTROL_R, ALT_L, META_R, ISO_LEVEL3_SHIFT)
    mods.reset()
    assert mods.xterm_modifier_param() == 1
    assert not mods.altgr


# --- cursor keys ----------------------------------------------------------------

CURSOR_KEYS = [
    (UP, b"A"),
    (DOWN, b"B"),
    (RIGHT, b"C"),
    (LEFT, b"D"),
    (HOME, b"H"),
    (END, b"F"),
    (BEGIN, b"E"),
]
CURSOR_IDS = ["Up", "Down", "Right", "Left", "Home", "End", "Begin"]


@pytest.mark.parametrize(
    ("keysym", "normal", "application"),
    [
        (UP, b"\x1b[A", b"\x1bOA"),
        (DOWN, b"\x1b[B", b"\x1bOB"),
        (RIGHT, b"\x1b[C", b"\x1bOC"),
        (LEFT, b"\x1b[D", b"\x1bOD"),
        (HOME, b"\x1b[H", b"\x1bOH"),
        (END, b"\x1b[F", b"\x1bOF"),
        (BEGIN, b"\x1b[E", b"\x1bOE"),
    ],
    ids=CURSOR_IDS,
)
def test_cursor_keys_follow_decckm(keysym: int, normal: bytes, application: bytes) -> None:
    assert press(keysym) == normal
    assert press(keysym, application_cursor=False) == normal
    assert press(keysym, application_cursor=True) == application
    # The keypad mode has nothing to do with them.
    assert press(keysym, application_keypad=True) == normal
    assert press(keysym, application_cursor=True, application_keypad=True) == application


@pytest.mark.parametrize(("keysym", "final"), CURSOR_KEYS, ids=CURSOR_IDS)
@pytest.mark.parametrize(("modifiers", "code"), MODIFIER_CODES, ids=MODIFIER_IDS)
@pytest.mark.parametrize("decckm", [False, True], ids=["normal", "decckm"])
def test_modified_cursor_keys_are_csi_1_mod(
    keysym: int, final: bytes, modifiers: tuple[int, ...], code: int, decckm: bool
) -> None:
    expected = b"\x1b[1;" + str(code).encode() + final
    assert press(keysym, *modifiers, application_cursor=decckm) == expected


def test_modified_cursor_examples() -> None:
    assert press(UP, SHIFT_L) == b"\x1b[1;2A"
    assert press(LEFT, CONTROL_L, application_cursor=True) == b"\x1b[1;5D"
    assert press(RIGHT, ALT_R) == b"\x1b[1;3C"
    assert press(HOME, SHIFT_R) == b"\x1b[1;2H"
    assert press(END, CONTROL_R, SHIFT_L, application_cursor=True) == b"\x1b[1;6F"


# --- editing keypad -------------------------------------------------------------

EDIT_KEYS = [
    (FIND, b"1"),
    (INSERT, b"2"),
    (DELETE, b"3"),
    (SELECT, b"4"),
    (PRIOR, b"5"),
    (NEXT, b"6"),
    (HELP, b"28"),
    (MENU, b"29"),
    (KP_INSERT, b"2"),
    (KP_DELETE, b"3"),
]
EDIT_IDS = [
    "Find", "Insert", "Delete", "Select", "Page_Up", "Page_Down", "Help", "Menu",
    "KP_Insert", "KP_Delete",
]  # fmt: skip


@pytest.mark.parametrize(("keysym", "number"), EDIT_KEYS, ids=EDIT_IDS)
def test_editing_keys(keysym: int, number: bytes) -> None:
    expected = b"\x1b[" + number + b"~"
    for decckm in (False, True):
        for deckpam in (False, True):
            got = press(keysym, application_cursor=decckm, application_keypad=deckpam)
            assert got == expected


@pytest.mark.parametrize(("keysym", "number"), EDIT_KEYS, ids=EDIT_IDS)
@pytest.mark.parametrize(("modifiers", "code"), MODIFIER_CODES, ids=MODIFIER_IDS)
def test_modified_editing_keys(
    keysym: int, number: bytes, modifiers: tuple[int, ...], code: int
) -> None:
    assert press(keysym, *modifiers) == b"\x1b[" + number + b";" + str(code).encode() + b"~"


def test_editing_key_literals() -> None:
    assert press(INSERT) == b"\x1b[2~"
    assert press(DELETE) == b"\x1b[3~"
    assert press(PRIOR) == b"\x1b[5~"
    assert press(NEXT) == b"\x1b[6~"
    assert press(PRIOR, SHIFT_L) == b"\x1b[5;2~"
    assert press(DELETE, CONTROL_L) == b"\x1b[3;5~"
    assert press(NEXT, ALT_L, CONTROL_R) == b"\x1b[6;7~"


# --- function keys --------------------------------------------------------------

FUNCTION_KEYS = [
    (1, b"\x1bOP"),
    (2, b"\x1bOQ"),
    (3, b"\x1bOR"),
    (4, b"\x1bOS"),
    (5, b"\x1b[15~"),
    (6, b"\x1b[17~"),
    (7, b"\x1b[18~"),
    (8, b"\x1b[19~"),
    (9, b"\x1b[20~"),
    (10, b"\x1b[21~"),
    (11, b"\x1b[23~"),
    (12, b"\x1b[24~"),
    # VT220-Style: F13..F20
    (13, b"\x1b[25~"),
    (14, b"\x1b[26~"),
    (15, b"\x1b[28~"),
    (16, b"\x1b[29~"),
    (17, b"\x1b[31~"),
    (18, b"\x1b[32~"),
    (19, b"\x1b[33~"),
    (20, b"\x1b[34~"),
    # xterm numbers the rest from 42 on
    (21, b"\x1b[42~"),
    (22, b"\x1b[43~"),
    (35, b"\x1b[56~"),
]


@pytest.mark.parametrize(("number", "expected"), FUNCTION_KEYS, ids=fkey_id)
def test_function_keys(number: int, expected: bytes) -> None:
    assert press(F[number]) == expected
    # Neither DECCKM nor DECKPAM changes them.
    assert press(F[number], application_cursor=True, application_keypad=True) == expected


MODIFIED_FUNCTION_KEYS = [
    (1, b"1", b"P"),
    (2, b"1", b"Q"),
    (3, b"1", b"R"),
    (4, b"1", b"S"),
    (5, b"15", b"~"),
    (6, b"17", b"~"),
    (7, b"18", b"~"),
    (8, b"19", b"~"),
    (9, b"20", b"~"),
    (10, b"21", b"~"),
    (11, b"23", b"~"),
    (12, b"24", b"~"),
    (13, b"25", b"~"),
    (20, b"34", b"~"),
]


@pytest.mark.parametrize(("number", "first", "final"), MODIFIED_FUNCTION_KEYS, ids=fkey_id)
@pytest.mark.parametrize(("modifiers", "code"), MODIFIER_CODES, ids=MODIFIER_IDS)
def test_modified_function_keys(
    number: int, first: bytes, final: bytes, modifiers: tuple[int, ...], code: int
) -> None:
    expected = b"\x1b[" + first + b";" + str(code).encode() + final
    assert press(F[number], *modifiers) == expected


def test_modified_function_key_literals() -> None:
    # ctlseqs: "shift-F5 would be sent as CSI 1 5 ; 2 ~"
    assert press(F[5], SHIFT_L) == b"\x1b[15;2~"
    # SS3 becomes CSI when F1..F4 carry a modifier; Shift+F1 is not F13.
    assert press(F[1], SHIFT_L) == b"\x1b[1;2P"
    assert press(F[4], CONTROL_L) == b"\x1b[1;5S"
    assert press(F[12], ALT_L) == b"\x1b[24;3~"


# --- keypad ---------------------------------------------------------------------

# ctlseqs "VT220-Style Function Keys", the keypad table: (numeric, application).
KEYPAD_KEYS = [
    (KP_SPACE, b" ", b"\x1bO "),
    (KP_TAB, b"\t", b"\x1bOI"),
    (KP_ENTER, b"\r", b"\x1bOM"),
    (KP_MULTIPLY, b"*", b"\x1bOj"),
    (KP_ADD, b"+", b"\x1bOk"),
    (KP_SEPARATOR, b",", b"\x1bOl"),
    (KP_SUBTRACT, b"-", b"\x1bOm"),
    (KP_DECIMAL, b".", b"\x1bOn"),
    (KP_DIVIDE, b"/", b"\x1bOo"),
    (KP[0], b"0", b"\x1bOp"),
    (KP[1], b"1", b"\x1bOq"),
    (KP[2], b"2", b"\x1bOr"),
    (KP[3], b"3", b"\x1bOs"),
    (KP[4], b"4", b"\x1bOt"),
    (KP[5], b"5", b"\x1bOu"),
    (KP[6], b"6", b"\x1bOv"),
    (KP[7], b"7", b"\x1bOw"),
    (KP[8], b"8", b"\x1bOx"),
    (KP[9], b"9", b"\x1bOy"),
    (KP_EQUAL, b"=", b"\x1bOX"),
]
KEYPAD_IDS = [
    "KP_Space", "KP_Tab", "KP_Enter", "KP_Multiply", "KP_Add", "KP_Separator",
    "KP_Subtract", "KP_Decimal", "KP_Divide", *(f"KP_{n}" for n in range(10)), "KP_Equal",
]  # fmt: skip


@pytest.mark.parametrize(("keysym", "numeric", "application"), KEYPAD_KEYS, ids=KEYPAD_IDS)
def test_keypad_modes(keysym: int, numeric: bytes, application: bytes) -> None:
    assert press(keysym) == numeric
    assert press(keysym, application_keypad=False) == numeric
    assert press(keysym, application_keypad=True) == application
    # DECCKM is a different mode.
    assert press(keysym, application_cursor=True) == numeric
    assert press(keysym, application_cursor=True, application_keypad=True) == application


@pytest.mark.parametrize(("keysym", "numeric", "application"), KEYPAD_KEYS, ids=KEYPAD_IDS)
def test_keypad_numeric_mode_ignores_modifiers(
    keysym: int, numeric: bytes, application: bytes
) -> None:
    # xterm's keypad path sends the character without looking at modifiers.
    assert press(keysym, CONTROL_L) == numeric
    assert press(keysym, ALT_L) == numeric
    assert press(keysym, CONTROL_L, ALT_L, SHIFT_L, META_L) == numeric


def test_keypad_application_mode_carries_modifier_after_ss3() -> None:
    assert press(KP_ADD, CONTROL_L, application_keypad=True) == b"\x1bO5k"
    assert press(KP[0], SHIFT_L, application_keypad=True) == b"\x1bO2p"
    assert press(KP_ENTER, ALT_L, application_keypad=True) == b"\x1bO3M"


@pytest.mark.parametrize(
    ("keysym", "final"),
    [(KP_F1, b"P"), (KP_F2, b"Q"), (KP_F3, b"R"), (KP_F4, b"S")],
    ids=["KP_F1", "KP_F2", "KP_F3", "KP_F4"],
)
def test_keypad_pf_keys(keysym: int, final: bytes) -> None:
    assert press(keysym) == b"\x1bO" + final
    assert press(keysym, application_keypad=True) == b"\x1bO" + final
    assert press(keysym, SHIFT_L) == b"\x1bO2" + final


# Keypad keysyms with Num Lock off act as the cursor and editing keys.
KEYPAD_CURSOR = [
    (KP_UP, b"\x1b[A", b"\x1bOA"),
    (KP_DOWN, b"\x1b[B", b"\x1bOB"),
    (KP_RIGHT, b"\x1b[C", b"\x1bOC"),
    (KP_LEFT, b"\x1b[D", b"\x1bOD"),
    (KP_HOME, b"\x1b[H", b"\x1bOH"),
    (KP_END, b"\x1b[F", b"\x1bOF"),
    (KP_BEGIN, b"\x1b[E", b"\x1bOE"),
    (KP_PRIOR, b"\x1b[5~", b"\x1b[5~"),
    (KP_NEXT, b"\x1b[6~", b"\x1b[6~"),
    (KP_INSERT, b"\x1b[2~", b"\x1b[2~"),
    (KP_DELETE, b"\x1b[3~", b"\x1b[3~"),
]
KEYPAD_CURSOR_IDS = [
    "KP_Up", "KP_Down", "KP_Right", "KP_Left", "KP_Home", "KP_End", "KP_Begin",
    "KP_Prior", "KP_Next", "KP_Insert", "KP_Delete",
]  # fmt: skip


@pytest.mark.parametrize(("keysym", "normal", "decckm"), KEYPAD_CURSOR, ids=KEYPAD_CURSOR_IDS)
@pytest.mark.parametrize("deckpam", [False, True], ids=["numeric", "application"])
def test_keypad_cursor_keys(keysym: int, normal: bytes, decckm: bytes, deckpam: bool) -> None:
    assert press(keysym, application_keypad=deckpam) == normal
    assert press(keysym, application_keypad=deckpam, application_cursor=True) == decckm


def test_modified_keypad_cursor_keys() -> None:
    assert press(KP_UP, CONTROL_L) == b"\x1b[1;5A"
    assert press(KP_PRIOR, SHIFT_L, application_keypad=True) == b"\x1b[5;2~"


# --- Return, Tab, BackSpace, Escape -----------------------------------------------


@pytest.mark.parametrize(
    ("keysym", "expected"),
    [(RETURN, b"\r"), (TAB, b"\t"), (ESCAPE, b"\x1b"), (LINEFEED, b"\n")],
    ids=["Return", "Tab", "Escape", "Linefeed"],
)
def test_simple_keys(keysym: int, expected: bytes) -> None:
    assert press(keysym) == expected
    assert press(keysym, application_cursor=True, application_keypad=True) == expected
    assert press(keysym, CONTROL_L) == expected
    assert press(keysym, ALT_L) == b"\x1b" + expected
    assert press(keysym, META_R) == b"\x1b" + expected
    assert press(keysym, ISO_LEVEL3_SHIFT) == expected


def test_shift_tab() -> None:
    assert press(TAB, SHIFT_L) == b"\x1b[Z"
    assert press(TAB, SHIFT_R) == b"\x1b[Z"
    assert press(ISO_LEFT_TAB) == b"\x1b[Z"
    assert press(ISO_LEFT_TAB, SHIFT_L) == b"\x1b[Z"
    assert press(ISO_LEFT_TAB, SHIFT_L, ALT_L) == b"\x1b[Z"
    assert press(RETURN, SHIFT_L) == b"\r"
    assert press(ESCAPE, SHIFT_L) == b"\x1b"


@pytest.mark.parametrize(
    ("sends_delete", "modifiers", "expected"),
    [
        (True, (), b"\x7f"),
        (False, (), b"\x08"),
        (True, (CONTROL_L,), b"\x08"),
        (False, (CONTROL_R,), b"\x7f"),
        (True, (SHIFT_L,), b"\x7f"),
        (True, (ALT_L,), b"\x1b\x7f"),
        (False, (ALT_L,), b"\x1b\x08"),
        (True, (ALT_L, CONTROL_L), b"\x1b\x08"),
        (True, (META_L,), b"\x1b\x7f"),
        (True, (ISO_LEVEL3_SHIFT,), b"\x7f"),
    ],
)
def test_backspace(sends_delete: bool, modifiers: tuple[int, ...], expected: bytes) -> None:
    assert press(BACKSPACE, *modifiers, backspace_sends_delete=sends_delete) == expected


def test_backspace_default_is_delete() -> None:
    assert key_to_bytes(BACKSPACE, ModifierState()) == b"\x7f"


# --- characters and Ctrl --------------------------------------------------------


@pytest.mark.parametrize("letter", "abcdefghijklmnopqrstuvwxyz")
def test_ctrl_letters_either_case(letter: str) -> None:
    expected = bytes([ord(letter) - ord("a") + 1])
    assert press(ord(letter), CONTROL_L) == expected
    assert press(ord(letter.upper()), CONTROL_L) == expected
    assert press(ord(letter.upper()), CONTROL_R, SHIFT_L) == expected
    # Unicode-keysym spelling of the same letter (some viewers send these).
    assert press(0x01000000 + ord(letter), CONTROL_L) == expected


def test_ctrl_letter_literals() -> None:
    assert press(ord("a"), CONTROL_L) == b"\x01"
    assert press(ord("c"), CONTROL_L) == b"\x03"
    assert press(ord("Z"), CONTROL_L) == b"\x1a"


@pytest.mark.parametrize(
    ("char", "expected"),
    [
        (" ", b"\x00"),
        ("@", b"\x00"),
        ("`", b"\x00"),
        ("2", b"\x00"),
        ("[", b"\x1b"),
        ("3", b"\x1b"),
        ("{", b"\x1b"),
        ("\\", b"\x1c"),
        ("4", b"\x1c"),
        ("|", b"\x1c"),
        ("]", b"\x1d"),
        ("5", b"\x1d"),
        ("}", b"\x1d"),
        ("^", b"\x1e"),
        ("6", b"\x1e"),
        ("~", b"\x1e"),
        ("_", b"\x1f"),
        ("7", b"\x1f"),
        ("/", b"\x1f"),
        ("?", b"\x7f"),
        ("8", b"\x7f"),
        # Ctrl leaves everything else alone.
        ("1", b"1"),
        ("9", b"9"),
        ("0", b"0"),
        (".", b"."),
        ("-", b"-"),
        ("=", b"="),
        ("\u00e9", b"\xc3\xa9"),
        ("\u00a0", b"\xc2\xa0"),
    ],
    ids=repr,
)
def test_ctrl_symbols(char: str, expected: bytes) -> None:
    assert press(ord(char), CONTROL_L) == expected


@pytest.mark.parametrize(
    ("keysym", "expected"),
    [
        (0x20, b" "),
        (0x41, b"A"),
        (0x7E, b"~"),
        (0xA0, b"\xc2\xa0"),
        (0xE9, b"\xc3\xa9"),  # eacute
        (0xFF, b"\xc3\xbf"),  # ydiaeresis
        (0x010020AC, b"\xe2\x82\xac"),  # U+20AC
        (0x01000101, b"\xc4\x81"),  # U+0101
        (0x0101F600, b"\xf0\x9f\x98\x80"),  # U+1F600
        (0x0110FFFF, b"\xf4\x8f\xbf\xbf"),  # U+10FFFF
        (0x010000E9, b"\xc3\xa9"),  # Latin-1 through the Unicode range
        (0x20AC, b"\xe2\x82\xac"),  # EuroSign
        (0x01A1, b"\xc4\x84"),  # Aogonek, U+0104
        (0x03BD, b"\xc5\x8a"),  # ENG, U+014A
        (0x13BD, b"\xc5\x93"),  # oe, U+0153
        (0x04B1, b"\xe3\x82\xa2"),  # kana_A, U+30A2
        (0x05C7, b"\xd8\xa7"),  # Arabic_alef, U+0627
        (0x06C1, b"\xd0\xb0"),  # Cyrillic_a, U+0430
        (0x07E1, b"\xce\xb1"),  # Greek_alpha, U+03B1
        (0x08BC, b"\xe2\x89\xa4"),  # lessthanequal, U+2264
        (0x0AA9, b"\xe2\x80\x94"),  # emdash, U+2014
        (0x0CE0, b"\xd7\x90"),  # hebrew_aleph, U+05D0
        (0x0DA1, b"\xe0\xb8\x81"),  # Thai_kokai, U+0E01
        (0x0EB4, b"\xe3\x85\x84"),  # Hangul_PieubSios, U+3144
    ],
    ids=hex_id,
)
def test_characters(keysym: int, expected: bytes) -> None:
    assert press(keysym) == expected
    assert press(keysym, SHIFT_L) == expected
    assert press(keysym, ISO_LEVEL3_SHIFT) == expected
    assert press(keysym, application_cursor=True, application_keypad=True) == expected


KEYSYMDEF = Path("/usr/include/X11/keysymdef.h")
EXACT_LINE = re.compile(
    r"^#define XK_\w+\s+0x([0-9a-f]+)\s*/\* U\+([0-9A-F]{4,6}) .* \*/\s*$", re.MULTILINE
)


@pytest.mark.skipif(not KEYSYMDEF.exists(), reason="X11 keysymdef.h not installed")
def test_legacy_keysyms_match_keysymdef() -> None:
    """Every exact legacy mapping in the X11 header is honoured."""
    checked = 0
    for keysym_hex, codepoint_hex in EXACT_LINE.findall(KEYSYMDEF.read_text("latin-1")):
        keysym = int(keysym_hex, 16)
        if not 0x100 <= keysym <= 0x20FF:
            continue
        expected = chr(int(codepoint_hex, 16)).encode("utf-8")
        assert press(keysym) == expected, hex(keysym)
        checked += 1
    assert checked > 600


# --- Alt, Meta, AltGr -----------------------------------------------------------


@pytest.mark.parametrize(
    ("keysym", "modifiers", "expected"),
    [
        (ord("x"), (ALT_L,), b"\x1bx"),
        (ord("x"), (ALT_R,), b"\x1bx"),
        (ord("x"), (META_L,), b"\x1bx"),
        (ord("X"), (ALT_L, SHIFT_L), b"\x1bX"),
        (ord("x"), (ALT_L, CONTROL_L), b"\x1b\x18"),
        (ord(" "), (ALT_L, CONTROL_L), b"\x1b\x00"),
        (ord("."), (ALT_L,), b"\x1b."),
        (ord("b"), (ALT_L, META_L), b"\x1bb"),
        (0xE9, (ALT_L,), b"\x1b\xc3\xa9"),
        (0x06C1, (ALT_L,), b"\x1b\xd0\xb0"),
        (0x0101F600, (META_R,), b"\x1b\xf0\x9f\x98\x80"),
    ],
    ids=repr,
)
def test_alt_and_meta_prefix_escape(
    keysym: int, modifiers: tuple[int, ...], expected: bytes
) -> None:
    assert press(keysym, *modifiers) == expected


@pytest.mark.parametrize("altgr", [ISO_LEVEL3_SHIFT, MODE_SWITCH], ids=["Level3", "Mode_switch"])
@pytest.mark.parametrize(
    ("keysym", "expected"),
    [
        (ord("@"), b"@"),
        (ord("|"), b"|"),
        (ord("{"), b"{"),
        (0x20AC, b"\xe2\x82\xac"),
        (0x010020AC, b"\xe2\x82\xac"),
        (0xDF, b"\xc3\x9f"),
    ],
    ids=repr,
)
def test_altgr_is_not_alt(altgr: int, keysym: int, expected: bytes) -> None:
    assert press(keysym, altgr) == expected
    assert press(keysym, altgr, SHIFT_L) == expected
    assert held(altgr).xterm_modifier_param() == 1
    assert press(UP, altgr) == b"\x1b[A"


def test_super_and_hyper_change_nothing() -> None:
    assert press(ord("x"), SUPER_L) == b"x"
    assert press(ord("x"), HYPER_L) == b"x"
    assert press(UP, SUPER_R) == b"\x1b[A"


# --- keys that send nothing ---------------------------------------------------------


@pytest.mark.parametrize(
    "keysym",
    [
        0x00,
        0x08,
        0x0D,
        0x1B,
        0x1F,
        0x7F,
        0x80,
        0x9F,
        0x0100,
        0x01A0,  # hole in the Latin-2 block
        0x20AB,  # hole before EuroSign
        0x20FF,
        0xFF0B,  # Clear
        0xFF13,  # Pause: xterm would send XOFF
        0xFF14,  # Scroll_Lock
        0xFF15,  # Sys_Req
        0xFF61,  # Print
        0xFF65,  # Undo
        0xFF6B,  # Break
        0xFE52,  # dead_circumflex
        0xFD1D,  # 3270_PrintScreen
        0x1008FF11,  # XF86AudioLowerVolume
        0x01000000,  # U+0000
        0x0100000D,  # U+000D
        0x0100007F,  # U+007F
        0x01000085,  # U+0085
        0x0100D800,  # a surrogate
        0x0100DFFF,
        0x01110000,  # past U+10FFFF
        0xFFFFFF,  # VoidSymbol
        0xFFFFFFFF,
        -1,
        1 << 40,
    ],
    ids=hex_id,
)
def test_unknown_keysyms_send_nothing(keysym: int) -> None:
    assert press(keysym) == b""
    assert press(keysym, CONTROL_L, ALT_L, SHIFT_L, META_L) == b""
    assert press(keysym, application_cursor=True, application_keypad=True) == b""


# --- never raises -------------------------------------------------------------------


@given(
    keysym=st.integers(min_value=0, max_value=0xFFFFFFFF),
    modifiers=st.sets(st.sampled_from(ALL_MODIFIERS)),
    application_cursor=st.booleans(),
    application_keypad=st.booleans(),
    backspace_sends_delete=st.booleans(),
)
def test_any_keysym_any_modifiers_gives_bytes(
    keysym: int,
    modifiers: set[int],
    application_cursor: bool,
    application_keypad: bool,
    backspace_sends_delete: bool,
) -> None:
    mods = ModifierState()
    for modifier in modifiers:
        mods.update(modifier, True)
    result = key_to_bytes(
        keysym,
        mods,
        application_cursor=application_cursor,
        application_keypad=application_keypad,
        backspace_sends_delete=backspace_sends_delete,
    )
    assert isinstance(result, bytes)
    result.decode("utf-8")  # what reaches the pty is always valid UTF-8
    assert len(result) <= 12


@given(keysym=st.integers(min_value=0, max_value=0xFFFFFFFF), down=st.booleans())
def test_update_never_raises(keysym: int, down: bool) -> None:
    mods = ModifierState()
    assert isinstance(mods.update(keysym, down), bool)
    assert 1 <= mods.xterm_modifier_param() <= 16
