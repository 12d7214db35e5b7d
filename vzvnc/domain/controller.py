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
import functools
import json
import logging
import os
import signal
import struct
import sys
import time
from pathlib import Path
from typing import Any

from vzvnc.domain import criu, hooks, link
from vzvnc.domain.cgroups import Cgroups, home_group
from vzvnc.domain.config import DomainConfig, load_domain_file
from vzvnc.domain.container import start_container
from vzvnc.domain.files import write_json_atomic
from vzvnc.domain.journal import Journal
from vzvnc.domain.kernel import ContainerSpec, set_child_subreaper
from vzvnc.domain.server_link import ConsoleServerLink
from vzvnc.domain.server_process import ConsoleServerRunner
from vzvnc.domain.tokens import console_token_line, remove_token
from vzvnc.errors import DomainError, DomainStateError, VzvncError
from vzvnc.term.pty import set_window_size, wait_status_to_exit_code

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024
# Past this much output queued for the console server, the pty is left unread
# until it catches up (the console server, not the journal, is the slow part).
LINK_HIGH_WATER = 4 * 1024 * 1024
# How long a suspend waits for the console server to write the console state.
STATE_TIMEOUT = 10.0


class Controller:
    def __init__(self, domain: DomainConfig, home: Path, restore_from: Path | None = None) -> None:
        self.domain = domain
        self.restore_from = restore_from
        """A checkpoint to restore (``criu.py``) instead of booting the container."""
        self.console_path = ""
        self.home = home
        self.run_dir = home / "run" / domain.name
        self.domain_file = home / "domains" / f"{domain.name}.toml"
        self.loop = asyncio.get_running_loop()
        self.master_fd = -1
        self.init_pid = 0
        self.init_status: int | None = None
        self.cgroups: Cgroups | None = None
        self.journal = Journal(self.run_dir)
        self.reading = False
        self.stopping = False
        self.done = asyncio.Event()
        self.attached: set[asyncio.StreamWriter] = set()
        self.attach_server: asyncio.AbstractServer | None = None
        self.control_server: asyncio.AbstractServer | None = None
        self.error: str | None = None
        self.paused = False
        self.state_waiter: asyncio.Future[tuple[int, bool, str]] | None = None
        self.operation = asyncio.Lock()
        self.end_state: str | None = None
        self.thawed_at: float | None = None
        """When a restored domain ran again (CLOCK_MONOTONIC, shared by the host's
        processes): migration downtime is measured up to it."""
        self.console_server = ConsoleServerRunner(
            self,
            home / "run",
            ["--domain-file", str(self.domain_file), "--run-dir", str(self.run_dir)],
            self.run_dir / "console-server.log",
            on_fatal=self.console_server_failed,
            on_started=lambda: self.write_status("paused" if self.paused else "running"),
        )

    # -- start --------------------------------------------------------------------

    async def hook(self, operation: str, sub_operation: str, extra: str = "-") -> None:
        """Run the domain's hook scripts (``hooks.py``) without blocking the loop."""
        if not hooks.hooks_exist(self.home):
            return  # and no executor thread is started for nothing
        await self.loop.run_in_executor(
            None,
            functools.partial(
                hooks.run_hooks,
                self.home,
                self.domain.name,
                operation,
                sub_operation,
                extra,
                definition=hooks.definition_json(self.domain),
            ),
        )

    async def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        await self.hook("prepare", "begin")
        set_child_subreaper()
        self.master_fd, slave_fd = os.openpty()
        self.console_path = os.ttyname(slave_fd)
        try:
            set_window_size(self.master_fd, self.domain.columns, self.domain.lines)
            self.cgroups = Cgroups.create(
                self.domain.name,
                memory_limit=self.domain.memory_limit,
                pids_limit=self.domain.pids_limit,
                group=home_group(self.home),
            )
            await self.hook("restore" if self.restore_from is not None else "start", "begin")
            if self.restore_from is not None:
                self.init_pid = await self.restore_container(self.restore_from, slave_fd)
            else:
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
        if self.restore_from is not None and self.paused:
            log.info("domain %s restored paused, as it was saved", self.domain.name)
        elif self.restore_from is not None:
            # Restored tasks come back frozen (the dump was of a frozen cgroup): they
            # run again only now that their console is being read.
            self.cgroups.thaw()
            self.thawed_at = time.monotonic()
        self.attach_server = await asyncio.start_unix_server(
            self.attach_client, path=str(self.run_dir / "attach.sock")
        )
        control_path = self.run_dir / "control.sock"
        self.control_server = await asyncio.start_unix_server(
            self.control_client, path=str(control_path)
        )
        os.chmod(control_path, 0o600)
        self.console_server.start()
        self.write_status("paused" if self.paused else "running")
        self.loop.create_task(self.hook("started", "begin"))
        log.info("domain %s started, init pid %d", self.domain.name, self.init_pid)

    def write_status(self, state: str) -> None:
        write_json_atomic(
            self.run_dir / "status.json",
            {
                "name": self.domain.name,
                "state": state,
                "controller_pid": os.getpid(),
                "init_pid": self.init_pid,
                "console_server_pid": self.console_server.pid,
                "console_server_restarts": self.console_server.restarts,
                "journal_end": self.journal.end,
                "paused": self.paused,
                "thawed_at": self.thawed_at,
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
        self.take_output(data)
        if self.link is not None and len(self.link.pending) > LINK_HIGH_WATER:
            self.pause_reading()

    def take_output(self, data: bytes) -> None:
        offset = self.journal.append(data)
        if self.link is not None and self.link.live:
            for chunk in link.output(offset, data):
                self.link.send(chunk)
        for writer in list(self.attached):
            writer.write(data)

    def link_drained(self) -> None:
        self.resume_reading()

    def resize_console(self, columns: int, lines: int) -> None:
        set_window_size(self.master_fd, columns, lines)

    def write_console(self, data: bytes) -> None:
        if self.paused:
            return  # refused, not queued: a frozen domain reads nothing
        try:
            os.write(self.master_fd, data)
        except BlockingIOError:
            log.warning("the console is not reading its input; dropped %d bytes", len(data))
        except OSError as exc:
            log.debug("writing to the console failed: %s", exc)

    # -- the console server -------------------------------------------------------------

    @property
    def link(self) -> ConsoleServerLink | None:
        """The link to the console server running now, if any."""
        return self.console_server.link

    def console_server_failed(self, code: int) -> None:
        self.error = _last_line(self.run_dir / "console-server.log") or f"exit {code}"
        log.error("console server cannot run (%s); stopping the domain", self.error)
        self.write_status("failed")
        self.force_stop()

    def link_closed(self, server_link: ConsoleServerLink) -> None:
        if self.console_server.link_closed(server_link):
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

    # -- control requests (vzvnc domain suspend, resume, save, migrate) --------------------

    async def control_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One request per connection: a JSON line in, a JSON line out."""
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            try:
                request = json.loads(line)
                if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                    raise ValueError("not a request")
            except ValueError:
                reply: dict[str, Any] = {"error": "malformed control request"}
            else:
                async with self.operation:
                    try:
                        reply = await self.control(request)
                    except VzvncError as exc:
                        reply = {"error": str(exc)}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, TimeoutError):
            pass
        except Exception:
            log.exception("control request failed")
        finally:
            writer.close()

    async def control(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if self.stopping or self.init_status is not None:
            raise DomainError(f"domain {self.domain.name} is stopping")
        if op == "suspend":
            return await self.suspend(write_state=bool(request.get("write_state", True)))
        if op == "resume":
            return await self.resume()
        if op == "checkpoint":
            return await self.checkpoint(
                str(request.get("images", "")), paused=request.get("paused") is True
            )
        if op == "end":
            return self.end(str(request.get("state", "")))
        raise DomainError(f"unknown control operation {op!r}")

    async def suspend(self, *, write_state: bool) -> dict[str, Any]:
        """Freeze the domain, take in all it wrote, and (write_state) have the console
        server write the console state into the rootfs. The order loses no byte: once
        frozen nothing new reaches the pty, and what it holds is drained before the
        state is taken."""
        assert self.cgroups is not None
        if self.paused:
            raise DomainStateError(f"domain {self.domain.name} is already paused")
        await self.hook("suspend", "begin")
        await self.loop.run_in_executor(None, self.cgroups.freeze)
        self.paused = True
        self.drain_console()
        offset = self.journal.end
        written, why = False, "no console server is connected" if write_state else ""
        if self.link is not None and self.link.live:
            self.state_waiter = self.loop.create_future() if write_state else None
            self.link.send(link.pause(offset, write_state))
            if self.state_waiter is not None:
                try:
                    at, written, why = await asyncio.wait_for(self.state_waiter, STATE_TIMEOUT)
                    written = written and at == offset
                except TimeoutError:
                    why = "the console server did not write the state in time"
                finally:
                    self.state_waiter = None
        self.write_status("paused")
        log.info("domain %s paused at console offset %d", self.domain.name, offset)
        return {"ok": True, "offset": offset, "state_written": written, "why": why}

    def state_saved(self, offset: int, ok: bool, message: str) -> None:
        if self.state_waiter is not None and not self.state_waiter.done():
            self.state_waiter.set_result((offset, ok, message))

    def drain_console(self) -> None:
        """Read what the pty holds into the journal and to the console server."""
        while self.master_fd >= 0:
            try:
                data = os.read(self.master_fd, READ_CHUNK)
            except OSError:
                return
            if not data:
                return
            self.take_output(data)

    async def resume(self) -> dict[str, Any]:
        assert self.cgroups is not None
        if not self.paused:
            raise DomainStateError(f"domain {self.domain.name} is not paused")
        self.cgroups.thaw()
        self.paused = False
        if self.link is not None and self.link.live:
            self.link.send(link.encode(link.RESUME))
        self.write_status("running")
        log.info("domain %s resumed", self.domain.name)
        await self.hook("resumed", "end")
        return {"ok": True}

    # -- checkpoint and restore (CRIU) ---------------------------------------------------

    async def checkpoint(self, images: str, *, paused: bool = False) -> dict[str, Any]:
        """Dump the paused domain's processes into ``images`` (an empty directory); the
        domain stays paused, so a save or migration that fails later can resume it.
        ``paused``: the domain was suspended by its user, and comes back suspended."""
        assert self.cgroups is not None
        if not self.paused:
            raise DomainStateError(f"domain {self.domain.name} must be paused to checkpoint")
        directory = Path(images)
        if not directory.is_absolute() or not directory.is_dir():
            raise DomainError(f"checkpoint directory {images!r} is not an existing directory")
        binary = criu.find_criu()
        await self.hook("save", "begin")
        console = criu.ConsoleTty.of(self.console_path)
        log_path = self.run_dir / "criu-dump.log"
        argv = criu.dump_argv(
            binary, self.init_pid, directory, console, self.cgroups.freezer_path, log_path
        )
        started = time.monotonic()
        await self.loop.run_in_executor(None, criu.run, argv, log_path, "dump", criu.DUMP_TIMEOUT)
        record = {
            "version": 1,
            "name": self.domain.name,
            "offset": self.journal.end,
            "console": {"rdev": console.rdev, "dev": console.dev},
            "size": [self.domain.columns, self.domain.lines],
            "paused": paused,
        }
        write_json_atomic(directory / criu.CONSOLE_RECORD, record)
        seconds = time.monotonic() - started
        log.info("domain %s checkpointed in %.2f s", self.domain.name, seconds)
        return {"ok": True, "seconds": seconds, "offset": self.journal.end}

    async def restore_container(self, images: Path, slave_fd: int) -> int:
        """Restore a checkpoint on the new console pty; returns init's host pid. The
        console state the domain left in its rootfs becomes the console server's
        starting snapshot, and the journal continues from its offset."""
        from vzvnc import state
        from vzvnc.domain.rootfs_state import read_console_state, remove_console_state

        record = criu.read_record(images)
        self.paused = record.paused
        snapshot: state.Snapshot | None = None
        try:
            snapshot = read_console_state(self.domain.rootfs, self.domain.state_path)
        except VzvncError as exc:
            log.error("domain %s: console state not used: %s", self.domain.name, exc)
        if snapshot is not None and snapshot.offset != record.offset:
            log.error(
                "domain %s: console state is for offset %d, the checkpoint for %d; not used",
                self.domain.name,
                snapshot.offset,
                record.offset,
            )
            snapshot = None
        if snapshot is not None:
            state.write_snapshot(self.run_dir, snapshot)
        self.journal.open_new(start=record.offset)
        binary = criu.find_criu()
        pidfile = self.run_dir / "restored.pid"
        pidfile.unlink(missing_ok=True)
        assert self.cgroups is not None
        argv = criu.restore_argv(
            binary,
            images,
            self.domain.rootfs,
            record.console,
            slave_fd,
            self.console_path,
            pidfile,
            self.cgroups.criu_roots(),
            self.run_dir / "criu-restore.log",
        )
        await self.loop.run_in_executor(
            None,
            functools.partial(
                criu.run,
                argv,
                self.run_dir / "criu-restore.log",
                "restore",
                criu.RESTORE_TIMEOUT,
                pass_fds=(slave_fd,),
            ),
        )
        pid = int(pidfile.read_text().strip())
        if snapshot is not None:
            with contextlib.suppress(VzvncError):
                remove_console_state(self.domain.rootfs, self.domain.state_path)
        log.info("domain %s restored, init pid %d", self.domain.name, pid)
        return pid

    def end(self, state: str) -> dict[str, Any]:
        """The domain lives on elsewhere (a save image, another host): kill what is left
        here, still frozen, so it never runs another instruction, and tear down."""
        if state not in ("saved", "migrated"):
            raise DomainError(f"cannot end a domain as {state!r}")
        if not self.paused:
            raise DomainStateError(f"domain {self.domain.name} must be paused to end as {state}")
        self.end_state = state
        assert self.cgroups is not None
        self.cgroups.kill_all()
        return {"ok": True}

    # -- stop -------------------------------------------------------------------------------

    def request_stop(self) -> None:
        if self.stopping or self.init_status is not None:
            return
        log.info("stopping domain %s", self.domain.name)
        assert self.cgroups is not None
        if self.paused:
            # A frozen process cannot act on SIGTERM: a stop is also a resume.
            self.cgroups.thaw()
            self.paused = False
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
        if self.domain.token:
            line = console_token_line(self.run_dir, self.domain.token)
            remove_token(self.home, self.domain.name, only_if=line)
        self.console_server.stopping = True
        # Whatever init's last words were, they belong in the journal.
        self.drain_console()
        if self.cgroups is not None:
            self.cgroups.kill_all()
            self.cgroups.remove()
        if self.link is not None and self.init_status is not None:
            self.link.send(link.stopped(self.init_status))
        # It ends by itself once told the domain stopped (its viewers see why).
        await self.console_server.stop(3.0, terminate=False)
        if self.attach_server is not None:
            self.attach_server.close()
        for writer in list(self.attached):
            writer.close()
        self.pause_reading()
        os.close(self.master_fd)
        self.master_fd = -1
        self.journal.close()
        if self.control_server is not None:
            self.control_server.close()
        self.write_status("failed" if self.error else self.end_state or "stopped")
        for operation in ("stopped", "release"):
            try:
                await self.hook(operation, "end", self.end_state or "-")
            except VzvncError as exc:  # these never abort anything
                log.warning("%s", exc)
        self.done.set()


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


async def run(domain: DomainConfig, home: Path, restore_from: Path | None = None) -> int:
    controller = Controller(domain, home, restore_from)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, controller.request_stop)
    await controller.start()
    await controller.done.wait()
    return os.EX_CONFIG if controller.error else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vzvnc-controller")
    parser.add_argument("--home", required=True)
    parser.add_argument("--restore", metavar="IMAGES", help="restore this checkpoint")
    parser.add_argument("name")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_args(parse_args(argv))


def domain_file(args: argparse.Namespace) -> Path:
    return Path(args.home) / "domains" / f"{args.name}.toml"


def run_args(args: argparse.Namespace, domain: DomainConfig | None = None) -> int:
    """``main`` once its arguments are parsed, and maybe its domain file loaded (the
    fork server does both before it forks: in each child, argparse and tomllib would
    copy more of the fork server's pages)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s controller %(levelname)s %(name)s: %(message)s"
    )
    home = Path(args.home)
    try:
        if domain is None:
            domain = load_domain_file(domain_file(args))
        import uvloop

        restore = Path(args.restore) if args.restore else None
        return int(uvloop.run(run(domain, home, restore)))
    except VzvncError as exc:
        print(f"vzvnc controller: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
