"""Hostile clients and one honest viewer for the integration tests (issue 10).

The console runs ``ECHO_PROGRAM``: a raw-mode loop that echoes lower-case letters
on the first line after a ``> `` prompt, starts the line again on Return, drops
every other byte (a flood's ``~``, pastes) and, after Ctrl+B until Ctrl+E,
rewrites rows 10-25 fifty times a second: a busy screen below the honest viewer's
rows. The honest viewer connects from 127.0.0.2 and asks for the top four text
rows only; the hostile clients are plain non-blocking sockets from 127.0.0.1
that hold no buffers of their own, so the test process's RSS is the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.integration.harness import running_console, wait_for_text
from tests.rfbclient import RAW, RfbClient
from vzvnc.console import Console
from vzvnc.rfb.auth import vnc_auth_response

PASSWORD = b"hostile"
HONEST_SOURCE = "127.0.0.2"
HOSTILE_SOURCE = "127.0.0.1"
TOP_ROWS = 4
IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h

ECHO_PROGRAM = r"""
import os, select, tty
tty.setraw(0)
os.write(1, b"\x1b[2J\x1b[H> ")
frame = 0
busy = False
while True:
    ready, _, _ = select.select([0], [], [], 0.02 if busy else None)
    if ready:
        data = os.read(0, 65536)
        if not data:
            break
        out = bytearray()
        for byte in data:
            if 97 <= byte <= 122:
                out.append(byte)
            elif byte == 13:
                out += b"\r\x1b[K> "
            elif byte == 2:
                busy = True
            elif byte == 5:
                busy = False
        if out:
            os.write(1, bytes(out))
    if busy:
        frame += 1
        rows = b"".join(
            b"\x1b[%d;1H" % row + (b"%09d " % (frame * 31 + row)) * 8 for row in range(10, 26)
        )
        os.write(1, b"\x1b7" + rows + b"\x1b8")
"""
ECHO_COMMAND = [sys.executable, "-c", ECHO_PROGRAM]


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class PeakRss:
    """The test process's peak RSS growth, and with a console the peak of bytes
    queued in all its sessions' transports, sampled every 10 ms while it runs.

    RSS in a test process is a loose measure (memory freed by earlier tests is
    reused first); the queued bytes are exact."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console
        self.start = rss_kib()
        self.peak = self.start
        self.peak_queued = 0
        self._task: asyncio.Task[None] | None = None

    def _sample_once(self) -> None:
        self.peak = max(self.peak, rss_kib())
        if self.console is not None:
            queued = sum(
                session._writer.transport.get_write_buffer_size()
                for session in list(self.console.sessions)
            )
            self.peak_queued = max(self.peak_queued, queued)

    async def _sample(self) -> None:
        while True:
            self._sample_once()
            await asyncio.sleep(0.01)

    async def __aenter__(self) -> PeakRss:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._sample_once()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.start) / 1024

    @property
    def queued_mib(self) -> float:
        return self.peak_queued / (1 << 20)


async def open_socket(port: int, source: str = HOSTILE_SOURCE, rcvbuf: int = 0) -> socket.socket:
    """A non-blocking TCP connection from ``source`` to 127.0.0.1:``port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        await asyncio.wait_for(
            asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), 5
        )
    except BaseException:
        sock.close()
        raise
    return sock


async def recv_exactly(sock: socket.socket, n: int, timeout: float = 5.0) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < n:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, n - len(data)), timeout)
        if not chunk:
            raise ConnectionError("closed by the server")
        data += chunk
    return data


async def authenticated_socket(
    port: int, *, password: bytes = PASSWORD, rcvbuf: int = 0, encodings: Sequence[int] = (RAW,)
) -> socket.socket:
    """A hostile client's socket after VNC Authentication, ClientInit and
    SetEncodings: from here on the test writes what it likes and reads nothing."""
    loop = asyncio.get_running_loop()
    sock = await open_socket(port, rcvbuf=rcvbuf)
    try:
        assert (await recv_exactly(sock, 12)).startswith(b"RFB 003.")
        await loop.sock_sendall(sock, b"RFB 003.008\n")
        (count,) = await recv_exactly(sock, 1)
        assert 2 in await recv_exactly(sock, count)
        await loop.sock_sendall(sock, b"\x02")
        challenge = await recv_exactly(sock, 16)
        await loop.sock_sendall(sock, vnc_auth_response(password, challenge))
        assert await recv_exactly(sock, 4) == bytes(4), "authentication failed"
        await loop.sock_sendall(sock, b"\x01")
        header = await recv_exactly(sock, 24)
        (name_length,) = struct.unpack(">I", header[20:24])
        await recv_exactly(sock, name_length)
        message = struct.pack(f">BxH{len(encodings)}i", 2, len(encodings), *encodings)
        await loop.sock_sendall(sock, message)
    except BaseException:
        sock.close()
        raise
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (what it sent is read and dropped)."""
    try:
        while True:
            if not sock.recv(65536):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


