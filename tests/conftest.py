"""Fixtures every test directory may use."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def vnc_api() -> Iterator[Any]:
    """vncdotool's threaded API; its Twisted reactor thread is stopped after the session."""
    from vncdotool import api

    yield api
    api.shutdown()
    leftover = [t.name for t in threading.enumerate() if "Twisted" in t.name]
    assert not leftover, f"vncdotool left threads running: {leftover}"


@pytest.fixture(scope="session", autouse=True)
def run_fork_server_of_this_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``vzvnc run`` started by tests uses a fork server of this session's own (not the
    user's, which may come from other code), stopped when the session ends."""
    directory = tmp_path_factory.mktemp("vzvnc-runtime")
    directory.chmod(0o700)
    saved = {name: os.environ.get(name) for name in ("VZVNC_RUNTIME_DIR", "VZVNC_FORK_SERVER_IDLE")}
    os.environ["VZVNC_RUNTIME_DIR"] = str(directory)
    os.environ["VZVNC_FORK_SERVER_IDLE"] = "120"
    yield
    # One server per context (a test may run vzvnc with other settings): SIGTERM is a
    # stop request, and each exits once its last console has ended.
    for lock in Path(directory).glob("run-*.lock"):
        pid = lock.read_text().strip()
        with contextlib.suppress(OSError, ValueError):
            if b"vzvnc.run_server" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(int(pid), signal.SIGTERM)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
