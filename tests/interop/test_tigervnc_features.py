"""Selection, clipboard and resize through TigerVNC's vncviewer under Xvfb.

Everything is real: a ``Console`` with a program in a pty, TigerVNC 1.12's
viewer on an Xvfb screen, the pointer and the window driven through XTEST and
plain X requests by xdotool, and the X selections read and owned by xclip.

- Dragging with the left button in the viewer selects text: the server draws it
  in reverse video, and the text lands in the X clipboard (and the primary
  selection) on the viewer's side, UTF-8 included (the Extended Clipboard).
- Text put into the X clipboard while the viewer has focus reaches the program
  in the pty as UTF-8, newlines as carriage returns.
- Resizing the viewer's window makes it send SetDesktopSize: the terminal takes
  the new cell grid, the program gets SIGWINCH once, every viewer is told the
  new size, and the viewer shows the new framebuffer exactly. A console pinned
  to its size refuses the request (status 1) and nothing changes.
- A quick drag, whose motion the viewer folds into the button release, must
  select up to where the button was released.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from interop_helpers import (
    ConsoleHarness,
    Viewer,
    XServer,
    describe_difference,
    require_binary,
    stop_process,
    wait_for_screen,
    wait_until,
    xdotool,
)

pytestmark = pytest.mark.interop

PASSWORD = b"vz-Pass1"
NAME = "vzvnc-features"
CELL_W, CELL_H = 8, 16
DEFAULT_FG = (229, 229, 229)
DEFAULT_BG = (0, 0, 0)
LEFT_BUTTON = "1"
# The clipboard and resize decisions are logged at debug level (100); the
# desktop window's own logger stays below it, or it overlays a statistics graph.
DEBUG_LOG = ("-Log", "*:stderr:30,Viewport:stderr:100,CConnection:stderr:100,CConn:stderr:100")

# Two known lines, then nothing more happens on the screen.
SELECTABLE = [
    "/bin/sh",
    "-c",
    "printf 'select me please\\nαβγ ωμέγα end\\n'; exec sleep 60",  # noqa: RUF001
]

# Reads the terminal in raw mode and, after each read, prints everything read so far.
ECHO_RAW_INPUT = r"""
import os, tty
tty.setraw(0)
os.write(1, b"ready\r\n")
got = b""
while True:
    chunk = os.read(0, 4096)
    if not chunk:
        break
    got += chunk
    os.write(1, b"got " + repr(got).encode() + b"\r\n")
"""

# Prints its terminal size at start and again after every SIGWINCH.
REPORT_SIZE = [
    "/bin/sh",
    "-c",
    "trap 'echo winch; stty size' WINCH; stty size; while :; do sleep 0.1; done",
]


# -- X selections through xclip ----------------------------------------------------------


def read_selection(xserver: XServer, selection: str) -> str | None:
    """The X ``selection`` ("clipboard", "primary") as UTF-8 text; None while it has none."""
    xclip = require_binary("xclip", "xclip")
    result = subprocess.run(
        [xclip, "-o", "-selection", selection, "-target", "UTF8_STRING"],
        env=xserver.env(Path("/tmp")),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=10,
        check=False,
    )
    return result.stdout.decode("utf-8") if result.returncode == 0 else None


def wait_for_selection(
    xserver: XServer,
    harness: ConsoleHarness,
    viewer: Viewer,
    selection: str,
    expected: str,
    timeout: float = 15.0,
) -> None:
    """Wait until the X ``selection`` holds ``expected``; on failure say what everyone had."""
    deadline = time.monotonic() + timeout
    while True:
        seen = read_selection(xserver, selection)
        if seen == expected:
            return
        if time.monotonic() > deadline:
            selected = harness.call(harness.console.selection_text)
            pytest.fail(
                f"the X {selection} holds {seen!r}, not {expected!r}, after {timeout:.0f} s; "
                f"the server's selection is {selected!r}; viewer log:\n{viewer.log()}"
            )
        time.sleep(0.1)


@pytest.fixture
def own_clipboard(xserver: XServer) -> Iterator[Callable[[str], None]]:
    """``own_clipboard(text)``: xclip owns the X clipboard with ``text`` until teardown."""
    xclip = require_binary("xclip", "xclip")
    owners: list[subprocess.Popen[bytes]] = []

    def own(text: str) -> None:
        # -quiet keeps xclip in the foreground (no fork), serving requests until killed.
        owner = subprocess.Popen(
            [xclip, "-quiet", "-selection", "clipboard", "-i"],
            env=xserver.env(Path("/tmp")),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        owners.append(owner)
        assert owner.stdin is not None
        owner.stdin.write(text.encode("utf-8"))
        owner.stdin.close()

    yield own
    for owner in owners:
        stop_process(owner)


# -- the viewer window --------------------------------------------------------------------


def viewer_window(xserver: XServer, viewer: Viewer) -> str:
    """The id of the viewer's (only) visible window."""
    pid = str(viewer.process.pid)
    found = xdotool(xserver, "search", "--sync", "--onlyvisible", "--pid", pid).split()
    assert len(found) == 1, f"expected one viewer window, found {found}"
    return found[0]


