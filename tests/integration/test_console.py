"""A real console: real pty and /bin/sh, real sockets, many and misbehaving clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.integration.harness import running_console, wait_for_text, wait_until
from tests.rfbclient import COPY_RECT, RAW, AuthFailed, RfbClient
from vzvnc.console import Console
from vzvnc.endpoints import PtyProgram
from vzvnc.rfb.server import WRITE_HIGH_WATER


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


async def synced(client: RfbClient, console: Console) -> None:
    """Wait until the client's copy equals the server's framebuffer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        await client.drain_updates(quiet=0.2)
        if np.array_equal(client.pixels, console.framebuffer.pixels):
            return
        assert loop.time() < deadline, "client never caught up with the server"


def test_typed_command_runs_and_client_sees_the_server_framebuffer() -> None:
    async def scenario() -> None:
        async with running_console() as console:
            client = await RfbClient.connect(console.address[1])
            assert (client.width, client.height) == (640, 400)
            await client.update(incremental=False)
            client.type("echo $((6*7))\n")
            await wait_for_text(console, "42")
            await synced(client, console)
            lit = (client.pixels[:, :, :3] != 0).any(axis=2)
            assert lit.sum() > 100  # glyphs, not a blank screen
            await client.close()

    run(scenario())


def test_many_clients_see_the_same_screen() -> None:
    async def scenario() -> None:
        async with running_console() as console:
            clients = [await RfbClient.connect(console.address[1]) for _ in range(6)]
            for client in clients:
                await client.update(incremental=False)
            clients[3].type("echo many-viewers\n")
            await wait_for_text(console, "many-viewers")
            for client in clients:
                await synced(client, console)
            for client in clients:
                await client.close()

    run(scenario())


def test_copyrect_on_scroll_keeps_the_client_exact() -> None:
    async def scenario() -> None:
        async with running_console() as console:
            client = await RfbClient.connect(console.address[1])
            await client.update(incremental=False)
            for i in range(40):
                client.type(f"echo line{i}\n")
                await wait_for_text(console, f"line{i}")
                await client.drain_updates(quiet=0.05)
            await synced(client, console)
            assert client.stats.rects_by_encoding.get(COPY_RECT, 0) > 0
            await client.close()

    run(scenario())


def test_client_without_copyrect_gets_only_raw() -> None:
    async def scenario() -> None:
        async with running_console(["/bin/sh", "-c", "seq 1 200; sleep 30"]) as console:
            client = await RfbClient.connect(console.address[1], encodings=(RAW,))
            await wait_for_text(console, "200")
            await client.update(incremental=False)
            await synced(client, console)
            assert set(client.stats.rects_by_encoding) == {RAW}
            await client.close()

    run(scenario())


def test_incremental_request_gets_nothing_when_nothing_changed() -> None:
    async def scenario() -> None:
        async with running_console(["/bin/sh", "-c", "echo still; sleep 30"]) as console:
            client = await RfbClient.connect(console.address[1])
            await wait_for_text(console, "still")
            await synced(client, console)
            frames = console.frames_rendered
            received = client.bytes_received
            client.request(True)
            with pytest.raises(TimeoutError):
                await client.read_message(timeout=1.0)
            # Idle: no frame rendered and not a byte sent.
            assert console.frames_rendered == frames
            assert client.bytes_received == received
            await client.close()

    run(scenario())


def test_requested_area_bounds_what_is_sent() -> None:
    async def scenario() -> None:
        async with running_console() as console:
            client = await RfbClient.connect(console.address[1])
            last_row = (0, 384, 640, 16)
            await wait_for_text(console, "$")
            client.request(True, last_row)
            assert await client.read_message(timeout=5) == 0  # the row's first content
            client.request(True, last_row)
            client.type("echo top-lines\n")
            await wait_for_text(console, "top-lines")
            # The echo lands on rows 0-2, outside the request: nothing may arrive.
            with pytest.raises(TimeoutError):
                await client.read_message(timeout=0.7)
            await client.close()

    run(scenario())


