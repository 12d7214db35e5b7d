"""Fixtures for the interop tests: console servers, vncdotool, an X server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from interop_helpers import ConsoleHarness, XServer


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
def vnc_api() -> Iterator[Any]:
    """vncdotool's threaded API; its Twisted reactor thread is stopped after the session."""
    from vncdotool import api

    yield api
    api.shutdown()
    leftover = [t.name for t in threading.enumerate() if "Twisted" in t.name]
    assert not leftover, f"vncdotool left threads running: {leftover}"


@pytest.fixture(scope="session")
def xserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XServer]:
    server = XServer(tmp_path_factory.mktemp("xvfb"))
    try:
        server.start()
        yield server
    finally:
        server.stop()
