"""TigerVNC's vncviewer under Xvfb against a real console.

The viewer authenticates with a TigerVNC password file (the obfuscated 8-byte
form ``vncpasswd -f`` writes), and the X screen it draws on must then contain the
server's framebuffer exactly, pixel for pixel; keys typed into the viewer window
(XTEST through xdotool) must reach the shell. With a wrong password the viewer
gets no screen, and the server logs the failure without the password.
"""

from __future__ import annotations

import logging
import subprocess
from typing import Any

import numpy as np
import pytest
from interop_helpers import (
    ConsoleHarness,
    XServer,
    colour_mask,
    find_subimage,
    vnc_obfuscate,
    wait_for_screen,
    xdotool,
)

pytestmark = pytest.mark.interop

PASSWORD = b"vz-Pass1"
WRONG_PASSWORD = b"wrong-pw"
NAME = "vzvnc-interop"
XTERM_RED = (205, 0, 0)
DEFAULT_FG = (229, 229, 229)
CELL_W, CELL_H = 8, 16

# Coloured text, then an interactive shell (stdin is the pty) with the known prompt.
COLOUR_THEN_SHELL = [
    "/bin/sh",
    "-c",
    r"printf '\033[31mred\033[0m \033[1;32mgreen\033[0m 中文\n'; exec /bin/sh",
]


def wait_for_prompt(harness: ConsoleHarness, row: int) -> None:
    harness.wait_for_text(lambda lines: lines[row].strip() == "$", what=f"the prompt on row {row}")


def test_vnc_obfuscation_known_answer():
    # The stored form of "password" in ~/.vnc/passwd, as TigerVNC and TightVNC write it.
    assert vnc_obfuscate(b"password").hex() == "dbd83cfd727a1458"


def test_viewer_shows_the_framebuffer(
    xserver: XServer, start_console: Any, start_viewer: Any
) -> None:
    harness = start_console(COLOUR_THEN_SHELL, password=PASSWORD, name=NAME)
    wait_for_prompt(harness, 1)
    viewer = start_viewer(harness, PASSWORD)
    x, y, shot, fb = wait_for_screen(xserver, harness, viewer)

    assert fb.shape == (25 * CELL_H, 80 * CELL_W, 3)
    shown = shot[y : y + fb.shape[0], x : x + fb.shape[1]]
    # The word "red" (cells 0-2 of row 0) is drawn in xterm red, the rest of row 0 not.
    red = colour_mask(shown, XTERM_RED)
    assert red[:CELL_H, : 3 * CELL_W].sum() > 20
    assert red.sum() == red[:CELL_H, : 3 * CELL_W].sum()
    # The prompt "$" on row 1 is in the default foreground.
    assert colour_mask(shown, DEFAULT_FG)[CELL_H : 2 * CELL_H, :CELL_W].any()


def test_typing_in_the_viewer_reaches_the_shell(
    xserver: XServer, start_console: Any, start_viewer: Any
) -> None:
    harness = start_console(COLOUR_THEN_SHELL, password=PASSWORD, name=NAME)
    wait_for_prompt(harness, 1)
    viewer = start_viewer(harness, PASSWORD)
    _, _, before, _ = wait_for_screen(xserver, harness, viewer)

    window = xdotool(xserver, "search", "--sync", "--onlyvisible", "--name", NAME).split()[0]
    xdotool(xserver, "windowfocus", "--sync", window)
    xdotool(xserver, "type", "--delay", "20", "echo tiger $((6*7))")
    xdotool(xserver, "key", "Return")

    lines = harness.wait_for_text(
        lambda lines: any(line.strip() == "tiger 42" for line in lines),
        what="the shell's output 'tiger 42'",
    )
    assert lines[1].strip() == "$ echo tiger $((6*7))"
    assert lines[2].strip() == "tiger 42"
    _, _, after, _ = wait_for_screen(xserver, harness, viewer)
    assert not np.array_equal(before, after)


def test_wrong_password_gets_no_screen(
    xserver: XServer,
    start_console: Any,
    start_viewer: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="vzvnc")
    harness = start_console(COLOUR_THEN_SHELL, password=PASSWORD, name=NAME)
    wait_for_prompt(harness, 1)
    viewer = start_viewer(harness, WRONG_PASSWORD)

    try:
        code = viewer.process.wait(20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"vncviewer did not give up on a wrong password:\n{viewer.log()}")
    # TigerVNC 1.12 exits with status 0 here (AlertOnFatalError=0); its log says why.
    assert "authentication failure" in viewer.log().lower(), f"exit {code}:\n{viewer.log()}"

    fb = harness.wait_quiescent()
    assert find_subimage(xserver.screenshot(), fb) is None
    assert not any(session.initialised for session in harness.sessions())

    messages = [record.getMessage() for record in caplog.records]
    assert any("authentication failed" in message for message in messages), messages
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + (record.exc_text or "")
        for secret in (PASSWORD, WRONG_PASSWORD):
            assert secret.decode() not in text, f"a password was logged: {text}"