def window_size(xserver: XServer, window: str) -> tuple[int, int]:
    shell = xdotool(xserver, "getwindowgeometry", "--shell", window)
    values = dict(line.split("=", 1) for line in shell.split())
    return int(values["WIDTH"]), int(values["HEIGHT"])


def move_pointer(xserver: XServer, origin: tuple[int, int], row: int, column: int) -> None:
    """Move the pointer to the middle of a cell and wait until it is there."""
    x = origin[0] + column * CELL_W + CELL_W // 2
    y = origin[1] + row * CELL_H + CELL_H // 2
    where = xdotool(xserver, "getmouselocation", "--shell")
    values = dict(line.split("=", 1) for line in where.split())
    # (``mousemove --sync`` to where the pointer already is waits forever.)
    if (int(values["X"]), int(values["Y"])) != (x, y):
        xdotool(xserver, "mousemove", "--sync", str(x), str(y))


def drag(
    xserver: XServer,
    origin: tuple[int, int],
    start: tuple[int, int],
    end: tuple[int, int],
    hold: float = 0.2,
) -> None:
    """Press the left button on cell ``start`` (row, column), move to ``end``, release.

    The button is released ``hold`` seconds after the move, as a hand would. The
    viewer sends motion at most every PointerEventInterval (17 ms) but a button
    change at once: with ``hold=0`` the move never reaches the server and the
    release arrives at the new position.
    """
    move_pointer(xserver, origin, *start)
    xdotool(xserver, "mousedown", LEFT_BUTTON)
    move_pointer(xserver, origin, *end)
    time.sleep(hold)
    xdotool(xserver, "mouseup", LEFT_BUTTON)


def cells(image: np.ndarray, row: int, first: int, last: int) -> np.ndarray:
    """The pixels of cells ``first``..``last`` (inclusive) of ``row``."""
    return image[row * CELL_H : (row + 1) * CELL_H, first * CELL_W : (last + 1) * CELL_W]


def reversed_video(image: np.ndarray) -> np.ndarray:
    """``image`` (default colours only) with the default foreground and background swapped."""
    fg, bg = np.array(DEFAULT_FG, np.uint8), np.array(DEFAULT_BG, np.uint8)
    is_fg = np.all(image == fg, axis=2)
    is_bg = np.all(image == bg, axis=2)
    assert np.all(is_fg | is_bg), "the cells hold colours other than the default ones"
    return np.where(is_fg[..., None], bg, fg)


def uses_extended_clipboard(harness: ConsoleHarness) -> bool:
    """Whether the console's one viewer negotiated the Extended Clipboard pseudo-encoding."""
    flags = harness.call(
        lambda: [s.extended_clipboard for s in harness.console.sessions if s.initialised]
    )
    assert len(flags) == 1, f"expected one initialised session, found {len(flags)}"
    return bool(flags[0])


def connect_viewer(
    xserver: XServer, harness: ConsoleHarness, start_viewer: Callable[..., Viewer], *options: str
) -> tuple[Viewer, str, tuple[int, int]]:
    """A viewer showing the console: the viewer, its focused window, the framebuffer's origin."""
    viewer = start_viewer(harness, PASSWORD, *DEBUG_LOG, *options)
    x, y, _, _ = wait_for_screen(xserver, harness, viewer)
    window = viewer_window(xserver, viewer)
    xdotool(xserver, "windowfocus", "--sync", window)
    return viewer, window, (x, y)


