"""The run-time container API: what a container is (``ContainerSpec``) and how one starts.

This module owns the contract between a controller and the kernel:

- ``ContainerSpec``, the complete run-time description of one container
  (no files at this level), with strict validation and a JSON form that is
  how the spec crosses into the launcher;
- ``start_container``, which runs a fresh ``python -m vzvnc.domain.launcher``
  (a single-threaded process, so forking into new namespaces is safe whatever
  threads the caller has) and waits for its report: the host pid of the
  container's init, or a message saying what went wrong;
- ``set_child_subreaper``, so that the caller becomes init's parent once the
  launcher has exited;
- the thin ctypes layer over libc for the calls Python 3.11 lacks (unshare,
  mount, umount2, pivot_root, sethostname, prctl), used by the launcher;
- ``DomainError``, raised when a container or its cgroups cannot be set up.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import platform
import re
import select
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vzvnc.childsignals import reset_for_exec
from vzvnc.domain.cgroups import Cgroups
from vzvnc.domain.names import NAME_RE
from vzvnc.errors import ConfigError, DomainError

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


# -- starting a container --------------------------------------------------------------

# How long a launcher may take from spawn to init's exec.
START_TIMEOUT = 15.0
# Bytes of launcher stderr kept for an error message (a Python traceback, say).
STDERR_LIMIT = 8192


def _package_root() -> str:
    """The directory holding the ``vzvnc`` package, for the launcher's PYTHONPATH."""
    return str(Path(__file__).resolve().parents[2])


def _read_until_eof(fds: Sequence[int], deadline: float) -> tuple[dict[int, bytes], bool]:
    """Read every fd to EOF or until ``deadline``; returns the data and whether all ended."""
    data = {fd: b"" for fd in fds}
    poller = select.poll()  # not select(): the caller's fds may be numbered past 1024
    for fd in fds:
        poller.register(fd, select.POLLIN)
    open_fds = set(fds)
    while open_fds:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return data, False
        for fd, _ in poller.poll(remaining * 1000):
            chunk = os.read(fd, 65536)
            if chunk:
                if len(data[fd]) < 1 << 20:
                    data[fd] += chunk
            else:
                poller.unregister(fd)
                open_fds.discard(fd)
    return data, True


def _reap_strays(pid: int | None, cgroups: Cgroups | None) -> None:
    """Kill and reap whatever a failed start left behind: init (if reported) and the cgroup."""
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if cgroups is not None:
        with contextlib.suppress(DomainError):
            cgroups.kill_all()
    if pid is not None:
        # It is ours to reap only if we are its subreaper; otherwise the host's init reaps it.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            time.sleep(0.01)


