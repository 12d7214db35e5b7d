"""VNC consoles for LXC containers (Debian 12's lxc 5.0): ``vzvnc lxc serve|start|hook|list``.

- ``serve NAME`` holds the console of a running container: through the liblxc
  binding's ``console_getfd`` (PyPI ``lxc``), or, without it (or with ``--via
  lxc-console``), ``lxc-console`` driven on a pty of ours. After a reboot the
  console is reattached; a container that stays stopped ends the console.
- ``start NAME`` makes the console pty itself (its side raw, or two tty layers
  turn ``\\n`` into ``\\r\\r\\n``) and runs ``lxc-start -F`` with
  ``lxc.console.path`` set to it, so the console is held from the first byte of boot.
- ``hook`` is for a container's config: ``lxc.hook.start-host`` starts ``serve``
  in the background, ``lxc.hook.post-stop`` stops it (not on a reboot).
- ``list`` shows the containers of an lxcpath and where their consoles listen.

Each console is a keeper (``keeper.py``: journal, restartable console server) in
``$VZVNC_HOME/hosted/lxc/NAME.HASH`` (HASH: of the lxcpath). Window sizes are set
on the container's console pty (init's fd 0): LXC does not pass ours on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import importlib
import logging
import os
import shutil
import subprocess
import sys
import termios
import time
import tty
from pathlib import Path
from typing import Any

from vzvnc.errors import ConfigError, DomainStateError, VzvncError
from vzvnc.hosted.common import (
    add_serve_options,
    console_settings,
    detach,
    forwarded_options,
    print_result,
    refuse_if_served,
    resize_container_tty,
    run_keeper,
    status_rows,
    stop_console,
)
from vzvnc.hosted.keeper import Keeper, hosted_root, read_status, stop_keeper
from vzvnc.term.pty import set_window_size

log = logging.getLogger(__name__)

KIND = "lxc"
# How long a console waits for its container to run (at start, and after a reboot).
RUNNING_TIMEOUT = 15.0
# A container seen stopped this long after its console closed is gone, not rebooting.
STOPPED_FOR = 3.0
POLL = 0.2


def binding() -> Any | None:
    """The liblxc Python binding, if installed."""
    try:
        return importlib.import_module("lxc")
    except ImportError:
        return None


def default_lxcpath() -> str:
    lxc = binding()
    if lxc is not None:
        return str(lxc.default_config_path)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["lxc-config", "lxc.lxcpath"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        if out:
            return out
    return "/var/lib/lxc"


class Container:
    """One LXC container, as the tools and (when installed) the binding see it."""

    def __init__(self, name: str, lxcpath: str) -> None:
        if not name or "/" in name or name in (".", ".."):
            raise ConfigError(f"name: {name!r} is not a container name")
        self.name = name
        self.lxcpath = os.path.abspath(lxcpath)
        self.config_file = Path(self.lxcpath) / name / "config"

    def exists(self) -> bool:
        return self.config_file.is_file()

    def _binding_container(self) -> Any | None:
        lxc = binding()
        return None if lxc is None else lxc.Container(self.name, self.lxcpath)

    def state(self) -> str:
        if not self.exists():
            return "GONE"
        container = self._binding_container()
        if container is not None:
            return str(container.state)
        out = self._info("-s")
        return out or "STOPPED"

    def init_pid(self) -> int | None:
        container = self._binding_container()
        if container is not None:
            pid = int(container.init_pid)
            return pid if pid > 0 else None
        out = self._info("-p")
        return int(out) if out.isdigit() else None

    def _info(self, flag: str) -> str:
        try:
            result = subprocess.run(
                ["lxc-info", "-P", self.lxcpath, "-n", self.name, flag, "-H"],
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return result.stdout.strip() if result.returncode == 0 else ""

    def rootfs(self) -> str | None:
        """``lxc.rootfs.path`` of a directory-backed container, from its config."""
        with contextlib.suppress(OSError):
            for line in self.config_file.read_text().splitlines():
                key, sep, value = line.partition("=")
                if sep and key.strip() == "lxc.rootfs.path":
                    value = value.strip()
                    return value[4:] if value.startswith("dir:") else value
        return None

    def require_running(self) -> None:
        if not self.exists():
            raise DomainStateError(f"lxc container {self.name} does not exist in {self.lxcpath}")
        state = self.state()
        if state not in ("RUNNING", "FROZEN"):
            raise DomainStateError(f"lxc container {self.name} is not running ({state})")

    def run_dir(self, home: Path) -> Path:
        return run_dir_for(home, self.name, self.lxcpath)


def run_dir_for(home: Path, name: str, lxcpath: str) -> Path:
    from vzvnc.hosted.keeper import console_name

    digest = hashlib.sha256(os.path.abspath(lxcpath).encode()).hexdigest()[:8]
    return hosted_root(home, KIND) / f"{console_name(name)}.{digest}"


def resize_console(
    container: Container, tty_number: int, fd: int, columns: int, lines: int
) -> None:
    """The container's own console pty is what its programs see; ours is a relay."""
    set_window_size(fd, columns, lines)
    pid = container.init_pid()
    if pid is not None:
        tty_path = "dev/console" if tty_number == 0 else f"dev/tty{tty_number}"
        resize_container_tty(pid, columns, lines, tty_path)


