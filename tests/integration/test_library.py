"""The library API (docs/library.md): the documented example runs, and a console built
from an fd pair, listening on a socket the caller bound, is resized, renamed,
snapshotted and restored through the public names only."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

import vzvnc
from tests.rfbclient import DESKTOP_NAME, DESKTOP_SIZE, RAW, RfbClient
from vzvnc.fb.snapshot import render_rgb

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "embed_console.py"


def test_every_public_name_is_importable_and_documented() -> None:
    page = (ROOT / "docs" / "library.md").read_text()
    for name in vzvnc.__all__:
        assert getattr(vzvnc, name) is not None
        if name != "__version__":
            assert f"`{name}" in page, f"{name} is not described in docs/library.md"


async def wait_for(predicate: object, what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_the_documented_example_serves_a_shell_and_prints_its_last_screen() -> None:
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("listening on 127.0.0.1:"), first
        port = int(first.rsplit(":", 1)[1])

        async def scenario() -> None:
            encodings = (RAW, DESKTOP_SIZE, DESKTOP_NAME)
            async with await RfbClient.connect(port, encodings=encodings) as client:
                assert client.name == "embedded shell"
                await client.update(incremental=False)
                client.type("echo $((6*7))-typed\n")
                await client.drain_updates()
                process.send_signal(signal.SIGUSR1)  # the example resizes to 100x30
                await wait_for_size(client, (800, 480))
                process.send_signal(signal.SIGUSR2)  # and renames
                for _ in range(50):
                    await client.update(timeout=5)
                    if client.name == "renamed shell":
                        break
                assert client.name == "renamed shell"

        asyncio.run(scenario())
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert "final screen 100x30:" in out
    assert "| 42-typed" in out


async def wait_for_size(client: RfbClient, size: tuple[int, int]) -> None:
    for _ in range(50):
        await client.update(timeout=5)
        if (client.width, client.height) == size:
            return
    raise AssertionError(f"the viewer stayed at {client.width}x{client.height}")


def test_a_console_over_an_fd_pair_on_a_bound_socket() -> None:
    async def scenario() -> None:
        ours, program = socket.socketpair()
        listener = socket.create_server(("127.0.0.1", 0))
        endpoint = vzvnc.FdEndpoint(os.dup(program.fileno()))
        program.close()
        config = vzvnc.ConsoleConfig(columns=40, lines=10, name="pair")
        console = vzvnc.Console(endpoint, config)
        await console.start(sock=listener)
        running = asyncio.create_task(console.run())
        port = console.address[1]
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
        async with await RfbClient.connect(port, encodings=(RAW, DESKTOP_SIZE)) as client:
            assert (client.width, client.height) == (320, 160)
            await loop.sock_sendall(ours, b"\x1b[1mhello\x1b[m from the program\r\n")
            await wait_for(
                lambda: "hello from the program" in console.terminal.text_lines()[0], "output"
            )
            client.type("typed")
            received = b""
            while b"typed" not in received:
                received += await asyncio.wait_for(loop.sock_recv(ours, 100), 5)
            console.resize(50, 12)
            await wait_for_size(client, (400, 192))
            await client.drain_updates()
            # What the viewer holds is what the terminal shows, pixel for pixel.
            expected = render_rgb(console.terminal)
            assert np.array_equal(client.pixels[:, :, 2::-1], expected)

        snapshot = console.snapshot(offset=1234)
        assert snapshot is not None and snapshot.offset == 1234
        ours.close()  # the program's side ends: run() returns
        assert await asyncio.wait_for(running, 10) == 0

        # A second console starts from the first one's screen.
        a, b = socket.socketpair()
        second = vzvnc.Console(vzvnc.FdEndpoint(os.dup(b.fileno())), config)
        b.close()
        second.restore(vzvnc.Snapshot.from_bytes(snapshot.to_bytes()))
        assert second.terminal.text_lines() == console.terminal.text_lines()
        assert (second.terminal.columns, second.terminal.lines) == (50, 12)
        await second.start(sock=socket.create_server(("127.0.0.1", 0)))
        async with await RfbClient.connect(second.address[1], encodings=(RAW,)) as client:
            assert (client.width, client.height) == (400, 192)
            await client.update(incremental=False)
            assert np.array_equal(client.pixels[:, :, 2::-1], render_rgb(second.terminal))
        second.stop()
        a.close()
        await second.run()

    asyncio.run(scenario())
