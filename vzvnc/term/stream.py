"""The parser front end: bytes in, ``CellScreen`` method calls out.

This module owns byte decoding (incremental UTF-8, invalid input becoming
U+FFFD) and the escape-sequence parser. It keeps pyte's ``ByteStream`` shape
(a generator state machine fed one character at a time, with plain text
handed to ``draw`` in runs) but replaces pyte's parser, which misreads or
crashes on sequences real programs send. The state machine follows the DEC
parser described at vt100.net (Paul Williams), reduced to what we act on:

- CSI: an optional private marker (``< = > ?``) first, parameters with ``;``
  and ``:``, up to two intermediates, a final. Acted on with a marker or
  intermediates: ``CSI ? ...`` for the few handlers that know ``private=True``,
  DA2 ``CSI > c``, DA3 ``CSI = c``, DECSTR ``CSI ! p`` and DECSCUSR
  ``CSI Ps SP q``; every other such sequence, and any malformed one, is
  consumed and ignored (so ``CSI > 4;1 m`` never becomes SGR 4;1). Colon
  sub-parameters are understood in SGR only (flattened to the semicolon
  form), elsewhere the sequence is ignored.
- OSC: ``0``, ``1`` and ``2`` (icon name and title); colour queries
  ``4 ; n ; ?`` and ``10``/``11``/``12 ; ?`` are answered with the default
  colours in xterm's form, ended like the query (BEL, else ST); setting
  colours is ignored. Terminated by BEL, ST or any ESC (which then starts the
  next sequence); other OSCs are ignored. Nothing in an OSC is ever printed.
- DCS, SOS, PM and APC bodies are swallowed up to ST (or any ESC).
- ``ESC ( 0`` / SO / SI select DEC line drawing even in UTF-8 mode, as xterm
  and tmux do. ``ESC % @`` is ignored: input is always UTF-8.

``feed`` never raises: an exception from a handler or the parser resets the
parser to the ground state and parsing continues after the character (or text
run, or sequence) that caused it. ``errors`` counts such events.

A fast path dispatches complete, well-formed CSI sequences met in the ground
state with one regular-expression match instead of one generator step per
character; it calls the same dispatcher as the state machine, so the result
does not depend on how the input is chunked. CR and LF met in the ground state
are applied directly too, for the same reason.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import pyte

from vzvnc.term.screen import CellScreen

_log = logging.getLogger(__name__)

ESC = "\x1b"
BEL = "\x07"
CAN = "\x18"
SUB = "\x1a"
DEL = "\x7f"
CSI_C1 = "\x9b"
OSC_C1 = "\x9d"
ST_C1 = "\x9c"
ST = "\x1b\\"  # the 7-bit string terminator, used in replies
STRING_C1 = frozenset("\x90\x98\x9e\x9f")  # DCS, SOS, PM, APC

MAX_PARAM_CHARS = 256  # longer parameter strings make the sequence ignored
MAX_PARAMS = 32  # extra parameters are dropped
MAX_PARAM_VALUE = 65535
MAX_INTERMEDIATES = 2
MAX_OSC_CHARS = 4096  # longer OSC strings are discarded

ParserGenerator = Generator[bool | None, str, None]
SubParser = Generator[bool | None, str, str | None]

# Plain text: anything but C0, DEL and C1 controls.
_TEXT = re.compile("[^\x00-\x1f\x7f-\x9f]+")
# A complete CSI sequence exactly as the state machine would dispatch it.
_CSI = re.compile(
    f"\x1b\\[([<=>?]?)([0-9:;]{{0,{MAX_PARAM_CHARS}}})"
    f"([\x20-\x2f]{{0,{MAX_INTERMEDIATES}}})([\x40-\x7e])"
)

_BASIC = {
    BEL: "bell",
    "\x08": "backspace",
    "\x09": "tab",
    "\x0a": "linefeed",
    "\x0b": "linefeed",
    "\x0c": "linefeed",
    "\x0d": "carriage_return",
    "\x0e": "shift_out",
    "\x0f": "shift_in",
}
_C1 = {
    "\x84": "index",
    "\x85": "next_line",
    "\x88": "set_tab_stop",
    "\x8d": "reverse_index",
}
_ESCAPE = {
    "c": "reset",
    "D": "index",
    "E": "next_line",
    "M": "reverse_index",
    "H": "set_tab_stop",
    "7": "save_cursor",
    "8": "restore_cursor",
    "=": "keypad_application_mode",
    ">": "keypad_numeric_mode",
}
_CSI_HANDLERS = {
    "@": "insert_characters",
    "A": "cursor_up",
    "B": "cursor_down",
    "C": "cursor_forward",
    "D": "cursor_back",
    "E": "cursor_down1",
    "F": "cursor_up1",
    "G": "cursor_to_column",
    "H": "cursor_position",
    "I": "cursor_forward_tab",
    "J": "erase_in_display",
    "K": "erase_in_line",
    "L": "insert_lines",
    "M": "delete_lines",
    "P": "delete_characters",
    "S": "scroll_up",
    "T": "scroll_down",
    "X": "erase_characters",
    "Z": "cursor_back_tab",
    "`": "cursor_to_column",
    "a": "cursor_forward",
    "b": "repeat_character",
    "c": "report_device_attributes",
    "d": "cursor_to_line",
    "e": "cursor_down",
    "f": "cursor_position",
    "g": "clear_tab_stop",
    "j": "cursor_back",  # HPB
    "k": "cursor_up",  # VPB
    "h": "set_mode",
    "l": "reset_mode",
    "m": "select_graphic_rendition",
    "n": "report_device_status",
    "r": "set_margins",
    "s": "save_cursor",
    "u": "restore_cursor",
}
# How many parameters a handler takes; extra ones are dropped, as xterm does.
_CSI_ARITY = {final: 2 if final in "Hfr" else 1 for final in _CSI_HANDLERS if final not in "hlmT"}
# ``CSI ? ...`` finals passed on with ``private=True``; any other is ignored.
_PRIVATE_CSI = {
    "h": "set_mode",
    "l": "reset_mode",
    "J": "erase_in_display",
    "K": "erase_in_line",
    "n": "report_device_status",
}


def parse_params(text: str) -> list[int]:
    """``"1;;5"`` -> ``[1, 0, 5]``: missing values are 0, values are capped."""
    return [
        min(int(field), MAX_PARAM_VALUE) if field else 0 for field in text.split(";")[:MAX_PARAMS]
    ]


def parse_sgr_params(text: str) -> list[int]:
    """SGR parameters with colon groups flattened to their semicolon equivalents.

    ``38:5:n`` -> 38,5,n; ``38:2:r:g:b`` and ``38:2:cs:r:g:b`` -> 38,2,r,g,b
    (same for 48); ``4:0`` -> 24 and ``4:n`` -> 4 (underline styles); other
    colon groups (e.g. 58, underline colour) are dropped whole.
    """
    if ":" not in text:
        # The common case. Values are not capped: SGR only compares them.
        return [int(field or 0) for field in text.split(";")[: MAX_PARAMS * 2]]
    out: list[int] = []
    for field in text.split(";"):
        if ":" not in field:
            out.append(min(int(field), MAX_PARAM_VALUE) if field else 0)
            continue
        sub = [min(int(part), MAX_PARAM_VALUE) if part else 0 for part in field.split(":")]
        head = sub[0]
        if head in (38, 48) and len(sub) >= 3:
            if sub[1] == 5:
                out += [head, 5, sub[2]]
            elif sub[1] == 2 and len(sub) >= 5:
                out += [head, 2, *sub[-3:]] if len(sub) <= 6 else []
        elif head == 4 and len(sub) == 2:
            out.append(24 if sub[1] == 0 else 4)
    return out[: MAX_PARAMS * 2]


@dataclass(frozen=True, slots=True)
class ParserState:
    """Where the parser stands between two characters (for snapshots, ``state.py``).

    ``kind`` is ``"ground"``, ``"escape"`` (after ESC), ``"csi"``, ``"osc"`` or
    ``"string"`` (a DCS, SOS, PM or APC body being swallowed). Escape and CSI
    keep their ``intermediates``; CSI also its private ``marker``, ``params``,
    whether it is still ``valid`` and whether any character followed the CSI
    (``started``: a marker is no longer possible); OSC keeps its ``text`` so
    far and whether it grew past ``MAX_OSC_CHARS`` (``overflow``: it will be
    discarded).
    """

    kind: str = "ground"
    intermediates: str = ""
    marker: str = ""
    params: str = ""
    valid: bool = True
    started: bool = False
    text: str = ""
    overflow: bool = False


_PARAM_CHARS = frozenset("0123456789:;")
_INTERMEDIATE_CHARS = frozenset(chr(c) for c in range(0x20, 0x30))


class SafeByteStream(pyte.ByteStream):
    """A ``pyte.ByteStream`` for ``CellScreen`` whose ``feed`` never raises."""

    def __init__(self, screen: CellScreen) -> None:
        self.errors = 0
        self._screen = screen
        self._basic: dict[str, Callable[..., Any]] = {}
        self._csi_handlers: dict[str, Callable[..., Any]] = {}
        super().__init__(screen)

    # -- feeding ------------------------------------------------------------

    # pyte's ByteStream narrows Stream.feed(str) to bytes the same way.
    def feed(self, data: bytes) -> None:  # type: ignore[override]
        """Decode ``data`` (UTF-8, incrementally) and apply it to the screen."""
        self.feed_text(self.utf8_decoder.decode(data))

    def feed_text(self, data: str) -> None:
        """Apply already decoded text."""
        screen = self._screen
        draw = screen.draw
        linefeed = screen.linefeed
        carriage_return = screen.carriage_return
        dispatch_csi = self._dispatch_csi
        match_text = _TEXT.match
        match_csi = _CSI.match
        taking_plain_text = self._taking_plain_text
        assert self._parser is not None
        send = self._parser.send
        length = len(data)
        offset = 0
        while offset < length:
            try:
                while offset < length:
                    if taking_plain_text:
                        match = match_text(data, offset)
                        if match is not None:
                            offset = match.end()
                            draw(match.group())
                            continue
                        char = data[offset]
                        if char == ESC:
                            match = match_csi(data, offset)
                            if match is not None:
                                offset = match.end()
                                dispatch_csi(*match.groups())
                                continue
                        elif char == "\n":
                            offset += 1
                            linefeed()
                            continue
                        elif char == "\r":
                            offset += 1
                            carriage_return()
                            continue
                    char = data[offset]
                    offset += 1
                    taking_plain_text = send(char)
            except Exception:
                # Whatever went wrong, the rest of the chunk still gets parsed.
                self.errors += 1
                _log.debug("terminal input handler failed; parser reset", exc_info=True)
                self._initialize_parser()
                assert self._parser is not None
                send = self._parser.send
                taking_plain_text = self._taking_plain_text
        self._taking_plain_text = taking_plain_text

    # -- the state machine ----------------------------------------------------

    def _initialize_parser(self) -> None:
        self._basic = self._bind(_BASIC)
        self._csi_handlers = self._bind(_CSI_HANDLERS)
        self._parser = self._parser_fsm()
        self._taking_plain_text = next(self._parser)

    def _bind(self, names: dict[str, str]) -> dict[str, Callable[..., Any]]:
        screen = self._screen
        return {key: getattr(screen, name) for key, name in names.items()}

    def _parser_fsm(self) -> ParserGenerator:
        """The ground state; yields True when plain text may bypass the generator."""
        basic = self._basic
        c1 = self._bind(_C1)
        draw = self._screen.draw
        pending: str | None = None
        while True:
            if pending is None:
                char = yield True
            else:
                char, pending = pending, None
            if char == ESC:
                pending = yield from self._escape()
            elif char in basic:
                basic[char]()
            elif char < " " or char == DEL:
                pass  # other C0 controls do nothing
            elif "\x80" <= char <= "\x9f":
                if char == CSI_C1:
                    pending = yield from self._control_sequence()
                elif char == OSC_C1:
                    pending = yield from self._operating_system_command()
                elif char in STRING_C1:
                    pending = yield from self._ignored_string()
                elif char in c1:
                    c1[char]()
            else:
                draw(char)

    def _escape(self) -> SubParser:
        """After ESC: collect intermediates up to a final; return a char to reprocess."""
        basic = self._basic
        intermediates = ""
        while True:
            char = yield None
            if char == ESC:
                intermediates = ""
            elif char in (CAN, SUB):
                return None
            elif char < " ":
                if char in basic:
                    basic[char]()
            elif char < "0":
                if len(intermediates) <= MAX_INTERMEDIATES:
                    intermediates += char
            elif char < DEL:
                if intermediates:
                    self._dispatch_escape_intermediate(intermediates, char)
                    return None
                if char == "[":
                    return (yield from self._control_sequence())
                if char == "]":
                    return (yield from self._operating_system_command())
                if char in "PX^_":
                    return (yield from self._ignored_string())
                name = _ESCAPE.get(char)
                if name is not None:
                    getattr(self._screen, name)()
                return None
            elif char != DEL:
                return char  # not part of an escape sequence: abort, reprocess

    def _dispatch_escape_intermediate(self, intermediates: str, final: str) -> None:
        if len(intermediates) != 1:
            return
        if intermediates == "#" and final == "8":
            self._screen.alignment_display()
        elif intermediates in "()":
            self._screen.define_charset(final, intermediates)
        # ESC % (charset switching) and others: ignored, input stays UTF-8.

    def _control_sequence(self) -> SubParser:
        """After CSI; mirrors the ``_CSI`` fast-path pattern exactly."""
        basic = self._basic
        marker = ""
        params = ""
        intermediates = ""
        valid = True
        char = yield None
        if char in "<=>?":
            marker = char
            char = yield None
        while True:
            if "0" <= char <= ";":
                if intermediates or len(params) >= MAX_PARAM_CHARS:
                    valid = False
                else:
                    params += char
            elif "<" <= char <= "?":
                valid = False  # a private marker after the start
            elif " " <= char <= "/":
                if len(intermediates) >= MAX_INTERMEDIATES:
                    valid = False
                else:
                    intermediates += char
            elif "@" <= char <= "~":
                if valid:
                    self._dispatch_csi(marker, params, intermediates, char)
                return None
            elif char == ESC:
                return ESC
            elif char in (CAN, SUB):
                return None
            elif char < " ":
                if char in basic:
                    basic[char]()
            elif char != DEL:
                return char
            char = yield None

    def _dispatch_csi(self, marker: str, params: str, intermediates: str, final: str) -> None:
        screen = self._screen
        if final == "m" and not (marker or intermediates):
            values = parse_sgr_params(params)
            # Only dropped colon groups: nothing to do (an empty SGR would mean reset).
            if values or not params:
                screen.select_graphic_rendition(*values)
            return
        if intermediates:
            if marker or ":" in params:
                return
            if intermediates == "!" and final == "p":
                screen.soft_reset()
            elif intermediates == " " and final == "q":
                screen.set_cursor_style(parse_params(params)[0])
            return  # DECRQM and friends: not acted on
        if marker:
            if final == "c" and marker in ">=" and ":" not in params:
                mode = parse_params(params)[0]
                if marker == ">":
                    screen.report_secondary_device_attributes(mode)
                else:
                    screen.report_tertiary_device_attributes(mode)
                return
            name = _PRIVATE_CSI.get(final) if marker == "?" else None
            if name is not None and ":" not in params:
                values = parse_params(params)
                getattr(screen, name)(*values[: _CSI_ARITY.get(final, MAX_PARAMS)], private=True)
            return
        handler = self._csi_handlers.get(final)
        if handler is not None and ":" not in params:
            values = parse_params(params)
            handler(*values[: _CSI_ARITY.get(final, MAX_PARAMS)])

    def _operating_system_command(self) -> SubParser:
        """After OSC: collect up to BEL / ST / ESC, then dispatch."""
        chars: list[str] = []
        size = 0
        while True:
            char = yield None
            if char in (BEL, ST_C1):
                pending = None
                break
            if char == ESC:
                pending = ESC  # ESC ends the string; ESC \ is then a lone ST
                break
            if char in (CAN, SUB):
                return None
            if char < " " or "\x7f" <= char <= "\x9f":
                continue
            size += 1
            if size <= MAX_OSC_CHARS:
                chars.append(char)
        if size <= MAX_OSC_CHARS:
            self._dispatch_osc("".join(chars), BEL if char == BEL else ST)
        return pending

    def _dispatch_osc(self, text: str, terminator: str = ST) -> None:
        """Act on one OSC string; ``terminator`` ends any reply (xterm replies in kind)."""
        screen = self._screen
        code, separator, value = text.partition(";")
        if not separator:
            return
        if code in ("0", "1"):
            screen.set_icon_name(value)
        if code in ("0", "2"):
            screen.set_title(value)
        elif code == "4":
            # Pairs of (index, spec); "?" asks for the colour, anything else would set it.
            fields = value.split(";")
            for index, spec in zip(fields[0::2], fields[1::2], strict=False):
                if spec == "?" and index.isascii() and index.isdigit() and len(index) <= 3:
                    screen.report_palette_colour(int(index), terminator)
        elif code in ("10", "11", "12"):
            # Each further field addresses the next dynamic colour (xterm).
            for number, spec in enumerate(value.split(";"), start=int(code)):
                if number > 12:
                    break
                if spec == "?":
                    screen.report_dynamic_colour(number, terminator)

    def _ignored_string(self) -> SubParser:
        """DCS / SOS / PM / APC: swallow the body up to ST or any ESC."""
        while True:
            char = yield None
            if char == ST_C1 or char in (CAN, SUB):
                return None
            if char == ESC:
                return ESC

    # -- snapshots (state.py) ---------------------------------------------------
    # These read and rebuild the locals of the generators above: keep them in
    # step with ``_parser_fsm``, ``_escape``, ``_control_sequence``,
    # ``_operating_system_command`` and ``_ignored_string``
    # (tests/unit/test_state.py feeds, snapshots and compares at every cut).

    def parser_state(self) -> ParserState | None:
        """The parser's state, or None when it is in a state this code does not know."""
        parser: Any = self._parser  # a generator: its frame and delegate are inspected
        if parser is None or parser.gi_frame is None:
            return None
        sub = parser.gi_yieldfrom
        if self._taking_plain_text:
            pending = parser.gi_frame.f_locals.get("pending")
            return ParserState() if sub is None and pending is None else None
        if sub is None:
            return None
        if sub.gi_code is SafeByteStream._escape.__code__:
            if sub.gi_yieldfrom is None:
                intermediates = sub.gi_frame.f_locals.get("intermediates")
                if not isinstance(intermediates, str):
                    return None
                return ParserState("escape", intermediates=intermediates)
            sub = sub.gi_yieldfrom
        if sub.gi_yieldfrom is not None or sub.gi_frame is None:
            return None
        code = sub.gi_code
        local = sub.gi_frame.f_locals
        if code is SafeByteStream._control_sequence.__code__:
            marker, params = local.get("marker"), local.get("params")
            intermediates, valid = local.get("intermediates"), local.get("valid")
            if not (
                isinstance(marker, str)
                and isinstance(params, str)
                and isinstance(intermediates, str)
                and isinstance(valid, bool)
            ):
                return None
            return ParserState(
                "csi",
                intermediates=intermediates,
                marker=marker,
                params=params,
                valid=valid,
                started="char" in local,
            )
        if code is SafeByteStream._operating_system_command.__code__:
            chars, size = local.get("chars"), local.get("size")
            if not isinstance(chars, list) or not isinstance(size, int):
                return None
            return ParserState("osc", text="".join(chars), overflow=size > MAX_OSC_CHARS)
        if code is SafeByteStream._ignored_string.__code__:
            return ParserState("string")
        return None

    def load_parser_state(self, state: ParserState) -> None:
        """Put the parser, which must be in the ground state, into ``state``.

        Replays the characters that lead there, chosen so that no handler
        runs. ``ValueError`` if ``state`` is not one the parser can be in.
        """
        if not self._taking_plain_text:
            raise ValueError("the parser is not in the ground state")
        replay = parser_state_replay(state)
        assert self._parser is not None
        send = self._parser.send
        taking_plain_text: bool | None = True
        for char in replay:
            taking_plain_text = send(char)
        self._taking_plain_text = taking_plain_text