# -- tests --------------------------------------------------------------------------------


def test_drag_selects_and_fills_the_viewers_clipboard(
    xserver: XServer, start_console: Any, start_viewer: Any
) -> None:
    harness = start_console(SELECTABLE, password=PASSWORD, name=NAME)
    harness.wait_for_text(lambda lines: lines[1].startswith("αβγ"), what="the known text")
    viewer, _, origin = connect_viewer(
        xserver, harness, start_viewer, "-AcceptClipboard=1", "-SetPrimary=1"
    )
    before = harness.wait_quiescent()
    assert uses_extended_clipboard(harness), "TigerVNC 1.12 should use the Extended Clipboard"

    # From the 's' of "select" to the 'e' of "me".
    drag(xserver, origin, (0, 0), (0, 8))

    wait_for_selection(xserver, harness, viewer, "clipboard", "select me")
    wait_for_selection(xserver, harness, viewer, "primary", "select me")
    assert harness.call(harness.console.selection_text) == "select me"
    # The selected cells are drawn in reverse video, nothing else changed; the
    # viewer shows exactly that.
    _, _, _, after = wait_for_screen(xserver, harness, viewer)
    assert np.array_equal(cells(after, 0, 0, 8), reversed_video(cells(before, 0, 0, 8)))
    unchanged = after.copy()
    unchanged[:CELL_H, : 9 * CELL_W] = before[:CELL_H, : 9 * CELL_W]
    assert np.array_equal(unchanged, before), describe_difference(unchanged, before)

    # A new drag, backwards this time, over text outside Latin-1 (which legacy
    # ServerCutText could not carry): the new selection replaces the old one.
    drag(xserver, origin, (1, 8), (1, 4))

    wait_for_selection(xserver, harness, viewer, "clipboard", "ωμέγα")
    wait_for_selection(xserver, harness, viewer, "primary", "ωμέγα")
    _, _, _, again = wait_for_screen(xserver, harness, viewer)
    assert np.array_equal(cells(again, 1, 4, 8), reversed_video(cells(before, 1, 4, 8)))
    unchanged = again.copy()
    unchanged[CELL_H : 2 * CELL_H, 4 * CELL_W : 9 * CELL_W] = cells(before, 1, 4, 8)
    assert np.array_equal(unchanged, before), describe_difference(unchanged, before)


def test_a_click_selects_nothing(xserver: XServer, start_console: Any, start_viewer: Any) -> None:
    harness = start_console(SELECTABLE, password=PASSWORD, name=NAME)
    harness.wait_for_text(lambda lines: lines[1].startswith("αβγ"), what="the known text")
    viewer, _, origin = connect_viewer(xserver, harness, start_viewer)
    drag(xserver, origin, (0, 0), (0, 8))
    wait_for_selection(xserver, harness, viewer, "clipboard", "select me")
    before = harness.wait_quiescent()

    # Press and release on one cell: the old selection goes, nothing new is offered.
    drag(xserver, origin, (0, 12), (0, 12))

    wait_until(
        lambda: harness.call(harness.console.selection_text) == "",
        15.0,
        what="the server to drop its selection",
    )
    _, _, _, after = wait_for_screen(xserver, harness, viewer)
    assert np.array_equal(cells(after, 0, 0, 8), reversed_video(cells(before, 0, 0, 8)))
    assert read_selection(xserver, "clipboard") == "select me"


def test_clipboard_pastes_into_the_program(
    xserver: XServer, start_console: Any, start_viewer: Any, own_clipboard: Any
) -> None:
    harness = start_console([sys.executable, "-c", ECHO_RAW_INPUT], password=PASSWORD, name=NAME)
    harness.wait_for_text(lambda lines: lines[0].strip() == "ready", what="the program's 'ready'")
    connect_viewer(xserver, harness, start_viewer, "-SendClipboard=1")
    assert uses_extended_clipboard(harness), "TigerVNC 1.12 should use the Extended Clipboard"

    # TigerVNC announces a clipboard change at once while its window has focus.
    own_clipboard("héllo wörld\nzwei")

    # UTF-8 as it is; the newline arrives as the carriage return Enter sends.
    expected = "got " + repr("héllo wörld\rzwei".encode())
    lines = harness.wait_for_text(
        lambda lines: any(line.strip() == expected for line in lines),
        what=f"the program to print {expected}",
    )
    got = [line.strip() for line in lines if line.startswith("got ")]
    assert got[-1] == expected, got


