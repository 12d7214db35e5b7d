"""Checkpoint and restore of a domain's processes with CRIU (criu.org), version 4.1 or newer.

This module owns how vzvnc runs ``criu``: finding a binary that works on this
kernel, the command lines for dumping a frozen domain and restoring it on a new
console pty, and turning CRIU's failures into one readable error.

Why 4.1: kernels from 6.13 on split the vvar mapping, and older CRIU (Debian 12
ships 3.17) stops at "Unexpected rt vDSO area bounds". ``tools/build-criu``
builds 4.1.1 into ``/usr/local/sbin``.

What the command lines rely on (found by trying, see the project's kernel notes):

- The console is a pty whose master the controller holds, outside the dumped
  tree. It is declared external (``--external tty[RDEV:DEV]``, the slave's
  device numbers) and handed back at restore as an inherited fd of the new
  pty's slave (``--inherit-fd fd[N]:tty[RDEV:DEV]``). The container's
  ``/dev/console`` is a bind mount of that slave: external too, mapped to the
  new slave's path at restore. ``/dev/tty`` in the container is a symlink to
  the console (see ``launcher``), or CRIU refuses to dump a shell.
- CRIU does not save bytes queued in an external tty: the controller drains
  the pty after freezing and before dumping.
- The domain is frozen by the controller before the dump and CRIU is told its
  freezer cgroup; the restored tasks come back frozen, and the caller thaws
  them once everything else is in place.
- ``--leave-running``: a dump does not kill the domain, so a save or migration
  that fails later can still resume it where it was.
- Cgroup paths are recorded in the images; ``--cgroup-root`` puts the restored
  tasks under the restoring home's own cgroups.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vzvnc.errors import VzvncError

MIN_VERSION = (4, 1)
# Where tools/build-criu installs it: preferred over a distribution's older one on PATH.
CANDIDATES = ("/usr/local/sbin/criu",)
DUMP_TIMEOUT = 120.0
RESTORE_TIMEOUT = 120.0
# A checkpoint's own record of what the restore needs (next to CRIU's images).
CONSOLE_RECORD = "vzvnc-console.json"

_VERSION_RE = re.compile(rb"Version:\s*(\d+)\.(\d+)")


class CriuError(VzvncError):
    """CRIU is missing, too old, or a dump or restore failed (the message says which)."""

    exit_code = os.EX_UNAVAILABLE


@dataclass(frozen=True)
class ConsoleTty:
    """The console pty slave as CRIU names it: its device number and the devpts
    instance it lives on."""

    rdev: int
    dev: int

    @classmethod
    def of(cls, path: str) -> ConsoleTty:
        info = os.stat(path)
        return cls(info.st_rdev, info.st_dev)

    @property
    def key(self) -> str:
        return f"tty[{self.rdev:x}:{self.dev:x}]"


@dataclass(frozen=True)
class CheckpointRecord:
    """What vzvnc notes next to CRIU's images: where the console output stood and which
    pty the dumped tasks knew as their console."""

    name: str
    offset: int
    console: ConsoleTty
    paused: bool = False
    """Suspended by its user when checkpointed: it comes back suspended."""


MAX_RECORD_BYTES = 4096


def read_record(images: Path) -> CheckpointRecord:
    """The checkpoint's record, strictly checked (it may have crossed a network)."""
    path = images / CONSOLE_RECORD
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            raw = f.read(MAX_RECORD_BYTES + 1)
    except OSError as exc:
        raise CriuError(f"checkpoint {images} has no usable {CONSOLE_RECORD}: {exc}") from None
    try:
        if len(raw) > MAX_RECORD_BYTES:
            raise ValueError("too large")
        data = json.loads(raw)
        console = data["console"]
        values = (data["offset"], console["rdev"], console["dev"])
        if data.get("version") != 1 or not isinstance(data.get("name"), str):
            raise ValueError("unknown version")
        if not all(type(v) is int and 0 <= v < 1 << 63 for v in values):
            raise ValueError("bad numbers")
    except (ValueError, KeyError, TypeError) as exc:
        raise CriuError(f"checkpoint {images}: {CONSOLE_RECORD} is not valid ({exc})") from None
    paused = data.get("paused", False)
    if not isinstance(paused, bool):
        raise CriuError(f"checkpoint {images}: {CONSOLE_RECORD} is not valid (paused)")
    return CheckpointRecord(data["name"], values[0], ConsoleTty(values[1], values[2]), paused)


