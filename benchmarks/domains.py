"""Domains at scale: start many busybox domains, then measure what each costs.

Prints, for N domains (default 50) started on this machine:
- time to start them all (each with its own controller and console server) and
  the mean time per domain;
- PSS per domain of the controller and console server processes (from
  /proc/PID/smaps_rollup) with one viewer connected to every domain (it has read
  its first full update and keeps the connection open), of the container's own
  init for scale, and of the fork server the controllers and console servers are
  forked from;
- idle wakeups: context switches per second of all controllers and console
  servers together over ``--idle`` seconds with those viewers connected and
  nothing happening, from 8 s after the viewers connected
  (``voluntary_ctxt_switches`` + ``nonvoluntary_ctxt_switches`` of every thread,
  from /proc/PID/task/*/status): an idle domain should cost 0;
- console server restart time: kill -9 one console server and time until a
  viewer can connect again and gets a framebuffer (median of a few);
- that ``vzvnc domain list`` shows every domain running.

Run as root: ``python benchmarks/domains.py [--count 50] [--idle 10]``. It uses a private
VZVNC_HOME under /tmp and stops everything it started, even on failure.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vzvnc.domain.rootfs import make_busybox_rootfs
from vzvnc.supervisor import Supervisor


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def connect_viewer(port: int) -> socket.socket:
    """An RFB 3.8 viewer (no auth) that has read its full first update, Raw."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)

    def take(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise RuntimeError("the console closed the viewer")
            data += chunk
        return data

    take(12)
    sock.sendall(b"RFB 003.008\n")
    take(take(1)[0])
    sock.sendall(b"\x01")
    take(4)
    sock.sendall(b"\x01")
    header = take(24)
    width, height = int.from_bytes(header[:2], "big"), int.from_bytes(header[2:4], "big")
    take(int.from_bytes(header[20:24], "big"))
    sock.sendall(b"\x02\x00" + (1).to_bytes(2, "big") + (0).to_bytes(4, "big"))  # Raw
    request = width.to_bytes(2, "big") + height.to_bytes(2, "big")
    sock.sendall(b"\x03\x00" + (0).to_bytes(4, "big") + request)
    assert take(2)[0] == 0
    for _ in range(int.from_bytes(take(2), "big")):
        rect = take(12)
        w, h = int.from_bytes(rect[4:6], "big"), int.from_bytes(rect[6:8], "big")
        encoding = int.from_bytes(rect[8:12], "big", signed=True)
        if encoding == 0:
            take(w * h * 4)
    return sock


def context_switches(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                for line in (task / "status").read_text().splitlines():
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
            except OSError:
                pass
    return total


def first_update_seconds(port: int, timeout: float = 10.0) -> float:
    """Connect, handshake (no auth), request the screen; seconds until the update header."""
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.recv(12)
                sock.sendall(b"RFB 003.008\n")
                sock.recv(2)
                sock.sendall(b"\x01")
                sock.recv(4)
                sock.sendall(b"\x01")
                header = sock.recv(24)
                width, height = (
                    int.from_bytes(header[:2], "big"),
                    int.from_bytes(header[2:4], "big"),
                )
                sock.recv(int.from_bytes(header[20:24], "big"))
                sock.sendall(
                    b"\x03\x00"
                    + (0).to_bytes(4, "big")
                    + width.to_bytes(2, "big")
                    + height.to_bytes(2, "big")
                )
                if sock.recv(1) == b"\x00":
                    return time.monotonic() - start
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("no framebuffer update")


def parent_pid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--idle", type=float, default=10.0, help="idle seconds measured")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("domains need root", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="vzvnc-bench-"))
    home = work / "home"
    os.environ["VZVNC_HOME"] = str(home)
    sup = Supervisor(home)
    rootfs = work / "rootfs"
    make_busybox_rootfs(str(rootfs))
    names = [f"bench{i:02d}" for i in range(args.count)]
    for name in names:
        file = work / f"{name}.toml"
        file.write_text(f'name = "{name}"\nrootfs = "{rootfs}"\nstop_timeout = 1\n')
        sup.define_file(file)
    try:
        began = time.monotonic()
        for name in names:
            sup.start(name, wait=False)
        for name in names:
            while True:
                status = sup.status(name)
                if status.state == "running" and status.vnc:
                    break
                time.sleep(0.05)
        elapsed = time.monotonic() - began
        statuses = [sup.status(name) for name in names]
        viewers = [connect_viewer(int((s.vnc or ":0").rsplit(":", 1)[1])) for s in statuses]
        # Let start-up garbage settle before measuring memory, and the one-off timers
        # that follow a viewer's first update (the first-update cache keeps its
        # entry 5 s, the console snapshot comes soon after a frame) fire.
        time.sleep(8)
        vzvnc_pids = [
            pid for s in statuses for pid in (s.controller_pid, s.console_server_pid) if pid
        ]
        switches_before = context_switches(vzvnc_pids)
        time.sleep(args.idle)
        idle_wakeups = (context_switches(vzvnc_pids) - switches_before) / args.idle
        controller = [pss_kib(s.controller_pid or 0) for s in statuses]
        server = [pss_kib(s.console_server_pid or 0) for s in statuses]
        init = [pss_kib(s.init_pid or 0) for s in statuses]
        # Console servers are forked by the host's fork server: its pages are shared
        # with them, and its own PSS is part of what the consoles cost.
        parents = [parent_pid(s.console_server_pid or 0) for s in statuses]
        forked = [pid for pid in parents if "vzvnc.domain.forkserver" in command(pid)]
        fork_server = sum(pss_kib(pid) for pid in set(forked))
        forked_controllers = sum(
            "vzvnc.domain.forkserver" in command(parent_pid(s.controller_pid or 0))
            for s in statuses
        )
        listing = subprocess.run(
            [sys.executable, "-m", "vzvnc", "domain", "list"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        running = sum(1 for line in listing.splitlines() if " running " in line)
        for viewer in viewers:
            viewer.close()
        restarts = []
        for name in names[: args.restarts]:
            old = sup.status(name)
            assert old.console_server_pid and old.vnc
            port = int(old.vnc.rsplit(":", 1)[1])
            killed = time.monotonic()
            os.kill(old.console_server_pid, signal.SIGKILL)
            while sup.status(name).console_server_pid in (None, old.console_server_pid):
                time.sleep(0.005)
            first_update_seconds(port)
            restarts.append(time.monotonic() - killed)
        print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
        print(
            f"domains started:                 {args.count} in {elapsed:.1f} s "
            f"({elapsed / args.count * 1000:.0f} ms each)"
        )
        print(f"'vzvnc domain list' running:     {running}")
        print(f"PSS per domain, controller:      {statistics.mean(controller) / 1024:.1f} MiB")
        print(f"PSS per domain, console server:  {statistics.mean(server) / 1024:.1f} MiB")
        print(
            f"PSS of the fork server:          {fork_server / 1024:.1f} MiB "
            f"({fork_server / 1024 / args.count:.1f} MiB per domain; forked from it: "
            f"{forked_controllers} controllers, {len(forked)} console servers)"
        )
        print(f"PSS per domain, container init:  {statistics.mean(init) / 1024:.2f} MiB")
        print(
            f"idle wakeups, all domains:       {idle_wakeups:.1f} per second "
            f"({len(viewers)} viewers connected, {args.idle:g} s)"
        )
        print(
            f"console server restart to first update: median "
            f"{statistics.median(restarts) * 1000:.0f} ms, max {max(restarts) * 1000:.0f} ms "
            f"({len(restarts)} kills)"
        )
    finally:
        for name in names:
            pid = sup.controller_pid(name)
            if pid:
                os.kill(pid, signal.SIGTERM)
        for name in names:
            sup.stop(name, timeout=1)
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
