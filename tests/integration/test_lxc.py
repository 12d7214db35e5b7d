"""VNC consoles for real LXC containers (lxc 5.0 from Debian, busybox template).

A real viewer (vncdotool) types into each console, and what it captures must be
what the console's journal draws; the ways in are ``vzvnc lxc serve`` (liblxc's
``console_getfd``, and ``lxc-console`` on a pty), ``vzvnc lxc start`` (our pty as
``lxc.console.path``) and the hook lines in a container's config.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.hostedviewer import (
    capture,
    capture_matches_journal,
    connect,
    journal_screen,
    type_line,
    vzvnc_json,
    wait_for_address,
    wait_for_line,
    wait_for_text,
    wait_gone,
)
from tests.lxchost import LxcHost, lxc_unavailable_reason, new_name
from tests.rfbclient import EXTENDED_DESKTOP_SIZE, RAW, RfbClient
from vzvnc.domain.journal import read_journal
from vzvnc.fb.snapshot import render_rgb
from vzvnc.hosted.keeper import read_status, stop_keeper
from vzvnc.hosted.lxc import run_dir_for

pytestmark = [
    pytest.mark.skipif(lxc_unavailable_reason() is not None, reason=str(lxc_unavailable_reason())),
    pytest.mark.filterwarnings(
        "ignore:TripleDES has been moved:cryptography.utils.CryptographyDeprecationWarning"
    ),
    pytest.mark.timeout(240),
]

VZVNC = str(Path(sys.executable).parent / "vzvnc")
# What busybox init prints on the console when it has booted.
BOOTED = "Please press Enter to activate this console."


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    yield home
    root = home / "hosted" / "lxc"
    if root.is_dir():
        for run_dir in root.iterdir():
            if run_dir.is_dir():
                stop_keeper(run_dir, timeout=5)


@pytest.fixture
def host(tmp_path: Path, home: Path) -> Iterator[LxcHost]:
    with LxcHost(tmp_path) as lxc_host:
        yield lxc_host


def vzvnc(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [VZVNC, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "VZVNC_HOME": str(home)},
        timeout=60,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def wake_shell(client: Any, run_dir: Path, name: str) -> None:
    """Busybox init asks for Enter on the console; then the shell answers ``hostname``."""
    client.keyPress("enter")
    time.sleep(0.3)
    type_line(client, "hostname")
    wait_for_line(run_dir, name)


def test_serve_a_running_container_through_liblxc(
    host: LxcHost, home: Path, vnc_api: Any, tmp_path: Path
) -> None:
    name = new_name()
    host.create(name)
    host.start(name)
    served = vzvnc(home, "lxc", "serve", name, "-P", host.lxcpath, "--detach", "--json")
    result = vzvnc_json(served.stdout)
    assert result["name"] == name and result["vnc"].startswith("127.0.0.1:")
    run_dir = run_dir_for(home, name, host.lxcpath)
    assert read_status(run_dir)["via"] == "binding"  # type: ignore[index]

    client = connect(vnc_api, result["vnc"])
    try:
        wake_shell(client, run_dir, name)
        # The container's console has the console's size.
        type_line(client, "stty size")
        wait_for_line(run_dir, "25 80")
        capture_matches_journal(client, run_dir, tmp_path / "serve.png")
        listing = vzvnc_json(vzvnc(home, "lxc", "list", "-P", host.lxcpath, "--json").stdout)
        assert [(r["name"], r["state"], r["vnc"]) for r in listing] == [
            (name, "RUNNING", result["vnc"])
        ]
        # A second console for the same container is refused, with the first one named.
        again = vzvnc(home, "lxc", "serve", name, "-P", host.lxcpath, "--detach", check=False)
        assert again.returncode != 0 and "already served" in again.stderr
        # A viewer's resize reaches the container's programs.
        asyncio.run(resize_viewer(int(result["vnc"].rsplit(":", 1)[1]), 100, 30))
        type_line(client, "stty size")
        wait_for_line(run_dir, "30 100")
    finally:
        client.disconnect()
    # The container stops for good: the console reports it and goes.
    host.stop(name)
    wait_gone(run_dir)
    log = (run_dir.parent / f"{run_dir.name}.log").read_text()
    assert "the container is gone" in log


async def resize_viewer(port: int, columns: int, lines: int) -> None:
    """A viewer asks for a new desktop size (SetDesktopSize), as TigerVNC's does."""
    async with await RfbClient.connect(port, encodings=(RAW, EXTENDED_DESKTOP_SIZE)) as viewer:
        await viewer.update(incremental=False)
        viewer.set_desktop_size(columns * 8, lines * 16)
        for _ in range(50):
            await viewer.update(timeout=5)
            if (viewer.width, viewer.height) == (columns * 8, lines * 16):
                return
    raise AssertionError("the console did not take the new size")


