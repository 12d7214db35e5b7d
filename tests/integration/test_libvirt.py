"""VNC consoles for libvirt LXC domains, through a real libvirtd and its hook.

The hook script is ``contrib/libvirt-hook-lxc`` as shipped, pointed at this test's
vzvnc; a busybox domain started by ``virsh`` gets a console that a real viewer
(vncdotool) types into, which survives a libvirtd restart, and whose address is in
the domain's live XML.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.hostedviewer import (
    capture_matches_journal,
    connect,
    type_line,
    vzvnc_json,
    wait_for_address,
    wait_for_line,
    wait_for_text,
    wait_gone,
)
from tests.libvirthost import LibvirtHost, libvirt_unavailable_reason, virsh
from vzvnc.domain.journal import read_journal
from vzvnc.domain.rootfs import make_busybox_rootfs
from vzvnc.hosted.keeper import read_status
from vzvnc.hosted.libvirt import run_dir_for

_REASON = libvirt_unavailable_reason()
pytestmark = [
    pytest.mark.skipif(_REASON is not None, reason=_REASON or ""),
    pytest.mark.filterwarnings(
        "ignore:TripleDES has been moved:cryptography.utils.CryptographyDeprecationWarning"
    ),
    pytest.mark.timeout(240),
]

ROOT = Path(__file__).resolve().parents[2]
VZVNC = str(Path(sys.executable).parent / "vzvnc")


def shipped_hook(home: Path) -> str:
    """contrib/libvirt-hook-lxc, with this test's home and vzvnc."""
    text = (ROOT / "contrib" / "libvirt-hook-lxc").read_text()
    text = text.replace("${VZVNC_HOME:-/var/lib/vzvnc}", str(home))
    assert "/usr/local/bin/vzvnc" in text
    return text.replace("/usr/local/bin/vzvnc", VZVNC)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def host(home: Path) -> Iterator[LibvirtHost]:
    with LibvirtHost(hook=shipped_hook(home)) as libvirt_host:
        yield libvirt_host


def vzvnc(home: Path, *args: str) -> str:
    result = subprocess.run(
        [VZVNC, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "VZVNC_HOME": str(home)},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_domain_started_by_virsh_gets_a_console_that_outlives_libvirtd_restarts(
    host: LibvirtHost, home: Path, tmp_path: Path, vnc_api: Any
) -> None:
    name = f"vzvnc-lv-{uuid.uuid4().hex[:6]}"
    rootfs = tmp_path / "rootfs"
    make_busybox_rootfs(str(rootfs))
    host.define_busybox(name, str(rootfs))
    host.start(name)
    run_dir = run_dir_for(home, name)
    address, status = wait_for_address(run_dir)
    assert status["tty"] == host.console_path(name)

    # Where the console listens is in the live XML, for virsh users.
    deadline = time.monotonic() + 15
    while f'listen="{address}"' not in (xml := virsh("dumpxml", name)):
        assert time.monotonic() < deadline, xml
        time.sleep(0.1)
    assert "https://vzvnc.dev/xmlns/console/1" in xml
    listing = vzvnc_json(vzvnc(home, "libvirt", "list", "--json"))
    assert {"name": name, "state": "running", "vnc": address}.items() <= listing[0].items()

    client = connect(vnc_api, address)
    try:
        client.keyPress("enter")
        type_line(client, "hostname")
        wait_for_line(run_dir, name)
        type_line(client, "stty size")  # the size reaches the container's own console
        wait_for_line(run_dir, "25 80")
        capture_matches_journal(client, run_dir, tmp_path / "first.png")
        # Killing the console server loses nothing the domain writes meanwhile.
        type_line(
            client,
            "for i in $(seq 1 300); do echo n-$i; [ $((i%30)) = 0 ] && sleep 0.1; done;"
            " echo end-$((6*7))",
        )
        wait_for_text(run_dir, "n-30\r\n")
        os.kill(int(status["console_server_pid"]), signal.SIGKILL)
        wait_for_line(run_dir, "end-42")
        _, everything = read_journal(run_dir, 0)
        assert all(f"n-{i}\r\n".encode() in everything for i in range(1, 301))
    finally:
        client.disconnect()

    keeper = status["pid"]
    host.restart_libvirtd()  # the "reconnect" hook finds the console running
    address, status = wait_for_address(run_dir)
    assert status["pid"] == keeper
    client = connect(vnc_api, address)
    try:
        type_line(client, "echo after-$((2*21))")
        wait_for_line(run_dir, "after-42")
        capture_matches_journal(client, run_dir, tmp_path / "after-restart.png")
    finally:
        client.disconnect()
    assert read_status(run_dir) is not None

    # By hand: a console stopped takes its address out of the XML; serve brings it back.
    vzvnc(home, "libvirt", "stop-console", name)
    wait_gone(run_dir)
    assert 'listen="' not in virsh("dumpxml", name)
    served = vzvnc_json(vzvnc(home, "libvirt", "serve", name, "--detach", "--json"))
    assert served["vnc"] and read_status(run_dir)["tty"] == host.console_path(name)  # type: ignore[index]
    client = connect(vnc_api, served["vnc"])
    try:
        type_line(client, "echo by-hand-$((3+4))")
        wait_for_line(run_dir, "by-hand-7")
    finally:
        client.disconnect()

    host.destroy(name)  # end of file on the pty: the console goes with the domain
    wait_gone(run_dir)