async def wait_until_gone_or_running(container: Container) -> bool:
    """After the console closed: True once it runs again, False if it is gone."""
    deadline = time.monotonic() + RUNNING_TIMEOUT
    stopped_since: float | None = None
    while time.monotonic() < deadline:
        state = await asyncio.to_thread(container.state)
        if state in ("RUNNING", "FROZEN"):
            return True
        if state == "GONE":
            return False
        if state == "STOPPED":
            stopped_since = stopped_since or time.monotonic()
            if time.monotonic() - stopped_since >= STOPPED_FOR:
                return False
        else:
            stopped_since = None
        await asyncio.sleep(POLL)
    return False


class GetfdSource:
    """The container's tty N through liblxc's ``console_getfd`` (a pty proxied by LXC's monitor)."""

    def __init__(self, container: Container, tty_number: int) -> None:
        self.container = container
        self.tty = tty_number
        self.description = f"console_getfd({tty_number}) of {container.name} in {container.lxcpath}"

    def _getfd(self) -> int:
        lxc = binding()
        assert lxc is not None
        handle = lxc.Container(self.container.name, self.container.lxcpath)
        return int(handle.console_getfd(self.tty))

    def open(self) -> int:
        deadline = time.monotonic() + RUNNING_TIMEOUT
        while True:
            try:
                self.container.require_running()
                return self._getfd()
            except (ValueError, DomainStateError) as exc:
                # Just started (by a hook) or rebooting: the monitor may not take us yet.
                if time.monotonic() > deadline or self.container.state() == "GONE":
                    raise DomainStateError(
                        f"cannot open the console of lxc container {self.container.name}: {exc}"
                    ) from exc
                time.sleep(POLL)

    async def reopen(self) -> int | None:
        deadline = time.monotonic() + RUNNING_TIMEOUT
        refused = ""
        while time.monotonic() < deadline:
            if not await wait_until_gone_or_running(self.container):
                return None
            try:
                return await asyncio.to_thread(self._getfd)
            except (ValueError, DomainStateError) as exc:
                refused = str(exc)  # "Unable to allocate tty" while it reboots
                await asyncio.sleep(POLL)
        # LXC 5.0 keeps a console client's claim across a reboot, so the console
        # (tty 0) of a rebooted container is refused until it stops; a console made
        # with 'vzvnc lxc start' (lxc.console.path) has no such claim to lose.
        log.error(
            "lxc container %s is running again but refuses its tty %d (%s): LXC keeps "
            "the console claimed across a reboot; 'vzvnc lxc start' consoles survive reboots",
            self.container.name,
            self.tty,
            refused,
        )
        return None

    def resize(self, fd: int, columns: int, lines: int) -> None:
        resize_console(self.container, self.tty, fd, columns, lines)

    async def watch(self) -> None:
        await asyncio.Event().wait()  # the console's end of file tells

    def listening(self, host: str, port: int) -> None:
        pass

    def saw_output(self) -> None:
        pass

    def close(self) -> None:
        pass


