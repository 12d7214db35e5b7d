"""Differential tests: vzvnc's terminal against tmux, on recorded real programs.

Every case in ``cases/`` is the raw output of a real program (``NAME.bin``),
the offset at which the reference was taken, and tmux's view of the screen at
that offset (``NAME.txt``, ``NAME.ansi``, cursor and probed character widths in
``NAME.json``). See README.md for how cases are recorded and for the rules
applied here; KNOWN_DIFFERENCES.md lists the expected failures.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from wcwidth import wcwidth

from vzvnc.term import cells as cl
from vzvnc.term.terminal import Terminal

HERE = Path(__file__).resolve().parent
CASES_DIR = HERE / "cases"
KNOWN_DIFFERENCES = HERE / "KNOWN_DIFFERENCES.md"
TESTS = ("text", "cursor", "attributes", "bytewise")

# DEC special graphics, as xterm shows them (0x5f..0x7e; other bytes unchanged).
# tmux keeps the ASCII byte and marks the cell; capture-pane -e brackets such
# runs with SO/SI, and this table turns them into what a viewer sees.
DEC_GRAPHICS = dict(zip(range(0x5F, 0x7F), "\u00a0◆▒␉␌␍␊°±␤␋┘┐┌└┼⎺⎻─⎼⎽├┤┴┬│≤≥π≠£·", strict=True))

COMPARED_ATTRS = {
    "bold": cl.ATTR_BOLD,
    "dim": cl.ATTR_DIM,
    "italic": cl.ATTR_ITALIC,
    "underline": cl.ATTR_UNDERLINE,
    "blink": cl.ATTR_BLINK,
    "reverse": cl.ATTR_REVERSE,
    "hidden": cl.ATTR_INVISIBLE,
    "strike": cl.ATTR_STRIKE,
}
ATTR_MASK = sum(COMPARED_ATTRS.values())
SGR_SET = {1: "bold", 2: "dim", 3: "italic", 4: "underline", 5: "blink", 7: "reverse"}
SGR_SET |= {8: "hidden", 9: "strike", 21: "underline"}
SGR_CLEAR = {22: ("bold", "dim"), 23: ("italic",), 24: ("underline",), 25: ("blink",)}
SGR_CLEAR |= {27: ("reverse",), 28: ("hidden",), 29: ("strike",)}
ESCAPE_RE = re.compile(
    r"\x1b\[([0-9;:]*)m|\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
)


# -- the cases -----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    columns: int
    rows: int
    data: bytes  # the recording up to the snapshot offset
    text: list[str]  # NAME.txt, one entry per row
    ansi: list[str]  # NAME.ansi, one entry per row
    cursor: tuple[int, int]
    cursor_visible: bool
    widths: dict[str, int | None]


def _lines(path: Path, rows: int) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    assert len(lines) == rows, f"{path.name}: {len(lines)} lines, expected {rows}"
    return lines


def load_case(json_path: Path) -> Case:
    meta = json.loads(json_path.read_text(encoding="utf-8"))
    columns, rows = (int(v) for v in meta["size"].split("x"))
    ref = meta["reference"]
    base = json_path.with_suffix("")
    data = base.with_suffix(".bin").read_bytes()
    assert len(data) == meta["bytes"], f"{base.name}.bin is not the recorded size"
    return Case(
        name=meta["name"],
        columns=columns,
        rows=rows,
        data=data[: meta["snapshot"]],
        text=_lines(base.with_suffix(".txt"), rows),
        ansi=_lines(base.with_suffix(".ansi"), rows),
        cursor=(ref["cursor"][0], ref["cursor"][1]),
        cursor_visible=ref["cursor_visible"],
        widths=ref["widths"],
    )


def load_known_differences() -> dict[tuple[str, str], str]:
    """``| case | test | reason |`` rows of KNOWN_DIFFERENCES.md."""
    known: dict[tuple[str, str], str] = {}
    if not KNOWN_DIFFERENCES.exists():
        return known
    for line in KNOWN_DIFFERENCES.read_text(encoding="utf-8").splitlines():
        fields = [f.strip() for f in line.strip().strip("|").split("|")]
        if len(fields) != 3 or not line.lstrip().startswith("|"):
            continue
        case, test, reason = (f.strip("`") for f in fields)
        if test in TESTS:
            known[(case, test)] = reason
    return known


CASES = [load_case(p) for p in sorted(CASES_DIR.glob("*.json"))]
KNOWN = load_known_differences()


def params(test: str) -> list[object]:
    out: list[object] = []
    for case in CASES:
        reason = KNOWN.get((case.name, test))
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        out.append(pytest.param(case, id=case.name, marks=marks))
    return out


@functools.cache
def fed(name: str) -> Terminal:
    """The terminal after the whole snapshot was fed in one call (shared by tests)."""
    case = next(c for c in CASES if c.name == name)
    term = Terminal(case.columns, case.rows)
    term.feed(case.data)
    return term


# -- the reference screen ------------------------------------------------------


@dataclass(frozen=True)
class Pen:
    fg: int = cl.DEFAULT_COLOUR
    bg: int = cl.DEFAULT_COLOUR
    attrs: int = 0

    def describe(self) -> str:
        names = [n for n, bit in COMPARED_ATTRS.items() if self.attrs & bit]
        return f"fg={_colour(self.fg)} bg={_colour(self.bg)} {'|'.join(names) or '-'}"


def _colour(value: int) -> str:
    kind, payload = value >> 24, value & 0xFFFFFF
    if kind == cl.COLOUR_DEFAULT:
        return "default"
    if kind == cl.COLOUR_INDEXED:
        return str(payload)
    return f"#{payload:06x}"


@dataclass(frozen=True)
class RefCell:
    text: str  # the character and any zero-width characters attached to it
    column: int
    width: int
    pen: Pen


def _extended_colour(items: list[list[str]], i: int) -> tuple[int | None, int]:
    """Parse 38/48 at ``items[i]``: (colour, index of the next item)."""
    sub = items[i]
    if len(sub) > 1:  # colon form: 38:5:n, 38:2:r:g:b or 38:2::r:g:b
        rest = [int(v) if v else 0 for v in sub[1:]]
        if rest[0] == 5 and len(rest) >= 2:
            return cl.indexed(rest[1]), i + 1
        if rest[0] == 2 and len(rest) >= 4:
            return cl.rgb(*rest[-3:]), i + 1
        return None, i + 1
    nums = [int(s[0]) if s[0] else 0 for s in items[i + 1 : i + 5]]
    if nums[:1] == [5] and len(nums) >= 2:
        return cl.indexed(nums[1]), i + 3
    if nums[:1] == [2] and len(nums) >= 4:
        return cl.rgb(*nums[1:4]), i + 5
    return None, len(items)


def apply_sgr(pen: Pen, params: str) -> Pen:
    """The pen after ``CSI params m`` as tmux writes it in ``capture-pane -e``."""
    items = [p.split(":") for p in (params or "0").split(";")]
    fg, bg, attrs = pen.fg, pen.bg, pen.attrs
    i = 0
    while i < len(items):
        sub = items[i]
        code = int(sub[0]) if sub[0] else 0
        nxt = i + 1
        if code == 0:
            fg, bg, attrs = cl.DEFAULT_COLOUR, cl.DEFAULT_COLOUR, 0
        elif code == 5 and len(sub) > 1:
            pass  # tmux writes SGR 53 (overline, not compared) as "5:3"
        elif code == 4 and len(sub) > 1:  # underline styles 4:0 .. 4:5
            bit = COMPARED_ATTRS["underline"]
            attrs = attrs | bit if sub[1] not in ("", "0") else attrs & ~bit
        elif code in SGR_SET:
            attrs |= COMPARED_ATTRS[SGR_SET[code]]
        elif code in SGR_CLEAR:
            for name in SGR_CLEAR[code]:
                attrs &= ~COMPARED_ATTRS[name]
        elif 30 <= code <= 37:
            fg = cl.indexed(code - 30)
        elif 40 <= code <= 47:
            bg = cl.indexed(code - 40)
        elif 90 <= code <= 97:
            fg = cl.indexed(code - 90 + 8)
        elif 100 <= code <= 107:
            bg = cl.indexed(code - 100 + 8)
        elif code == 39:
            fg = cl.DEFAULT_COLOUR
        elif code == 49:
            bg = cl.DEFAULT_COLOUR
        elif code in (38, 48, 58):
            colour, nxt = _extended_colour(items, i)
            if colour is not None and code == 38:
                fg = colour
            elif colour is not None and code == 48:
                bg = colour
        i = nxt
    return Pen(fg, bg, attrs)


def reference_screen(case: Case) -> list[list[RefCell]]:
    """Parse NAME.ansi into cells with their columns (from the probed tmux widths).

    The SGR state and the DEC graphics (SO/SI) state carry over from one line
    to the next, as tmux writes them.
    """
    pen = Pen()
    graphics = False
    screen = []
    for number, line in enumerate(case.ansi):
        row: list[RefCell] = []
        column = 0
        pos = 0
        while pos < len(line):
            match = ESCAPE_RE.match(line, pos)
            if match:
                if match.group(1) is not None:
                    pen = apply_sgr(pen, match.group(1))
                pos = match.end()
                continue
            char = line[pos]
            pos += 1
            if char == "\x0e":
                graphics = True
                continue
            if char == "\x0f":
                graphics = False
                continue
            if graphics and ord(char) in DEC_GRAPHICS:
                char = DEC_GRAPHICS[ord(char)]
                width = 1
            elif ord(char) < 0x7F:
                width = 1
            else:
                probed = case.widths.get(f"U+{ord(char):04X}")
                width = probed if probed is not None else max(wcwidth(char), 0)
            if width == 0 and row:
                last = row[-1]
                row[-1] = RefCell(last.text + char, last.column, last.width, last.pen)
                continue
            width = max(width, 1)
            row.append(RefCell(char, column, width, pen))
            column += width
        assert column <= case.columns, f"{case.name}: ansi line {number} is too wide"
        screen.append(row)
    return screen


def reference_grid(case: Case, screen: list[list[RefCell]]) -> list[list[str]]:
    """One string per column: the cell's text, "" for the right half of a wide cell."""
    grid = []
    for row in screen:
        line = [" "] * case.columns
        for cell in row:
            line[cell.column] = cell.text
            for x in range(cell.column + 1, min(cell.column + cell.width, case.columns)):
                line[x] = ""
        grid.append(line)
    return grid


