"""The container launcher: a fresh, single-threaded process that becomes a container's init.

``container.start_container`` forks it (``container.ForkedLauncher``) when the caller has one
thread, as a controller does, or else runs ``python -m vzvnc.domain.launcher``,
and reads its report on the status fd, one line each:

    pid <host pid of init>      as soon as init's process exists
    ok                          init has exec'd
    error <message>             nothing is left running (init was reaped)

The launcher joins the domain's cgroups, unshares the pid namespace and forks:
the child is pid 1 of the new namespace. The child unshares the mount, UTS,
IPC, cgroup (and optionally network) namespaces itself, builds the container's
mounts under the root filesystem, pivots into it, takes the console as its
controlling tty and stdio, closes every other fd and execs init with the
spec's environment only. Anything that fails before exec is written to a
close-on-exec pipe, so the launcher learns "exec happened" from a bare EOF and
"this went wrong" from a message. The launcher then exits 0 and init is
re-parented to the nearest subreaper: the controller.

Why never a fork of a threaded process: it leaves locks held by other threads
locked forever in the child; the launcher has one thread.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import resource
import socket
import stat
import struct
import termios
from collections.abc import Sequence
from typing import NoReturn

from vzvnc.childsignals import reset_for_exec
from vzvnc.domain import kernel
from vzvnc.domain.kernel import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUTS,
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    ContainerSpec,
)
from vzvnc.errors import VzvncError

# Device nodes a container gets in its /dev, made with the host's device numbers.
DEVICES = ("null", "zero", "full", "random", "urandom")
DEV_LINKS = (
    # /dev/tty reaches the console, not the host's /dev/tty device: CRIU refuses to
    # checkpoint a task holding /dev/tty whose controlling pty's master lives outside
    # the container, and shells open it for job control. The cost: a program on
    # another pty inside the container that opens /dev/tty gets the console.
    ("tty", "console"),
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
)
# Capabilities no container should wield over the shared kernel even by accident:
# loading modules, raw I/O ports, setting the host clock, LSM policy.
DROPPED_CAPS = (16, 17, 25, 32, 33)  # SYS_MODULE, SYS_RAWIO, SYS_TIME, MAC_OVERRIDE, MAC_ADMIN

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFREQ_SIZE = 40


class SetupError(Exception):
    """A problem with the container's setup, worded for the person who defined it."""


# -- the child: pid 1 of the new pid namespace ------------------------------------------


def _rootfs_dir(root: str, relative: str) -> str:
    """``root/relative``, a directory the root filesystem must have. Missing ones are not
    created: a rootfs without /proc is more likely a wrong path than a root filesystem."""
    path = os.path.join(root, relative)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise SetupError(f"rootfs {root} has no /{relative}: is it a root filesystem?") from None
    # A symlink would resolve against the host's root, not the container's.
    if stat.S_ISLNK(st.st_mode):
        raise SetupError(f"rootfs {root}: /{relative} is a symlink; it must be a real directory")
    if not stat.S_ISDIR(st.st_mode):
        raise SetupError(f"rootfs {root}: /{relative} is not a directory")
    return path


def _dev_node(dev: str, name: str, *, directory: bool = False, mode: int = 0o666) -> str:
    """A mount point in the container's /dev (our tmpfs, so creating it is ours to do)."""
    path = os.path.join(dev, name)
    if directory:
        os.mkdir(path, mode)
        os.chmod(path, mode)  # past the umask
    else:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode))
    return path


def _read_only_bind(path: str) -> None:
    kernel.mount(path, path, None, MS_BIND | MS_REC)
    kernel.mount(
        None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    )


