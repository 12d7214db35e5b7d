"""``vzvnc domain console``: this terminal, attached raw to a domain's console.

The controller first says where in the console's journal live output starts;
the screen as it stands at that point is drawn (``paint``), then bytes typed go
to the console and console output comes back. Ctrl+] detaches.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import sys
import termios
import tty
from collections.abc import Callable
from pathlib import Path

from vzvnc.errors import VzvncError

DETACH = b"\x1d"  # Ctrl+]


def attach(path: Path, paint: Callable[[int], bytes]) -> int:
    """Attach; ``paint(offset)`` gives the bytes that draw the screen up to ``offset``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
        start = _read_offset(sock)
    except OSError as exc:
        raise VzvncError(f"cannot attach: {path}: {exc.strerror} (is the domain running?)") from exc
    stdin = sys.stdin.fileno()
    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    print("attached; Ctrl+] detaches", file=sys.stderr)
    try:
        if saved is not None:
            tty.setraw(stdin)
        os.write(sys.stdout.fileno(), paint(start))
        while True:
            ready, _, _ = select.select([stdin, sock], [], [])
            if sock in ready:
                data = sock.recv(65536)
                if not data:
                    break
                os.write(sys.stdout.fileno(), data)
            if stdin in ready:
                data = os.read(stdin, 4096)
                if not data or DETACH in data:
                    sock.sendall(data.split(DETACH, 1)[0])
                    break
                sock.sendall(data)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        sock.close()
    print("\r\ndetached", file=sys.stderr)
    return 0


def _read_offset(sock: socket.socket) -> int:
    data = b""
    while len(data) < 8:
        chunk = sock.recv(8 - len(data))
        if not chunk:
            raise OSError(errno.ECONNRESET, "the controller closed the connection")
        data += chunk
    return int(struct.unpack(">Q", data)[0])
