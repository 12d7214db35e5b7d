"""Fixtures every test directory may use."""

from __future__ import annotations

import threading
from collections.abc import Iterator
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