def test_serve_through_lxc_console_on_a_pty(
    host: LxcHost, home: Path, vnc_api: Any, tmp_path: Path
) -> None:
    name = new_name()
    host.create(name)
    host.start(name)
    served = vzvnc(home, "lxc", "serve", name, "-P", host.lxcpath, "--via", "lxc-console",
                   "--detach", "--json")  # fmt: skip
    address = vzvnc_json(served.stdout)["vnc"]
    run_dir = run_dir_for(home, name, host.lxcpath)
    client = connect(vnc_api, address)
    try:
        wake_shell(client, run_dir, name)
        capture_matches_journal(client, run_dir, tmp_path / "lxc-console.png")
    finally:
        client.disconnect()


def test_errors_name_the_container_and_what_is_wrong(host: LxcHost, home: Path) -> None:
    missing = vzvnc(home, "lxc", "serve", "no-such-box", "-P", host.lxcpath, check=False)
    assert missing.returncode == os.EX_UNAVAILABLE
    assert "lxc container no-such-box does not exist in" in missing.stderr
    name = new_name()
    host.create(name)
    stopped = vzvnc(home, "lxc", "serve", name, "-P", host.lxcpath, check=False)
    assert stopped.returncode == os.EX_UNAVAILABLE
    assert f"lxc container {name} is not running (STOPPED)" in stopped.stderr


def test_lxc_start_holds_the_console_from_boot_through_crashes_freezes_and_reboots(
    host: LxcHost, home: Path, vnc_api: Any, tmp_path: Path
) -> None:
    name = new_name()
    host.create(name)
    started = vzvnc(home, "lxc", "start", name, "-P", host.lxcpath, "--detach", "--json")
    address = vzvnc_json(started.stdout)["vnc"]
    run_dir = run_dir_for(home, name, host.lxcpath)
    # From the first byte of boot: init's own greeting is in the journal.
    wait_for_text(run_dir, BOOTED)
    _, boot = read_journal(run_dir, 0)
    assert b"\r\r\n" not in boot.split(BOOTED.encode())[-1]  # one tty layer: ours is raw

    client = connect(vnc_api, address)
    try:
        wake_shell(client, run_dir, name)
        # Output keeps coming while the console server is killed: none of it is lost.
        type_line(
            client,
            "for i in $(seq 1 400); do echo line-$i; [ $((i%40)) = 0 ] && sleep 0.1; done;"
            " echo done-$((40+2))",
        )
        wait_for_text(run_dir, "line-40\r\n")
        status = read_status(run_dir)
        assert status is not None
        os.kill(int(status["console_server_pid"]), signal.SIGKILL)
        wait_for_line(run_dir, "done-42")
        _, everything = read_journal(run_dir, 0)
        lines = [f"line-{i}".encode() for i in range(1, 401)]
        assert all(line + b"\r\n" in everything for line in lines)
        # The new console server shows the whole screen to a new viewer.
        address = wait_for_new_server(run_dir, int(status["console_server_pid"]))
    finally:
        client.disconnect()
    client = connect(vnc_api, address)
    try:
        capture_matches_journal(client, run_dir, tmp_path / "after-kill.png")

        # Frozen: the screen stays as it was, for old and new viewers.
        before = capture(client, tmp_path / "before-freeze.png")
        subprocess.run(["lxc-freeze", "-P", host.lxcpath, "-n", name], check=True, timeout=30)
        late = connect(vnc_api, address)
        try:
            assert (capture(late, tmp_path / "frozen.png") == before).all()
        finally:
            late.disconnect()
        subprocess.run(["lxc-unfreeze", "-P", host.lxcpath, "-n", name], check=True, timeout=30)
        type_line(client, "echo thawed-$((3*3))")
        wait_for_line(run_dir, "thawed-9")

        # A reboot keeps the console: the same pty, held by us all along.
        type_line(client, "reboot")
        wait_for_text(run_dir, BOOTED, times=2)
        client.keyPress("enter")
        time.sleep(0.5)
        type_line(client, "echo rebooted-$((5*5))")
        wait_for_line(run_dir, "rebooted-25")
        capture_matches_journal(client, run_dir, tmp_path / "after-reboot.png")
    finally:
        client.disconnect()
    host.stop(name)
    wait_gone(run_dir)


