"""Host a vzvnc console inside your own asyncio program.

A shell runs on a pty this program opens itself; vzvnc serves it to VNC viewers on
a socket this program bound, in this program's event loop. SIGUSR1 makes the
console 100x30; SIGTERM stops it, and the final screen is printed from a snapshot.

    python docs/examples/embed_console.py      # then: vncviewer 127.0.0.1::PORT
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import socket
import subprocess
import termios

import vzvnc
from vzvnc import state


async def main() -> int:
    # The program: any process on a pty whose master we hold.
    master, slave = os.openpty()
    shell = subprocess.Popen(
        ["/bin/sh"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        # The pty becomes the shell's controlling terminal: job control, Ctrl+C.
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        env={"PATH": os.defpath, "TERM": "xterm-256color", "PS1": "$ "},
    )
    os.close(slave)

    # The listening socket: ours, bound before the console exists (port 0: any free one).
    sock = socket.create_server(("127.0.0.1", 0))

    console = vzvnc.Console(
        vzvnc.PtyEndpoint(master),
        vzvnc.ConsoleConfig(columns=80, lines=24, name="embedded shell"),
    )
    await console.start(sock=sock)
    host, port = console.address
    print(f"listening on {host}:{port}", flush=True)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, console.stop)
    loop.add_signal_handler(signal.SIGUSR1, console.resize, 100, 30)
    loop.add_signal_handler(signal.SIGUSR2, console.rename, "renamed shell")
    await console.run()

    # The console has closed; its terminal is still there to save.
    snapshot = console.snapshot()
    shell.kill()
    shell.wait()
    if snapshot is not None:
        data = snapshot.to_bytes()  # what you would store; Snapshot.from_bytes reads it back
        screen = state.restore(vzvnc.Snapshot.from_bytes(data))
        print(f"final screen {screen.columns}x{screen.lines}:")
        for line in screen.text_lines():
            if line.strip():
                print("|", line.rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
