"""What the LXC and libvirt commands share: options, the console server's settings,
running a keeper in the foreground or detached, and the pty checks for resizing."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from vzvnc.domain.config import DomainConfig
from vzvnc.domain.config import parse_listen as parse_domain_listen
from vzvnc.errors import ConfigError, DomainStateError
from vzvnc.hosted.keeper import Keeper, console_name, read_status, stop_keeper, wait_for_address
from vzvnc.term.pty import set_window_size

log = logging.getLogger(__name__)

# Unix98 pty slaves (/dev/pts/N) have these majors (Documentation/admin-guide/devices.txt).
PTY_SLAVE_MAJORS = range(136, 144)
# openat2(2): one syscall number on every architecture (Linux 5.6+).
SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        default="127.0.0.1:auto",
        metavar="HOST:PORT",
        help="VNC address (default 127.0.0.1:auto, the first free port from 5900)",
    )
    parser.add_argument("--password-file", metavar="FILE", help="file holding the VNC password")
    parser.add_argument(
        "--view-only-password-file", metavar="FILE", help="file holding a view-only password"
    )
    parser.add_argument("--size", default="80x25", metavar="COLSxROWS", help="terminal size")
    parser.add_argument(
        "--detach", action="store_true", help="serve in the background; print where, then return"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def forwarded_options(args: argparse.Namespace) -> list[str]:
    """The serve options of ``args`` again, for a console started in the background."""
    options = ["--listen", args.listen, "--size", args.size]
    if args.password_file:
        options += ["--password-file", os.path.abspath(args.password_file)]
    if args.view_only_password_file:
        options += ["--view-only-password-file", os.path.abspath(args.view_only_password_file)]
    return options


def console_settings(name: str, rootfs: str | None, args: argparse.Namespace) -> DomainConfig:
    """The console server's settings for a hosted container (a domain file it reads)."""
    from vzvnc.config import parse_size

    host, port = parse_domain_listen(args.listen)
    columns, lines = parse_size(args.size)
    if not rootfs or not rootfs.startswith("/") or os.path.normpath(rootfs) == "/":
        rootfs = "/nonexistent"  # only suspend writes there, and hosted consoles are not suspended
    return DomainConfig(
        name=console_name(name),
        rootfs=rootfs,
        columns=columns,
        lines=lines,
        listen_host=host,
        listen_port=port,
        password_file=_absolute(args.password_file),
        view_only_password_file=_absolute(args.view_only_password_file),
    )


def _absolute(path: str | None) -> str | None:
    return os.path.abspath(path) if path else None


def refuse_if_served(run_dir: Path, what: str) -> None:
    """One console per container: a second one is refused, naming the first."""
    existing = read_status(run_dir)
    if existing is not None:
        raise DomainStateError(
            f"the console of {what} is already served "
            f"(pid {existing['pid']}, VNC at {existing.get('vnc') or 'starting'})"
        )


def stop_console(run_dir: Path, what: str) -> int:
    """``stop-console``: end the keeper of one container's console."""
    if not stop_keeper(run_dir):
        raise DomainStateError(f"no console is served for {what}")
    print(f"{what}: console stopped")
    return 0


def run_keeper(keeper_factory: Any) -> int:
    """Run a keeper in this process's own loop until its container is gone."""
    import uvloop

    async def main() -> int:
        keeper: Keeper = keeper_factory()
        return await keeper.run()

    return int(uvloop.run(main()))


def detach(argv: list[str], log_path: Path, run_dir: Path, wait: bool) -> dict[str, Any]:
    """Start ``vzvnc ARGV`` in a session of its own, detached from ours (a hook's child
    must not hold the hook's stdout); with ``wait``, until it serves."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "vzvnc", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
            close_fds=True,
        )
    if not wait:
        return {"pid": process.pid, "vnc": None}
    address = wait_for_address(run_dir, process.pid)
    if address is None:
        code = process.poll()
        last = _last_line(log_path)
        raise ConfigError(f"the console did not start ({last or f'exit {code}'}); see {log_path}")
    return {"pid": process.pid, "vnc": address}


def _last_line(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return lines[-1].split(": ", 1)[-1]
    return ""


def print_result(args: argparse.Namespace, result: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps(result))
    else:
        print(text)


def status_rows(root: Path) -> list[dict[str, Any]]:
    """Every live keeper under ``root`` (one kind)."""
    rows = []
    if root.is_dir():
        for run_dir in sorted(root.iterdir()):
            if run_dir.is_dir():
                status = read_status(run_dir)
                if status is not None:
                    rows.append(status)
    return rows


def resize_container_tty(pid: int, columns: int, lines: int, tty: str = "dev/console") -> None:
    """Set the window size of a tty as a container's processes see it.

    LXC and libvirt relay between our pty and one inside the container, and pass no
    size on: the inner one is set here. ``tty`` is its path in the container
    (``dev/console``, ``dev/tty1``); the container's root owns that tree, so the path
    is resolved inside its root with no symlink followed (openat2), then must be a pty
    slave. Init's fd 0 is tried first: under libvirt it is that pty.
    """
    with contextlib.suppress(OSError):
        _set_size(_open_pty(f"/proc/{pid}/fd/0"), columns, lines)
        return
    root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        how = _OpenHow(
            os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC,
            0,
            RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        )
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.syscall(SYS_OPENAT2, root, tty.encode(), ctypes.byref(how), ctypes.sizeof(how))
        if fd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"{os.strerror(errno)}: /{tty} of pid {pid}")
    finally:
        os.close(root)
    _set_size(_checked_pty(fd, f"/{tty} of pid {pid}"), columns, lines)


def _open_pty(path: str) -> int:
    """``path`` (a /proc fd link) opened only if it is a pty slave, and checked again once open."""
    before = os.stat(path)
    if not stat.S_ISCHR(before.st_mode) or os.major(before.st_rdev) not in PTY_SLAVE_MAJORS:
        raise OSError(f"{path} is not a pty")
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    if os.fstat(fd).st_rdev != before.st_rdev:
        os.close(fd)
        raise OSError(f"{path} changed while it was opened")
    return _checked_pty(fd, path)


def _checked_pty(fd: int, what: str) -> int:
    info = os.fstat(fd)
    if not stat.S_ISCHR(info.st_mode) or os.major(info.st_rdev) not in PTY_SLAVE_MAJORS:
        os.close(fd)
        raise OSError(f"{what} is not a pty")
    return fd


def _set_size(fd: int, columns: int, lines: int) -> None:
    try:
        set_window_size(fd, columns, lines)
    finally:
        os.close(fd)
