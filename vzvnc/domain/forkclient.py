"""The client side of the home's fork server (``forkserver.py``): ask it for a
controller or console server, start it when it is not running, and follow what
it forked. Everything here fails soft: ``spawn`` returns None and the caller
starts the process afresh. ``VZVNC_FORKSERVER=0`` turns the fork server off.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

SOCKET_NAME = "forkserver.sock"
LOCK_NAME = "forkserver.lock"
LOG_NAME = "forkserver.log"
IDLE_EXIT = 10.0
STARTUP_TIMEOUT = 10.0
MAX_REQUEST = 16 * 1024
# Exit status of a console server whose end nobody saw (the fork server went away).
UNKNOWN_EXIT = 1


class ForkedProcess:
    """A process forked for us: a little of ``subprocess.Popen``'s interface.

    Liveness comes from a pidfd (it is not our child); the exit code from the fork
    server, which reaps it and writes the code on ``status``.
    """

    def __init__(self, pid: int, status: socket.socket) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._status = status
        # The controller may wait from its loop and from an executor thread at once.
        self._lock = threading.Lock()
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:  # already gone and reaped
            self._pidfd = -1

    def _exited(self, timeout: float | None) -> bool:
        """Whether it has exited, waiting up to ``timeout`` seconds (None: for ever)."""
        if self._pidfd < 0:
            return True
        with selectors.DefaultSelector() as selector:
            selector.register(self._pidfd, selectors.EVENT_READ)
            return bool(selector.select(timeout))

    def _read_code(self) -> int:
        self._status.settimeout(2.0)
        data = b""
        with contextlib.suppress(OSError):
            while not data.endswith(b"\n") and len(data) < 32:
                chunk = self._status.recv(32)
                if not chunk:
                    break
                data += chunk
        try:
            return int(data)
        except ValueError:
            return UNKNOWN_EXIT

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None and self._exited(0):
                self.returncode = self._read_code()
                self._close()
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited(timeout) and self.returncode is None:
            raise subprocess.TimeoutExpired(f"process {self.pid}", timeout or 0)
        with self._lock:
            if self.returncode is None:
                self.returncode = self._read_code()
                self._close()
            return self.returncode

    def kill(self) -> None:
        if self.returncode is None and self._pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def _close(self) -> None:
        # The pidfd stays open while the object lives: another thread may be waiting on it.
        self._status.close()

    def release(self) -> None:
        """Stop following it (it runs on): close our connection and pidfd."""
        self._status.close()
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    def __del__(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1


PROGRAMS = ("controller", "console-server")


def enabled() -> bool:
    return os.environ.get("VZVNC_FORKSERVER", "1") != "0"


def spawn(
    run_root: Path,
    program: str,
    args: list[str],
    log_path: Path,
    link_end: socket.socket | None = None,
) -> ForkedProcess | None:
    """``program`` (see ``PROGRAMS``) forked by the fork server, started if need be; or None.

    A console server takes ``link_end``, its end of the controller link.
    """
    if not enabled():
        return None
    path = run_root / SOCKET_NAME
    request = json.dumps({"program": program, "args": args, "log": str(log_path)}).encode()
    fds = [] if link_end is None else [link_end.fileno()]
    problem: Exception | None = None
    for attempt in range(2):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            _connect(sock, path, time.monotonic() + STARTUP_TIMEOUT)
            socket.send_fds(sock, [request], fds)
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = sock.recv(32)
                if not chunk or len(answer) > 32:
                    raise OSError("the fork server gave no pid")
                answer += chunk
            return ForkedProcess(int(answer), sock)
        except (OSError, ValueError) as exc:
            sock.close()
            problem = exc
            if attempt == 0 and not _start(run_root):
                break
    log.info("no fork server (%s): starting the %s afresh", problem, program)
    return None


def warm(run_root: Path) -> bool:
    """Have a fork server ready (started, or kept from its idle exit for a while), so a
    start that must be quick, a migration's restore, does not pay for one."""
    if not enabled():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(run_root / SOCKET_NAME))
            return True
        except OSError:
            pass
    return _start(run_root)


def _connect(sock: socket.socket, path: Path, deadline: float) -> None:
    """Connect, waiting while the fork server's backlog is full (a Unix socket says
    EAGAIN then instead of waiting: many controllers start at once)."""
    sock.settimeout(max(0.1, deadline - time.monotonic()))
    while True:
        try:
            sock.connect(str(path))
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _start(run_root: Path) -> bool:
    """Start a fork server and wait until it listens; False if it does not."""
    run_root.mkdir(parents=True, exist_ok=True)
    with open(run_root / LOG_NAME, "ab") as log_file:
        # --background: it forks and its first process exits at once, so the fork
        # server is nobody's child (neither a CLI's nor a controller's) to reap.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "vzvnc.domain.forkserver",
                "--run-root",
                str(run_root),
                "--background",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
            close_fds=True,
            check=False,
            timeout=STARTUP_TIMEOUT,
        )
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(run_root / SOCKET_NAME))
                return True
            except OSError:
                time.sleep(0.02)
    return False