def _mount_proc_and_sys(root: str) -> None:
    proc = _rootfs_dir(root, "proc")
    kernel.mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # Host-wide knobs live here; read-only keeps a container from changing the host
    # by accident (not a security boundary: the container still has CAP_SYS_ADMIN).
    for knob in ("sys", "sysrq-trigger"):
        path = os.path.join(proc, knob)
        if os.path.exists(path):
            _read_only_bind(path)
    sys_dir = _rootfs_dir(root, "sys")
    kernel.mount("sysfs", sys_dir, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _mount_dev(root: str, console_fd: int) -> None:
    dev = _rootfs_dir(root, "dev")
    kernel.mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k")
    for name in DEVICES:
        host = f"/dev/{name}"
        try:
            info = os.stat(host)
        except OSError:
            raise SetupError(f"the host has no {host} to give the container") from None
        if not stat.S_ISCHR(info.st_mode):
            raise SetupError(f"the host's {host} is not a character device")
        # Nodes of our own tmpfs, with the host's numbers: a checkpoint holds them as
        # part of /dev, where bind mounts of the host's would be mounts from outside.
        os.mknod(os.path.join(dev, name), stat.S_IFCHR | 0o666, info.st_rdev)
        os.chmod(os.path.join(dev, name), 0o666)
    pts = _dev_node(dev, "pts", directory=True, mode=0o755)
    # A private instance: the container's ptys are its own, numbered from 0, and
    # invisible to the host's /dev/pts. gid 5 is "tty" by convention.
    kernel.mount(
        "devpts", pts, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620,gid=5"
    )
    shm = _dev_node(dev, "shm", directory=True, mode=0o1777)
    kernel.mount("shm", shm, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for name, target in DEV_LINKS:
        os.symlink(target, os.path.join(dev, name))
    # The host's console pty slave, by name: a bind mount's source must be in our own
    # mount namespace, which rules out the fd itself (/proc/self/fd/N resolves into the
    # namespace the fd was opened in). ttyname checks the name is the fd's device.
    try:
        console_name = os.ttyname(console_fd)
    except OSError as exc:
        raise SetupError(f"the console fd has no name in /dev: {exc.strerror}") from None
    console = _dev_node(dev, "console", mode=0o600)
    kernel.mount(console_name, console, None, MS_BIND)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0).ljust(IFREQ_SIZE, b"\0")
        reply = fcntl.ioctl(sock, SIOCGIFFLAGS, request)
        flags = struct.unpack_from("16sH", reply)[1] | IFF_UP
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags).ljust(IFREQ_SIZE, b"\0"))


def _enter_root(root: str) -> None:
    # pivot_root(".", ".") stacks the old root on top of the new one; detaching it
    # leaves the new root alone, with no directory needed inside it for the old one.
    os.chdir(root)
    kernel.pivot_root(".", ".")
    kernel.umount2(".", MNT_DETACH)
    os.chdir("/")


def _take_console() -> None:
    os.setsid()
    fd = os.open("/dev/console", os.O_RDWR | os.O_NOCTTY)
    try:
        fcntl.ioctl(fd, termios.TIOCSCTTY, 0)
    except OSError as exc:
        raise SetupError(
            f"the console pty cannot become init's controlling tty ({exc.strerror}); "
            "is it another session's controlling tty?"
        ) from None
    for target in (0, 1, 2):
        os.dup2(fd, target)
    if fd > 2:
        os.close(fd)