def parser_state_replay(state: ParserState) -> str:
    """Characters taking a parser in the ground state to ``state`` without side effects."""
    kind = state.kind
    intermediates = state.intermediates
    if not (set(intermediates) <= _INTERMEDIATE_CHARS):
        raise ValueError("intermediates outside 0x20..0x2f")
    if kind == "ground":
        replay = ""
    elif kind == "escape":
        if len(intermediates) > MAX_INTERMEDIATES + 1:
            raise ValueError("too many escape intermediates")
        replay = ESC + intermediates
    elif kind == "csi":
        if state.marker not in ("", "<", "=", ">", "?"):
            raise ValueError("bad private marker")
        if not set(state.params) <= _PARAM_CHARS or len(state.params) > MAX_PARAM_CHARS:
            raise ValueError("bad CSI parameters")
        if len(intermediates) > MAX_INTERMEDIATES:
            raise ValueError("too many CSI intermediates")
        if not state.started:
            if state.marker or state.params or intermediates or not state.valid:
                raise ValueError("a CSI that has not started has no content")
            return ESC + "["
        # NUL after CSI does nothing but take the place of the first character.
        replay = ESC + "[" + (state.marker or "\x00") + state.params + intermediates
        if not state.valid:
            replay += "<"  # a marker after the start: invalid, nothing else
    elif kind == "osc":
        text = state.text
        if len(text) > MAX_OSC_CHARS or (state.overflow and len(text) != MAX_OSC_CHARS):
            raise ValueError("bad OSC length")
        if any(char < " " or "\x7f" <= char <= "\x9f" for char in text):
            raise ValueError("control character in OSC text")
        replay = ESC + "]" + text + ("x" if state.overflow else "")
    elif kind == "string":
        replay = ESC + "P"
    else:
        raise ValueError(f"unknown parser state {kind!r}")
    return replay
