"""Domains end to end: real namespaces, cgroups, controller and console server processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.rfbclient import RAW, RfbClient
from vzvnc.domain.cgroups import Cgroups, home_group
from vzvnc.domain.journal import read_journal
from vzvnc.domain.rootfs import make_busybox_rootfs
from vzvnc.endpoints import PtyProgram
from vzvnc.errors import ConfigError
from vzvnc.fb.snapshot import render_rgb
from vzvnc.supervisor import Supervisor, create_domain
from vzvnc.term.cells import ATTR_BOLD
from vzvnc.term.terminal import Terminal

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="domains need root")


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rootfs") / "busybox"
    make_busybox_rootfs(str(path))
    return path


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    sup = Supervisor(tmp_path / "home")
    yield sup
    for name in sup.names():
        sup.stop(name, timeout=1)


def define(sup: Supervisor, name: str, rootfs: Path, extra: str = "", init: str = "") -> None:
    text = f'name = "{name}"\nrootfs = "{rootfs}"\nstop_timeout = 1\n'
    text += f'init = ["/bin/sh", "-c", {json.dumps(init)}]\n' if init else ""
    text += extra
    file = sup.home / f"{name}.toml"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)
    sup.define_file(file)


def vnc_port(sup: Supervisor, name: str) -> int:
    status = sup.status(name)
    assert status.vnc is not None
    return int(status.vnc.rsplit(":", 1)[1])


async def screen_text(client: RfbClient, sup: Supervisor, name: str, text: str) -> list[str]:
    """Wait until the domain's console (seen through its journal) shows ``text``."""
    for _ in range(200):
        lines = sup.screen(name).text_lines()
        if any(text in line for line in lines):
            return lines
        await asyncio.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared:\n" + "\n".join(lines))


