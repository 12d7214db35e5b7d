"""Ready-made program endpoints for ``vzvnc.Console``: the I/O shell around file descriptors.

- ``FdEndpoint``: any readable fd and writable fd (the same one for a pty master,
  a socket or a tty; two for a pipe pair). End of file, or EIO from a pty master
  whose other side is gone, ends the program; with ``reopen`` given, the endpoint
  asks it for new descriptors instead (a container that rebooted) and ends only
  when it answers None.
- ``PtyEndpoint``: a pty master a caller already holds; resizing sets its window
  size (TIOCSWINSZ), which the kernel turns into SIGWINCH for the program.
- ``PtyProgram``: a new program in a new pty, as ``vzvnc run`` uses: a session
  leader with the pty as its controlling terminal, whose exit is watched through a
  pidfd (so grandchildren keeping the pty open do not confuse "the program ended"
  with "the pty closed"), and whose exit status is the console's.

Writes go through one bounded buffer per endpoint; when the fd is full we wait
for it to drain instead of blocking the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence

from vzvnc.errors import PtyError
from vzvnc.term.pty import become_controlling_tty, set_window_size, wait_status_to_exit_code

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024
# Input held for a program that does not read; past this, input is dropped.
MAX_PENDING_INPUT = 1024 * 1024

Reopen = Callable[[], Awaitable[tuple[int, int] | None]]


class FdEndpoint:
    """A program reached through file descriptors the caller opened.

    The endpoint owns the descriptors (closes them in ``close``) unless
    ``owns_fds=False``. ``resize`` is called with (columns, lines) when a viewer or
    the host resizes the console; ``hang_up`` with nothing when the console stops.
    """

    replaying = False

    def __init__(
        self,
        read_fd: int,
        write_fd: int | None = None,
        *,
        resize: Callable[[int, int], None] | None = None,
        hang_up: Callable[[], None] | None = None,
        reopen: Reopen | None = None,
        owns_fds: bool = True,
    ) -> None:
        self.read_fd = read_fd
        self.write_fd = read_fd if write_fd is None else write_fd
        self._on_resize = resize
        self._on_hang_up = hang_up
        self._reopen = reopen
        self._owns = owns_fds
        self._pending = bytearray()
        self._reading = False
        self._writing = False
        self._flush_handle: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_output: Callable[[bytes], None] | None = None
        self._on_eof: Callable[[], None] | None = None
        self._ended = asyncio.Event()
        self._reopening: asyncio.Task[None] | None = None
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)

    def attach(
        self,
        loop: asyncio.AbstractEventLoop,
        on_output: Callable[[bytes], None],
        on_eof: Callable[[], None],
    ) -> None:
        self._loop, self._on_output, self._on_eof = loop, on_output, on_eof
        self.resume_reading()

    # -- output from the program --------------------------------------------------

    def pause_reading(self) -> None:
        if self._reading and self._loop is not None:
            self._loop.remove_reader(self.read_fd)
            self._reading = False

    def resume_reading(self) -> None:
        if not self._reading and self._loop is not None and self.read_fd >= 0:
            if self._ended.is_set() or self._reopening is not None:
                return
            self._loop.add_reader(self.read_fd, self._read_ready)
            self._reading = True

    def _read_ready(self) -> None:
        try:
            data = os.read(self.read_fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                log.warning("reading the console failed: %s", exc)
            data = b""
        if data:
            assert self._on_output is not None
            self._on_output(data)
            return
        self.pause_reading()
        self._at_end_of_file()

    def _at_end_of_file(self) -> None:
        if self._reopen is not None and self._loop is not None:
            self._reopening = self._loop.create_task(self._reattach(), name="console-reopen")
            return
        self._end()

    async def _reattach(self) -> None:
        assert self._reopen is not None
        try:
            fds = await self._reopen()
        except Exception:
            log.exception("reopening the console failed")
            fds = None
        self._reopening = None
        if fds is None:
            self._end()
            return
        self._close_fds()
        self.read_fd, self.write_fd = fds
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self.resume_reading()
        self._flush()

    def _end(self) -> None:
        if not self._ended.is_set():
            self._ended.set()
            assert self._on_eof is not None
            self._on_eof()

    def drain_output(self) -> bytes:
        return b""  # what arrived was read as it came; after the end nothing is left

    # -- input to the program -------------------------------------------------------

    @property
    def input_backlog(self) -> int:
        """Input bytes written to us that the program has not read yet."""
        return len(self._pending)

    def write(self, data: bytes) -> None:
        if self.write_fd < 0 or not data or self._ended.is_set():
            return
        if len(self._pending) + len(data) > MAX_PENDING_INPUT:
            log.warning("the console is not reading its input; dropped %d bytes", len(data))
            return
        self._pending += data
        if self._loop is None:
            self._flush()
        elif not self._writing and self._flush_handle is None:
            # All input of one loop turn (a viewer's slice of key events) goes to the
            # program in one write, not one system call per key.
            self._flush_handle = self._loop.call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_handle = None
        self._flush()

    def _flush(self) -> None:
        while self._pending and self._reopening is None:
            try:
                written = os.write(self.write_fd, self._pending)
            except BlockingIOError:
                break
            except OSError as exc:
                log.debug("writing to the console failed: %s", exc)
                self._pending.clear()
                break
            del self._pending[:written]
        if self._loop is None:
            return
        if self._pending and not self._writing and self._reopening is None:
            self._loop.add_writer(self.write_fd, self._flush)
            self._writing = True
        elif (not self._pending or self._reopening is not None) and self._writing:
            self._loop.remove_writer(self.write_fd)
            self._writing = False

    def resize(self, columns: int, lines: int) -> None:
        if self._on_resize is not None:
            try:
                self._on_resize(columns, lines)
            except OSError as exc:
                log.warning("cannot resize the console: %s", exc)

    # -- lifetime ---------------------------------------------------------------------

    async def wait(self) -> int:
        """Until the program's side is gone for good; 0 (an fd has no exit status)."""
        await self._ended.wait()
        return 0

    def hang_up(self) -> None:
        if self._on_hang_up is not None:
            self._on_hang_up()
        # Nothing else ends: the program is the caller's, not ours to signal.
        self._ended.set()

    def kill(self) -> None:
        self._ended.set()

    def _close_fds(self) -> None:
        if self._loop is not None:
            self.pause_reading()
            if self._writing:
                self._loop.remove_writer(self.write_fd)
                self._writing = False
        if self._owns:
            for fd in {self.read_fd, self.write_fd}:
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
        self.read_fd = self.write_fd = -1

    def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._reopening is not None:
            self._reopening.cancel()
            self._reopening = None
        self._close_fds()


