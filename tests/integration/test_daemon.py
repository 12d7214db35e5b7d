"""``vzvnc daemon`` at host boot: saved domains restored, autostart ones started; its
systemd unit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vzvnc.domain import criu
from vzvnc.domain.rootfs import make_busybox_rootfs
from vzvnc.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[2]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="domains need root")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@needs_root
def test_daemon_restores_saved_domains_and_starts_autostart_ones(tmp_path: Path) -> None:
    criu.find_criu()
    rootfs = tmp_path / "rootfs"
    make_busybox_rootfs(str(rootfs))
    sup = Supervisor(tmp_path / "home")
    try:
        boot_a_host(sup, rootfs, tmp_path)
    finally:
        for name in sup.names():
            sup.stop(name, timeout=1)


def boot_a_host(sup: Supervisor, rootfs: Path, tmp_path: Path) -> None:
    for name in ("auto", "kept", "idle"):
        file = tmp_path / f"{name}.toml"
        file.write_text(f'name = "{name}"\nrootfs = "{rootfs}"\nstop_timeout = 1\n')
        sup.define_file(file)
    env = {**os.environ, "VZVNC_HOME": str(sup.home)}
    vzvnc = [sys.executable, "-m", "vzvnc"]
    assert subprocess.run([*vzvnc, "domain", "autostart", "auto"], env=env).returncode == 0
    assert subprocess.run([*vzvnc, "domain", "autostart", "idle"], env=env).returncode == 0
    off = subprocess.run([*vzvnc, "domain", "autostart", "idle", "--disable"], env=env)
    assert off.returncode == 0
    assert [sup.status(n).autostart for n in ("auto", "kept", "idle")] == [True, False, False]
    sup.start("kept")
    init_pid = sup.status("kept").init_pid
    sup.save("kept")
    assert [sup.status(n).state for n in ("auto", "kept", "idle")] == [
        "defined",
        "saved",
        "defined",
    ]
    port = free_port()
    daemon = subprocess.Popen(
        [*vzvnc, "daemon", "--listen", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [sup.status(n).state for n in ("auto", "kept", "idle")]
            # A restore uses its saved image up once the domain is up: wait for both.
            if (
                states == ["running", "running", "defined"]
                and sup.saved_images("kept") is None
                and listening(port)
            ):
                break
            assert daemon.poll() is None
            time.sleep(0.1)
        else:
            raise AssertionError(f"after the daemon's start: {states}")
        assert sup.status("kept").init_pid != init_pid  # restored, not booted
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(15)
    assert code == 0
    # Stopping the daemon stops no domain.
    assert [sup.status(n).state for n in ("auto", "kept")] == ["running", "running"]


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = (ROOT / "contrib" / "vzvnc.service").read_text()
    assert "KillMode=process" in unit  # domains outlive the daemon
    binary = Path(sys.executable).parent / "vzvnc"
    assert binary.exists()
    local = tmp_path / "vzvnc.service"
    local.write_text(unit.replace("/usr/local/bin/vzvnc", str(binary)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "vzvnc.service" not in result.stderr, result.stderr
