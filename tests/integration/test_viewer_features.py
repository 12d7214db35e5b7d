"""Resize, desktop name, selection, clipboard, mouse reports and scrollback, through RFB."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import subprocess
import sys
import zlib

import numpy as np

from tests.integration.harness import running_console, wait_for_text, wait_until
from tests.rfbclient import (
    CONTINUOUS_UPDATES,
    COPY_RECT,
    DESKTOP_NAME,
    DESKTOP_SIZE,
    EXTENDED_CLIPBOARD,
    EXTENDED_DESKTOP_SIZE,
    FENCE,
    LAST_RECT,
    QEMU_EXTENDED_KEY,
    RAW,
    RfbClient,
)

ALL = (COPY_RECT, RAW, DESKTOP_SIZE, LAST_RECT, EXTENDED_DESKTOP_SIZE, DESKTOP_NAME)
XK_SHIFT_L, XK_PAGE_UP, XK_PAGE_DOWN = 0xFFE1, 0xFF55, 0xFF56
CAPS, REQUEST, NOTIFY, PROVIDE, TEXT = 1 << 24, 1 << 25, 1 << 27, 1 << 28, 1


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def provisions(client: RfbClient) -> list[bytes]:
    """Payloads of the Extended Clipboard "provide" messages received (caps excluded)."""
    return [
        payload for flags, payload in client.extended_cut if flags & PROVIDE and not flags & CAPS
    ]


async def read_until(client: RfbClient, predicate: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        assert loop.time() < deadline, "the expected message never came"
        client.request(True)
        with contextlib.suppress(TimeoutError):
            await client.read_message(timeout=0.5)


def test_set_desktop_size_resizes_terminal_pty_and_every_viewer() -> None:
    async def scenario() -> None:
        async with running_console() as console:
            resizer = await RfbClient.connect(console.address[1], encodings=ALL)
            other = await RfbClient.connect(console.address[1], encodings=ALL)
            legacy = await RfbClient.connect(console.address[1], encodings=(RAW, DESKTOP_SIZE))
            await read_until(resizer, lambda: resizer.size_replies)
            assert resizer.size_replies[0] == (0, 0, 640, 400)  # confirms support
            resizer.set_desktop_size(800, 480)
            await read_until(resizer, lambda: (1, 0, 800, 480) in resizer.size_replies)
            await read_until(other, lambda: (2, 0, 800, 480) in other.size_replies)
            await read_until(legacy, lambda: (legacy.width, legacy.height) == (800, 480))
            assert (console.terminal.columns, console.terminal.lines) == (100, 30)
            resizer.type("stty size\n")
            await wait_for_text(console, "30 100")
            await resizer.drain_updates()
            assert np.array_equal(resizer.pixels, console.framebuffer.pixels)
            for client in (resizer, other, legacy):
                await client.close()

    run(scenario())


def test_pinned_size_refuses_set_desktop_size() -> None:
    async def scenario() -> None:
        async with running_console(resizable=False) as console:
            client = await RfbClient.connect(console.address[1], encodings=ALL)
            client.set_desktop_size(800, 480)
            await read_until(client, lambda: any(r[0] == 1 for r in client.size_replies))
            assert (1, 1, 640, 400) in client.size_replies  # reason: this client, prohibited
            assert console.terminal.columns == 80
            await client.close()

    run(scenario())


def test_title_becomes_the_desktop_name_live() -> None:
    async def scenario() -> None:
        async with running_console(name="start") as console:
            client = await RfbClient.connect(console.address[1], encodings=ALL)
            assert client.name == "start"
            client.type("printf '\\033]2;my title\\007'\n")
            await read_until(client, lambda: client.name == "my title")
            await client.close()

    run(scenario())


def test_drag_selects_text_and_viewers_get_it_as_cut_text() -> None:
    async def scenario() -> None:
        async with running_console(
            ["/bin/sh", "-c", "echo 'pick these words'; sleep 30"]
        ) as console:
            client = await RfbClient.connect(console.address[1])
            await wait_for_text(console, "pick these words")
            await client.drain_updates()
            before = client.pixels.copy()
            # Drag from column 5 to column 15 on row 0 (8x16 cells).
            client.pointer(1, 5 * 8 + 2, 4)
            client.pointer(1, 10 * 8 + 2, 4)
            client.pointer(1, 15 * 8 + 2, 4)
            client.pointer(0, 15 * 8 + 2, 4)
            await read_until(client, lambda: client.cut_texts)
            assert client.cut_texts[-1] == b"these words"
            await client.drain_updates()
            changed = (client.pixels != before).any(axis=2)
            assert changed[:16, 5 * 8 : 16 * 8].any()  # drawn inverted
            assert not changed[16:].any()
            await client.close()

    run(scenario())


def test_extended_clipboard_carries_utf8_both_ways() -> None:
    async def scenario() -> None:
        program = [
            sys.executable,
            "-c",
            "import sys, tty, time\n"
            "print('ready Ωmega', flush=True)\n"
            "tty.setraw(0)\n"
            "data = sys.stdin.buffer.read1(100)\n"
            "sys.stdout.write('\\r\\ngot ' + data.decode()); sys.stdout.flush()\n"
            "time.sleep(30)\n",
        ]
        async with running_console(program) as console:
            client = await RfbClient.connect(
                console.address[1], encodings=(RAW, EXTENDED_CLIPBOARD)
            )
            await read_until(client, lambda: client.extended_cut)
            flags, payload = client.extended_cut[0]
            assert flags & CAPS and flags & TEXT
            client.extended_cut_text(CAPS | TEXT, struct.pack(">I", 10_000))
            await wait_for_text(console, "ready")
            # Viewer -> program: notify, the server requests, the viewer provides.
            client.extended_cut_text(NOTIFY | TEXT)
            await read_until(
                client, lambda: any(f & REQUEST and not f & CAPS for f, _ in client.extended_cut)
            )
            text = "żółw".encode() + b"\0"
            body = zlib.compress(struct.pack(">I", len(text)) + text)
            client.extended_cut_text(PROVIDE | TEXT, body)
            await wait_for_text(console, "got żółw")
            # Program -> viewer: select "Ωmega" and receive it as UTF-8.
            assert not provisions(client)  # nothing offered before a selection
            client.pointer(1, 6 * 8 + 1, 4)
            client.pointer(1, 10 * 8 + 1, 4)
            client.pointer(0, 10 * 8 + 1, 4)
            await read_until(client, lambda: provisions(client))
            payload = provisions(client)[-1]
            data = zlib.decompress(payload)
            (size,) = struct.unpack(">I", data[:4])
            assert data[4 : 4 + size] == "Ωmega".encode() + b"\0"
            await client.close()

    run(scenario())


def test_mouse_reports_only_while_the_program_asks() -> None:
    async def scenario() -> None:
        program = [
            sys.executable,
            "-c",
            "import sys, tty, time\n"
            "tty.setraw(0)\n"
            "sys.stdout.write('\\033[?1000h\\033[?1006hon\\r\\n'); sys.stdout.flush()\n"
            "data = b''\n"
            "while data.count(b'\\033') < 2:\n"
            "    data += sys.stdin.buffer.read1(100)\n"
            "sys.stdout.write(repr(data) + '\\033[?1000l\\r\\n'); sys.stdout.flush()\n"
            "time.sleep(30)\n",
        ]
        async with running_console(program) as console:
            client = await RfbClient.connect(console.address[1])
            await wait_for_text(console, "on")
            client.pointer(1, 3 * 8, 2 * 16)
            client.pointer(0, 3 * 8, 2 * 16)
            await wait_for_text(console, r"b'\x1b[<0;4;3M\x1b[<0;4;3m'")
            await client.close()

    run(scenario())


def test_shift_page_up_shows_history_and_typing_returns_to_live() -> None:
    async def scenario() -> None:
        async with running_console() as console:
            client = await RfbClient.connect(console.address[1])
            client.type("seq 1 100\n")
            await wait_for_text(console, "100")
            await client.drain_updates()
            live = client.pixels.copy()
            client.key(XK_SHIFT_L, True)
            client.press(XK_PAGE_UP)
            client.key(XK_SHIFT_L, False)
            await wait_until(lambda: console.display.offset > 0)
            await client.drain_updates()
            assert not np.array_equal(client.pixels, live)
            assert np.array_equal(client.pixels, console.framebuffer.pixels)
            client.key(XK_SHIFT_L, True)
            client.press(XK_PAGE_DOWN)
            client.key(XK_SHIFT_L, False)
            await wait_until(lambda: console.display.offset == 0)
            client.key(XK_SHIFT_L, True)
            client.press(XK_PAGE_UP)
            client.key(XK_SHIFT_L, False)
            await wait_until(lambda: console.display.offset > 0)
            client.type("x")
            await wait_until(lambda: console.display.offset == 0)
            await client.close()

    run(scenario())


def test_render_command_prints_text_and_writes_png(tmp_path: object) -> None:
    stream = "\x1b[31mred\x1b[0m\r\nline two 中文\r\n".encode()
    png = f"{tmp_path}/screen.png"
    proc = subprocess.run(
        [sys.executable, "-m", "vzvnc", "render", "--size", "20x4", "--text", "--png", png],
        input=stream,
        capture_output=True,
        timeout=30,
        check=True,
    )
    lines = proc.stdout.decode().split("\n")
    assert lines[0].rstrip() == "red" and lines[1].rstrip() == "line two 中文"
    from PIL import Image

    with Image.open(png) as image:
        assert image.size == (160, 64)
        pixels = np.asarray(image.convert("RGB"))
    red = (pixels == (205, 0, 0)).all(axis=2)
    assert red[:16, :24].any() and not red[16:].any()


def test_qemu_extended_key_events_are_confirmed_and_typed() -> None:
    async def scenario() -> None:
        async with running_console() as console:
            client = await RfbClient.connect(console.address[1], encodings=(RAW, QEMU_EXTENDED_KEY))
            await read_until(client, lambda: client.qemu_keys_confirmed)
            for char, keycode in (("o", 24), ("k", 37)):
                client.qemu_key(ord(char), keycode, True)
                client.qemu_key(ord(char), keycode, False)
            client.type("\n")
            await wait_for_text(console, "ok: not found")
            await client.close()

    run(scenario())


def test_continuous_updates_flow_without_requests_and_fences_are_answered() -> None:
    async def scenario() -> None:
        async with running_console() as console:
            client = await RfbClient.connect(
                console.address[1], encodings=(RAW, FENCE, CONTINUOUS_UPDATES)
            )
            await read_until(client, lambda: client.end_of_continuous_updates and client.fences)
            assert client.fences[0][0] & (1 << 31)  # the server's fence asks for a reply
            client.enable_continuous_updates(True)
            client.type("echo flowing\n")
            await wait_for_text(console, "flowing")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while not np.array_equal(client.pixels, console.framebuffer.pixels):
                assert loop.time() < deadline, "continuous updates did not keep the client exact"
                await client.read_message(timeout=5)  # no requests sent
            client.fence((1 << 31) | 0b111 | (1 << 7), b"ping")
            await read_until(client, lambda: (0b111, b"ping") in client.fences)
            client.enable_continuous_updates(False)
            await read_until(client, lambda: client.end_of_continuous_updates == 2)
            await client.close()

    run(scenario())
