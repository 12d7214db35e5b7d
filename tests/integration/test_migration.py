"""Live migration between two hosts: two network namespaces joined by a veth pair, each
with its own ``vzvnc daemon`` and home, talking TLS with a shared secret.

Daemons and commands enter their host with ``nsenter --net`` (``ip netns exec``
would remount /sys and hide the cgroup filesystem). Viewers reach each host's
VNC port through a socket opened in that namespace.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.rfbclient import RAW, RfbClient
from vzvnc.domain import criu
from vzvnc.domain.cgroups import Cgroups, home_group
from vzvnc.domain.journal import read_journal
from vzvnc.domain.rootfs import make_busybox_rootfs
from vzvnc.fb.snapshot import render_rgb
from vzvnc.supervisor import Supervisor
from vzvnc.term.terminal import Terminal

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and domains need root")

CLONE_NEWNET = 0x40000000
PORT = 16510
SUBNET = "10.231.7"


@dataclass
class Host:
    netns: str
    address: str
    home: Path
    daemons: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def supervisor(self) -> Supervisor:
        return Supervisor(self.home)

    def env(self) -> dict[str, str]:
        return {**os.environ, "VZVNC_HOME": str(self.home), "VZVNC_FORKSERVER": "0"}

    def command(self, *args: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", sys.executable, "-m", "vzvnc", *args]

    def vzvnc(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), env=self.env(), capture_output=True, text=True, timeout=timeout
        )

    def start_daemon(self, *extra: str, port: int = PORT) -> subprocess.Popen[bytes]:
        log = open(self.home.parent / f"{self.netns}-daemon-{port}.log", "ab")  # noqa: SIM115
        daemon = subprocess.Popen(
            self.command("-v", "daemon", "--listen", f"{self.address}:{port}", *extra),
            env=self.env(),
            stdout=log,
            stderr=log,
        )
        log.close()
        self.daemons.append(daemon)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with in_netns(
                    self.netns, lambda: socket.create_connection((self.address, port), 1)
                ):
                    return daemon
            except OSError:
                assert daemon.poll() is None, "the daemon exited"
                time.sleep(0.05)
        raise AssertionError("the daemon never listened")

    def connect(self, port: int) -> socket.socket:
        return in_netns(self.netns, lambda: socket.create_connection(("127.0.0.1", port)))


def in_netns(netns: str, make: object) -> socket.socket:
    """Run ``make`` on a thread that has entered ``netns`` (setns is per thread)."""
    result: list[object] = []

    def work() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                result.append(OSError(ctypes.get_errno(), "setns"))
                return
        finally:
            os.close(fd)
        try:
            result.append(make())  # type: ignore[operator]
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]  # type: ignore[return-value]


@dataclass
class Hosts:
    a: Host
    b: Host
    secret: Path
    cert: Path
    key: Path
    rootfs: Path
    tmp: Path


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Hosts]:
    criu.find_criu()  # CI installs CRIU 4.1 (tools/build-criu): these tests must run there
    tag = f"vzm{os.getpid() % 100000}"
    a = Host(f"{tag}a", f"{SUBNET}.1", tmp_path / "home-a")
    b = Host(f"{tag}b", f"{SUBNET}.2", tmp_path / "home-b")
    for host in (a, b):
        ip("netns", "add", host.netns)
        ip("-n", host.netns, "link", "set", "lo", "up")
        host.home.mkdir()
    ip("link", "add", f"{tag}va", "type", "veth", "peer", "name", f"{tag}vb")
    for host, veth in ((a, f"{tag}va"), (b, f"{tag}vb")):
        ip("link", "set", veth, "netns", host.netns)
        ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", veth)
        ip("-n", host.netns, "link", "set", veth, "up")
    secret = tmp_path / "secret"
    secret.write_text("correct horse battery staple\n")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-subj", "/CN=vzvnc-test", "-days", "1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    rootfs = tmp_path / "rootfs"
    make_busybox_rootfs(str(rootfs))
    yield Hosts(a, b, secret, cert, key, rootfs, tmp_path)
    for host in (a, b):
        for daemon in host.daemons:
            daemon.terminate()
            daemon.wait(10)
        sup = host.supervisor
        for name in sup.names():
            sup.stop(name, timeout=1)
    for host in (a, b):
        subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)


def tls_args(hosts: Hosts) -> list[str]:
    return ["--secret-file", str(hosts.secret), "--tls-cert", str(hosts.cert),
            "--tls-key", str(hosts.key)]  # fmt: skip


def define(host: Host, rootfs: Path, name: str = "mover") -> None:
    file = host.home / f"{name}.toml"
    file.write_text(f'name = "{name}"\nrootfs = "{rootfs}"\ninit = ["/bin/sh"]\nstop_timeout = 1\n')
    result = host.vzvnc("domain", "define", str(file))
    assert result.returncode == 0, result.stderr


def start(host: Host, name: str = "mover") -> int:
    result = host.vzvnc("domain", "start", name)
    assert result.returncode == 0, result.stderr
    return vnc_port(host, name)


def vnc_port(host: Host, name: str = "mover") -> int:
    status = host.supervisor.status(name)
    assert status.vnc is not None, status
    return int(status.vnc.rsplit(":", 1)[1])


def record_source_journal(host: Host, into: Path) -> None:
    """A hook that keeps the source's journal when its domain ends there (a source
    forgets a domain it has migrated, journal included)."""
    hooks = host.home / "hooks"
    hooks.mkdir()
    (hooks / "domain").write_text(
        "#!/bin/sh\n"
        f'echo "$1 $2 $3 $4" >> {into}/ops\n'
        f'if [ "$2" = stopped ]; then cp "$VZVNC_HOME"/run/"$1"/journal.* {into}/; fi\n'
    )
    (hooks / "domain").chmod(0o755)


async def wait_for_text(sup: Supervisor, name: str, text: str, tries: int = 300) -> None:
    for _ in range(tries):
        if any(text in line for line in sup.screen(name).text_lines()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared:\n" + "\n".join(sup.screen(name).text_lines()))


def migrate(hosts: Hosts, *extra: str, secret: Path | None = None) -> list[dict[str, object]]:
    result = hosts.a.vzvnc(
        "domain", "migrate", "mover", f"{hosts.b.address}:{PORT}", "--json",
        "--secret-file", str(secret or hosts.secret), "--tls-ca", str(hosts.cert), *extra,
    )  # fmt: skip
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert events, result.stderr
    events.append({"returncode": result.returncode, "stderr": result.stderr})
    return events


def assert_source_empty(host: Host, name: str, port: int) -> None:
    sup = host.supervisor
    assert name not in sup.names()
    assert not sup.run_dir(name).exists()
    assert name not in Cgroups.stale(group=home_group(host.home))
    with pytest.raises(OSError):
        host.connect(port).close()  # nothing listens on its VNC port any more
    with open("/proc/self/mountinfo") as f:
        assert str(sup.run_dir(name)) not in f.read()


@pytest.mark.parametrize("storage", ["--shared-storage", "--copy-storage"])
def test_live_migration_mid_flood_loses_nothing(hosts: Hosts, storage: str) -> None:
    a, b = hosts.a, hosts.b
    b.start_daemon(*tls_args(hosts))
    a.start_daemon(*tls_args(hosts))
    define(a, hosts.rootfs)
    kept = hosts.tmp / "kept"
    kept.mkdir()
    record_source_journal(a, kept)
    source_port = start(a)

    async def flood() -> None:
        async with await RfbClient.connect(
            source_port, encodings=(RAW,), sock=a.connect(source_port)
        ) as client:
            client.type("X=42; cd /tmp; i=0; while [ $i -lt 4000 ]; do echo line $i; "
                        "i=$((i+1)); done; echo flood-$((6*7))\n")  # fmt: skip
            for _ in range(200):
                if len(read_journal(a.supervisor.run_dir("mover"), 0)[1]) > 5000:
                    return
                await asyncio.sleep(0.02)

    asyncio.run(flood())
    events = migrate(hosts, storage)
    outcome = events.pop()
    assert outcome["returncode"] == 0, outcome
    done = events[-1]
    assert done["event"] == "done" and done["shared_storage"] == (storage == "--shared-storage")
    phases = [e["phase"] for e in events if e["event"] == "phase"]
    assert phases[:4] == ["begin", "freeze", "checkpoint", "storage"] and "restore" in phases
    assert_source_empty(a, "mover", source_port)

    dest = b.supervisor
    assert dest.status("mover").state == "running"
    rootfs = dest.load("mover").rootfs
    assert (rootfs == str(hosts.rootfs)) == (storage == "--shared-storage")
    port = vnc_port(b)

    async def at_destination() -> None:
        async with await RfbClient.connect(port, encodings=(RAW,), sock=b.connect(port)) as client:
            await wait_for_text(dest, "mover", "flood-42")
            client.type("echo X=$X at $(pwd)\n")
            await wait_for_text(dest, "mover", "X=42 at /tmp")
            await asyncio.sleep(0.3)
            await client.update(incremental=False)
            await client.drain_updates(quiet=0.5)
            # The reference: a fresh terminal fed every byte, source's then destination's.
            begin, source_bytes = read_journal(kept, 0)
            assert begin == 0
            offset, dest_bytes = read_journal(dest.run_dir("mover"), 0)
            assert offset <= len(source_bytes)
            reference = Terminal(80, 25)
            reference.feed(source_bytes[:offset] + dest_bytes)
            assert b"flood-42" in source_bytes[:offset] + dest_bytes
            got = np.ascontiguousarray(client.pixels[:, :, 2::-1])
            assert np.array_equal(got, render_rgb(reference))

    asyncio.run(at_destination())
    ops = (kept / "ops").read_text().split("\n")
    assert "mover stopped end migrated" in ops and "mover release end migrated" in ops


def test_failed_migrations_leave_the_domain_running_at_the_source_only(hosts: Hosts) -> None:
    a, b = hosts.a, hosts.b
    # The destination's storage is a 1 MiB tmpfs: a copied rootfs cannot fit.
    small = hosts.tmp / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        b.start_daemon(*tls_args(hosts), "--storage-dir", str(small))
        define(a, hosts.rootfs)
        source_port = start(a)
        wrong = hosts.tmp / "wrong-secret"
        wrong.write_text("not the right secret at all\n")

        def nothing_at_destination() -> None:
            assert b.supervisor.names() == []
            assert not any((b.home / "incoming").glob("*"))
            assert not any(small.iterdir())
            assert a.supervisor.status("mover").state == "running"

        # A wrong secret: refused before anything moves.
        events = migrate(hosts, secret=wrong)
        assert events[-1]["returncode"] != 0
        assert "wrong secret" in str(events[-2]["message"])
        nothing_at_destination()

        # A full disk at the destination: the copy fails, the source resumes.
        events = migrate(hosts, "--copy-storage")
        assert events[-1]["returncode"] == os.EX_TEMPFAIL
        error = events[-2]
        assert error["event"] == "error" and error["step"] == "storage", error
        assert "no space left" in str(error["message"])
        nothing_at_destination()

        # The destination daemon dies mid-transfer.
        big = hosts.tmp / "big-rootfs"
        shutil.copytree(hosts.rootfs, big, symlinks=True)
        with open(big / "ballast", "wb") as f:
            f.write(os.urandom(256 << 20))
        define(a, big, "heavy")
        start(a, "heavy")
        b2 = b.start_daemon(*tls_args(hosts), port=PORT + 1)
        mover = subprocess.Popen(
            a.command("domain", "migrate", "heavy", f"{b.address}:{PORT + 1}", "--json",
                      "--copy-storage", "--secret-file", str(hosts.secret),
                      "--tls-ca", str(hosts.cert)),
            env=a.env(), stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert mover.stdout is not None
        for line in mover.stdout:
            event = json.loads(line)
            if event["event"] == "progress" and event["phase"] == "storage":
                b2.kill()
                break
        rest = mover.stdout.read()
        mover.stdout.close()
        assert mover.wait(60) != 0
        assert '"event": "error"' in rest
        b2.wait()
        assert a.supervisor.status("heavy").state == "running"
        assert "heavy" not in b.supervisor.names()
        # What the killed daemon staged is gone once a daemon runs there again.
        b.start_daemon(*tls_args(hosts), port=PORT + 2)
        assert not any((b.home / "incoming").glob("*"))
        assert not (b.home / "storage" / "heavy").exists()

        # And the source domain still answers at the source.
        async def still_there() -> None:
            async with await RfbClient.connect(
                source_port, encodings=(RAW,), sock=a.connect(source_port)
            ) as client:
                client.type("echo alive-$((40+2))\n")
                await wait_for_text(a.supervisor, "mover", "alive-42")

        asyncio.run(still_there())
    finally:
        for daemon in b.daemons:
            daemon.terminate()
            daemon.wait(10)
        b.daemons.clear()
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_cold_migration_moves_a_saved_domain_with_its_screen(hosts: Hosts) -> None:
    a, b = hosts.a, hosts.b
    b.start_daemon(*tls_args(hosts))
    define(a, hosts.rootfs)
    port = start(a)

    async def prepare() -> np.ndarray:
        async with await RfbClient.connect(port, encodings=(RAW,), sock=a.connect(port)) as client:
            client.type("Y=7; printf '\\033[7mcold\\033[0m-%s\\n' $((6*7))\n")
            await wait_for_text(a.supervisor, "mover", "cold-42")
            await asyncio.sleep(0.3)
            await client.update(incremental=False)
            await client.drain_updates(quiet=0.5)
            return np.ascontiguousarray(client.pixels[:, :, 2::-1])

    pixels = asyncio.run(prepare())
    live = migrate(hosts, "--cold")
    assert live[-1]["returncode"] == os.EX_UNAVAILABLE  # a running domain moves live
    assert a.vzvnc("domain", "save", "mover").returncode == 0
    events = migrate(hosts, "--cold", "--copy-storage")
    assert events[-1]["returncode"] == 0, events[-1]
    assert "mover" not in a.supervisor.names() and not a.supervisor.save_dir("mover").exists()
    dest = b.supervisor
    assert dest.status("mover").state == "saved"
    result = b.vzvnc("domain", "start", "mover")
    assert result.returncode == 0 and "restored" in result.stdout, result.stderr
    port = vnc_port(b)

    async def after() -> None:
        async with await RfbClient.connect(port, encodings=(RAW,), sock=b.connect(port)) as client:
            await client.update(incremental=False)
            await client.drain_updates(quiet=0.5)
            assert np.array_equal(np.ascontiguousarray(client.pixels[:, :, 2::-1]), pixels)
            client.type("echo Y=$Y\n")
            await wait_for_text(dest, "mover", "Y=7")

    asyncio.run(after())