class PtyEndpoint(FdEndpoint):
    """The master side of a pty whose slave the program holds (a container's console,
    a pty handed over by another program)."""

    def __init__(self, master_fd: int, *, owns_fds: bool = True, reopen: Reopen | None = None):
        super().__init__(
            master_fd,
            resize=lambda columns, lines: set_window_size(self.read_fd, columns, lines),
            reopen=reopen,
            owns_fds=owns_fds,
        )


class PtyProgram(FdEndpoint):
    """One program on a new pty; ``start`` spawns it, and it ends when it exits."""

    def __init__(self, master_fd: int, process: subprocess.Popen[bytes]) -> None:
        super().__init__(
            master_fd, resize=lambda columns, lines: set_window_size(self.read_fd, columns, lines)
        )
        self.process = process
        self.pid = process.pid
        self.exit_code: int | None = None
        self._pidfd = -1
        self._exited = asyncio.Event()

    @property
    def master_fd(self) -> int:
        return self.read_fd

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        columns: int,
        lines: int,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> PtyProgram:
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
                    preexec_fn=become_controlling_tty,
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
        return cls(master_fd, process)

    def attach(
        self,
        loop: asyncio.AbstractEventLoop,
        on_output: Callable[[bytes], None],
        on_eof: Callable[[], None],
    ) -> None:
        self._pidfd = os.pidfd_open(self.pid)
        loop.add_reader(self._pidfd, self._reap)
        super().attach(loop, on_output, on_eof)

    def _at_end_of_file(self) -> None:
        # Every slave fd is closed; the program ends when its process does.
        assert self._on_eof is not None
        self._on_eof()

    def drain_output(self) -> bytes:
        """Whatever the program wrote that we have not read yet (after it exited)."""
        chunks = []
        while True:
            try:
                data = os.read(self.read_fd, READ_CHUNK)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)

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
        if self._loop is not None and self._pidfd >= 0 and self.exit_code is None:
            self._loop.remove_reader(self._pidfd)
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        super().close()