class LxcConsoleSource(GetfdSource):
    """``lxc-console`` on a pty of ours: for hosts without the binding. Its escape
    prefix (Ctrl+a by default) is ``ESCAPE`` here; typing it then ``q`` detaches."""

    ESCAPE = "^]"

    def __init__(self, container: Container, tty_number: int, columns: int, lines: int) -> None:
        super().__init__(container, tty_number)
        self.size = (columns, lines)
        self.description = (
            f"lxc-console -t {tty_number} for {container.name} in {container.lxcpath}"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def _getfd(self) -> int:
        if shutil.which("lxc-console") is None:
            raise DomainStateError("lxc-console is not installed")
        self._reap()
        master, slave = os.openpty()
        try:
            set_window_size(master, *self.size)
            self.process = subprocess.Popen(
                [
                    "lxc-console",
                    "-P",
                    self.container.lxcpath,
                    "-n",
                    self.container.name,
                    "-t",
                    str(self.tty),
                    "-e",
                    self.ESCAPE,
                ],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,
                preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
                close_fds=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        return master

    def _reap(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(2)
            self.process = None

    def close(self) -> None:
        self._reap()


class HeldPtySource:
    """A console pty of ours that LXC opens as ``lxc.console.path``. We keep its slave
    open too, so the pty lives across reboots and never reads end of file."""

    def __init__(self, container: Container, columns: int, lines: int) -> None:
        self.container = container
        self.size = (columns, lines)
        self.description = f"console pty of {container.name} in {container.lxcpath}"
        self.slave = -1

    def make_pty(self) -> int:
        master, self.slave = os.openpty()
        set_window_size(master, *self.size)
        tty.setraw(self.slave)
        return master

    def saw_output(self) -> None:
        # LXC sets the tty it is given to its own liking (output processing on), at
        # start and at every reboot: put it back to raw.
        with contextlib.suppress(OSError, termios.error):
            if termios.tcgetattr(self.slave)[1] & termios.OPOST:
                tty.setraw(self.slave)

    async def reopen(self) -> int | None:
        return None  # we hold the slave: end of file only if the pty itself is gone

    def resize(self, fd: int, columns: int, lines: int) -> None:
        resize_console(self.container, 0, fd, columns, lines)

    def listening(self, host: str, port: int) -> None:
        pass

    def close(self) -> None:
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1


class StartSource(HeldPtySource):
    """``vzvnc lxc start``: the pty is handed to ``lxc-start -F``; the container is gone
    when that exits."""

    def __init__(
        self, container: Container, columns: int, lines: int, settings: list[str], log_path: Path
    ) -> None:
        super().__init__(container, columns, lines)
        self.settings = settings
        self.log_path = log_path
        self.description = f"lxc-start of {container.name} in {container.lxcpath}"
        self.process: subprocess.Popen[bytes] | None = None

    def open(self) -> int:
        if not self.container.exists():
            raise DomainStateError(
                f"lxc container {self.container.name} does not exist in {self.container.lxcpath}"
            )
        if self.container.state() != "STOPPED":
            raise DomainStateError(
                f"lxc container {self.container.name} is already running; "
                "use 'vzvnc lxc serve' for a running container"
            )
        master = self.make_pty()
        argv = ["lxc-start", "-F", "-P", self.container.lxcpath, "-n", self.container.name]
        argv += ["-s", f"lxc.console.path={os.ttyname(self.slave)}"]
        for setting in self.settings:
            argv += ["-s", setting]
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
                close_fds=True,
            )
        return master

    async def watch(self) -> None:
        assert self.process is not None
        code = await asyncio.to_thread(self.process.wait)
        log.info("lxc-start of %s exited with %d", self.container.name, code)


class PathSource(HeldPtySource):
    """The pre-start hook's console: a link at the container's ``lxc.console.path``
    to a pty of ours, made before LXC opens that path (and again after a reboot)."""

    def __init__(self, container: Container, columns: int, lines: int, path: str) -> None:
        super().__init__(container, columns, lines)
        self.path = path
        self.description = f"lxc.console.path {path} of {container.name} in {container.lxcpath}"
        self.target = ""

    def open(self) -> int:
        if os.path.lexists(self.path) and not os.path.islink(self.path):
            raise DomainStateError(
                f"lxc.console.path: {self.path} exists and is not a link vzvnc made"
            )
        os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
        master = self.make_pty()
        self.target = os.ttyname(self.slave)
        temporary = f"{self.path}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        os.symlink(self.target, temporary)
        os.replace(temporary, self.path)
        return master

    async def watch(self) -> None:
        # The post-stop hook ends this console; this is the net for a missing hook
        # line: a container seen running and then stopped (not rebooting) is gone.
        seen_running = False
        stopped_since: float | None = None
        while True:
            state = await asyncio.to_thread(self.container.state)
            if state == "GONE":
                return
            seen_running = seen_running or state in ("RUNNING", "FROZEN")
            if state == "STOPPED" and seen_running:
                stopped_since = stopped_since or time.monotonic()
                if time.monotonic() - stopped_since > 3 * STOPPED_FOR:
                    return
            else:
                stopped_since = None
            await asyncio.sleep(1.0)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if os.readlink(self.path) == self.target:
                os.unlink(self.path)
        super().close()


def configured_console_path(container: Container) -> str | None:
    """``lxc.console.path`` from the container's config, if it names a path of its own
    (not a tty LXC would open as it is, and not 'none')."""
    with contextlib.suppress(OSError):
        for line in container.config_file.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == "lxc.console.path":
                value = value.strip()
                if value.startswith("/") and not value.startswith("/dev/"):
                    return os.path.normpath(value)
    return None


# -- the commands ------------------------------------------------------------------------


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lxc = commands.add_parser("lxc", help="VNC consoles for LXC containers")
    ops = lxc.add_subparsers(dest="op", required=True)
    serve = ops.add_parser(
        "serve",
        help="serve the console of a running container",
        usage="vzvnc lxc serve NAME [-P LXCPATH] [--listen HOST:PORT] [--tty N] "
        "[--via binding|lxc-console|console-path] [--detach] [--json]",
    )
    serve.add_argument("name")
    serve.add_argument("-P", "--lxcpath", help="the container's lxcpath (default: LXC's)")
    serve.add_argument("--tty", type=int, default=0, help="tty number (default 0, the console)")
    serve.add_argument(
        "--via",
        choices=("binding", "lxc-console", "console-path"),
        help="how to reach the console (default: the liblxc binding if installed); "
        "console-path: make the pty lxc.console.path names (the pre-start hook does)",
    )
    add_serve_options(serve)
    start = ops.add_parser(
        "start",
        help="start a stopped container with its console held from the first byte",
        usage="vzvnc lxc start NAME [-P LXCPATH] [--listen HOST:PORT] [-s KEY=VALUE]... "
        "[--detach] [--json]",
    )
    start.add_argument("name")
    start.add_argument("-P", "--lxcpath", help="the container's lxcpath (default: LXC's)")
    start.add_argument(
        "-s", "--define", action="append", default=[], metavar="KEY=VALUE",
        help="a config item for lxc-start -s (repeatable)",
    )  # fmt: skip
    add_serve_options(start)
    hook = ops.add_parser(
        "hook",
        help="for lxc.hook.start-host and lxc.hook.post-stop lines in a container's config",
    )
    hook.add_argument("legacy", nargs="*", help=argparse.SUPPRESS)
    add_serve_options(hook)
    listing = ops.add_parser("list", help="containers and where their consoles listen")
    listing.add_argument("-P", "--lxcpath", help="the lxcpath (default: LXC's)")
    listing.add_argument("--json", action="store_true")
    stop = ops.add_parser("stop-console", help="stop serving a container's console")
    stop.add_argument("name")
    stop.add_argument("-P", "--lxcpath", help="the container's lxcpath (default: LXC's)")


def command(args: argparse.Namespace) -> int:
    from vzvnc.supervisor import vzvnc_home

    home = vzvnc_home()
    if args.op == "hook":
        return hook(args, home)
    lxcpath = os.path.abspath(args.lxcpath) if getattr(args, "lxcpath", None) else None
    lxcpath = lxcpath or default_lxcpath()
    if args.op == "list":
        return list_command(args, home, lxcpath)
    container = Container(args.name, lxcpath)
    run_dir = container.run_dir(home)
    if args.op == "stop-console":
        return stop_console(run_dir, f"lxc container {args.name}")
    refuse_if_served(run_dir, f"lxc container {args.name}")
    settings = console_settings(args.name, container.rootfs(), args)
    if args.op == "serve":
        via = args.via or ("binding" if binding() is not None else "lxc-console")
        console_path = configured_console_path(container) if via == "console-path" else None
        if via == "console-path" and console_path is None:
            raise ConfigError(
                f"via: the config of {args.name} sets no lxc.console.path for vzvnc to make"
            )
        if via != "console-path":
            container.require_running()
        if via == "binding" and binding() is None:
            raise ConfigError("via: the liblxc Python binding (PyPI 'lxc') is not installed")
    if args.detach:
        argv = ["lxc", args.op, args.name, "-P", lxcpath, *forwarded_options(args)]
        if args.op == "serve":
            argv += ["--tty", str(args.tty), "--via", via]
        else:
            for setting in args.define:
                argv += ["-s", setting]
        result = detach(argv, log_path(home, run_dir), run_dir, wait=True)
        result.update(name=args.name, lxcpath=lxcpath)
        print_result(args, result, f"{args.name}: VNC at {result['vnc']}")
        return 0

    def keeper() -> Keeper:
        source: Any
        if args.op == "start":
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            source = StartSource(
                container,
                settings.columns,
                settings.lines,
                list(args.define),
                run_dir.parent / f"{run_dir.name}.lxc-start.log",
            )
        elif via == "console-path":
            assert console_path is not None
            source = PathSource(container, settings.columns, settings.lines, console_path)
        elif via == "binding":
            source = GetfdSource(container, args.tty)
        else:
            source = LxcConsoleSource(container, args.tty, settings.columns, settings.lines)
        extra = {
            "lxcpath": lxcpath,
            "mode": args.op,
            "via": "lxc-start" if args.op == "start" else via,
        }
        return Keeper(KIND, args.name, home, run_dir, settings, source, extra)

    return run_keeper(keeper)


def log_path(home: Path, run_dir: Path) -> Path:
    return run_dir.parent / f"{run_dir.name}.log"


def hook(args: argparse.Namespace, home: Path) -> int:
    """``lxc.hook.start-host`` / ``lxc.hook.post-stop``: never fails the container's start
    or stop (a hook error would abort it); problems go to stderr, which LXC logs."""
    try:
        name = os.environ.get("LXC_NAME") or (args.legacy[0] if args.legacy else "")
        hook_type = os.environ.get("LXC_HOOK_TYPE") or (
            args.legacy[2] if len(args.legacy) >= 3 else ""
        )
        config_file = os.environ.get("LXC_CONFIG_FILE", "")
        if not name or not hook_type or not config_file:
            raise ConfigError("hook: run it from lxc.hook.pre-start, start-host or post-stop")
        lxcpath = str(Path(config_file).resolve().parent.parent)
        run_dir = run_dir_for(home, name, lxcpath)
        container = Container(name, lxcpath)
        if hook_type == "pre-start":
            console_path = configured_console_path(container)
            if console_path is not None and read_status(run_dir) is None:
                argv = ["lxc", "serve", name, "-P", lxcpath, *forwarded_options(args)]
                detach([*argv, "--via", "console-path"], log_path(home, run_dir), run_dir, False)
                wait_for_link(console_path)
        elif hook_type == "start-host":
            if read_status(run_dir) is None:
                argv = ["lxc", "serve", name, "-P", lxcpath, *forwarded_options(args)]
                detach(argv, log_path(home, run_dir), run_dir, wait=False)
        elif hook_type == "post-stop":
            status = read_status(run_dir)
            rebooting = os.environ.get("LXC_TARGET") == "reboot"
            if status is not None and status.get("mode") == "serve" and not rebooting:
                stop_keeper(run_dir)
        else:
            raise ConfigError(f"hook: {hook_type} is not pre-start, start-host or post-stop")
    except VzvncError as exc:
        print(f"vzvnc lxc hook: {exc}", file=sys.stderr)
    return 0


def wait_for_link(path: str, timeout: float = 10.0) -> None:
    """Until the console's keeper has made the link LXC is about to open."""
    deadline = time.monotonic() + timeout
    while not os.path.islink(path):
        if time.monotonic() > deadline:
            raise DomainStateError(f"no console pty appeared at {path}")
        time.sleep(0.02)


def list_command(args: argparse.Namespace, home: Path, lxcpath: str) -> int:
    import json

    served = {
        (row.get("name"), row.get("lxcpath")): row for row in status_rows(hosted_root(home, KIND))
    }
    rows = []
    root = Path(lxcpath)
    names = (
        sorted(p.name for p in root.iterdir() if (p / "config").is_file()) if root.is_dir() else []
    )
    for name in names:
        container = Container(name, lxcpath)
        row = served.get((name, lxcpath), {})
        rows.append(
            {
                "name": name,
                "lxcpath": lxcpath,
                "state": container.state(),
                "vnc": row.get("vnc"),
                "viewers": row.get("viewers", 0),
                "console": row.get("mode"),
                "keeper_pid": row.get("pid"),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'NAME':20} {'STATE':9} {'CONSOLE':8} {'VNC':22} VIEWERS")
        for row in rows:
            print(
                f"{row['name']:20} {row['state']:9} {row['console'] or '-':8} "
                f"{row['vnc'] or '-':22} {row['viewers']}"
            )
    return 0
