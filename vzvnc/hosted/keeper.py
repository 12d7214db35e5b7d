"""The keeper of a hosted console: a container started by LXC or libvirt, not by vzvnc.

What a domain's controller does for its console, a keeper does for a console it was
given (``ConsoleSource``: a pty it made for ``lxc-start``, a container console fd
from liblxc, libvirt's host-side pty): it holds the descriptor for the container's
whole life, journals every byte, and runs the console server as a separate process
(the same one domains use, ``vzvnc.domain.console_server``, built on the public
``vzvnc.Console``), starting a new one with backoff when it dies. So a hosted
console restarts without losing output exactly as a domain's does.

Run directory ``<home>/hosted/<kind>/<key>/``: ``status.json`` (kind, name, keeper
pid, source, console server pid and restarts, journal end), ``domain.toml`` (the
console server's settings), ``journal.*``, ``console.json`` (written by the console
server: where it listens), ``console-server.log``. The directory goes when the
keeper ends; its own log (``<key>.log`` next to it) stays.

The keeper ends when the container is gone for good (``ConsoleSource.reopen``
answers None, or ``watch`` returns) or on SIGTERM/SIGINT; it never stops the
container.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Protocol

from vzvnc.domain import link
from vzvnc.domain.config import DomainConfig
from vzvnc.domain.files import write_json_atomic
from vzvnc.domain.journal import Journal
from vzvnc.domain.server_link import ConsoleServerLink
from vzvnc.domain.server_process import ConsoleServerRunner
from vzvnc.errors import DomainStateError

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024
LINK_HIGH_WATER = 4 * 1024 * 1024
STOP_GRACE = 3.0


class ConsoleSource(Protocol):
    """Where a hosted console's descriptor comes from, and how its container is followed."""

    description: str

    def open(self) -> int:
        """A descriptor to read the console from and write it to (raises VzvncError)."""
        ...

    def resize(self, fd: int, columns: int, lines: int) -> None: ...
    async def reopen(self) -> int | None:
        """After end of file: a new descriptor once the container is back (a reboot),
        or None when it is gone."""
        ...

    async def watch(self) -> None:
        """Return when the container is gone for good (never, if EOF tells)."""
        ...

    def listening(self, host: str, port: int) -> None:
        """The console server listens there now (publish it where users look)."""
        ...

    def saw_output(self) -> None:
        """Output arrived (a cheap check that the tty is still as it should be)."""
        ...

    def close(self) -> None: ...


def console_name(name: str) -> str:
    """A container name as a console server's domain name (lower case, plain)."""
    plain = re.sub(r"[^a-z0-9_.-]", "-", name.lower())[:63]
    return plain if plain[:1].isalnum() else f"c{plain}"[:63]