def test_stalled_client_does_not_slow_others_and_stays_bounded() -> None:
    async def scenario() -> None:
        flood = [
            sys.executable,
            "-c",
            "import time\nend = time.time() + 30\ni = 0\n"
            "while time.time() < end:\n    i += 1\n    print(i, 'x' * 60)",
        ]
        async with running_console(flood) as console:
            # The stalled client asks for updates and then never reads its socket.
            _stalled_reader, stalled_writer = await asyncio.open_connection(
                "127.0.0.1", console.address[1]
            )
            stalled_writer.write(b"RFB 003.008\n\x01\x01")
            stalled_writer.write(b"\x02\x00\x00\x01" + struct.pack(">i", 0))
            await asyncio.sleep(0.1)
            stalled_socket = stalled_writer.get_extra_info("socket")
            stalled_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            for _ in range(200):
                stalled_writer.write(struct.pack(">BBHHHH", 3, 0, 0, 0, 640, 400))
            healthy = await RfbClient.connect(console.address[1])
            updates = 0
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 4
            while loop.time() < deadline:
                await healthy.update()
                updates += 1
            assert updates > 20  # the healthy client kept getting updates
            buffered = [
                session._writer.transport.get_write_buffer_size() for session in console.sessions
            ]
            # At most one full-screen raw update beyond the high-water mark.
            assert max(buffered) <= WRITE_HIGH_WATER + 640 * 400 * 4 + 4096
            stalled_writer.transport.abort()
            await healthy.close()

    run(scenario())


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"RFB 003.008\n\x01\x01" + b"\x07" * 10,  # unknown message type
        b"RFB 003.008\n\x01\x01" + b"\x00\x00\x00\x00" + bytes([8, 8, 0, 0]) + bytes(12),
        b"RFB 003.008\n\x01\x01\x06\x00\x00\x00\x7f\xff\xff\xff",  # huge cut text
    ],
)
def test_garbage_client_is_dropped_alone(garbage: bytes) -> None:
    async def scenario() -> None:
        async with running_console() as console:
            good = await RfbClient.connect(console.address[1])
            await good.update(incremental=False)
            reader, writer = await asyncio.open_connection("127.0.0.1", console.address[1])
            writer.write(garbage)
            await asyncio.wait_for(reader.read(), 5)  # the server closes it
            writer.close()
            await writer.wait_closed()
            good.type("echo survived\n")
            await wait_for_text(console, "survived")
            await synced(good, console)
            await wait_until(lambda: len(console.sessions) == 1)
            await good.close()

    run(scenario())


def test_client_vanishing_mid_message() -> None:
    async def scenario() -> None:
        async with running_console() as console:
            _reader, writer = await asyncio.open_connection("127.0.0.1", console.address[1])
            writer.write(b"RFB 003.008\n\x01\x01\x03\x00\x00")  # half a request
            await asyncio.sleep(0.1)
            writer.transport.abort()
            await wait_until(lambda: len(console.sessions) == 0)
            client = await RfbClient.connect(console.address[1])
            client.type("echo alive\n")
            await wait_for_text(console, "alive")
            await client.close()

    run(scenario())


def test_password_required_and_wrong_password_refused() -> None:
    async def scenario() -> None:
        async with running_console(password=b"s3cret") as console:
            with pytest.raises(AuthFailed, match="Authentication failed"):
                await RfbClient.connect(console.address[1], password=b"wrong")
            client = await RfbClient.connect(console.address[1], password=b"s3cret")
            client.type("echo authed\n")
            await wait_for_text(console, "authed")
            await client.close()

    run(scenario())


def test_view_only_client_cannot_type() -> None:
    async def scenario() -> None:
        async with running_console(password=b"full", view_only_password=b"look") as console:
            viewer = await RfbClient.connect(console.address[1], password=b"look")
            viewer.type("echo from-viewer\n")
            typist = await RfbClient.connect(console.address[1], password=b"full")
            typist.type("echo from-typist\n")
            lines = await wait_for_text(console, "from-typist")
            assert not any("from-viewer" in line for line in lines)
            await viewer.close()
            await typist.close()

    run(scenario())


def test_non_shared_client_disconnects_the_others() -> None:
    async def scenario() -> None:
        async with running_console() as console:
            first = await RfbClient.connect(console.address[1])
            exclusive = await RfbClient.connect(console.address[1], shared=False)
            assert await asyncio.wait_for(first.reader.read(), 5) == b""
            await wait_until(lambda: len(console.sessions) == 1)
            await first.close()
            await exclusive.close()

    run(scenario())


@pytest.mark.parametrize("version", [b"RFB 003.003\n", b"RFB 003.007\n"])
def test_older_protocol_versions(version: bytes) -> None:
    async def scenario() -> None:
        async with running_console(password=b"pw") as console:
            client = await RfbClient.connect(console.address[1], password=b"pw", version=version)
            await client.update(incremental=False)
            client.type("echo old-client\n")
            await wait_for_text(console, "old-client")
            await client.close()

    run(scenario())


