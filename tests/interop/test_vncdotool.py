"""vncdotool (a Python RFB client, Twisted-based) against a real console.

What a vncdotool capture shows must be, pixel for pixel, what the server's own
framebuffer holds; keys typed through it must reach the program in the pty; VNC
Authentication must admit the right password and refuse a wrong one without
disturbing anyone else.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from interop_helpers import (
    ConsoleHarness,
    colour_mask,
    describe_difference,
    write_secret,
)
from PIL import Image

pytestmark = [
    pytest.mark.interop,
    # vncdotool 1.4.2 computes VNC Authentication with cryptography's old TripleDES
    # location, which warns (in the Twisted thread) since cryptography 43: not ours.
    pytest.mark.filterwarnings(
        "ignore:TripleDES has been moved:cryptography.utils.CryptographyDeprecationWarning"
    ),
]

CLIENT_TIMEOUT = 15.0
XTERM_RED = (205, 0, 0)
DEFAULT_FG = (229, 229, 229)

COLOUR_TEXT = r"printf '\033[31mred\033[0m \033[1;32mgreen\033[0m 中文\n'; exec sleep 60"
SHELL = ["/bin/sh"]


def capture(client: Any, path: Path) -> np.ndarray:
    """A full (non-incremental) capture through vncdotool, as (h, w, 3) RGB."""
    client.captureScreen(str(path))
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).copy()


def capture_matching(
    harness: ConsoleHarness, client: Any, path: Path, attempts: int = 5
) -> np.ndarray:
    """Capture until the capture equals the settled server framebuffer; return it.

    A capture can race a frame the server renders meanwhile, hence the retries;
    a persistent difference is a real failure.
    """
    difference = ""
    for _ in range(attempts):
        expected = harness.wait_quiescent()
        got = capture(client, path)
        if np.array_equal(got, expected) and np.array_equal(harness.rgb(), expected):
            return got
        difference = describe_difference(got, expected)
    pytest.fail(f"vncdotool's capture never matched the server framebuffer: {difference}")


def connect(api: Any, harness: ConsoleHarness, password: str | None = None) -> Any:
    return api.connect(harness.server, password=password, timeout=CLIENT_TIMEOUT)


def type_text(client: Any, text: str) -> None:
    # vncdotool 1.4.2's API client has no type(); its CLI "type" is a keyPress per character.
    for char in text:
        client.keyPress(char)


def wait_for_prompt(harness: ConsoleHarness) -> None:
    harness.wait_for_text(lambda lines: lines[0].strip() == "$", what="the '$ ' prompt")


def test_capture_equals_server_framebuffer(vnc_api: Any, start_console: Any, tmp_path: Path):
    harness = start_console(["/bin/sh", "-c", COLOUR_TEXT])
    lines = harness.wait_for_text(lambda lines: "green" in lines[0], what="the coloured text")
    assert lines[0].startswith("red green 中文")

    client = connect(vnc_api, harness)
    try:
        got = capture_matching(harness, client, tmp_path / "capture.png")
    finally:
        client.disconnect()

    assert got.shape == (25 * 16, 80 * 8, 3)
    # The premise of the comparison: the screen really shows red and default-coloured text.
    red = colour_mask(got, XTERM_RED)
    assert red.any(), "no xterm red pixels on the screen"
    ys, xs = np.nonzero(red)
    assert ys.max() < 16 and xs.max() < 3 * 8, "red pixels outside the word 'red'"
    assert colour_mask(got, DEFAULT_FG)[:16, 3 * 8 :].any(), "no default foreground text"
    assert not colour_mask(got, XTERM_RED)[16:].any()


def test_typing_reaches_the_shell(vnc_api: Any, start_console: Any, tmp_path: Path):
    harness = start_console(SHELL)
    wait_for_prompt(harness)
    client = connect(vnc_api, harness)
    try:
        before = capture_matching(harness, client, tmp_path / "before.png")
        type_text(client, "echo hello")
        client.keyPress("enter")
        lines = harness.wait_for_text(
            lambda lines: any(line.strip() == "hello" for line in lines),
            what="'hello' on a line of its own",
        )
        assert lines[0].strip() == "$ echo hello"
        assert lines[1].strip() == "hello"
        after = capture_matching(harness, client, tmp_path / "after.png")
    finally:
        client.disconnect()
    assert not np.array_equal(before, after), "the captured screen did not change"
    # The echoed line is drawn in rows 1 (the output) and 2 (the new prompt).
    changed_rows = np.nonzero(np.any(before != after, axis=(1, 2)))[0]
    assert changed_rows.min() < 16 * 3 and changed_rows.max() < 16 * 3


def test_password(
    vnc_api: Any, start_console: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    from vncdotool.client import AuthenticationError

    from vzvnc.rfb.auth import read_password_file

    caplog.set_level(logging.INFO, logger="vzvnc")
    secret = "vz-Pass1"
    password = read_password_file(write_secret(tmp_path / "password", secret.encode() + b"\n"))
    assert password == secret.encode()
    harness = start_console(SHELL, password=password)
    wait_for_prompt(harness)

    first = connect(vnc_api, harness, password=secret)
    try:
        capture_matching(harness, first, tmp_path / "first.png")

        wrong = connect(vnc_api, harness, password="wrong-pw")
        with pytest.raises(AuthenticationError):
            wrong.captureScreen(str(tmp_path / "wrong.png"))
        assert not (tmp_path / "wrong.png").exists()

        # The server still serves the client that was already there ...
        type_text(first, "echo still here")
        first.keyPress("enter")
        harness.wait_for_text(
            lambda lines: any(line.strip() == "still here" for line in lines),
            what="'still here' typed by the first client",
        )
        capture_matching(harness, first, tmp_path / "first-again.png")
        # ... and a new one with the right password.
        second = connect(vnc_api, harness, password=secret)
        try:
            capture_matching(harness, second, tmp_path / "second.png")
        finally:
            second.disconnect()
    finally:
        first.disconnect()

    messages = [record.getMessage() for record in caplog.records]
    assert any("authentication failed (VNC_AUTH)" in message for message in messages), messages
    for record in caplog.records:
        text = record.getMessage() + repr(record.args)
        assert secret not in text and "wrong-pw" not in text, f"password logged: {text}"