def hosted_root(home: Path, kind: str) -> Path:
    return home / "hosted" / kind


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """The keeper's status with its address, or None if no live keeper owns the directory."""
    try:
        status = json.loads((run_dir / "status.json").read_text())
        pid = int(status["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid):
        return None
    try:
        address = json.loads((run_dir / "console.json").read_text())
        status["vnc"] = f"{address['host']}:{address['port']}"
        status["viewers"] = int(address.get("viewers", 0))
    except (OSError, ValueError, KeyError, TypeError):
        status["vnc"] = None
        status["viewers"] = 0
    return dict(status)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not a keeper
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_keeper(run_dir: Path, timeout: float = 10.0) -> bool:
    """SIGTERM the keeper owning ``run_dir`` and wait for it; False if none ran."""
    status = read_status(run_dir)
    if status is None:
        return False
    pid = int(status["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


def wait_for_address(run_dir: Path, pid: int, timeout: float = 15.0) -> str | None:
    """Where a keeper just started serves, once it does (None if it ended first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = read_status(run_dir)
        if status is not None and status.get("vnc") and status.get("pid") == pid:
            return str(status["vnc"])
        if not _alive(pid):
            return None
        time.sleep(0.05)
    return None


class Keeper:
    def __init__(
        self,
        kind: str,
        name: str,
        home: Path,
        run_dir: Path,
        domain: DomainConfig,
        source: Any,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.extra = dict(extra or {})
        """More for status.json (where the container lives)."""
        self.kind = kind
        self.name = name
        self.home = home
        self.run_dir = run_dir
        self.domain = domain
        self.source: ConsoleSource = source
        self.loop = asyncio.get_running_loop()
        self.journal = Journal(run_dir)
        self.paused = False
        self.fd = -1
        self.reading = False
        self.stopping = False
        self.done = asyncio.Event()
        self.reason = ""
        self.published = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.size = (domain.columns, domain.lines)
        """The console's size as its viewers last set it (again after a reattach)."""
        self.console_server = ConsoleServerRunner(
            self,
            home / "run",
            ["--domain-file", str(run_dir / "domain.toml"), "--run-dir", str(run_dir)],
            run_dir / "console-server.log",
            on_fatal=self.console_server_failed,
            on_started=self.console_server_started,
        )

    # -- the LinkOwner side ----------------------------------------------------------

    def write_console(self, data: bytes) -> None:
        if self.fd < 0:
            return
        try:
            os.write(self.fd, data)
        except BlockingIOError:
            log.warning("the console is not reading its input; dropped %d bytes", len(data))
        except OSError as exc:
            log.debug("writing to the console failed: %s", exc)

    def resize_console(self, columns: int, lines: int) -> None:
        self.size = (columns, lines)
        if self.fd >= 0:
            try:
                self.source.resize(self.fd, columns, lines)
            except OSError as exc:
                log.warning("cannot resize the console: %s", exc)

    def state_saved(self, offset: int, ok: bool, message: str) -> None:
        pass  # hosted consoles are never suspended through vzvnc

    def link_closed(self, server_link: ConsoleServerLink) -> None:
        if self.console_server.link_closed(server_link):
            self.resume_reading()

    @property
    def link(self) -> ConsoleServerLink | None:
        return self.console_server.link

    def link_drained(self) -> None:
        self.resume_reading()

    # -- life ----------------------------------------------------------------------------

    async def run(self) -> int:
        if read_status(self.run_dir) is not None:
            raise DomainStateError(f"the console of {self.name} is already served")
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True, mode=0o700)
        (self.run_dir / "domain.toml").write_text(self.domain.to_toml())
        self.journal.open_new()
        self.write_status("starting")
        try:
            self.fd = self.source.open()
        except BaseException:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        os.set_blocking(self.fd, False)
        # The container's programs learn the console's size now, not at the first resize.
        self.resize_console(*self.size)
        self.resume_reading()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self.end, "stopped by a signal")
        watcher = self.loop.create_task(self._watch(), name="container-watch")
        self.console_server.start()
        log.info("keeping the console of %s %s (%s)", self.kind, self.name, self.source.description)
        await self.done.wait()
        watcher.cancel()
        await self.console_server.stop(STOP_GRACE, terminate=True)
        self.pause_reading()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.source.close()
        self.journal.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        log.info("console of %s %s ended: %s", self.kind, self.name, self.reason)
        return 0

    async def _watch(self) -> None:
        await self.source.watch()
        self.end("the container stopped")

    def end(self, reason: str) -> None:
        if not self.stopping:
            self.stopping = True
            self.console_server.stopping = True
            self.reason = reason
            self.done.set()

    def write_status(self, state: str) -> None:
        write_json_atomic(
            self.run_dir / "status.json",
            {
                "kind": self.kind,
                "name": self.name,
                "state": state,
                "pid": os.getpid(),
                "source": self.source.description,
                "console_server_pid": self.console_server.pid,
                "console_server_restarts": self.console_server.restarts,
                "journal_end": self.journal.end,
                **self.extra,
            },
        )

    # -- console output ----------------------------------------------------------------

    def resume_reading(self) -> None:
        if not self.reading and self.fd >= 0 and not self.stopping:
            self.loop.add_reader(self.fd, self.console_readable)
            self.reading = True

    def pause_reading(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.fd)
            self.reading = False

    def console_readable(self) -> None:
        try:
            data = os.read(self.fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.pause_reading()
            self._keep(self.loop.create_task(self._reopen(), name="console-reopen"))
            return
        self.source.saw_output()
        offset = self.journal.append(data)
        if self.link is not None and self.link.live:
            for chunk in link.output(offset, data):
                self.link.send(chunk)
            if len(self.link.pending) > LINK_HIGH_WATER:
                self.pause_reading()

    async def _reopen(self) -> None:
        os.close(self.fd)
        self.fd = -1
        fd = await self.source.reopen()
        if fd is None:
            self.end("the container is gone")
            return
        log.info("console of %s reattached", self.name)
        self.fd = fd
        os.set_blocking(fd, False)
        self.resize_console(*self.size)
        self.resume_reading()

    # -- the console server ----------------------------------------------------------------

    def _keep(self, task: asyncio.Task[None]) -> None:
        # The loop holds tasks weakly: one waiting for a reboot must not be collected.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def console_server_started(self) -> None:
        self.write_status("running")
        if not self.published:
            self.published = True
            self._keep(self.loop.create_task(self._publish_address(), name="publish-address"))

    def console_server_failed(self, code: int) -> None:
        log.error("the console server cannot run (exit %s); see console-server.log", code)
        self.end(f"the console server failed (exit {code})")

    async def _publish_address(self) -> None:
        for _ in range(300):
            with contextlib.suppress(OSError, ValueError, KeyError):
                address = json.loads((self.run_dir / "console.json").read_text())
                host, port = str(address["host"]), int(address["port"])
                try:
                    await asyncio.to_thread(self.source.listening, host, port)
                except Exception as exc:  # publishing is a courtesy: the console works
                    log.warning("cannot publish the console's address: %s", exc)
                return
            await asyncio.sleep(0.05)
