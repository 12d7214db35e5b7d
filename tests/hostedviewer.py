"""Looking at a hosted (LXC, libvirt) console the way a user does: a real viewer
(vncdotool) types into it, and what it captures must be, pixel for pixel, the
screen the console's journal holds."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vzvnc.domain.journal import read_journal
from vzvnc.fb.snapshot import render_rgb
from vzvnc.hosted.keeper import read_status
from vzvnc.term.terminal import Terminal

CLIENT_TIMEOUT = 15.0


def journal_screen(run_dir: Path, columns: int = 80, lines: int = 25) -> Terminal:
    """The screen as every byte the keeper journalled draws it."""
    terminal = Terminal(columns, lines)
    _, data = read_journal(run_dir, 0)
    terminal.feed(data)
    return terminal


def wait_for_line(run_dir: Path, wanted: str, timeout: float = 20.0) -> list[str]:
    """Until a line of the journalled screen, stripped, equals ``wanted``."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = [line.strip() for line in journal_screen(run_dir).text_lines()]
        if wanted in lines:
            return lines
        time.sleep(0.1)
    raise AssertionError(f"{wanted!r} never appeared on the console:\n" + "\n".join(lines))


def wait_for_text(run_dir: Path, wanted: str, timeout: float = 20.0, times: int = 1) -> None:
    """Until ``wanted`` has come ``times`` times in the journal (scrolled away or not)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, data = read_journal(run_dir, 0)
        if data.count(wanted.encode()) >= times:
            return
        time.sleep(0.1)
    raise AssertionError(f"{wanted!r} never came from the console")


def wait_for_address(run_dir: Path, timeout: float = 20.0) -> tuple[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = read_status(run_dir)
        if status is not None and status.get("vnc"):
            return str(status["vnc"]), status
        time.sleep(0.05)
    raise AssertionError(f"no console is served from {run_dir}")


def wait_gone(run_dir: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while run_dir.exists() or read_status(run_dir) is not None:
        if time.monotonic() > deadline:
            raise AssertionError(f"the console in {run_dir} is still served")
        time.sleep(0.1)


def connect(vnc_api: Any, address: str) -> Any:
    host, port = address.rsplit(":", 1)
    return vnc_api.connect(f"{host}::{port}", timeout=CLIENT_TIMEOUT)


def type_line(client: Any, text: str) -> None:
    for char in text:
        client.keyPress(char)
    client.keyPress("enter")


def capture(client: Any, path: Path) -> np.ndarray:
    client.captureScreen(str(path))
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).copy()


def capture_matches_journal(client: Any, run_dir: Path, path: Path, attempts: int = 10) -> None:
    """The viewer's capture equals the journalled screen (retried: a capture may race
    output still arriving); a lasting difference fails."""
    got = expected = None
    for _ in range(attempts):
        expected = render_rgb(journal_screen(run_dir))
        got = capture(client, path)
        if np.array_equal(got, expected):
            return
        time.sleep(0.3)
    assert got is not None and expected is not None
    differing = int(np.any(got != expected, axis=-1).sum()) if got.shape == expected.shape else -1
    raise AssertionError(f"the viewer's capture differs from the console ({differing} pixels)")


def vzvnc_json(output: str) -> Any:
    return json.loads(output)
