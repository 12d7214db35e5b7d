"""The kernel layer on the real kernel, as root: namespaces, mounts, console, cgroups.

Every test boots a busybox container on a pty the test holds (the test process
plays the controller: it is the subreaper that reaps init), reads what the
container writes on its console, and checks from the host what is left
afterwards. Features the kernel lacks are probed once and their tests skipped
with the reason.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vzvnc.domain import cgroups as cgroups_module
from vzvnc.domain.cgroups import Cgroups
from vzvnc.domain.container import start_container
from vzvnc.domain.kernel import ContainerSpec, set_child_subreaper
from vzvnc.domain.rootfs import make_busybox_rootfs
from vzvnc.errors import DomainError


def _probe_namespaces() -> str | None:
    """Why containers cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root"
    probe = (
        "from vzvnc.domain import kernel as k\n"
        "k.unshare(k.CLONE_NEWNS | k.CLONE_NEWUTS | k.CLONE_NEWIPC | k.CLONE_NEWPID"
        " | k.CLONE_NEWCGROUP | k.CLONE_NEWNET)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=Path(__file__).parents[2]
    )
    if result.returncode != 0:
        return f"the kernel refuses new namespaces: {result.stderr.strip().splitlines()[-1]}"
    try:
        from vzvnc.domain.rootfs import find_busybox

        find_busybox()
    except DomainError as exc:
        return str(exc)
    return None


_REASON = _probe_namespaces()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")

_LAYOUT = cgroups_module._layout("auto") if _REASON is None else {}
needs_memory = pytest.mark.skipif("memory" not in _LAYOUT, reason="no memory cgroup controller")
needs_pids = pytest.mark.skipif("pids" not in _LAYOUT, reason="no pids cgroup controller")
needs_freezer = pytest.mark.skipif("freezer" not in _LAYOUT, reason="no cgroup freezer")

_names = itertools.count()


def unique_name() -> str:
    return f"vzt{os.getpid()}-{next(_names)}"


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("kernel") / "rootfs")
    make_busybox_rootfs(path)
    return path


class Console:
    """The master side of a container's console pty."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.output = b""
        self.closed = False

    def read_for(self, seconds: float) -> bytes:
        """Whatever arrives within ``seconds``."""
        before = len(self.output)
        deadline = time.monotonic() + seconds
        while not self.closed and (left := deadline - time.monotonic()) > 0:
            self._read_once(left)
        return self.output[before:]

    def _read_once(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: every slave fd is closed, the container is gone
                data = b""
            if data:
                self.output += data
            else:
                self.closed = True

    def expect(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            text = self.output.decode(errors="replace")
            match = re.search(pattern, text)
            if match:
                return match
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise AssertionError(f"{pattern!r} never appeared; console:\n{text}")
            self._read_once(min(left, 0.1))

    def write(self, data: bytes) -> None:
        os.write(self.master, data)


@dataclass
class Box:
    spec: ContainerSpec
    pid: int
    cgroups: Cgroups
    console: Console
    status: int | None = None

    def wait(self, timeout: float = 10.0) -> int:
        """Reap init (we are its subreaper) and return its wait status."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.status = status
                break
            assert time.monotonic() < deadline, "init did not exit"
            time.sleep(0.02)
        return self.status


@contextlib.contextmanager
def container(
    rootfs: str,
    script: str | None = None,
    *,
    init: tuple[str, ...] | None = None,
    memory_limit: int | None = None,
    pids_limit: int | None = None,
    new_net: bool = False,
    hostname: str = "kbox",
) -> Iterator[Box]:
    set_child_subreaper()
    name = unique_name()
    spec = ContainerSpec(
        name=name,
        rootfs=rootfs,
        init=init or ("/bin/sh", "-c", script or "sleep 30"),
        hostname=hostname,
        new_net=new_net,
    )
    master, slave = os.openpty()
    groups = Cgroups.create(name, memory_limit=memory_limit, pids_limit=pids_limit)
    try:
        try:
            pid = start_container(spec, slave, groups)
        finally:
            os.close(slave)
        box = Box(spec, pid, groups, Console(master))
        try:
            yield box
        finally:
            if box.status is None:
                groups.kill_all()
                box.wait()
    finally:
        groups.remove()
        os.close(master)


def host_mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if f" {path}" in line]


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rpartition(")")[2].split()[1])