def parent_command(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    with open(f"/proc/{ppid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode()


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if str(path) in line]


def test_boot_type_through_vnc_and_see_the_container(supervisor: Supervisor, rootfs: Path) -> None:
    define(supervisor, "box1", rootfs, 'hostname = "inside-box"\n')
    supervisor.start("box1")

    async def scenario() -> None:
        client = await RfbClient.connect(vnc_port(supervisor, "box1"), encodings=(RAW,))
        await client.update(incremental=False)
        client.type("hostname; echo pid=$$\n")
        lines = await screen_text(client, supervisor, "box1", "pid=1")
        assert any(line.strip() == "inside-box" for line in lines)
        await client.drain_updates()
        assert (client.pixels[:, :, :3] != 0).any()
        await client.close()

    asyncio.run(scenario())
    status = supervisor.status("box1")
    assert status.state == "running" and status.init_pid and status.console_server_pid


@pytest.mark.parametrize("forked", [True, False], ids=["forkserver", "fresh-process"])
def test_console_server_crash_loses_nothing(
    supervisor: Supervisor, rootfs: Path, forked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The controller inherits this: console servers from the fork server, or fresh ones.
    monkeypatch.setenv("VZVNC_FORKSERVER", "1" if forked else "0")
    define(supervisor, "crashy", rootfs)
    status = supervisor.start("crashy")
    init_pid = status.init_pid

    async def scenario() -> None:
        client = await RfbClient.connect(vnc_port(supervisor, "crashy"), encodings=(RAW,))
        client.type(
            "i=0; while [ $i -lt 30000 ]; do echo line $i; i=$((i+1)); done; echo flood-done\n"
        )
        await client.close()
        await asyncio.sleep(0.4)  # in the middle of the flood
        old_server = supervisor.status("crashy").console_server_pid
        assert old_server is not None
        os.kill(old_server, signal.SIGKILL)
        for _ in range(100):
            await asyncio.sleep(0.05)
            new = supervisor.status("crashy")
            if new.vnc and new.console_server_pid not in (None, old_server):
                break
        else:
            raise AssertionError("no new console server")
        client = await RfbClient.connect(vnc_port(supervisor, "crashy"), encodings=(RAW,))
        await screen_text(client, supervisor, "crashy", "flood-done")
        client.type("echo alive-$$\n")
        await screen_text(client, supervisor, "crashy", "alive-1")
        await asyncio.sleep(0.5)
        await client.update(incremental=False)
        await client.drain_updates(quiet=0.5)
        # The reference: a fresh terminal fed every byte the console ever produced.
        begin, data = read_journal(supervisor.run_dir("crashy"), 0)
        assert begin == 0
        reference = Terminal(80, 25)
        reference.feed(data)
        expected = render_rgb(reference)
        got = np.ascontiguousarray(client.pixels[:, :, 2::-1])
        assert np.array_equal(got, expected)
        await client.close()

    asyncio.run(scenario())
    after = supervisor.status("crashy")
    assert after.init_pid == init_pid  # same container, never hung up
    assert after.console_server_pid is not None
    # Controller and console server alike come from the fork server, or not at all.
    assert after.controller_pid is not None
    for pid in (after.console_server_pid, after.controller_pid):
        parent = parent_command(pid)
        assert ("vzvnc.domain.forkserver" in parent) == forked, parent
    assert after.console_server_restarts >= 1


def test_limits_from_the_definition_are_enforced(supervisor: Supervisor, rootfs: Path) -> None:
    define(supervisor, "limited", rootfs, '[limits]\npids = 6\nmemory = "48M"\n')
    supervisor.start("limited")

    async def scenario() -> None:
        port = vnc_port(supervisor, "limited")
        async with await RfbClient.connect(port, encodings=(RAW,)) as client:
            # The markers are computed by the shell so the echoed command line never
            # matches them: only output that follows the attempt does.
            # 64 MiB of buffer under a 48 MiB limit: the kernel kills dd.
            client.type("dd if=/dev/zero of=/dev/null bs=64M count=1; echo dd-$((1+2))=$?\n")
            lines = await screen_text(client, supervisor, "limited", "dd-3=")
            assert any("dd-3=137" in line for line in lines), lines
            client.type("for i in 1 2 3 4 5 6 7 8 9; do sleep 5 & done\n")
            client.type("echo forks-$((40+2))\n")
            lines = await screen_text(client, supervisor, "limited", "forks-42")
            assert any("can't fork" in line for line in lines), lines

    asyncio.run(scenario())


def test_stop_and_destroy_leave_nothing_behind(supervisor: Supervisor, rootfs: Path) -> None:
    define(supervisor, "tidy", rootfs, init="sleep 1000")
    status = supervisor.start("tidy")
    pids = [status.controller_pid, status.init_pid, status.console_server_pid]
    supervisor.stop("tidy")
    assert supervisor.status("tidy").state == "defined"
    for pid in pids:
        assert pid is not None and not _running(pid)
    assert "tidy" not in Cgroups.stale(group=home_group(supervisor.home))
    assert not mounts_under(rootfs)
    assert not supervisor.run_dir("tidy").exists()
    supervisor.destroy("tidy")
    assert "tidy" not in supervisor.names()


def test_domain_stops_when_init_exits(supervisor: Supervisor, rootfs: Path) -> None:
    define(supervisor, "brief", rootfs, init="sleep 2; exit 0")
    supervisor.start("brief")
    for _ in range(200):
        if supervisor.status("brief").state != "running":
            break
        time.sleep(0.05)
    assert supervisor.status("brief").state == "defined"
    assert "brief" not in Cgroups.stale(group=home_group(supervisor.home))
    assert not mounts_under(rootfs)


def test_dead_controller_leaves_nothing_the_next_start_trips_over(
    supervisor: Supervisor, rootfs: Path
) -> None:
    define(supervisor, "orphan", rootfs, init="sleep 1000")
    first = supervisor.start("orphan")
    assert first.controller_pid is not None
    os.kill(first.controller_pid, signal.SIGKILL)
    time.sleep(0.3)
    assert supervisor.status("orphan").state == "crashed"
    second = supervisor.start("orphan")
    assert second.state == "running" and second.init_pid != first.init_pid
    assert first.init_pid is not None and not _running(first.init_pid)


def test_broken_definitions_and_missing_rootfs_are_refused(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="rootfs"):
        supervisor.define(create_domain("nofs", str(tmp_path / "missing"), [], None, None))
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nrootfs = "/"\n[limits]\nswap = 1\n')
    with pytest.raises(ConfigError, match=r"limits\.swap"):
        supervisor.define_file(bad)
    assert supervisor.names() == []


def test_port_in_use_is_a_clear_error_with_nothing_left(
    supervisor: Supervisor, rootfs: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        define(supervisor, "clash", rootfs, f'[vnc]\nlisten = "127.0.0.1:{port}"\n')
        with pytest.raises(ConfigError, match=f"{port} is not free"):
            supervisor.start("clash")
    assert "clash" not in Cgroups.stale(group=home_group(supervisor.home))
    assert not supervisor.run_dir("clash").exists()


def test_cli_create_start_list_status_screenshot_stop(rootfs: Path, tmp_path: Path) -> None:
    # A relative home, from the test's directory: the controller, console server and
    # fork server run elsewhere (in /) and must still find it.
    env = dict(os.environ, VZVNC_HOME="clihome")

    def vzvnc(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "vzvnc", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    vzvnc(
        "domain",
        "create",
        "clidom",
        "--rootfs",
        str(rootfs),
        "--",
        "/bin/sh",
        "-c",
        "echo hello-from-cli; exec sleep 1000",
    )
    try:
        assert "VNC at 127.0.0.1:" in vzvnc("domain", "start", "clidom")
        listing = json.loads(vzvnc("domain", "list", "--json"))
        assert listing[0]["name"] == "clidom" and listing[0]["state"] == "running"
        status = json.loads(vzvnc("domain", "status", "clidom", "--json"))
        assert status["init_pid"] and status["console_server_pid"] and status["vnc"]
        for _ in range(100):
            text = vzvnc("domain", "screenshot", "clidom", "--text")
            if "hello-from-cli" in text:
                break
            time.sleep(0.05)
        assert "hello-from-cli" in text
        png = tmp_path / "shot.png"
        vzvnc("domain", "screenshot", "clidom", "-o", str(png))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        vzvnc("domain", "stop", "clidom")
    assert json.loads(vzvnc("domain", "status", "clidom", "--json"))["state"] == "defined"


def _running(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_new_console_server_starts_from_the_snapshot(
    supervisor: Supervisor, rootfs: Path
) -> None:
    define(supervisor, "snappy", rootfs)
    supervisor.start("snappy")
    run_dir = supervisor.run_dir("snappy")

    async def scenario() -> None:
        client = await RfbClient.connect(vnc_port(supervisor, "snappy"), encodings=(RAW,))
        client.type("printf '\\033[1;32mbefore the crash\\033[0m\\n'; seq 1 300\n")
        await screen_text(client, supervisor, "snappy", "300")
        for _ in range(100):  # the console server saves a snapshot every 2 s of activity
            if (run_dir / "snapshot").exists():
                break
            await asyncio.sleep(0.1)
        assert (run_dir / "snapshot").exists()
        old = supervisor.status("snappy").console_server_pid
        assert old is not None
        await client.close()
        os.kill(old, signal.SIGKILL)
        for _ in range(100):
            await asyncio.sleep(0.05)
            status = supervisor.status("snappy")
            if status.vnc and status.console_server_pid not in (None, old):
                break
        client = await RfbClient.connect(vnc_port(supervisor, "snappy"), encodings=(RAW,))
        client.type("echo after-$$\n")
        await screen_text(client, supervisor, "snappy", "after-1")
        await asyncio.sleep(0.5)
        await client.update(incremental=False)
        await client.drain_updates(quiet=0.5)
        _, data = read_journal(run_dir, 0)
        reference = Terminal(80, 25)
        reference.feed(data)
        got = np.ascontiguousarray(client.pixels[:, :, 2::-1])
        assert np.array_equal(got, render_rgb(reference))
        await client.close()

    asyncio.run(scenario())
    log = (run_dir / "console-server.log").read_text()
    assert "screen restored from the snapshot" in log


def test_console_attach_draws_the_screen_then_follows_it(
    supervisor: Supervisor, rootfs: Path
) -> None:
    """``vzvnc domain console`` in a real pty: the screen as it stands first, then live."""
    define(supervisor, "attached", rootfs)
    supervisor.start("attached")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(supervisor.run_dir("attached") / "attach.sock"))
        assert len(sock.recv(8)) == 8  # where live output starts
        sock.sendall(b"printf '\\033[1;33mbefore-%s\\033[0m\\n' attach\n")
    deadline = time.monotonic() + 20
    while not any(
        line.strip() == "before-attach" for line in supervisor.screen("attached").text_lines()
    ):
        assert time.monotonic() < deadline, "the domain never printed"
        time.sleep(0.05)
    env = dict(os.environ, VZVNC_HOME=str(supervisor.home))
    cli = PtyProgram.start(
        [sys.executable, "-m", "vzvnc", "domain", "console", "attached"],
        columns=80,
        lines=25,
        env=env,
    )
    seen = Terminal(80, 25)

    def read_until(predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 20
        while not predicate():
            assert time.monotonic() < deadline, f"{what}: {seen.text_lines()}"
            with contextlib.suppress(BlockingIOError):
                seen.feed(os.read(cli.master_fd, 65536))
            time.sleep(0.02)

    try:
        # Before anything new is typed, the local terminal shows the console's screen.
        expected = supervisor.screen("attached")
        read_until(lambda: seen.text_lines() == expected.text_lines(), "the first paint")
        row = next(i for i, line in enumerate(seen.text_lines()) if "before-attach" in line)
        assert seen.cells()[3][row, 0] & ATTR_BOLD  # attributes came too, not just text
        os.write(cli.master_fd, b"echo after-$((40+2))\r")
        read_until(lambda: any(line.strip() == "after-42" for line in seen.text_lines()), "live")
        os.write(cli.master_fd, b"\x1d")  # Ctrl+] detaches
        assert cli.process.wait(timeout=20) == 0
    finally:
        cli.kill()
        cli.close()


def test_console_servers_outlive_a_dead_fork_server_and_restart_without_it(
    supervisor: Supervisor, rootfs: Path
) -> None:
    define(supervisor, "orphaned", rootfs)
    first = supervisor.start("orphaned")
    assert first.console_server_pid is not None
    fork_server = int(
        subprocess.run(
            ["pgrep", "-f", f"vzvnc.domain.forkserver --run-root {supervisor.home}/run"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[0]
    )
    os.kill(fork_server, signal.SIGKILL)

    async def scenario() -> None:
        # The console server it forked still serves.
        client = await RfbClient.connect(vnc_port(supervisor, "orphaned"), encodings=(RAW,))
        client.type("echo still-$((2+3))\n")
        await screen_text(client, supervisor, "orphaned", "still-5")
        await client.close()
        # Its crash is noticed without the fork server, and a new one takes over.
        os.kill(first.console_server_pid, signal.SIGKILL)  # type: ignore[arg-type]
        for _ in range(100):
            await asyncio.sleep(0.05)
            now = supervisor.status("orphaned")
            if now.vnc and now.console_server_pid not in (None, first.console_server_pid):
                break
        else:
            raise AssertionError("no new console server")
        client = await RfbClient.connect(vnc_port(supervisor, "orphaned"), encodings=(RAW,))
        client.type("echo again-$((3+4))\n")
        await screen_text(client, supervisor, "orphaned", "again-7")
        await client.close()

    asyncio.run(scenario())


def _merge_any(pid: int) -> str | None:
    """``ksm_merge_any`` of ``pid`` (yes/no), or None where the kernel does not say."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/ksm_stat").read_text().splitlines():
            if line.startswith("ksm_merge_any:"):
                return line.split()[1]
    return None


def test_vzvnc_processes_offer_their_pages_to_ksm_and_the_container_does_not(
    supervisor: Supervisor, rootfs: Path
) -> None:
    if _merge_any(os.getpid()) is None:
        pytest.skip("this kernel has no per-process KSM (Linux 6.4) or does not report it")
    define(supervisor, "merging", rootfs)
    status = supervisor.start("merging")
    assert status.controller_pid and status.console_server_pid and status.init_pid
    assert "vzvnc.domain.forkserver" in parent_command(status.console_server_pid)
    assert _merge_any(status.controller_pid) == "yes"
    assert _merge_any(status.console_server_pid) == "yes"
    # Merged pages would let a domain time another's memory: never the container's.
    assert _merge_any(status.init_pid) == "no"


def _soft_fd_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no fd limit for {pid}")


def test_the_fork_server_raises_its_fd_limit_and_its_children_get_ours_back(
    supervisor: Supervisor, rootfs: Path
) -> None:
    import resource

    saved = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, saved[1]))
    try:
        define(supervisor, "limited", rootfs)
        status = supervisor.start("limited")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, saved)
    assert status.controller_pid and status.console_server_pid and status.init_pid
    with open(f"/proc/{status.console_server_pid}/stat") as f:
        fork_server = int(f.read().rsplit(")", 1)[1].split()[1])
    assert "vzvnc.domain.forkserver" in parent_command(status.console_server_pid)
    # Two connections per domain: 512 would hold about 250 domains.
    assert _soft_fd_limit(fork_server) > 512
    for pid in (status.controller_pid, status.console_server_pid, status.init_pid):
        assert _soft_fd_limit(pid) == 512
