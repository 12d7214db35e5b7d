"""RFB pointer events to xterm mouse reports (xterm ctlseqs "Mouse Tracking").

Pure and per client: a ``MouseReporter`` remembers the client's last button mask
and cell, so it can tell presses, releases and motion apart. What is reported
depends on the mode the application enabled:

- 9 (X10): button presses only, no modifiers;
- 1000 (normal): presses and releases, wheel as buttons 64/65 (66/67 sideways);
- 1002 (button-event): also motion while a button is held;
- 1003 (any-event): also motion with no button held (button code 3).

Encodings: the default ``CSI M Cb Cx Cy`` (each value + 32, so coordinates
beyond 223 cannot be expressed and such events are dropped, as in xterm) and
SGR 1006 ``CSI < b ; x ; y M`` (``m`` for release). Modifiers add 4 (Shift),
8 (Meta/Alt) and 16 (Control).

RFB's button mask: bit 0 left, 1 middle, 2 right, 3/4 wheel up/down, 5/6 wheel
left/right (rfbproto "PointerEvent").
"""

from __future__ import annotations

from dataclasses import dataclass

MODE_OFF = 0
MODE_X10 = 9
MODE_NORMAL = 1000
MODE_BUTTON = 1002
MODE_ANY = 1003

_BUTTONS = (0, 1, 2)
_WHEELS = {3: 64, 4: 65, 5: 66, 6: 67}
_MOTION = 32
_NO_BUTTON = 3
_MAX_LEGACY = 255 - 32


@dataclass
class MouseReporter:
    mask: int = 0
    cell: tuple[int, int] | None = None

    def event(
        self,
        mask: int,
        column: int,
        row: int,
        *,
        mode: int,
        sgr: bool,
        shift: bool = False,
        meta: bool = False,
        ctrl: bool = False,
    ) -> bytes:
        """Reports for one PointerEvent at 0-based cell (column, row)."""
        previous_mask, previous_cell = self.mask, self.cell
        self.mask, self.cell = mask, (column, row)
        if mode == MODE_OFF:
            return b""
        modifiers = 0 if mode == MODE_X10 else (4 * shift) | (8 * meta) | (16 * ctrl)
        changed = mask ^ previous_mask
        out = bytearray()
        for bit, code in _WHEELS.items():
            if changed & mask & (1 << bit) and mode != MODE_X10:
                out += _report(code | modifiers, column, row, True, sgr)
        for button in _BUTTONS:
            if not changed & (1 << button):
                continue
            pressed = bool(mask & (1 << button))
            if pressed:
                out += _report(button | modifiers, column, row, True, sgr)
            elif mode != MODE_X10:
                code = button if sgr else _NO_BUTTON
                out += _report(code | modifiers, column, row, False, sgr)
        moved = previous_cell is not None and previous_cell != (column, row)
        if not changed & 0b111 and moved:
            held = [b for b in _BUTTONS if mask & (1 << b)]
            if mode == MODE_ANY or (mode == MODE_BUTTON and held):
                code = (held[0] if held else _NO_BUTTON) + _MOTION
                out += _report(code | modifiers, column, row, True, sgr)
        return bytes(out)


def _report(code: int, column: int, row: int, press: bool, sgr: bool) -> bytes:
    x, y = column + 1, row + 1
    if sgr:
        return b"\x1b[<%d;%d;%d%c" % (code, x, y, ord("M") if press else ord("m"))
    if x > _MAX_LEGACY or y > _MAX_LEGACY:
        return b""
    return b"\x1b[M" + bytes((32 + code, 32 + x, 32 + y))