async def wait_dropped(sock: socket.socket, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if closed_by_server(sock):
            return True
        await asyncio.sleep(0.02)
    return closed_by_server(sock)


def _word(n: int) -> str:
    letters = ""
    n += 26 * 26  # at least three letters
    while n:
        n, digit = divmod(n, 26)
        letters += chr(ord("a") + digit)
    return letters


@dataclass
class Honest:
    """A viewer from 127.0.0.2 that types words and waits to see them echoed."""

    client: RfbClient
    console: Console
    echo_seconds: list[float] = field(default_factory=list)
    words: int = 0

    @property
    def top(self) -> tuple[int, int, int, int]:
        return (0, 0, self.client.width, TOP_ROWS * self.console.cell_size[1])

    async def echo(self, timeout: float = 2.0) -> float:
        """Type a new word (after Return); seconds until the viewer holds the
        server's pixels for the top rows and the word is the first line's text."""
        word = _word(self.words)
        self.words += 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + timeout
        self.client.type("\n" + word)
        height = self.top[3]
        self.client.request(True, self.top)
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                line = self.console.terminal.text_lines()[0]
                raise AssertionError(f"no echo of {word!r} within {timeout} s (line: {line!r})")
            try:
                kind = await self.client.read_message(min(0.05, remaining))
            except TimeoutError:
                kind = -1
            if kind == 0:
                self.client.request(True, self.top)
            shown = self.console.terminal.text_lines()[0].rstrip() == f"> {word}"
            pixels = self.console.framebuffer.pixels[:height]
            if shown and np.array_equal(self.client.pixels[:height, :, :3], pixels[:, :, :3]):
                took = loop.time() - started
                self.echo_seconds.append(took)
                return took

    async def keep_typing(self, stop: asyncio.Event, timeout: float = 2.0) -> None:
        """Echo words until ``stop`` is set (each within ``timeout``); at least one."""
        while True:
            await self.echo(timeout)
            if stop.is_set():
                return
            await asyncio.sleep(0.02)

    async def drain(self) -> None:
        """Read what the server sent since the last echo (non-blocking)."""
        with contextlib.suppress(TimeoutError):
            while True:
                await self.client.read_message(0.05)


@contextlib.asynccontextmanager
async def console_with_honest_viewer(**config: object) -> AsyncIterator[tuple[Console, Honest]]:
    """A console running ``ECHO_PROGRAM`` with ``PASSWORD`` and an honest viewer from
    127.0.0.2 that has already seen one echo."""
    settings: dict[str, object] = {"password": PASSWORD}
    settings.update(config)
    async with running_console(ECHO_COMMAND, **settings) as console:
        await wait_for_text(console, ">")
        sock = await open_socket(console.address[1], HONEST_SOURCE)
        client = await RfbClient.connect(console.address[1], password=PASSWORD, sock=sock)
        async with client:
            honest = Honest(client, console)
            client.request(False, honest.top)
            await client.read_message(5)
            await honest.echo(timeout=5)
            yield console, honest


async def while_typing(honest: Honest, attack: object, timeout: float = 2.0) -> object:
    """Run the ``attack`` coroutine while ``honest`` keeps echoing words; its result."""
    stop = asyncio.Event()
    typing = asyncio.create_task(honest.keep_typing(stop, timeout))
    try:
        result = await attack  # type: ignore[misc]
    except BaseException:
        typing.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await typing
        raise
    stop.set()
    await asyncio.wait_for(typing, timeout + 5)
    return result