def terminal_size(harness: ConsoleHarness) -> tuple[int, int]:
    console = harness.console
    return harness.call(lambda: (console.terminal.columns, console.terminal.lines))


def test_resizing_the_window_resizes_the_terminal(
    xserver: XServer, start_console: Any, start_viewer: Any
) -> None:
    harness = start_console(REPORT_SIZE, password=PASSWORD, name=NAME)
    harness.wait_for_text(lambda lines: lines[0].strip() == "25 80", what="'stty size' at 80x25")
    viewer, window, _ = connect_viewer(xserver, harness, start_viewer, "-RemoteResize=1")
    # A second viewer that never asks for a size itself.
    other = start_viewer(harness, PASSWORD, "-RemoteResize=0")
    other_window = viewer_window(xserver, other)
    wait_until(lambda: len(harness.sessions()) == 2, 15.0, what="the second viewer's session")
    assert window_size(xserver, window) == (80 * CELL_W, 25 * CELL_H)

    # No window manager runs on Xvfb: the window gets exactly the size asked for,
    # and the viewer asks the server for a desktop of that size.
    xdotool(xserver, "windowsize", window, "800", "480")

    wait_until(
        lambda: terminal_size(harness) == (100, 30), 15.0, what="the terminal to become 100x30"
    )
    lines = harness.wait_for_text(
        lambda lines: len(lines) > 2 and lines[2].strip() == "30 100",
        what="the program's 'stty size' after SIGWINCH",
    )
    # The program saw one SIGWINCH; what was on the screen is still there.
    assert [line.rstrip() for line in lines[:4]] == ["25 80", "winch", "30 100", ""]

    # The other viewer is told the new size and follows it with its window.
    wait_until(
        lambda: window_size(xserver, other_window) == (800, 480),
        15.0,
        what="the other viewer's window to become 800x480",
    )
    stop_process(other.process)

    x, y, shot, fb = wait_for_screen(xserver, harness, viewer)
    assert fb.shape == (30 * CELL_H, 100 * CELL_W, 3)
    assert np.array_equal(shot[y : y + 480, x : x + 800], fb)
    assert window_size(xserver, window) == (800, 480)
    assert "SetDesktopSize failed" not in viewer.log(), viewer.log()


def test_a_pinned_size_refuses_the_viewers_resize(
    xserver: XServer, start_console: Any, start_viewer: Any
) -> None:
    harness = start_console(REPORT_SIZE, password=PASSWORD, name=NAME, resizable=False)
    harness.wait_for_text(lambda lines: lines[0].strip() == "25 80", what="'stty size' at 80x25")
    viewer, window, _ = connect_viewer(xserver, harness, start_viewer, "-RemoteResize=1")

    xdotool(xserver, "windowsize", window, "800", "480")

    # rfbproto "ExtendedDesktopSize": status 1, "resize is administratively prohibited".
    wait_until(
        lambda: "SetDesktopSize failed: 1" in viewer.log(),
        15.0,
        what="the viewer to be refused its SetDesktopSize",
    )
    assert terminal_size(harness) == (80, 25)
    _, _, _, fb = wait_for_screen(xserver, harness, viewer)
    assert fb.shape == (25 * CELL_H, 80 * CELL_W, 3)
    assert [line.rstrip() for line in harness.text_lines()[:2]] == ["25 80", ""]


def test_a_quick_drag_selects_up_to_the_release(
    xserver: XServer, start_console: Any, start_viewer: Any
) -> None:
    harness = start_console(SELECTABLE, password=PASSWORD, name=NAME)
    harness.wait_for_text(lambda lines: lines[1].startswith("αβγ"), what="the known text")
    # A long PointerEventInterval makes the coalescing certain: the press is sent at
    # once, the motion is held back, and the release (sent at once) carries the
    # position the pointer moved to.
    viewer, _, origin = connect_viewer(xserver, harness, start_viewer, "-PointerEventInterval=2000")

    drag(xserver, origin, (0, 0), (0, 8), hold=0)

    wait_for_selection(xserver, harness, viewer, "clipboard", "select me", timeout=5.0)