def _find_program(spec: ContainerSpec, env: dict[str, str]) -> str:
    program = spec.init[0]
    if "/" in program:
        if not os.path.lexists(program):
            raise SetupError(f"rootfs {spec.rootfs} has no {program}")
        if not os.path.exists(program):
            raise SetupError(f"rootfs {spec.rootfs}: {program} is a dangling symlink")
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            raise SetupError(f"rootfs {spec.rootfs}: {program} is not an executable file")
        return program
    search = env.get("PATH", "")
    for directory in search.split(":"):
        candidate = os.path.join(directory or ".", program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise SetupError(f"rootfs {spec.rootfs} has no {program} in PATH {search!r}")


def _fd_limit() -> int:
    # The hard limit bounds every fd we could hold; close_range makes a large bound cheap.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return max(os.sysconf("SC_OPEN_MAX"), hard if hard > 0 else 1 << 20)


def _exec_init(spec: ContainerSpec, error_fd: int) -> NoReturn:
    env = dict(spec.env)
    path = _find_program(spec, env)
    # Init and everything it starts must see the default signal dispositions.
    reset_for_exec()
    for cap in DROPPED_CAPS:
        with contextlib.suppress(OSError):  # EINVAL: a capability this kernel lacks
            kernel.prctl(kernel.PR_CAPBSET_DROP, cap)
    os.umask(0o022)
    # The host's processes may share pages through KSM (the fork server offers them);
    # a container's never do: merged pages would let one domain time another's memory.
    kernel.set_memory_merge(False)
    # Nothing of the host's crosses into the container but stdio (the console)
    # and the close-on-exec error pipe.
    os.closerange(3, error_fd)
    os.closerange(error_fd + 1, _fd_limit())
    try:
        os.execve(path, list(spec.init), env)
    except OSError as exc:
        hint = " (a missing ELF interpreter or #! program gives this too)" if exc.errno == 2 else ""
        raise SetupError(
            f"cannot exec {path} in rootfs {spec.rootfs}: {exc.strerror}{hint}"
        ) from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SetupError | VzvncError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return f"{type(exc).__name__}: {exc}"


def _child(spec: ContainerSpec, console_fd: int, error_fd: int) -> NoReturn:
    """Become the container's init; never returns. Failures go to ``error_fd``."""
    try:
        flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP
        if spec.new_net:
            flags |= CLONE_NEWNET
        # Unshared here, not in the launcher: pivot_root moves the root of every
        # process in the mount namespace, and the launcher must keep the host's.
        kernel.unshare(flags)
        # Nothing we mount may propagate back to the host.
        kernel.mount(None, "/", None, MS_REC | MS_PRIVATE)
        root = os.path.realpath(spec.rootfs)
        if not os.path.isdir(root):
            raise SetupError(f"rootfs {spec.rootfs} is not a directory")
        # pivot_root needs the new root to be a mount point.
        kernel.mount(root, root, None, MS_BIND | MS_REC)
        _mount_proc_and_sys(root)
        _mount_dev(root, console_fd)
        kernel.sethostname(spec.hostname)
        if spec.new_net:
            _loopback_up()
        _enter_root(root)
        _take_console()
        _exec_init(spec, error_fd)
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            message = " ".join(_describe(exc).split())
            os.write(error_fd, message.encode(errors="replace")[:4000])
        os._exit(127)


# -- the launcher ------------------------------------------------------------------------


def _join_cgroups(directories: Sequence[str]) -> None:
    pid = str(os.getpid())
    for directory in directories:
        path = os.path.join(directory, "cgroup.procs")
        try:
            with open(path, "w") as procs:
                procs.write(pid)
        except OSError as exc:
            raise SetupError(f"cannot join cgroup {directory}: {exc.strerror}") from None


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    return data


def launch(spec: ContainerSpec, console_fd: int, cgroups: Sequence[str], report: int) -> int:
    def say(line: str) -> None:
        os.write(report, (line + "\n").encode(errors="replace"))

    try:
        _join_cgroups(cgroups)
        # Our next child is pid 1 of a new pid namespace; we stay where we are.
        kernel.unshare(CLONE_NEWPID)
        error_r, error_w = os.pipe()  # close-on-exec: EOF with no message means init exec'd
        pid = os.fork()
    except (SetupError, OSError) as exc:
        say("error " + " ".join(_describe(exc).split()))
        return 1
    if pid == 0:
        os.close(error_r)
        os.close(report)
        _child(spec, console_fd, error_w)
    os.close(error_w)
    say(f"pid {pid}")
    message = _read_all(error_r).decode(errors="replace")
    os.close(error_r)
    if message:
        os.waitpid(pid, 0)
        say("error " + message)
        return 1
    say("ok")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vzvnc.domain.launcher")
    parser.add_argument("--console-fd", type=int, required=True)
    parser.add_argument("--status-fd", type=int, required=True)
    parser.add_argument("--cgroup", action="append", default=[])
    parser.add_argument("--spec", required=True, help="the ContainerSpec as JSON")
    args = parser.parse_args(argv)
    report: int = args.status_fd
    try:
        spec = ContainerSpec.from_json(args.spec)
    except VzvncError as exc:
        os.write(report, f"error {exc}\n".encode())
        return 1
    return launch(spec, args.console_fd, args.cgroup, report)


if __name__ == "__main__":
    # Nothing is buffered (reports go out with os.write), and skipping interpreter
    # teardown gets init's re-parenting, and start_container's return, sooner.
    os._exit(main())
