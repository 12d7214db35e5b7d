"""A program in a new pty, driven from the asyncio loop: the only I/O in ``term/``.

The child is a session leader with the pty as its controlling terminal (so Ctrl+C
reaches its foreground process group and a hangup reaches it when we close).
Its exit is watched through a pidfd, so output written by grandchildren that keep
the pty open does not confuse "the program ended" with "the pty closed".

Writes to the pty go through one bounded buffer with this object as its only
owner; when the kernel's pty buffer is full, we wait for it to drain instead of
blocking the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import signal
import struct
import subprocess
import termios
from collections.abc import Callable, Mapping, Sequence

from vzvnc.childsignals import reset_for_exec
from vzvnc.errors import PtyError

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024
# Input we hold for a program that does not read its terminal; past this, input is dropped.
MAX_PENDING_INPUT = 1024 * 1024


def set_window_size(fd: int, columns: int, lines: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))


def _become_controlling_tty() -> None:  # pragma: no cover - runs in the child
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    reset_for_exec()


def wait_status_to_exit_code(status: int) -> int:
    """The shell's convention: the exit status, or 128 + the signal that killed it."""
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


class PtyProcess:
    """One child on one pty. ``start`` spawns; ``attach`` wires it into a running loop."""

    # A local program's output is never a replay.
    replaying = False

    def __init__(self, master_fd: int, process: subprocess.Popen[bytes]) -> None:
        self.master_fd = master_fd
        self.process = process
        self.pid = process.pid
        self.exit_code: int | None = None
        self._pidfd = -1
        self._pending = bytearray()
        self._writing = False
        self._reading = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_output: Callable[[bytes], None] | None = None
        self._on_eof: Callable[[], None] | None = None
        self._exited = asyncio.Event()

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        columns: int,
        lines: int,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> PtyProcess:
        master_fd, slave_fd = os.openpty()
        try:
            set_window_size(master_fd, columns, lines)
            child_env = dict(os.environ if env is None else env)
            child_env["TERM"] = "xterm-256color"
            child_env["COLUMNS"], child_env["LINES"] = str(columns), str(lines)
            try:
                process = subprocess.Popen(
                    list(argv),
                    stdin=slave_fd,
                    stdout=slave_fd,
                    stderr=slave_fd,
                    start_new_session=True,
                    preexec_fn=_become_controlling_tty,
                    env=child_env,
                    cwd=cwd,
                    close_fds=True,
                )
            except OSError as exc:
                raise PtyError(f"cannot start {argv[0]!r}: {exc.strerror}") from exc
        except BaseException:
            os.close(master_fd)
            raise
        finally:
            os.close(slave_fd)
        os.set_blocking(master_fd, False)
        return cls(master_fd, process)

    def attach(
        self,
        loop: asyncio.AbstractEventLoop,
        on_output: Callable[[bytes], None],
        on_eof: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._on_output = on_output
        self._on_eof = on_eof
        self._pidfd = os.pidfd_open(self.pid)
        loop.add_reader(self._pidfd, self._reap)
        self.resume_reading()

    # -- output from the program --------------------------------------------

    def pause_reading(self) -> None:
        if self._reading and self._loop is not None:
            self._loop.remove_reader(self.master_fd)
            self._reading = False

    def resume_reading(self) -> None:
        if not self._reading and self._loop is not None and self.master_fd >= 0:
            self._loop.add_reader(self.master_fd, self._read_ready)
            self._reading = True

    def _read_ready(self) -> None:
        try:
            data = os.read(self.master_fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            # EIO: every slave fd is closed (the program and its children are gone).
            if exc.errno != errno.EIO:
                log.warning("reading the pty failed: %s", exc)
            data = b""
        if not data:
            self.pause_reading()
            assert self._on_eof is not None
            self._on_eof()
            return
        assert self._on_output is not None
        self._on_output(data)

    def drain_output(self) -> bytes:
        """Whatever the program wrote that we have not read yet (after it exited)."""
        chunks = []
        while True:
            try:
                data = os.read(self.master_fd, READ_CHUNK)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)

    # -- input to the program -----------------------------------------------

    def write(self, data: bytes) -> None:
        if self.master_fd < 0 or not data:
            return
        if len(self._pending) + len(data) > MAX_PENDING_INPUT:
            log.warning("the program is not reading its input; dropped %d bytes", len(data))
            return
        self._pending += data
        self._flush()

    def _flush(self) -> None:
        while self._pending:
            try:
                written = os.write(self.master_fd, self._pending)
            except BlockingIOError:
                break
            except OSError as exc:
                log.debug("writing to the pty failed: %s", exc)
                self._pending.clear()
                break
            del self._pending[:written]
        if self._loop is None:
            return
        if self._pending and not self._writing:
            self._loop.add_writer(self.master_fd, self._flush)
            self._writing = True
        elif not self._pending and self._writing:
            self._loop.remove_writer(self.master_fd)
            self._writing = False

    def resize(self, columns: int, lines: int) -> None:
        """TIOCSWINSZ; the kernel sends SIGWINCH to the foreground process group."""
        if self.master_fd >= 0:
            set_window_size(self.master_fd, columns, lines)

    # -- lifetime -------------------------------------------------------------

    def _reap(self) -> None:
        assert self._loop is not None
        self._loop.remove_reader(self._pidfd)
        _, status = os.waitpid(self.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self.exit_code = wait_status_to_exit_code(status)
        self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.exit_code is not None
        return self.exit_code

    def hang_up(self) -> None:
        """SIGHUP to the program's session, as a terminal hangup would."""
        if self.exit_code is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGHUP)

    def kill(self) -> None:
        if self.exit_code is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)

    def close(self) -> None:
        if self._loop is not None:
            self.pause_reading()
            if self._writing:
                self._loop.remove_writer(self.master_fd)
                self._writing = False
            if self._pidfd >= 0 and self.exit_code is None:
                self._loop.remove_reader(self._pidfd)
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        if self.master_fd >= 0:
            os.close(self.master_fd)
            self.master_fd = -1
