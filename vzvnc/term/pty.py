"""pty helpers, the only I/O in ``term/``: window sizes, making a child's pty its
controlling terminal (so Ctrl+C reaches its foreground process group and a
hangup reaches it when we close), and exit statuses as a shell reports them.
The program on a pty, driven from the asyncio loop, is ``vzvnc.endpoints.PtyProgram``.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios

from vzvnc.childsignals import reset_for_exec


def set_window_size(fd: int, columns: int, lines: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))


def become_controlling_tty() -> None:  # pragma: no cover - runs in the child
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    reset_for_exec()


def wait_status_to_exit_code(status: int) -> int:
    """The shell's convention: the exit status, or 128 + the signal that killed it."""
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
