"""tests/libvirthost.py against a real libvirtd: a busybox LXC domain and its pty console.

Runs as root with libvirt's LXC driver installed (libvirt-daemon-driver-lxc,
libvirt-daemon, libvirt-clients); skipped otherwise.
"""

from __future__ import annotations

import os
import select
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.libvirthost import LibvirtHost, libvirt_unavailable_reason, process_alive
from vzvnc.domain.rootfs import make_busybox_rootfs

_REASON = libvirt_unavailable_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")

HOOK = """#!/bin/sh
# $1=domain $2=operation $3=sub-operation; the domain XML on stdin.
cat >/dev/null
echo "$1 $2 $3" >>{log}
"""


@pytest.fixture
def rootfs(tmp_path: Path) -> str:
    path = str(tmp_path / "rootfs")
    make_busybox_rootfs(path)
    return path


@pytest.fixture
def name() -> str:
    return f"vzvnc-lvt-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def console_fd() -> Iterator[list[int]]:
    """Console fds opened by the test, closed even when it fails."""
    fds: list[int] = []
    yield fds
    for fd in fds:
        os.close(fd)


def read_until(fd: int, expected: bytes, timeout: float = 10.0, poke: bytes = b"") -> bytes:
    """Read the console until ``expected`` shows; ``poke`` is re-sent every second meanwhile."""
    seen = b""
    deadline = time.monotonic() + timeout
    next_poke = 0.0
    while expected not in seen:
        now = time.monotonic()
        if now > deadline:
            raise AssertionError(f"{expected!r} never came; console said {seen[-2000:]!r}")
        if poke and now >= next_poke:
            os.write(fd, poke)
            next_poke = now + 1.0
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise AssertionError(f"console closed before {expected!r}; it said {seen!r}")
            seen += chunk
    return seen


def nspid(pid: int) -> list[int]:
    """The pid in each nested pid namespace, outermost first (``NSpid`` in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return [int(field) for field in line.split()[1:]]
    raise AssertionError(f"no NSpid for {pid}")


def open_console(host: LibvirtHost, name: str, fds: list[int]) -> int:
    path = host.console_path(name)
    assert path.startswith("/dev/pts/")
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    fds.append(fd)
    return fd


def ask_hostname(fd: int) -> bytes:
    """Get a shell prompt (Enter activates busybox init's console), then run hostname."""
    read_until(fd, b"# ", poke=b"\r")
    os.write(fd, b'echo "<$(hostname)>"\n')
    return read_until(fd, b">\r\n")


def test_busybox_domain_console_answers(
    tmp_path: Path, rootfs: str, name: str, console_fd: list[int]
) -> None:
    hook_log = tmp_path / "hook.log"
    with LibvirtHost(hook=HOOK.format(log=hook_log)) as host:
        host.define_busybox(name, rootfs)
        host.start(name)
        assert host.state(name) == "running"
        init = host.init_pid(name)
        # busybox init renames itself "init"; it is pid 1 of the container's pid namespace.
        assert Path(f"/proc/{init}/comm").read_text() == "init\n"
        assert nspid(init)[-1] == 1
        fd = open_console(host, name, console_fd)
        # libvirt makes the container's hostname the domain's name.
        assert f"<{name}>".encode() in ask_hostname(fd)
        assert f"{name} started begin" in hook_log.read_text()
        host.destroy(name)
        assert host.state(name) == "shut off"
    # Cleanup: domain undefined, daemons gone, hook removed, no cgroups left.
    assert not Path(f"/etc/libvirt/lxc/{name}.xml").exists()
    assert not Path("/etc/libvirt/hooks/lxc").exists()
    assert not list(Path("/sys/fs/cgroup").glob(f"*/**/*{name}.libvirt-lxc"))
    assert f"{name} release end" in hook_log.read_text()


def test_domain_and_console_survive_libvirtd_restart(
    tmp_path: Path, rootfs: str, name: str, console_fd: list[int]
) -> None:
    hook_log = tmp_path / "hook.log"
    with LibvirtHost(hook=HOOK.format(log=hook_log)) as host:
        host.define_busybox(name, rootfs)
        host.start(name)
        init = host.init_pid(name)
        path = host.console_path(name)
        fd = open_console(host, name, console_fd)
        assert f"<{name}>".encode() in ask_hostname(fd)

        host.restart_libvirtd()

        assert host.state(name) == "running"
        assert host.init_pid(name) == init
        assert host.console_path(name) == path
        assert f"{name} reconnect begin" in hook_log.read_text()
        # The console opened before the restart still works.
        os.write(fd, b"echo before-$((6*7))\n")
        read_until(fd, b"before-42")
        # And so does a fresh open.
        fresh = open_console(host, name, console_fd)
        os.write(fresh, b"echo after-$((6*7))\n")
        read_until(fresh, b"after-42")
    # The domain was still running at exit: the cleanup destroyed it.
    assert not process_alive(init)
    assert not list(Path("/sys/fs/cgroup").glob(f"*/**/*{name}.libvirt-lxc"))
