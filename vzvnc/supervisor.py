"""The domain controller's front end: define, start, stop and inspect domains.

Definitions live in ``<home>/domains/<name>.toml``; a running domain has a
controller process (``vzvnc.domain.controller``) and a run directory
``<home>/run/<name>/``. ``home`` is ``$VZVNC_HOME`` or ``/var/lib/vzvnc``.

A controller that died (kill -9, OOM) leaves a run directory whose pid is gone;
``start`` and ``stop`` clean that up first (processes through the domain's
cgroups, then the files), so nothing left behind trips the next start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vzvnc.domain import forkclient
from vzvnc.domain.config import DomainConfig, load_domain, load_domain_file
from vzvnc.errors import ConfigError, DomainStateError, VzvncError

log = logging.getLogger(__name__)

DEFAULT_HOME = "/var/lib/vzvnc"
START_TIMEOUT = 15.0


# Controllers started by this process. They outlive the command that started them;
# keeping the handles lets us reap the ones that ended instead of leaving zombies.
_spawned: list[subprocess.Popen[bytes]] = []


def _reap_spawned() -> None:
    _spawned[:] = [process for process in _spawned if process.poll() is None]


def vzvnc_home() -> Path:
    return Path(os.environ.get("VZVNC_HOME", DEFAULT_HOME))


@dataclass
class DomainStatus:
    name: str
    state: str  # "defined", "running", "paused", "saved", "crashed"
    controller_pid: int | None = None
    init_pid: int | None = None
    console_server_pid: int | None = None
    vnc: str | None = None
    viewers: int = 0
    console_server_restarts: int = 0
    autostart: bool = False
    """Started (or restored) by ``vzvnc daemon`` when it starts."""
    token: str = ""
    """Its WebSocket gateway token (``<home>/tokens/<name>`` while it runs)."""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Supervisor:
    def __init__(self, home: Path | None = None) -> None:
        # Absolute: controllers and console servers run with / as their directory.
        self.home = (home or vzvnc_home()).absolute()
        self.domains_dir = self.home / "domains"
        self.run_root = self.home / "run"

    # -- definitions -------------------------------------------------------------

    def definition_path(self, name: str) -> Path:
        return self.domains_dir / f"{name}.toml"

    def load(self, name: str) -> DomainConfig:
        path = self.definition_path(name)
        if not path.exists():
            raise DomainStateError(f"no domain named {name!r}")
        return load_domain_file(path)

    def define(self, domain: DomainConfig, *, replace: bool = False) -> Path:
        if not Path(domain.rootfs).is_dir():
            raise ConfigError(f"rootfs: {domain.rootfs} is not a directory")
        path = self.definition_path(domain.name)
        if path.exists() and not replace:
            raise DomainStateError(f"domain {domain.name!r} is already defined")
        if self.is_running(domain.name):
            raise DomainStateError(f"domain {domain.name!r} is running; stop it first")
        self.domains_dir.mkdir(parents=True, exist_ok=True)
        if not domain.token:
            # A domain keeps its gateway token for life: one given once, kept after.
            old = load_domain_file(path).token if path.exists() else ""
            domain = dataclasses.replace(domain, token=old or secrets.token_urlsafe(24))
        tmp = path.with_suffix(".tmp")
        tmp.write_text(domain.to_toml())
        os.replace(tmp, path)
        return path

    def define_file(self, file: Path) -> DomainConfig:
        domain = load_domain_file(file)
        self.define(domain, replace=True)
        return domain

    def names(self) -> list[str]:
        if not self.domains_dir.is_dir():
            return []
        return sorted(p.stem for p in self.domains_dir.glob("*.toml"))

    # -- runtime state ------------------------------------------------------------

    def run_dir(self, name: str) -> Path:
        return self.run_root / name

    def _read_json(self, path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def controller_pid(self, name: str) -> int | None:
        status = self._read_json(self.run_dir(name) / "status.json")
        pid = status.get("controller_pid")
        if not isinstance(pid, int) or not _alive(pid):
            return None
        return pid

    def is_running(self, name: str) -> bool:
        return self.controller_pid(name) is not None

    def status(self, name: str) -> DomainStatus:
        status = self._status(name)
        status.autostart = self.autostart(name)
        status.token = self.load(name).token
        return status

    def _status(self, name: str) -> DomainStatus:
        self.load(name)
        _reap_spawned()
        run_dir = self.run_dir(name)
        status = self._read_json(run_dir / "status.json")
        console = self._read_json(run_dir / "console.json")
        pid = self.controller_pid(name)
        if pid is None:
            if self.saved_images(name) is not None:
                return DomainStatus(name, "saved")
            state = "crashed" if status.get("state") in ("running", "paused") else "defined"
            return DomainStatus(name, state)
        vnc = None
        server_pid = console.get("pid")
        if console.get("port") and isinstance(server_pid, int) and _alive(server_pid):
            vnc = f"{console.get('host')}:{console.get('port')}"
        return DomainStatus(
            name,
            "paused" if status.get("paused") else "running",
            controller_pid=pid,
            init_pid=status.get("init_pid"),
            console_server_pid=status.get("console_server_pid"),
            vnc=vnc,
            viewers=int(console.get("viewers", 0)) if vnc else 0,
            console_server_restarts=int(status.get("console_server_restarts", 0)),
        )

    # -- start / stop ------------------------------------------------------------------

    def cleanup_stale(self, name: str) -> None:
        """Remove what a dead controller left: the domain's processes, cgroups and files."""
        from vzvnc.domain.cgroups import Cgroups, home_group

        if self.is_running(name):
            return
        group = home_group(self.home)
        if name in Cgroups.stale(group=group):
            log.warning("cleaning up after a dead controller of %s", name)
            stale = Cgroups.create(
                name, memory_limit=None, pids_limit=None, reuse=True, group=group
            )
            stale.kill_all()
            stale.remove()
        shutil.rmtree(self.run_dir(name), ignore_errors=True)

    def start(self, name: str, *, wait: bool = True, discard_save: bool = False) -> DomainStatus:
        """Boot the domain, or restore its managed save (``save``) when it has one."""
        domain = self.load(name)
        if self.is_running(name):
            raise DomainStateError(f"domain {name!r} is already running")
        if discard_save:
            self.remove_save(name)
        images = self.saved_images(name)
        if not Path(domain.rootfs).is_dir():
            raise ConfigError(f"rootfs: {domain.rootfs} is not a directory")
        if domain.listen_port is not None:
            _check_port_free(domain.listen_host, domain.listen_port)
        self.cleanup_stale(name)
        run_dir = self.run_dir(name)
        run_dir.mkdir(parents=True, exist_ok=True)
        log_path = run_dir / "controller.log"
        args = ["--home", str(self.home), name]
        if images is not None:
            args[2:2] = ["--restore", str(images)]
        process: subprocess.Popen[bytes] | forkclient.ForkedProcess | None
        process = forkclient.spawn(self.run_root, "controller", args, log_path)
        if process is None:
            with open(log_path, "ab") as log_file:
                process = subprocess.Popen(
                    [sys.executable, "-m", "vzvnc.domain.controller", *args],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    start_new_session=True,
                    close_fds=True,
                    cwd="/",  # it outlives this command: keep no directory of its busy
                )
            _reap_spawned()
            _spawned.append(process)
        try:
            status = self._wait_started(name, process, wait)
            if images is not None and wait:
                self.remove_save(name)  # restored: the image is used up, as with managedsave
            return status
        finally:
            if isinstance(process, forkclient.ForkedProcess):
                process.release()  # the controller runs on; we only watched its start

    def _wait_started(
        self, name: str, process: subprocess.Popen[bytes] | forkclient.ForkedProcess, wait: bool
    ) -> DomainStatus:
        if not wait:
            return DomainStatus(name, "starting", controller_pid=process.pid)
        run_dir = self.run_dir(name)
        log_path = run_dir / "controller.log"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                error = self._read_json(run_dir / "status.json").get("error")
                reason = error or _last_line(log_path) or f"exit {code}"
                self.cleanup_stale(name)
                raise DomainStateError(f"domain {name!r} failed to start: {reason}")
            status = self.status(name)
            if status.state in ("running", "paused") and status.vnc:
                return status
            time.sleep(0.05)
        process.kill()
        process.wait()
        self.cleanup_stale(name)
        raise DomainStateError(f"domain {name!r} did not come up in {START_TIMEOUT:.0f}s")

    def stop(self, name: str, *, timeout: float | None = None) -> None:
        domain = self.load(name)
        pid = self.controller_pid(name)
        if pid is None:
            self.cleanup_stale(name)
            return
        os.kill(pid, signal.SIGTERM)
        limit = (timeout if timeout is not None else domain.stop_timeout) + 10
        deadline = time.monotonic() + limit
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            log.warning("controller of %s did not exit; killing it", name)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        _reap_spawned()
        self.cleanup_stale(name)

    # -- suspend and resume ------------------------------------------------------------------

    def control(self, name: str, request: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        """Send one request to the domain's controller and return its answer;
        ``DomainStateError`` with the controller's words when it refuses."""
        if not self.is_running(name):
            raise DomainStateError(f"domain {name!r} is not running")
        path = self.run_dir(name) / "control.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(str(path))
                sock.sendall(json.dumps(request).encode() + b"\n")
                answer = b""
                while not answer.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
            except OSError as exc:
                raise DomainStateError(
                    f"domain {name!r}: no answer from its controller ({exc})"
                ) from None
        try:
            reply = json.loads(answer)
        except ValueError:
            raise DomainStateError(f"domain {name!r}: its controller gave no answer") from None
        if not isinstance(reply, dict):
            raise DomainStateError(f"domain {name!r}: its controller gave a bad answer")
        if "error" in reply:
            raise DomainStateError(str(reply["error"]))
        return reply

    def suspend(self, name: str) -> dict[str, Any]:
        """Freeze the domain and leave its console state in its root filesystem.

        What the container planted in its rootfs cannot stop a suspend: when the state
        cannot be written there, the domain is frozen all the same and the answer
        says why (``state_written`` false); it comes back with a clean console."""
        from vzvnc.state import SnapshotError

        reply = self.control(name, {"op": "suspend", "write_state": True})
        if not reply.get("state_written"):
            # The console server could not (it was restarting, say): the same state
            # comes from its last snapshot plus the journal.
            log.warning("domain %s: %s; writing the state here", name, reply.get("why"))
            try:
                self.write_state_from_journal(name, int(reply["offset"]))
                reply["state_written"] = True
            except SnapshotError as exc:
                log.error("domain %s: console state not saved: %s", name, exc)
                reply["why"] = str(exc)
        return reply

    def resume(self, name: str) -> dict[str, Any]:
        return self.control(name, {"op": "resume"})

    def write_state_from_journal(self, name: str, offset: int) -> None:
        from vzvnc import state
        from vzvnc.domain.rootfs_state import write_console_state

        domain = self.load(name)
        terminal = self.screen(name, upto=offset)
        snapshot = state.capture(terminal, offset)
        if snapshot is None:
            raise DomainStateError(f"domain {name!r}: the screen is too large to save")
        write_console_state(domain.rootfs, domain.state_path, snapshot)

    # -- managed save (CRIU) --------------------------------------------------------------

    def save_dir(self, name: str) -> Path:
        return self.home / "save" / name

    def saved_images(self, name: str) -> Path | None:
        from vzvnc.domain import criu

        images = self.save_dir(name) / "images"
        return images if (images / criu.CONSOLE_RECORD).is_file() else None

    def remove_save(self, name: str) -> bool:
        """Throw the domain's saved image away; whether there was one."""
        self.load(name)
        directory = self.save_dir(name)
        existed = self.saved_images(name) is not None
        shutil.rmtree(directory, ignore_errors=True)
        return existed

    def save(self, name: str) -> dict[str, Any]:
        """Checkpoint the running domain into its save directory, leave its console state
        in its rootfs, and stop it; the next ``start`` restores it. On any failure the
        domain is left running (or paused, if it was) exactly where it was."""
        from vzvnc.domain import criu

        self.load(name)
        criu.find_criu()  # refuse before touching the domain
        if not self.is_running(name):
            raise DomainStateError(f"domain {name!r} is not running")
        was_paused = self.status(name).state == "paused"
        started = time.monotonic()
        offset = None if was_paused else self.suspend(name)["offset"]
        directory = self.save_dir(name)
        partial = directory / "images.partial"
        try:
            shutil.rmtree(directory, ignore_errors=True)
            partial.mkdir(parents=True, mode=0o700)
            checkpoint = self.control(
                name,
                {"op": "checkpoint", "images": str(partial), "paused": was_paused},
                timeout=criu.DUMP_TIMEOUT + 30,
            )
            os.replace(partial, directory / "images")
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            if not was_paused:
                with contextlib.suppress(VzvncError):
                    self.resume(name)
            raise
        pid = self.controller_pid(name)
        self.control(name, {"op": "end", "state": "saved"})
        if pid is not None:
            _wait_gone(pid, 30)
        size = sum(f.stat().st_size for f in (directory / "images").iterdir())
        return {
            "ok": True,
            "offset": offset if offset is not None else checkpoint["offset"],
            "dump_seconds": checkpoint["seconds"],
            "seconds": time.monotonic() - started,
            "image_bytes": size,
        }

    def thawed_at(self, name: str) -> float | None:
        """When the domain's restored processes ran again (CLOCK_MONOTONIC), if restored."""
        value = self._read_json(self.run_dir(name) / "status.json").get("thawed_at")
        return float(value) if isinstance(value, int | float) else None

    def wait_gone(self, pid: int, timeout: float) -> None:
        _wait_gone(pid, timeout)

    def forget(self, name: str) -> None:
        """Remove every trace of a domain that now lives elsewhere (it has been migrated):
        definition, saved image, run directory, autostart mark."""
        if self.is_running(name):
            raise DomainStateError(f"domain {name!r} is still running here")
        self.cleanup_stale(name)
        shutil.rmtree(self.save_dir(name), ignore_errors=True)
        self.autostart_path(name).unlink(missing_ok=True)
        self.definition_path(name).unlink(missing_ok=True)

    # -- autostart ----------------------------------------------------------------------

    def autostart_path(self, name: str) -> Path:
        return self.home / "autostart" / name

    def set_autostart(self, name: str, enabled: bool) -> None:
        self.load(name)
        path = self.autostart_path(name)
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.unlink(missing_ok=True)

    def autostart(self, name: str) -> bool:
        return self.autostart_path(name).exists()

    def destroy(self, name: str) -> None:
        self.load(name)
        self.stop(name)
        shutil.rmtree(self.save_dir(name), ignore_errors=True)
        self.autostart_path(name).unlink(missing_ok=True)
        self.definition_path(name).unlink(missing_ok=True)

    # -- looking at the console ------------------------------------------------------------

    def screen(self, name: str, upto: int | None = None) -> Any:
        """A Terminal holding what the domain's console shows now, or showed when its
        output reached journal offset ``upto``.

        Rebuilt as a new console server would: from the console server's last
        snapshot (when there is one at or before ``upto``) plus the journal after
        it, so a long-running domain whose journal has rotated still shows its
        whole screen. Without a usable snapshot, from the oldest journal byte kept.
        """
        from vzvnc import state
        from vzvnc.domain.journal import read_journal
        from vzvnc.term.terminal import Terminal

        domain = self.load(name)
        run_dir = self.run_dir(name)
        snapshot = None
        try:
            snapshot = state.read_snapshot(run_dir)
        except state.SnapshotError as exc:
            log.warning("domain %s: snapshot not used: %s", name, exc)
        if snapshot is not None and upto is not None and snapshot.offset > upto:
            snapshot = None  # saved after the point asked for: of no use
        if snapshot is not None:
            terminal = state.restore(snapshot)
            start = snapshot.offset
        else:
            terminal = Terminal(domain.columns, domain.lines, history=domain.history)
            start = 0
        begin, data = read_journal(run_dir, start)
        terminal.feed(data if upto is None else data[: max(0, upto - begin)])
        return terminal


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"vnc.listen: {host}:{port} is not free: {exc.strerror}") from exc


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    _reap_spawned()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def create_domain(
    name: str,
    rootfs: str,
    init: list[str],
    listen: str | None,
    password_file: str | None,
) -> DomainConfig:
    """The common case of ``domain create`` without a file."""
    lines = [f"name = {json.dumps(name)}", f"rootfs = {json.dumps(os.path.abspath(rootfs))}"]
    if init:
        lines.append("init = [" + ", ".join(json.dumps(arg) for arg in init) + "]")
    lines.append("[vnc]")
    if listen:
        lines.append(f"listen = {json.dumps(listen)}")
    if password_file:
        lines.append(f"password_file = {json.dumps(os.path.abspath(password_file))}")
    return load_domain("\n".join(lines) + "\n", "domain create")