def _preflight(spec: ContainerSpec, console_slave_fd: int) -> None:
    """The checks that need no launcher, so the common mistakes fail fast and clearly."""
    try:
        st = os.stat(spec.rootfs)
    except FileNotFoundError:
        raise DomainError(f"rootfs {spec.rootfs} does not exist") from None
    except OSError as exc:
        raise DomainError(f"rootfs {spec.rootfs}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise DomainError(f"rootfs {spec.rootfs} is not a directory")
    if not os.isatty(console_slave_fd):
        raise DomainError(f"console fd {console_slave_fd} is not a terminal")


def launcher_argv(
    spec: ContainerSpec, console_fd: int, status_fd: int, cgroup_dirs: Iterable[str]
) -> list[str]:
    argv = [
        sys.executable,
        # No site: it only costs start-up time, and no .pth or sitecustomize hook
        # should run in what becomes the container's init.
        "-S",
        "-m",
        "vzvnc.domain.launcher",
        "--console-fd",
        str(console_fd),
        "--status-fd",
        str(status_fd),
    ]
    for directory in cgroup_dirs:
        argv += ["--cgroup", directory]
    argv += ["--spec", spec.to_json()]
    return argv


def _single_threaded() -> bool:
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


class ForkedLauncher:
    """The launcher as a fork of this process, which must have one thread: the same
    ``launcher.launch`` as ``python -m vzvnc.domain.launcher`` runs, without starting
    an interpreter (about 40 ms of CPU, per domain, when many start at once).

    The fork keeps only stdio (stdin and stdout on /dev/null, stderr to our pipe), the
    console and the status pipe, and the default signal dispositions: what the exec'd
    launcher would have. The little of ``subprocess.Popen`` that ``start_container``
    uses."""

    def __init__(
        self, spec: ContainerSpec, console_fd: int, status_fd: int, cgroup_dirs: list[str]
    ) -> None:
        from vzvnc.domain import launcher

        stderr_r, stderr_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the fork; its outcome is what is tested
            code = 1
            try:
                signal.set_wakeup_fd(-1)  # an event loop's, which is not ours to write
                reset_for_exec()
                null = os.open(os.devnull, os.O_RDWR)
                os.dup2(null, 0)
                os.dup2(null, 1)
                os.dup2(stderr_w, 2)
                keep = {0, 1, 2, console_fd, status_fd}
                for fd in sorted(int(name) for name in os.listdir("/proc/self/fd")):
                    if fd not in keep:
                        with contextlib.suppress(OSError):
                            os.close(fd)
                os.chdir("/")
                code = launcher.launch(spec, console_fd, cgroup_dirs, status_fd)
            except BaseException as exc:
                with contextlib.suppress(BaseException):
                    os.write(2, f"launcher: {type(exc).__name__}: {exc}\n".encode())
            os._exit(code)
        os.close(stderr_w)
        self.stderr = os.fdopen(stderr_r, "rb")
        self.returncode: int | None = None

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            pid, status = os.waitpid(self.pid, 0 if deadline is None else os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
            elif deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"launcher {self.pid}", timeout or 0)
            else:
                time.sleep(0.002)
        return self.returncode


def start_container(spec: ContainerSpec, console_slave_fd: int, cgroups: Cgroups | None) -> int:
    """Start the container and return the host pid of its init (already exec'd).

    ``console_slave_fd`` is the slave of the console pty; it becomes init's
    ``/dev/console``, controlling tty and stdio. With ``cgroups``, everything
    in the container is in them from its first instruction.

    Call ``set_child_subreaper()`` first to be init's parent (and reap it):
    the launcher exits once init runs. On failure, ``DomainError`` carries the
    launcher's message and nothing started is left running; the cgroups
    themselves stay, emptied, for their owner to remove.
    """
    _preflight(spec, console_slave_fd)
    status_r, status_w = os.pipe()
    cgroup_dirs = list(cgroups.paths) if cgroups is not None else []
    try:
        try:
            proc: subprocess.Popen[bytes] | ForkedLauncher
            if _single_threaded():
                proc = ForkedLauncher(spec, console_slave_fd, status_w, cgroup_dirs)
            else:
                proc = subprocess.Popen(
                    launcher_argv(spec, console_slave_fd, status_w, cgroup_dirs),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    close_fds=True,
                    pass_fds=(console_slave_fd, status_w),
                    cwd="/",
                    # Only what the launcher needs; PYTHONSAFEPATH keeps a cwd 'vzvnc' out.
                    env={
                        "PYTHONPATH": _package_root(),
                        "PYTHONSAFEPATH": "1",
                        "LC_ALL": "C.UTF-8",
                    },
                )
        except OSError as exc:
            raise DomainError(f"cannot run the container launcher: {exc}") from None
        finally:
            os.close(status_w)
        assert proc.stderr is not None
        stderr_fd = proc.stderr.fileno()
        try:
            data, finished = _read_until_eof(
                [status_r, stderr_fd], time.monotonic() + START_TIMEOUT
            )
        except BaseException:
            # Interrupted (a signal in the caller, say): take down what was started.
            proc.kill()
            proc.wait()
            if cgroups is not None:
                with contextlib.suppress(DomainError):
                    cgroups.kill_all()
            raise
        finally:
            proc.stderr.close()
    finally:
        os.close(status_r)

    pid: int | None = None
    outcome: str | None = None
    for line in data[status_r].decode(errors="replace").splitlines():
        word, _, rest = line.partition(" ")
        if word == "pid" and rest.isdigit():
            pid = int(rest)
        elif word in ("ok", "error"):
            outcome = line

    if not finished:
        proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - a launcher stuck in the kernel
        proc.kill()
        proc.wait()

    if finished and outcome == "ok" and pid is not None and proc.returncode == 0:
        return pid

    _reap_strays(pid, cgroups)
    if not finished:
        raise DomainError(
            f"container {spec.name}: the launcher did not start init within {START_TIMEOUT:.0f} s"
        )
    if outcome is not None and outcome.startswith("error "):
        raise DomainError(f"container {spec.name}: {outcome[len('error ') :]}")
    stderr = data[stderr_fd][-STDERR_LIMIT:].decode(errors="replace").strip()
    returncode = proc.returncode if proc.returncode is not None else 1
    if returncode < 0:
        how = f"was killed by {signal.Signals(-returncode).name}"
        if returncode == -signal.SIGKILL and cgroups is not None:
            how += " (is the memory limit too small to start anything?)"
    else:
        how = f"failed with exit status {proc.returncode}"
    detail = f": {stderr.splitlines()[-1]}" if stderr else ""
    raise DomainError(f"container {spec.name}: the launcher {how}{detail}")