def test_ctrl_c_interrupts_the_foreground_program() -> None:
    async def scenario() -> None:
        async with running_console() as console:
            client = await RfbClient.connect(console.address[1])
            client.type("sleep 100; echo slept\n")
            await asyncio.sleep(0.5)
            client.ctrl("c")
            client.type("echo interrupted\n")
            lines = await wait_for_text(console, "interrupted", timeout=5)
            assert not any("slept" in line and "sleep" not in line for line in lines)
            await client.close()

    run(scenario())


def test_paste_arrives_as_input_and_bracketed_when_asked() -> None:
    async def scenario() -> None:
        program = [
            sys.executable,
            "-c",
            "import sys, tty\n"
            "tty.setraw(0)\n"
            "sys.stdout.write('\\033[?2004hready\\r\\n'); sys.stdout.flush()\n"
            "data = b''\n"
            "while not data.endswith(b'\\033[201~'):\n"
            "    data += sys.stdin.buffer.read1(100)\n"
            "sys.stdout.write(repr(data) + '\\r\\n'); sys.stdout.flush()\n"
            "import time; time.sleep(30)\n",
        ]
        async with running_console(program) as console:
            client = await RfbClient.connect(console.address[1])
            await wait_for_text(console, "ready")
            client.cut_text("caf\xe9\nnext".encode("latin-1"))
            await wait_for_text(console, r"b'\x1b[200~caf\xc3\xa9\rnext\x1b[201~'")
            await client.close()

    run(scenario())


def test_terminal_replies_reach_the_program() -> None:
    async def scenario() -> None:
        program = [
            sys.executable,
            "-c",
            "import sys, tty, time\n"
            "tty.setraw(0)\n"
            "sys.stdout.write('\\033[5;10H\\033[6n'); sys.stdout.flush()\n"
            "reply = b''\n"
            "while not reply.endswith(b'R'):\n"
            "    reply += sys.stdin.buffer.read1(100)\n"
            "sys.stdout.write('\\r\\nCPR ' + repr(reply)); sys.stdout.flush()\n"
            "time.sleep(30)\n",
        ]
        async with running_console(program) as console:
            await wait_for_text(console, r"CPR b'\x1b[5;10R'")

    run(scenario())


def test_bell_is_forwarded() -> None:
    async def scenario() -> None:
        async with running_console() as console:
            client = await RfbClient.connect(console.address[1])
            client.type("printf '\\a'\n")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while client.bells == 0:
                assert loop.time() < deadline, "no Bell message"
                client.request(True)
                await client.read_message(timeout=5)
            await client.close()

    run(scenario())


def test_program_exit_ends_the_console_with_its_status() -> None:
    async def scenario() -> None:
        async with running_console(["/bin/sh", "-c", "exit 7"]) as console:
            code = await asyncio.wait_for(console.pty.wait(), 5)
            assert code == 7

    run(scenario())


# -- the command line, as a user runs it ----------------------------------------


def vzvnc(*args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "vzvnc", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_exits_with_the_program_status() -> None:
    proc = vzvnc("run", "--listen", f"127.0.0.1:{free_port()}", "--", "/bin/sh", "-c", "exit 3")
    assert proc.wait(timeout=20) == 3
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]


def test_cli_refuses_non_loopback_without_password() -> None:
    proc = vzvnc("run", "--listen", "0.0.0.0:5999", "--", "/bin/true")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == os.EX_CONFIG
    assert b"not loopback" in err and b"password" in err


def test_cli_refuses_bad_size_naming_the_field() -> None:
    proc = vzvnc("run", "--size", "80by25", "--", "/bin/true")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == os.EX_CONFIG
    assert b"size" in err


def test_cli_sigterm_hangs_up_the_program(tmp_path: object) -> None:
    marker, ready = f"{tmp_path}/hup", f"{tmp_path}/ready"
    # The SIGTERM must not overtake the trap: the script says when it is armed.
    script = f"trap 'echo hup > {marker}; exit 0' HUP; : > {ready}; while :; do sleep 0.1; done"
    port = free_port()
    # Started as under nohup: vzvnc must still give its program a SIGHUP it can trap.
    proc = vzvnc(
        "run",
        "--listen",
        f"127.0.0.1:{port}",
        "--",
        "/bin/sh",
        "-c",
        script,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )

    async def wait_listening() -> None:
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return
        raise AssertionError("vzvnc never listened")

    run(wait_listening())
    deadline = time.monotonic() + 20
    while not os.path.exists(ready):
        assert time.monotonic() < deadline, "the program never armed its trap"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    with open(marker) as f:
        assert f.read().strip() == "hup"


