"""The run-time container API: what a container is (``ContainerSpec``) and the kernel calls.

This module owns the contract between a controller and the kernel:

- ``ContainerSpec``, the complete run-time description of one container
  (no files at this level), with strict validation and a JSON form that is
  how the spec crosses into the launcher;
- ``set_child_subreaper``, so that the caller becomes init's parent once the
  launcher has exited;
- the thin ctypes layer over libc for the calls Python 3.11 lacks (unshare,
  mount, umount2, pivot_root, sethostname, prctl), used by the launcher.

Starting a container (``start_container``) is ``container.py``'s.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vzvnc.domain.names import NAME_RE
from vzvnc.errors import ConfigError

# -- the spec -----------------------------------------------------------------------------

DEFAULT_ENV: tuple[tuple[str, str], ...] = (
    ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    ("TERM", "xterm-256color"),
    ("HOME", "/root"),
)

# The kernel takes any 64 bytes; we take what resolvers and prompts can show.
HOSTNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
ENV_NAME_RE = re.compile(r"[^=\0]+")
_FIELDS = ("name", "rootfs", "init", "hostname", "env", "new_net")


def _spec_error(field: str, problem: str) -> ConfigError:
    return ConfigError(f"container spec: {field}: {problem}")


@dataclass(frozen=True)
class ContainerSpec:
    """Everything the kernel layer needs to start one container.

    Construction validates every field and raises ``ConfigError`` naming the
    bad one; lists given for ``init``/``env`` are stored as tuples.
    """

    name: str
    rootfs: str
    """Absolute path of the root filesystem directory."""
    init: tuple[str, ...]
    """argv of init inside the container; argv[0] is an absolute path or a name looked up in
    the container's PATH (from ``env``)."""
    hostname: str
    env: tuple[tuple[str, str], ...] = DEFAULT_ENV
    """The whole environment of init; nothing of the host's leaks in."""
    new_net: bool = False
    """A new network namespace with only loopback (up)."""

    def __post_init__(self) -> None:
        # Callers build specs from TOML and argv, so lists are accepted and frozen here.
        if isinstance(self.init, list):
            object.__setattr__(self, "init", tuple(self.init))
        if isinstance(self.env, list):
            object.__setattr__(
                self, "env", tuple(tuple(p) if isinstance(p, list) else p for p in self.env)
            )
        self._validate()

    def _validate(self) -> None:
        if not isinstance(self.name, str) or not NAME_RE.fullmatch(self.name):
            raise _spec_error(
                "name", f"{self.name!r} is not 1-64 of [A-Za-z0-9_.-] starting alphanumeric"
            )
        if not isinstance(self.rootfs, str) or not self.rootfs.startswith("/"):
            raise _spec_error("rootfs", f"{self.rootfs!r} is not an absolute path")
        if "\0" in self.rootfs:
            raise _spec_error("rootfs", "contains a NUL byte")
        if os.path.normpath(self.rootfs) == "/":
            raise _spec_error("rootfs", "the host's / cannot be a container's root")
        if not isinstance(self.init, tuple) or not self.init:
            raise _spec_error("init", "must be a non-empty list of strings")
        for arg in self.init:
            if not isinstance(arg, str):
                raise _spec_error("init", f"{arg!r} is not a string")
            if "\0" in arg:
                raise _spec_error("init", f"{arg!r} contains a NUL byte")
        program = self.init[0]
        if not program or ("/" in program and not program.startswith("/")):
            raise _spec_error(
                "init", f"{program!r}: argv[0] must be an absolute path or a bare command name"
            )
        if not isinstance(self.hostname, str) or not HOSTNAME_RE.fullmatch(self.hostname):
            raise _spec_error("hostname", f"{self.hostname!r} is not 1-64 of [A-Za-z0-9_.-]")
        if not isinstance(self.env, tuple):
            raise _spec_error("env", "must be a list of [name, value] pairs")
        seen: set[str] = set()
        for pair in self.env:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise _spec_error("env", f"{pair!r} is not a [name, value] pair")
            key, value = pair
            if not isinstance(key, str) or not ENV_NAME_RE.fullmatch(key):
                raise _spec_error("env", f"{key!r} is not a variable name")
            if not isinstance(value, str) or "\0" in value:
                raise _spec_error("env", f"{key}: value must be a string without NUL bytes")
            if key in seen:
                raise _spec_error("env", f"{key} is set twice")
            seen.add(key)
        if not isinstance(self.new_net, bool):
            raise _spec_error("new_net", f"{self.new_net!r} is not true or false")

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "rootfs": self.rootfs,
                "init": list(self.init),
                "hostname": self.hostname,
                "env": [list(pair) for pair in self.env],
                "new_net": self.new_net,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ContainerSpec:
        """Parse ``to_json``'s output; anything else is refused with a ``ConfigError``."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"container spec: not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError("container spec: not a JSON object")
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise _spec_error(unknown[0], "unknown field")
        for required in ("name", "rootfs", "init", "hostname"):
            if required not in data:
                raise _spec_error(required, "missing")
        init = data["init"]
        if not isinstance(init, list):
            raise _spec_error("init", "must be a list of strings")
        env: Any = DEFAULT_ENV
        if "env" in data:
            raw_env = data["env"]
            if not isinstance(raw_env, list) or not all(isinstance(p, list) for p in raw_env):
                raise _spec_error("env", "must be a list of [name, value] pairs")
            env = tuple(tuple(p) for p in raw_env)
        return cls(
            name=data["name"],
            rootfs=data["rootfs"],
            init=tuple(init),
            hostname=data["hostname"],
            env=env,
            new_net=data.get("new_net", False),
        )


# -- libc -------------------------------------------------------------------------------

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MNT_DETACH = 0x2

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
PR_CAPBSET_DROP = 24
PR_SET_MEMORY_MERGE = 67  # Linux 6.4

# pivot_root has no libc wrapper; its number depends on the architecture.
_SYS_PIVOT_ROOT = {
    "x86_64": 155,
    "aarch64": 41,
    "riscv64": 41,
    "loongarch64": 41,
    "i386": 217,
    "i686": 217,
    "armv7l": 218,
    "armv6l": 218,
    "ppc64le": 203,
    "s390x": 217,
}

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        # glibc's soname first: find_library runs ldconfig or a compiler, which costs
        # the launcher more than everything else it does.
        try:
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        except OSError:
            _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return _libc


def _check(result: int, what: str) -> None:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _path(p: str | Path) -> bytes:
    return os.fsencode(p)


def unshare(flags: int) -> None:
    _check(_lib().unshare(ctypes.c_int(flags)), "unshare")


def mount(
    source: str | Path | None,
    target: str | Path,
    fstype: str | None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    rc = _lib().mount(
        _path(source) if source is not None else None,
        _path(target),
        fstype.encode() if fstype is not None else None,
        ctypes.c_ulong(flags),
        data.encode() if data is not None else None,
    )
    _check(rc, f"mount {fstype or source or ''} on {target}")


def umount2(target: str | Path, flags: int = 0) -> None:
    _check(_lib().umount2(_path(target), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root: str | Path, put_old: str | Path) -> None:
    number = _SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(0, f"pivot_root: unknown system call number on {platform.machine()}")
    rc = _lib().syscall(ctypes.c_long(number), _path(new_root), _path(put_old))
    _check(rc, "pivot_root")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_lib().sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


def prctl(option: int, arg2: int = 0) -> int:
    rc: int = _lib().prctl(
        ctypes.c_int(option),
        ctypes.c_ulong(arg2),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
    )
    _check(rc, "prctl")
    return rc


def set_child_subreaper() -> None:
    """Become the parent of orphaned descendants, so a container's init is ours to reap
    once its launcher exits."""
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def set_memory_merge(enabled: bool) -> bool:
    """Offer all this process's anonymous memory, and its children's, to the kernel's
    same-page merging (KSM), or (False) take it back; False if the kernel cannot.

    It is inherited over fork and, since Linux 6.7, over exec. Merging happens only
    while the host runs ksmd (``/sys/kernel/mm/ksm/run``)."""
    try:
        prctl(PR_SET_MEMORY_MERGE, int(enabled))
    except OSError:
        return False
    return True


def release_free_heap() -> None:
    """Give the pages of free heap memory back to the kernel (glibc ``malloc_trim``):
    a forked process's frees leave copied pages it no longer uses."""
    _lib().malloc_trim(ctypes.c_size_t(0))


def is_child_subreaper() -> bool:
    flag = ctypes.c_int(0)
    rc = _lib().prctl(
        ctypes.c_int(PR_GET_CHILD_SUBREAPER),
        ctypes.byref(flag),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
    )
    _check(rc, "prctl")
    return bool(flag.value)