def our_grid(term: Terminal) -> list[list[str]]:
    """The same shape for our terminal, from ``cells()`` and ``text_lines()``."""
    chars, _, _, attrs = term.cells()
    grid = []
    for y, text in enumerate(term.text_lines()):
        right = (attrs[y] & cl.ATTR_WIDE_RIGHT) != 0
        line = ["" if right[x] else chr(chars[y, x]) for x in range(term.columns)]
        # If text_lines() carries zero-width characters, attach them to their cells.
        clusters: list[str] = []
        for char in text:
            if clusters and wcwidth(char) == 0:
                clusters[-1] += char
            else:
                clusters.append(char)
        starts = [x for x in range(term.columns) if not right[x]]
        if len(clusters) == len(starts):
            for x, cluster in zip(starts, clusters, strict=True):
                line[x] = cluster
        grid.append(line)
    return grid


def _trim(line: list[str]) -> list[str]:
    end = len(line)
    while end and line[end - 1] == " ":
        end -= 1
    return line[:end]


def _show(line: list[str]) -> str:
    return repr("".join(line).rstrip(" "))


# -- the tests -----------------------------------------------------------------


def test_cases_exist() -> None:
    assert len(CASES) >= 25


def test_known_differences_name_real_cases() -> None:
    names = {c.name for c in CASES}
    assert {case for case, _ in KNOWN} <= names


