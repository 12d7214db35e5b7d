"""A screen as the bytes that draw it again on another terminal.

``vzvnc domain console`` attaches a local terminal to a console that has been
running for a while: before live output flows, the local terminal must show
what the console shows. ``repaint`` writes the visible screen (characters,
combining marks, colours and attributes, cell by cell), then the cursor's
position and visibility, and the input modes the program set (cursor keys,
keypad, bracketed paste), so the keys the local terminal sends are the ones
the program expects.

Sans-IO: a Terminal in, bytes out. Feeding those bytes into a fresh terminal of
the same size reproduces the cells exactly (tested that way).
"""

from __future__ import annotations

from vzvnc.term import cells as c
from vzvnc.term.terminal import Terminal

_SGR_FOR_ATTR = (
    (c.ATTR_BOLD, "1"),
    (c.ATTR_DIM, "2"),
    (c.ATTR_ITALIC, "3"),
    (c.ATTR_UNDERLINE, "4"),
    (c.ATTR_BLINK, "5"),
    (c.ATTR_REVERSE, "7"),
    (c.ATTR_INVISIBLE, "8"),
    (c.ATTR_STRIKE, "9"),
)
_STYLE_BITS = 0
for _bit, _ in _SGR_FOR_ATTR:
    _STYLE_BITS |= _bit


def _colour(value: int, base: int) -> str:
    """SGR parameters for a cell colour; ``base`` 30 for foreground, 40 for background."""
    kind, payload = value >> 24, value & 0xFFFFFF
    if kind == c.COLOUR_INDEXED:
        return f"{base + 8};5;{payload}"
    if kind == c.COLOUR_RGB:
        return f"{base + 8};2;{payload >> 16};{(payload >> 8) & 0xFF};{payload & 0xFF}"
    return str(base + 9)


def _sgr(fg: int, bg: int, attrs: int) -> str:
    parts = ["0"] + [code for bit, code in _SGR_FOR_ATTR if attrs & bit]
    if fg != c.DEFAULT_COLOUR:
        parts.append(_colour(fg, 30))
    if bg != c.DEFAULT_COLOUR:
        parts.append(_colour(bg, 40))
    return "\x1b[" + ";".join(parts) + "m"


def repaint(terminal: Terminal) -> bytes:
    """Bytes that make a terminal of the same size show what ``terminal`` shows."""
    chars, fgs, bgs, attrs = terminal.cells()
    lines, columns = chars.shape
    out = ["\x1b[0m\x1b[?7l\x1b[H\x1b[2J"]  # no autowrap while painting the last column
    for y in range(lines):
        out.append(f"\x1b[{y + 1}H")
        pen: tuple[int, int, int] | None = None
        row_chars, row_fg, row_bg = chars[y].tolist(), fgs[y].tolist(), bgs[y].tolist()
        row_attrs = attrs[y].tolist()
        for x in range(columns):
            cell_attrs = row_attrs[x]
            if cell_attrs & c.ATTR_WIDE_RIGHT:
                continue  # drawn by the left half
            style = (row_fg[x], row_bg[x], cell_attrs & _STYLE_BITS)
            if style != pen:
                out.append(_sgr(*style))
                pen = style
            if cell_attrs & c.ATTR_WIDE_LEFT and x == columns - 1:
                out.append(" ")  # half a wide character cannot be drawn: leave it blank
                continue
            code = row_chars[x]
            out.append(chr(code) if code >= 0x20 else " ")
            if cell_attrs & c.ATTR_COMBINING:
                out.append(terminal.combining_at(y, x))
    out.append("\x1b[0m\x1b[?7h")
    out.append(f"\x1b[{terminal.cursor_y + 1};{terminal.cursor_x + 1}H")
    out.append("\x1b[?25h" if terminal.cursor_visible else "\x1b[?25l")
    out.append("\x1b[?1h" if terminal.application_cursor_keys else "\x1b[?1l")
    out.append("\x1b=" if terminal.application_keypad else "\x1b>")
    out.append("\x1b[?2004h" if terminal.bracketed_paste else "\x1b[?2004l")
    return "".join(out).encode("utf-8", "replace")
