"""One console server process at a time for whoever holds a console (a domain's
controller, a hosted console's keeper), and a new one, with backoff, when it dies.

Each is forked by the home's fork server (``forkclient``) or, failing that,
started afresh as ``python -m vzvnc.domain.console_server``; its end of a socket
pair is the link (``server_link.ConsoleServerLink``). Exit codes that mean "fix
the configuration" are not retried: the holder is told instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from vzvnc.domain import forkclient
from vzvnc.domain.server_link import ConsoleServerLink, LinkOwner

log = logging.getLogger(__name__)

RESTART_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)
# Console server exit codes that mean "fix the configuration": restarting cannot help.
FATAL_EXIT_CODES = frozenset({os.EX_CONFIG, os.EX_UNAVAILABLE, os.EX_NOPERM})
# A console server that lived this long resets the backoff.
STABLE_AFTER = 10.0


class ConsoleServerRunner:
    def __init__(
        self,
        owner: LinkOwner,
        run_root: Path,
        args: list[str],
        log_path: Path,
        *,
        on_fatal: Callable[[int], None],
        on_started: Callable[[], None],
    ) -> None:
        """``args``: the console server's arguments after ``--fd``; ``on_fatal(code)``
        when it cannot run; ``on_started()`` after each start."""
        self.owner = owner
        self.loop = owner.loop
        self.run_root = run_root
        self.args = args
        self.log_path = log_path
        self.on_fatal = on_fatal
        self.on_started = on_started
        self.process: subprocess.Popen[bytes] | forkclient.ForkedProcess | None = None
        self.link: ConsoleServerLink | None = None
        self.started = 0.0
        self.pidfd = -1
        self.restarts = 0
        self.stopping = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        if self.stopping:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        forked = forkclient.spawn(self.run_root, "console-server", self.args, self.log_path, theirs)
        if forked is not None:
            theirs.close()
            self.process = forked
        else:
            self.process = self._start_fresh(theirs)
        self.started = time.monotonic()
        if self.link is not None:
            self.link.close()
        self.link = ConsoleServerLink(self.owner, ours)
        self.loop.add_reader(ours.fileno(), self.link.readable)
        try:
            self.pidfd = os.pidfd_open(self.process.pid)
            self.loop.add_reader(self.pidfd, self._exited)
        except ProcessLookupError:  # a forked one that died before we looked
            self.pidfd = -1
            self.loop.call_soon(self._exited)
        self.on_started()

    def _start_fresh(self, theirs: socket.socket) -> subprocess.Popen[bytes]:
        """A console server in a new interpreter (no fork server, or it failed)."""
        log_file = open(self.log_path, "ab")  # noqa: SIM115
        try:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "vzvnc.domain.console_server",
                    "--fd",
                    str(theirs.fileno()),
                    *self.args,
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                close_fds=True,
            )
        finally:
            theirs.close()
            log_file.close()

    def _forget_pidfd(self) -> None:
        if self.pidfd >= 0:
            self.loop.remove_reader(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = -1

    def _exited(self) -> None:
        self._forget_pidfd()
        assert self.process is not None
        code = self.process.wait()
        lived = time.monotonic() - self.started
        if self.link is not None:
            self.link.close()
            self.link = None
        self.owner.resume_reading()
        if self.stopping:
            return
        if code in FATAL_EXIT_CODES:
            self.on_fatal(code)
            return
        if lived > STABLE_AFTER:
            self.restarts = 0
        delay = RESTART_DELAYS[min(self.restarts, len(RESTART_DELAYS) - 1)]
        self.restarts += 1
        log.warning("console server exited (%s); starting a new one in %.1fs", code, delay)
        self.loop.call_later(delay, self.start)

    def link_closed(self, server_link: ConsoleServerLink) -> bool:
        """The console server's end went away; True if it was the current link."""
        if server_link is not self.link:
            return False
        server_link.close()
        self.link = None
        return True

    async def stop(self, grace: float, *, terminate: bool) -> None:
        """No more restarts; the running one ends (sent SIGTERM first if ``terminate``),
        and is killed after ``grace`` seconds."""
        self.stopping = True
        process = self.process
        if process is not None and process.poll() is None:
            if terminate:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.loop.run_in_executor(None, process.wait), grace)
            except TimeoutError:
                process.kill()
                await self.loop.run_in_executor(None, process.wait)
        self._forget_pidfd()
        if self.link is not None:
            self.link.close()
            self.link = None