def wait_for_new_server(run_dir: Path, old_pid: int, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = read_status(run_dir)
        if status and status.get("console_server_pid") not in (None, old_pid) and status["vnc"]:
            return str(status["vnc"])
        time.sleep(0.05)
    raise AssertionError("no new console server")


def hook_lines(home: Path, *types: str) -> str:
    line = f"/usr/bin/env VZVNC_HOME={home} {VZVNC} lxc hook"
    return "lxc.hook.version = 1\n" + "".join(f"lxc.hook.{t} = {line}\n" for t in types)


def test_hook_lines_give_a_container_a_console_with_no_other_step(
    host: LxcHost, home: Path, vnc_api: Any, tmp_path: Path
) -> None:
    name = new_name()
    host.create(name, hook_lines(home, "start-host", "post-stop"))
    host.start(name)
    run_dir = run_dir_for(home, name, host.lxcpath)
    address, status = wait_for_address(run_dir)
    assert status["via"] == "binding"
    client = connect(vnc_api, address)
    try:
        wake_shell(client, run_dir, name)
        capture_matches_journal(client, run_dir, tmp_path / "hook.png")
    finally:
        client.disconnect()
    host.stop(name, kill=False)  # a clean stop runs post-stop, which ends the console
    wait_gone(run_dir, timeout=15)


def test_pre_start_hook_console_survives_a_reboot(
    host: LxcHost, home: Path, vnc_api: Any, tmp_path: Path
) -> None:
    name = new_name()
    console_path = tmp_path / "consoles" / f"{name}.console"
    extra = hook_lines(home, "pre-start", "start-host", "post-stop")
    host.create(name, extra + f"lxc.console.path = {console_path}\n")
    host.start(name)
    run_dir = run_dir_for(home, name, host.lxcpath)
    address, status = wait_for_address(run_dir)
    assert status["via"] == "console-path"  # start-host saw it served and left it
    assert console_path.is_symlink()
    wait_for_text(run_dir, BOOTED)
    client = connect(vnc_api, address)
    try:
        wake_shell(client, run_dir, name)
        type_line(client, "reboot")
        wait_for_text(run_dir, BOOTED, times=2)
        client.keyPress("enter")
        time.sleep(0.5)
        type_line(client, "echo again-$((6*7))")
        wait_for_line(run_dir, "again-42")
        assert read_status(run_dir)["pid"] == status["pid"]  # type: ignore[index]
        expected = render_rgb(journal_screen(run_dir))
        assert expected.shape[:2] == (400, 640)
        capture_matches_journal(client, run_dir, tmp_path / "rebooted.png")
    finally:
        client.disconnect()
    host.stop(name, kill=False)
    wait_gone(run_dir, timeout=15)
    assert not console_path.exists()