def launchers_running() -> list[int]:
    """Our launchers (or their children before exec), ignoring other test runs' ones."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if b"vzvnc.domain.launcher" not in f.read():
                    continue
            pid = int(entry)
            while pid > 1 and pid != os.getpid():
                pid = _parent(pid)
            if pid == os.getpid():
                found.append(int(entry))
    return found


# -- namespaces, mounts, console --------------------------------------------------------


def test_init_is_pid_1_with_its_hostname_and_console_as_tty(rootfs: str) -> None:
    script = "echo pid=$$ host=$(hostname); tty; echo done; sleep 30"
    with container(rootfs, script, hostname="kernel-test") as box:
        box.console.expect(r"pid=1 host=kernel-test")
        box.console.expect(r"/dev/console\s+done")
        # The host sees init under its host pid, in a new pid namespace where it is 1.
        with open(f"/proc/{box.pid}/status") as f:
            nspid = next(line for line in f if line.startswith("NSpid:"))
        assert nspid.split()[1:] == [str(box.pid), "1"]
        assert box.pid in box.cgroups.pids()
        assert os.readlink(f"/proc/{box.pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
        # Nothing we mounted is visible on the host.
        assert host_mounts_under(rootfs) == []


def test_proc_shows_only_the_containers_processes(rootfs: str) -> None:
    script = "sleep 30 & ps -o pid,args; echo END; ls /proc | grep -c '^[0-9]'; sleep 30"
    with container(rootfs, script) as box:
        table = box.console.expect(r"(?m)PID\s+COMMAND\s+([\s\S]*?)^END\r?$").group(1)
        rows = [line.split() for line in table.strip().splitlines()]
        # init, the background sleep and ps itself: nothing of the host's.
        assert len(rows) == 3, rows
        assert rows[0][:2] == ["1", "/bin/sh"]
        assert all(int(row[0]) < 10 for row in rows)
        # sh and sleep, plus the ls and grep of the pipeline itself.
        count = int(box.console.expect(r"END\s+(\d+)").group(1))
        assert count <= 4
        box.console.read_for(0.2)
        assert len(box.cgroups.pids()) == 2


def test_interactive_shell_owns_the_console(rootfs: str) -> None:
    with container(rootfs, init=("/bin/sh",), hostname="interactive") as box:
        box.console.write(b"echo shell=$$; tty; hostname\n")
        box.console.expect(r"shell=1\s+/dev/console\s+interactive")
        # Ctrl+C reaches the foreground job through the controlling tty, and the shell lives on.
        box.console.write(b"sleep 20\n")
        box.console.read_for(0.3)
        started = time.monotonic()
        box.console.write(b"\x03")
        box.console.write(b"echo back=$((6*7))\n")
        box.console.expect(r"back=42", timeout=5)
        assert time.monotonic() - started < 5
        assert b"job control turned off" not in box.console.output
        assert b"can't access tty" not in box.console.output


def test_only_stdio_and_the_spec_environment_reach_init(rootfs: str) -> None:
    # No pipeline before the first ls: its pipe would be open in init while it runs.
    script = "ls /proc/1/fd; env | sort | tr '\\n' ' '; echo; sleep 30"
    with container(rootfs, script) as box:
        fds = box.console.expect(r"^([\d ]+)\r?\n").group(1).split()
        assert fds == ["0", "1", "2"]
        env = box.console.expect(r"(HOME=.*)\r?\n").group(1).split()
        names = {item.split("=", 1)[0] for item in env}
        # What the spec gave, plus what the shell itself sets.
        assert names <= {"HOME", "PATH", "TERM", "PWD", "SHLVL"}, env
        assert "TERM=xterm-256color" in env


def test_a_threaded_caller_starts_the_same_container_through_an_exec_launcher(
    rootfs: str,
) -> None:
    # With one thread (as in a controller) the launcher is a fork of the caller; with
    # more it must be a fresh interpreter, and init must not see a difference.
    release = threading.Event()
    helper = threading.Thread(target=release.wait)
    helper.start()
    try:
        script = "ls /proc/1/fd; echo pid=$$; sleep 30"
        with container(rootfs, script) as box:
            fds = box.console.expect(r"^([\d ]+)\r?\n").group(1).split()
            assert fds == ["0", "1", "2"]
            box.console.expect(r"pid=1\r?\n")
    finally:
        release.set()
        helper.join()


def test_dev_has_a_private_devpts_and_the_usual_nodes(rootfs: str) -> None:
    script = (
        "ls /dev/pts | tr '\\n' ' '; echo; readlink /dev/ptmx; "
        "echo hello > /dev/null && head -c 4 /dev/zero | od -An -tx1; "
        "grep -E ' /dev/pts | /sys ' /proc/mounts; echo END; sleep 30"
    )
    with container(rootfs, script) as box:
        out = box.console.expect(r"([\s\S]*)END").group(1)
        # A new devpts instance: only its ptmx, none of the host's ptys.
        assert out.split()[0] == "ptmx"
        assert "pts/ptmx" in out
        assert "00 00 00 00" in out
        assert re.search(r"devpts /dev/pts devpts \S*gid=5,mode=620,ptmxmode=666", out)
        assert re.search(r"sysfs /sys sysfs ro,", out)


def test_new_net_gives_only_loopback_and_it_is_up(rootfs: str) -> None:
    script = "ls /sys/class/net | tr '\\n' ' '; echo; cat /sys/class/net/lo/flags; sleep 30"
    with container(rootfs, script, new_net=True) as box:
        box.console.expect(r"^lo \s*\r?\n0x9\b")


def test_init_exit_leaves_no_processes_mounts_or_cgroups(rootfs: str) -> None:
    script = "sleep 60 & sleep 60 & echo ready; read _ ; exit 3"
    with container(rootfs, script) as box:
        box.console.expect("ready")
        assert len(box.cgroups.pids()) == 3
        box.console.write(b"\n")
        status = box.wait()
        assert os.waitstatus_to_exitcode(status) == 3
        # Init's death took the whole pid namespace with it.
        assert box.cgroups.pids() == []
        assert host_mounts_under(rootfs) == []
        paths = box.cgroups.paths
    assert not any(os.path.exists(p) for p in paths)
    assert launchers_running() == []


# -- limits and the freezer ---------------------------------------------------------------


@needs_memory
def test_memory_limit_is_enforced(rootfs: str) -> None:
    limit = 32 << 20
    # A subshell doubling a string until it holds far more than the limit.
    script = "(s=x; while :; do s=$s$s; done); echo rc=$?; sleep 30"
    with container(rootfs, script, memory_limit=limit) as box:
        box.console.expect(r"rc=137", timeout=15)  # SIGKILLed by the OOM killer
        hierarchy = box.cgroups._layout["memory"]
        directory = os.path.join(hierarchy.base, box.spec.name)
        if hierarchy.version == 1:
            assert Path(directory, "memory.limit_in_bytes").read_text().strip() == str(limit)
            oom = Path(directory, "memory.oom_control").read_text()
        else:
            assert Path(directory, "memory.max").read_text().strip() == str(limit)
            oom = Path(directory, "memory.events").read_text()
        assert int(re.search(r"oom_kill (\d+)", oom).group(1)) >= 1  # type: ignore[union-attr]
        usage = box.cgroups.memory_usage()
        assert usage is not None and usage <= limit
        # Only the allocating subshell died; init lives.
        assert box.pid in box.cgroups.pids()


@needs_pids
def test_pids_limit_is_enforced(rootfs: str) -> None:
    # The loop runs in a subshell: a non-interactive shell exits when fork fails.
    script = "(i=0; while [ $i -lt 20 ]; do sleep 30 & i=$((i+1)); done); echo rc=$?; exec sleep 30"
    with container(rootfs, script, pids_limit=8) as box:
        box.console.expect(r"can't fork")
        box.console.expect(r"rc=\d+")
        assert len(box.cgroups.pids()) <= 8
        hierarchy = box.cgroups._layout["pids"]
        directory = os.path.join(hierarchy.base, box.spec.name)
        assert Path(directory, "pids.max").read_text().strip() == "8"
        events = Path(directory, "pids.events").read_text()
        assert int(re.search(r"max (\d+)", events).group(1)) >= 1  # type: ignore[union-attr]


@needs_freezer
def test_freeze_stops_the_container_and_thaw_resumes_it(rootfs: str) -> None:
    script = "i=0; while :; do i=$((i+1)); echo n=$i; sleep 0.05; done"
    with container(rootfs, script) as box:
        box.console.expect(r"n=5\b")
        box.cgroups.freeze()
        assert box.cgroups.frozen()
        box.console.read_for(0.2)  # what was in flight
        assert box.console.read_for(0.6) == b""
        last = max(int(n) for n in re.findall(rb"n=(\d+)", box.console.output))
        box.cgroups.thaw()
        assert not box.cgroups.frozen()
        box.console.expect(rf"n={last + 2}\b", timeout=5)


@needs_freezer
def test_kill_all_kills_a_frozen_container(rootfs: str) -> None:
    with container(rootfs, "sleep 60 & sleep 60 & echo ready; wait") as box:
        box.console.expect("ready")
        box.cgroups.freeze()
        box.cgroups.kill_all()
        assert box.cgroups.pids() == []
        assert os.WTERMSIG(box.wait()) == signal.SIGKILL


def test_cgroup_v2_freezer_and_kill(rootfs: str) -> None:
    layout = cgroups_module._layout("v2")
    if "freezer" not in layout:
        pytest.skip("no cgroup v2 hierarchy with cgroup.freeze")
    set_child_subreaper()
    name = unique_name()
    groups = Cgroups.create(name, memory_limit=None, pids_limit=None, mode="v2")
    if not os.path.exists(os.path.join(groups.paths[0], "cgroup.freeze")):
        groups.remove()
        pytest.skip("this kernel's cgroup v2 has no cgroup.freeze (needs 5.2)")
    master, slave = os.openpty()
    try:
        spec = ContainerSpec(
            name=name, rootfs=rootfs, init=("/bin/sh", "-c", "sleep 60"), hostname="v2"
        )
        pid = start_container(spec, slave, groups)
        os.close(slave)
        assert groups.pids() == [pid]
        groups.freeze()
        assert groups.frozen()
        groups.kill_all()
        assert groups.pids() == []
        _, status = os.waitpid(pid, 0)
        assert os.WTERMSIG(status) == signal.SIGKILL
    finally:
        groups.remove()
        os.close(master)
    assert not groups.exists()


# -- cgroup bookkeeping --------------------------------------------------------------------


def test_create_refuses_a_running_domain_and_replaces_an_empty_leftover(rootfs: str) -> None:
    with container(rootfs, "sleep 30") as box:
        with pytest.raises(DomainError, match="hold processes"):
            Cgroups.create(box.spec.name, memory_limit=None, pids_limit=None)
        assert box.spec.name in Cgroups.stale()
    name = unique_name()
    leftover = Cgroups.create(name, memory_limit=None, pids_limit=None)
    # A controller that died after creating its cgroups: the next create starts afresh.
    again = Cgroups.create(name, memory_limit=None, pids_limit=16)
    assert again.paths == leftover.paths
    Cgroups.attach(name).remove()
    assert name not in Cgroups.stale()
    Cgroups.attach(name).remove()  # idempotent


# -- failures leave nothing behind -----------------------------------------------------------


@pytest.mark.parametrize(
    ("rootfs_of", "init", "message"),
    [
        (lambda fs: fs + "-missing", ("/bin/sh",), r"rootfs /\S+-missing does not exist"),
        (lambda fs: fs, ("/bin/no-such-init",), r"rootfs /\S+ has no /bin/no-such-init"),
        (lambda fs: fs, ("no-such-init",), r"has no no-such-init in PATH"),
        (lambda fs: fs, ("/etc/passwd",), r"/etc/passwd is not an executable file"),
        (lambda fs: os.path.dirname(fs), ("/bin/sh",), r"has no /proc: is it a root filesystem"),
    ],
    ids=[
        "missing-rootfs",
        "missing-init",
        "init-not-in-path",
        "init-not-executable",
        "not-a-rootfs",
    ],
)
def test_a_broken_spec_fails_clearly_and_leaves_nothing(
    rootfs: str, rootfs_of: object, init: tuple[str, ...], message: str
) -> None:
    set_child_subreaper()
    name = unique_name()
    directory = rootfs_of(rootfs)  # type: ignore[operator]
    spec = ContainerSpec(name=name, rootfs=directory, init=init, hostname="broken")
    groups = Cgroups.create(name, memory_limit=32 << 20, pids_limit=8)
    master, slave = os.openpty()
    try:
        with pytest.raises(DomainError, match=message) as caught:
            start_container(spec, slave, groups)
        assert caught.value.exit_code == os.EX_UNAVAILABLE
        assert groups.pids() == []
    finally:
        os.close(slave)
        os.close(master)
        groups.remove()
    assert not groups.exists()
    assert name not in Cgroups.stale()
    assert launchers_running() == []
    assert host_mounts_under(rootfs) == []


def test_a_broken_spec_without_cgroups_leaves_no_process(rootfs: str) -> None:
    spec = ContainerSpec(name=unique_name(), rootfs=rootfs, init=("/nope",), hostname="broken")
    master, slave = os.openpty()
    try:
        with pytest.raises(DomainError, match="has no /nope"):
            start_container(spec, slave, None)
    finally:
        os.close(slave)
        os.close(master)
    assert launchers_running() == []


def test_console_fd_must_be_a_terminal(rootfs: str) -> None:
    spec = ContainerSpec(name=unique_name(), rootfs=rootfs, init=("/bin/sh",), hostname="x")
    r, w = os.pipe()
    try:
        with pytest.raises(DomainError, match="not a terminal"):
            start_container(spec, r, None)
    finally:
        os.close(r)
        os.close(w)
