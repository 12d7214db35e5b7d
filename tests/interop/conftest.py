"""Fixtures for the interop tests: console servers, vncdotool, an X server."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from interop_helpers import (
    VIEWER_OPTIONS,
    ConsoleHarness,
    Viewer,
    XServer,
    require_binary,
    stop_process,
    vnc_obfuscate,
    write_secret,
)


@pytest.fixture
def start_console() -> Iterator[Callable[..., ConsoleHarness]]:
    """``start_console(argv, password=...)``: a running console; all are stopped at teardown."""
    started: list[ConsoleHarness] = []

    def start(argv: Sequence[str], **kwargs: Any) -> ConsoleHarness:
        harness = ConsoleHarness(argv, **kwargs)
        started.append(harness)
        return harness.start()

    yield start
    errors: list[BaseException] = []
    for harness in reversed(started):
        try:
            harness.stop()
        except BaseException as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture(scope="session")
def xserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XServer]:
    server = XServer(tmp_path_factory.mktemp("xvfb"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def start_viewer(xserver: XServer, tmp_path: Path) -> Iterator[Callable[..., Viewer]]:
    """``start_viewer(harness, password, *options, env=None)``: TigerVNC's vncviewer on
    the X server.

    ``options`` are added to ``VIEWER_OPTIONS`` (later ones win); ``env`` adds to the
    viewer's environment (``VNC_USERNAME``, ``VNC_PASSWORD``). Every viewer is
    stopped at teardown.
    """
    vncviewer = require_binary("vncviewer", "tigervnc-viewer")
    viewers: list[tuple[Viewer, Any]] = []

    def start(
        harness: ConsoleHarness,
        password: bytes,
        *options: str,
        env: dict[str, str] | None = None,
    ) -> Viewer:
        index = len(viewers)
        home = tmp_path / f"viewer-home-{index}"
        home.mkdir()
        passwd = write_secret(tmp_path / f"viewer-{index}.passwd", vnc_obfuscate(password))
        log_path = tmp_path / f"viewer-{index}.log"
        log_file = open(log_path, "wb")  # noqa: SIM115 - closed at teardown
        try:
            process = subprocess.Popen(
                [
                    vncviewer,
                    "-passwd",
                    str(passwd),
                    *VIEWER_OPTIONS,
                    *options,
                    f"127.0.0.1::{harness.port}",
                ],
                env={**xserver.env(home), **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        except BaseException:
            log_file.close()
            raise
        viewer = Viewer(process, log_path)
        viewers.append((viewer, log_file))
        return viewer

    yield start
    for viewer, log_file in viewers:
        stop_process(viewer.process)
        log_file.close()
