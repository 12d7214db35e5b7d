"""Run a real Console (real pty, real program, real sockets) inside a test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Sequence

from vzvnc.config import ConsoleConfig
from vzvnc.console import Console
from vzvnc.endpoints import PtyProgram

SHELL = ["/bin/sh"]
# A shell with a known prompt and no rc files, so screens are deterministic.
CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "PS1": "$ ", "LANG": "C.UTF-8"}


@contextlib.asynccontextmanager
async def running_console(cmd: Sequence[str] = SHELL, **config: object) -> AsyncIterator[Console]:
    settings: dict[str, object] = {"port": 0, "columns": 80, "lines": 25}
    settings.update(config)
    cfg = ConsoleConfig(**settings)  # type: ignore[arg-type]
    pty = PtyProgram.start(list(cmd), columns=cfg.columns, lines=cfg.lines, env=CLEAN_ENV)
    console = Console(pty, cfg)
    await console.start()
    runner = asyncio.create_task(console.run())
    try:
        yield console
    finally:
        console.request_stop()
        await asyncio.wait_for(runner, 10)


async def wait_for_text(console: Console, text: str, timeout: float = 10.0) -> list[str]:
    """Poll the terminal's text until ``text`` appears on screen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        lines = console.terminal.text_lines()
        if any(text in line for line in lines):
            return lines
        if loop.time() > deadline:
            raise AssertionError(f"{text!r} never appeared; screen:\n" + "\n".join(lines))
        await asyncio.sleep(0.02)


async def wait_until(predicate: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("condition never became true")
        await asyncio.sleep(0.02)


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}
