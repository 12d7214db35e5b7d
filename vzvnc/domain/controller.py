"""One running domain's controller process (the libvirt LXC controller model).

It creates the domain's cgroups and console pty, starts the container (whose
init it then parents, as a subreaper), holds the pty master for the domain's
whole life, journals every byte of console output, and runs the console server
as a separate process (forked by the home's fork server, ``forkserver.py``, as
the controller itself usually is, or else started afresh), starting a new one
within a second, with backoff, when it dies. The container never sees a
console server come or go: the pty stays open and is always read, so nothing
blocks and nothing hangs up.

Run directory (``<home>/run/<name>/``): ``controller.pid``, ``status.json``,
``journal.*``, ``console.json`` (written by the console server), logs, and
``attach.sock`` for ``vzvnc domain console``: a client first receives the
journal offset (u64, big-endian) where its live output starts, then raw
console output; what it sends is typed into the console.

Stopping (SIGTERM to the controller): SIGTERM to every process of the domain,
then, after ``stop_timeout``, SIGKILL. When init exits for any reason the
domain is torn down: processes, cgroups, console server, run files.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from vzvnc.domain import forkserver, link
from vzvnc.domain.cgroups import Cgroups
from vzvnc.domain.config import DomainConfig, load_domain_file
from vzvnc.domain.files import write_json_atomic
from vzvnc.domain.journal import Journal, read_journal
from vzvnc.domain.kernel import ContainerSpec, set_child_subreaper, start_container
from vzvnc.errors import RemoteProtocolError, VzvncError
from vzvnc.term.pty import set_window_size, wait_status_to_exit_code

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024
# Past this much output queued for the console server, the pty is left unread
# until it catches up (the console server, not the journal, is the slow part).
LINK_HIGH_WATER = 4 * 1024 * 1024
RESTART_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)
# Console server exit codes that mean "fix the configuration": restarting cannot help.
FATAL_EXIT_CODES = frozenset({os.EX_CONFIG, os.EX_UNAVAILABLE, os.EX_NOPERM})
# A console server that lived this long resets the backoff.
STABLE_AFTER = 10.0


class ConsoleServerLink:
    """The controller's end of one console server's socket."""

    def __init__(self, controller: Controller, sock: socket.socket) -> None:
        self.controller = controller
        self.sock = sock
        sock.setblocking(False)
        self.decoder = link.FrameDecoder()
        self.pending = bytearray()
        self.live = False
        self.writing = False

    def readable(self) -> None:
        try:
            data = self.sock.recv(256 * 1024)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.controller.link_closed(self)
            return
        try:
            frames = self.decoder.feed(data)
        except RemoteProtocolError as exc:
            log.error("console server sent a bad frame: %s", exc)
            self.controller.link_closed(self)
            return
        for frame in frames:
            if frame.kind == link.HELLO:
                (offset, _) = link.parse_offset(frame)
                begin, backlog = read_journal(self.controller.run_dir, offset)
                for chunk in link.output(begin, backlog):
                    self.send(chunk)
                self.send(link.encode(link.LIVE))
                self.live = True
            elif frame.kind == link.INPUT:
                self.controller.write_console(frame.payload)
            elif frame.kind == link.RESIZE:
                columns, lines = link.parse_resize(frame)
                if 2 <= columns <= 1000 and 1 <= lines <= 500:
                    set_window_size(self.controller.master_fd, columns, lines)

    def send(self, data: bytes) -> None:
        self.pending += data
        self.flush()

    def flush(self) -> None:
        while self.pending:
            try:
                sent = self.sock.send(self.pending)
            except BlockingIOError:
                break
            except OSError:
                self.pending.clear()
                break
            del self.pending[:sent]
        loop = self.controller.loop
        if self.pending and not self.writing:
            loop.add_writer(self.sock.fileno(), self.flush)
            self.writing = True
        elif not self.pending and self.writing:
            loop.remove_writer(self.sock.fileno())
            self.writing = False
            self.controller.link_drained()

    def close(self) -> None:
        loop = self.controller.loop
        with contextlib.suppress(Exception):
            loop.remove_reader(self.sock.fileno())
        if self.writing:
            with contextlib.suppress(Exception):
                loop.remove_writer(self.sock.fileno())
        self.sock.close()


class Controller:
    def __init__(self, domain: DomainConfig, home: Path) -> None:
        self.domain = domain
        self.home = home
        self.run_dir = home / "run" / domain.name
        self.domain_file = home / "domains" / f"{domain.name}.toml"
        self.loop = asyncio.get_running_loop()
        self.master_fd = -1
        self.init_pid = 0
        self.init_status: int | None = None
        self.cgroups: Cgroups | None = None
        self.journal = Journal(self.run_dir)
        self.link: ConsoleServerLink | None = None
        self.server: subprocess.Popen[bytes] | forkserver.ForkedProcess | None = None
        self.server_started = 0.0
        self.server_pidfd = -1
        self.restarts = 0
        self.reading = False
        self.stopping = False
        self.done = asyncio.Event()
        self.attached: set[asyncio.StreamWriter] = set()
        self.attach_server: asyncio.AbstractServer | None = None
        self.error: str | None = None

    # -- start --------------------------------------------------------------------

    async def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        set_child_subreaper()
        self.master_fd, slave_fd = os.openpty()
        try:
            set_window_size(self.master_fd, self.domain.columns, self.domain.lines)
            self.cgroups = Cgroups.create(
                self.domain.name,
                memory_limit=self.domain.memory_limit,
                pids_limit=self.domain.pids_limit,
            )
            spec = ContainerSpec(
                name=self.domain.name,
                rootfs=self.domain.rootfs,
                init=self.domain.init,
                hostname=self.domain.effective_hostname,
                new_net=self.domain.isolated_network,
            )
            self.journal.open_new()
            self.init_pid = start_container(spec, slave_fd, self.cgroups)
        except BaseException:
            if self.cgroups is not None:
                self.cgroups.kill_all()
                self.cgroups.remove()
            os.close(self.master_fd)
            raise
        finally:
            os.close(slave_fd)
        os.set_blocking(self.master_fd, False)
        self.init_pidfd = os.pidfd_open(self.init_pid)
        self.loop.add_reader(self.init_pidfd, self.init_exited)
        self.resume_reading()
        self.attach_server = await asyncio.start_unix_server(
            self.attach_client, path=str(self.run_dir / "attach.sock")
        )
        self.start_console_server()
        self.write_status("running")
        log.info("domain %s started, init pid %d", self.domain.name, self.init_pid)

    def write_status(self, state: str) -> None:
        write_json_atomic(
            self.run_dir / "status.json",
            {
                "name": self.domain.name,
                "state": state,
                "controller_pid": os.getpid(),
                "init_pid": self.init_pid,
                "console_server_pid": self.server.pid if self.server else None,
                "console_server_restarts": self.restarts,
                "journal_end": self.journal.end,
                "error": self.error,
            },
        )

    # -- console output -------------------------------------------------------------

    def resume_reading(self) -> None:
        if not self.reading and self.master_fd >= 0:
            self.loop.add_reader(self.master_fd, self.console_readable)
            self.reading = True

    def pause_reading(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.master_fd)
            self.reading = False

    def console_readable(self) -> None:
        try:
            data = os.read(self.master_fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO: no process holds the console open any more
        if not data:
            self.pause_reading()
            return
        offset = self.journal.append(data)
        if self.link is not None and self.link.live:
            for chunk in link.output(offset, data):
                self.link.send(chunk)
            if len(self.link.pending) > LINK_HIGH_WATER:
                self.pause_reading()
        for writer in list(self.attached):
            writer.write(data)

    def link_drained(self) -> None:
        self.resume_reading()

    def write_console(self, data: bytes) -> None:
        try:
            os.write(self.master_fd, data)
        except BlockingIOError:
            log.warning("the console is not reading its input; dropped %d bytes", len(data))
        except OSError as exc:
            log.debug("writing to the console failed: %s", exc)

    # -- the console server -------------------------------------------------------------

    def start_console_server(self) -> None:
        if self.stopping:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        forked = forkserver.spawn(
            self.home / "run",
            "console-server",
            ["--domain-file", str(self.domain_file), "--run-dir", str(self.run_dir)],
            self.run_dir / "console-server.log",
            theirs,
        )
        if forked is not None:
            theirs.close()
            self.server = forked
        else:
            self.server = self._start_fresh_console_server(theirs)
        self.server_started = time.monotonic()
        if self.link is not None:
            self.link.close()
        self.link = ConsoleServerLink(self, ours)
        self.loop.add_reader(ours.fileno(), self.link.readable)
        try:
            self.server_pidfd = os.pidfd_open(self.server.pid)
            self.loop.add_reader(self.server_pidfd, self.console_server_exited)
        except ProcessLookupError:  # a forked one that died before we looked
            self.server_pidfd = -1
            self.loop.call_soon(self.console_server_exited)
        self.write_status("running")

    def _start_fresh_console_server(self, theirs: socket.socket) -> subprocess.Popen[bytes]:
        """A console server in a new interpreter (no fork server, or it failed)."""
        log_file = open(self.run_dir / "console-server.log", "ab")  # noqa: SIM115
        try:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "vzvnc.domain.console_server",
                    "--fd",
                    str(theirs.fileno()),
                    "--domain-file",
                    str(self.domain_file),
                    "--run-dir",
                    str(self.run_dir),
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

    def console_server_exited(self) -> None:
        if self.server_pidfd >= 0:
            self.loop.remove_reader(self.server_pidfd)
            os.close(self.server_pidfd)
            self.server_pidfd = -1
        assert self.server is not None
        code = self.server.wait()
        lived = time.monotonic() - self.server_started
        if self.link is not None:
            self.link.close()
            self.link = None
        self.resume_reading()
        if self.stopping:
            return
        if code in FATAL_EXIT_CODES:
            self.error = _last_line(self.run_dir / "console-server.log") or f"exit {code}"
            log.error("console server cannot run (%s); stopping the domain", self.error)
            self.write_status("failed")
            self.force_stop()
            return
        if lived > STABLE_AFTER:
            self.restarts = 0
        delay = RESTART_DELAYS[min(self.restarts, len(RESTART_DELAYS) - 1)]
        self.restarts += 1
        log.warning("console server exited (%s); starting a new one in %.1fs", code, delay)
        self.loop.call_later(delay, self.start_console_server)

    def link_closed(self, server_link: ConsoleServerLink) -> None:
        if server_link is self.link:
            server_link.close()
            self.link = None
            self.resume_reading()

    # -- attached local terminals ----------------------------------------------------------

    async def attach_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # Where live output starts, so the client can draw the screen up to it first.
        writer.write(struct.pack(">Q", self.journal.end))
        self.attached.add(writer)
        try:
            while data := await reader.read(4096):
                self.write_console(data)
        except ConnectionError:
            pass
        finally:
            self.attached.discard(writer)
            writer.close()

    # -- stop -------------------------------------------------------------------------------

    def request_stop(self) -> None:
        if self.stopping or self.init_status is not None:
            return
        log.info("stopping domain %s", self.domain.name)
        assert self.cgroups is not None
        for pid in self.cgroups.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self.loop.call_later(self.domain.stop_timeout, self.force_stop)

    def force_stop(self) -> None:
        if self.init_status is None and self.cgroups is not None:
            log.warning("domain %s did not stop in time; killing it", self.domain.name)
            self.cgroups.kill_all()

    def init_exited(self) -> None:
        self.loop.remove_reader(self.init_pidfd)
        os.close(self.init_pidfd)
        _, status = os.waitpid(self.init_pid, 0)
        self.init_status = wait_status_to_exit_code(status)
        log.info("domain %s: init exited with %d", self.domain.name, self.init_status)
        self.loop.create_task(self.finish())

    async def finish(self) -> None:
        """Tear down, and end the controller even if a step of that fails (it is logged):
        a controller stuck after its domain is gone would only wait to be killed."""
        try:
            await self.teardown()
        except Exception:
            log.exception("tearing down domain %s failed", self.domain.name)
            self.error = self.error or "teardown failed (see controller.log)"
        finally:
            self.done.set()

    async def teardown(self) -> None:
        self.stopping = True
        # Whatever init's last words were, they belong in the journal.
        while self.master_fd >= 0:
            try:
                data = os.read(self.master_fd, READ_CHUNK)
            except OSError:
                break
            if not data:
                break
            self.journal.append(data)
        if self.cgroups is not None:
            self.cgroups.kill_all()
            self.cgroups.remove()
        if self.link is not None and self.init_status is not None:
            self.link.send(link.stopped(self.init_status))
        if self.server is not None and self.server.poll() is None:
            try:
                await asyncio.wait_for(self.loop.run_in_executor(None, self.server.wait), 3)
            except TimeoutError:
                self.server.kill()
                self.server.wait()
        if self.attach_server is not None:
            self.attach_server.close()
        for writer in list(self.attached):
            writer.close()
        self.pause_reading()
        os.close(self.master_fd)
        self.master_fd = -1
        self.journal.close()
        self.write_status("failed" if self.error else "stopped")
        self.done.set()


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


async def run(domain: DomainConfig, home: Path) -> int:
    controller = Controller(domain, home)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, controller.request_stop)
    await controller.start()
    await controller.done.wait()
    return os.EX_CONFIG if controller.error else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vzvnc-controller")
    parser.add_argument("--home", required=True)
    parser.add_argument("name")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s controller %(levelname)s %(name)s: %(message)s"
    )
    home = Path(args.home)
    try:
        domain = load_domain_file(home / "domains" / f"{args.name}.toml")
        import uvloop

        return int(uvloop.run(run(domain, home)))
    except VzvncError as exc:
        print(f"vzvnc controller: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