def test_keep_open_serves_the_final_screen_after_exit() -> None:
    async def scenario() -> None:
        program = ["/bin/sh", "-c", "echo final-words; exit 5"]
        async with running_console(program, keep_open=True) as console:
            assert await asyncio.wait_for(console.pty.wait(), 5) == 5
            await wait_for_text(console, "final-words")
            client = await RfbClient.connect(console.address[1])
            await synced(client, console)
            assert (client.pixels[:16, :, :3] != 0).any()  # the text row is drawn
            client.type("ignored\n")  # input to a finished program goes nowhere, harmlessly
            await client.drain_updates(quiet=0.2)
            await client.close()

    run(scenario())


def test_a_flood_ends_on_exactly_the_screen_and_history_of_every_byte() -> None:
    from vzvnc.fb.snapshot import render_rgb
    from vzvnc.term.terminal import Terminal

    script = (
        "import sys\n"
        "out = sys.stdout.buffer\n"
        "for i in range(150000):\n"
        "    out.write(b'\\x1b[3%dm%d\\x1b[0m line of the flood %d\\n' % (i % 8, i, i * 7))\n"
        "out.write(b'\\x1b[1;41mEND\\x1b[0m\\n')\n"
        "out.flush()\n"
        "import time; time.sleep(30)\n"
    )
    expected = Terminal(80, 25)
    for i in range(150000):
        expected.feed(b"\x1b[3%dm%d\x1b[0m line of the flood %d\r\n" % (i % 8, i, i * 7))
    expected.feed(b"\x1b[1;41mEND\x1b[0m\r\n")

    async def scenario() -> None:
        async with running_console([sys.executable, "-c", script]) as console:
            await wait_for_text(console, "END", timeout=60)
            await asyncio.sleep(0.3)
            assert console.terminal.text_lines() == expected.text_lines()
            assert console.terminal.history_size == expected.history_size
            for offset in (1, 500, expected.history_size):
                got, want = console.terminal.view_cells(offset), expected.view_cells(offset)
                assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
            assert np.array_equal(console.framebuffer.rgb_image(), render_rgb(expected))

    run(scenario())


def test_the_program_starts_with_default_signals_whatever_ours() -> None:
    """Ignored signals and the signal mask survive exec; the program gets neither."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        pty = PtyProgram.start(
            ["/bin/sh", "-c", "grep -E '^Sig(Ign|Blk)' /proc/self/status"], columns=80, lines=25
        )
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
        signal.signal(signal.SIGHUP, previous)
    output = b""
    deadline = time.monotonic() + 10
    while output.count(b"\n") < 2 and time.monotonic() < deadline:
        with contextlib.suppress(BlockingIOError, OSError):
            output += os.read(pty.master_fd, 4096)
        time.sleep(0.01)
    pty.kill()
    pty.process.wait(timeout=10)
    pty.close()
    fields = dict(re.findall(r"(Sig\w+):\s*([0-9a-f]+)", output.decode()))
    assert fields == {"SigIgn": "0000000000000000", "SigBlk": "0000000000000000"}, output


def test_a_raw_update_written_as_the_socket_drains_stays_exact_while_the_screen_scrolls() -> None:
    """Raw updates go out slice by slice as the socket drains (a client that stops
    reading holds one slice of server memory); the screen scrolls meanwhile, so
    CopyRects follow slices that carry newer pixels than the client's tracker had."""
    lines = (
        "i=0; while [ $i -lt 1500 ]; do echo scrolling line $i; i=$((i+1));"
        " [ $((i % 10)) -eq 0 ] && sleep 0.01; done"
    )
    program = ["/bin/sh", "-c", f"sleep 0.5; {lines}; echo all-lines-done; sleep 100"]

    async def scenario() -> None:
        async with running_console(program) as console:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", console.address[1]))
            client = await RfbClient.connect(0, sock=sock, encodings=(COPY_RECT, RAW))
            (session,) = console.sessions
            server_sock = session._writer.get_extra_info("socket")
            server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            await client.update(incremental=False)
            while "all-lines-done" not in "\n".join(console.terminal.text_lines()):
                await client.update(incremental=True, timeout=10)
                await asyncio.sleep(0.01)  # a slow reader: the server waits on the socket
            await synced(client, console)
            assert session.slices_streamed > 0
            assert client.stats.rects_by_encoding.get(COPY_RECT, 0) > 0
            await client.close()

    run(scenario())
