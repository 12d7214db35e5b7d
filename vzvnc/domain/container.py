"""Starting a container: ``start_container`` runs the launcher (``launcher.py``) and
waits for its report: the host pid of the container's init, or a message saying
what went wrong.

The launcher is a fork of the caller when the caller has one thread, as a
controller does (no interpreter to start: about 40 ms of CPU per domain when many
start at once), or else a fresh ``python -m vzvnc.domain.launcher``, a
single-threaded process, so that forking into new namespaces is safe whatever
threads the caller has.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from vzvnc.childsignals import reset_for_exec
from vzvnc.domain import launcher
from vzvnc.domain.cgroups import Cgroups
from vzvnc.domain.kernel import ContainerSpec
from vzvnc.errors import DomainError

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