def _version(path: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION_RE.search(out)
    return (int(match.group(1)), int(match.group(2))) if match else None


def find_criu() -> str:
    """The path of a CRIU that can checkpoint here; ``CriuError`` saying what to install."""
    candidates = [*CANDIDATES]
    on_path = shutil.which("criu")
    if on_path:
        candidates.append(on_path)
    found = []
    for path in candidates:
        if not os.access(path, os.X_OK):
            continue
        version = _version(path)
        if version is not None and version >= MIN_VERSION:
            return path
        found.append(f"{path} ({'.'.join(map(str, version)) if version else 'unknown version'})")
    have = f"; found only {', '.join(found)}" if found else ""
    raise CriuError(
        "saving and live migration need CRIU 4.1 or newer (Debian 12's 3.17 fails on this "
        f"kernel){have}: run tools/build-criu from the vzvnc source, or install criu >= 4.1. "
        "Suspend, resume and cold migration work without it."
    )


def dump_argv(
    criu: str, init_pid: int, images: Path, console: ConsoleTty, freezer: str | None, log: Path
) -> list[str]:
    argv = [
        criu,
        "dump",
        "--tree",
        str(init_pid),
        "--images-dir",
        str(images),
        "--log-file",
        str(log),
        "-v4",
        "--leave-running",
        "--external",
        console.key,
        "--external",
        "mnt[/dev/console]:console",
        "--manage-cgroups=soft",
        "--network-lock",
        "skip",
    ]
    if freezer is not None:
        argv += ["--freeze-cgroup", freezer]
    return argv


def restore_argv(
    criu: str,
    images: Path,
    rootfs: str,
    old_console: ConsoleTty,
    slave_fd: int,
    slave_path: str,
    pidfile: Path,
    cgroup_roots: list[str],
    log: Path,
) -> list[str]:
    argv = [
        criu,
        "restore",
        "--images-dir",
        str(images),
        "--log-file",
        str(log),
        "-v4",
        "--restore-detached",
        "--pidfile",
        str(pidfile),
        "--root",
        rootfs,
        "--inherit-fd",
        f"fd[{slave_fd}]:{old_console.key}",
        "--external",
        f"mnt[console]:{slave_path}",
        "--manage-cgroups=soft",
        "--network-lock",
        "skip",
    ]
    for root in cgroup_roots:
        argv += ["--cgroup-root", root]
    return argv


def run(
    argv: list[str], log: Path, what: str, timeout: float, pass_fds: tuple[int, ...] = ()
) -> None:
    """Run CRIU; ``CriuError`` with the log's own error lines when it fails."""
    try:
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
            timeout=timeout,
            check=False,
            cwd="/",
        )
    except subprocess.TimeoutExpired:
        raise CriuError(f"criu {what} did not finish in {timeout:.0f} s") from None
    except OSError as exc:
        raise CriuError(f"cannot run criu: {exc}") from None
    if result.returncode != 0:
        reason = _errors(log) or result.stderr.decode(errors="replace").strip()
        raise CriuError(
            f"criu {what} failed (exit {result.returncode}): {reason or 'no reason given'}"
            f" (full log: {log})"
        )


def _errors(log: Path) -> str:
    """The lines of a CRIU log that say what went wrong, minus the harmless ones."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    lines = [
        line.strip()
        for line in text.splitlines()
        if "Error" in line and "RLIMIT_NOFILE" not in line
    ]
    return " | ".join(lines[-4:])[:2000]