@pytest.mark.parametrize("case", params("text"))
def test_text(case: Case) -> None:
    """The text grid equals tmux's, column for column (wide characters included)."""
    screen = reference_screen(case)
    expected = reference_grid(case, screen)
    # Guard the parser: the .ansi without its escapes is exactly capture-pane -p.
    for y, line in enumerate(case.ansi):
        plain = ESCAPE_RE.sub("", line).replace("\x0e", "").replace("\x0f", "")
        assert plain.rstrip(" ") == case.text[y].rstrip(" "), f"{case.name}.ansi line {y}"
    ours = our_grid(fed(case.name))
    diffs = []
    for y, (mine, theirs) in enumerate(zip(ours, expected, strict=True)):
        if _trim(mine) != _trim(theirs):
            x = next((i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b), 0)
            diffs.append(f"line {y} (column {x}):\n  ours: {_show(mine)}\n  tmux: {_show(theirs)}")
    if diffs:
        shown = "\n".join(diffs[:6])
        pytest.fail(f"{len(diffs)} of {case.rows} lines differ\n{shown}", pytrace=False)


@pytest.mark.parametrize("case", params("cursor"))
def test_cursor(case: Case) -> None:
    """Cursor position (a pending wrap shows on the last column) and visibility."""
    term = fed(case.name)
    x, y = case.cursor
    assert (term.cursor_x, term.cursor_y) == (min(x, case.columns - 1), y)
    assert term.cursor_visible == case.cursor_visible


@pytest.mark.parametrize("case", params("attributes"))
def test_attributes(case: Case) -> None:
    """Colours and attributes of every cell tmux reports, on lines whose text matches."""
    term = fed(case.name)
    screen = reference_screen(case)
    expected = reference_grid(case, screen)
    ours = our_grid(term)
    _, fg, bg, attrs = term.cells()
    diffs = []
    for y, row in enumerate(screen):
        if _trim(ours[y]) != _trim(expected[y]):
            continue  # test_text reports this line
        for cell in row:
            x = cell.column
            mine = Pen(int(fg[y, x]), int(bg[y, x]), int(attrs[y, x]) & ATTR_MASK)
            if mine != cell.pen:
                diffs.append(
                    f"line {y} column {x} {cell.text!r}:\n"
                    f"  ours: {mine.describe()}\n  tmux: {cell.pen.describe()}"
                )
    if diffs:
        shown = "\n".join(diffs[:6])
        pytest.fail(f"{len(diffs)} cells differ\n{shown}", pytrace=False)


@pytest.mark.parametrize("case", params("bytewise"))
def test_bytewise(case: Case) -> None:
    """Feeding one byte at a time gives the same screen as one big chunk."""
    term = Terminal(case.columns, case.rows)
    data = case.data
    for i in range(len(data)):
        term.feed(data[i : i + 1])
    whole = fed(case.name)
    assert term.text_lines() == whole.text_lines()
    assert (term.cursor_x, term.cursor_y) == (whole.cursor_x, whole.cursor_y)
    mine, theirs = term.cells(), whole.cells()
    for name, i in (("chars", 0), ("fg", 1), ("bg", 2), ("attrs", 3)):
        assert np.array_equal(mine[i], theirs[i]), f"{name} differ"
