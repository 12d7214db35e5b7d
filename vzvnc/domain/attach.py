"""``vzvnc domain console``: this terminal, attached raw to a domain's console.

Bytes typed go to the console; console output comes back. Ctrl+] detaches.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import termios
import tty
from pathlib import Path

from vzvnc.errors import VzvncError

DETACH = b"\x1d"  # Ctrl+]


def attach(path: Path) -> int:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError as exc:
        raise VzvncError(f"cannot attach: {path}: {exc.strerror} (is the domain running?)") from exc
    stdin = sys.stdin.fileno()
    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    print("attached; Ctrl+] detaches", file=sys.stderr)
    try:
        if saved is not None:
            tty.setraw(stdin)
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
