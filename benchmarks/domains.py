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

With ``--ksm``, after those PSS figures it turns the kernel's same-page merging
on for the run (``/sys/kernel/mm/ksm``, restored afterwards; the fork server
offers its children's memory to it), waits for two full scans at
``--ksm-pages`` pages per 20 ms, and measures PSS again, with ksmd's own CPU
over an idle window at the kernel's default rate (100 pages per 20 ms).

With ``--busy K``, K of the domains then run a top-like program (``toplike.py``'s
frames, precomputed into the rootfs and written by a busybox shell loop, one
frame every 0.1 s) for ``--busy-seconds`` (10), each watched by a ZRLE viewer
(``rfbbench.Viewer``) that asks for the next update as soon as one has arrived
and inflates every rectangle; with ``--busy-paint`` it also paints the tiles, a
Python loop that on two cores cannot keep up with more than a few consoles. It
prints the frames per second the programs wrote (from the journals' growth), the
update rate every viewer got (min and median, per second), the CPU of all
controllers and console servers together (% of one core) and per frame of one
domain, beside Xvnc + xterm running ``toplike.py`` itself, measured alone just
before with the same viewer: the reference's CPU per frame, and the ratio.

Run as root: ``python benchmarks/domains.py [--count 50] [--idle 10] [--ksm]
[--busy K]``. It uses a private VZVNC_HOME under /tmp and stops everything it
started, even on failure.
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import rfbbench
import toplike

from vzvnc.domain.rootfs import make_busybox_rootfs
from vzvnc.supervisor import Supervisor

KSM = Path("/sys/kernel/mm/ksm")
TOP_FRAMES = 50
# A frame every 0.1 s: the sleep runs beside the cat, so the cat's own time is not added.
TOP_SCRIPT = (
    "printf '\\033[?25l\\033[H\\033[2J'\n"
    "while :; do for f in /top/f*; do sleep 0.1 & cat $f; wait; done; done\n"
)


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


def ksm_settings() -> dict[str, str]:
    return {name: (KSM / name).read_text().strip() for name in ("run", "pages_to_scan")}


def ksm_restore(saved: dict[str, str]) -> None:
    if saved.get("run") == "0":
        (KSM / "run").write_text("2")  # unmerge everything first
    for name, value in saved.items():
        (KSM / name).write_text(value)


def ksmd_seconds() -> float:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "ksmd":
                    return rfbbench.cpu_seconds([int(entry.name)])
            except OSError:
                continue
    return 0.0


def ksm_merge(pages_to_scan: int) -> float:
    """Turn ksmd on and wait for two full scans; the seconds that took."""
    (KSM / "pages_to_scan").write_text(str(pages_to_scan))
    (KSM / "run").write_text("1")
    began = time.monotonic()
    target = int((KSM / "full_scans").read_text()) + 2
    while int((KSM / "full_scans").read_text()) < target:
        time.sleep(0.2)
    return time.monotonic() - began


def write_top_frames(rootfs: Path) -> float:
    """toplike.py's frames as files in the rootfs, and the script that writes them;
    the mean frame size in bytes."""
    directory = rootfs / "top"
    directory.mkdir(exist_ok=True)
    rng = toplike.random.Random(4)
    tasks = toplike.make_tasks(rng, 40)
    sizes = []
    for index in range(TOP_FRAMES):
        toplike.step(rng, tasks, 10.0)
        data = toplike.frame(rng, tasks, index / 10)
        (directory / f"f{index:03d}").write_bytes(data)
        sizes.append(len(data))
    (directory / "run").write_text(TOP_SCRIPT)
    return statistics.mean(sizes)


def journal_end(run_dir: Path) -> int:
    """The console offset the controller's journal has reached."""
    end = 0
    for name in ("journal.0", "journal.1"):
        try:
            with open(run_dir / name, "rb") as f:
                start = int.from_bytes(f.read(8), "big")
                end = max(end, start + os.fstat(f.fileno()).st_size - 8)
        except OSError:
            continue
    return end


class InflatingViewer(rfbbench.Viewer):
    """A ZRLE viewer that inflates every rectangle (the zlib stream must stay whole)
    but paints no tiles: painting is a Python loop here, and 30 such viewers at 10
    frames a second would need more CPU than the servers they watch."""

    def _zrle(self, w: int, h: int, compressed: bytes) -> Any:
        self.zrle_stream.decompress(compressed)
        return None


def pump(viewers: list[rfbbench.Viewer], seconds: float, counts: list[int]) -> None:
    """Read every viewer's messages for ``seconds``, asking for the next update after
    each; ``counts[i]`` += updates viewer i got."""
    end = time.monotonic() + seconds
    by_socket = {viewer.sock: index for index, viewer in enumerate(viewers)}
    while (left := end - time.monotonic()) > 0:
        ready = [v.sock for v in viewers if v.buffer]
        if not ready:
            ready, _, _ = select.select(list(by_socket), [], [], left)
        for sock in ready:
            index = by_socket[sock]
            message = viewers[index].read_message(0.01)
            if message is not None and message.kind == 0:
                counts[index] += 1
                viewers[index].request()


def reference_top(seconds: float, viewer_class: type[rfbbench.Viewer]) -> tuple[float, float]:
    """Xvnc + xterm running toplike.py at 10 fps, alone, with a decoding ZRLE viewer:
    (CPU seconds per frame written, updates per second the viewer got)."""
    procs = rfbbench.Processes()
    home = tempfile.mkdtemp(prefix="vzvnc-bench-ref-")
    try:
        frames = int((seconds + 4) * 10)
        command = [sys.executable, str(Path(toplike.__file__)), "--frames", str(frames)]
        port, pids = rfbbench.spawn_reference(procs, home, command)
        deadline = time.monotonic() + rfbbench.STARTUP_TIMEOUT
        viewer = viewer_class.connect(port, rfbbench.encodings_for("zrle"), deadline)
        viewer.request(incremental=False)
        counts = [0]
        pump([viewer], 1.5, counts)
        counts = [0]
        before = rfbbench.cpu_seconds(pids)
        pump([viewer], seconds, counts)
        used = rfbbench.cpu_seconds(pids) - before
        viewer.close()
        return used / (seconds * 10), counts[0] / seconds
    finally:
        procs.stop()
        subprocess.run(["rm", "-rf", home], check=False)


def busy(
    statuses: list[Any],
    run_root: Path,
    all_pids: list[int],
    seconds: float,
    frame_bytes: float,
    paint: bool,
) -> None:
    viewer_class = rfbbench.Viewer if paint else InflatingViewer
    print(
        f"busy: {len(statuses)} domains run the top-like program, {seconds:g} s measured; "
        f"ZRLE viewers {'decode and paint' if paint else 'inflate'} every update"
    )
    ref_cpu, ref_rate = reference_top(seconds, viewer_class)
    deadline = time.monotonic() + 30
    viewers = []
    for status in statuses:
        port = int((status.vnc or ":0").rsplit(":", 1)[1])
        viewer = viewer_class.connect(port, rfbbench.encodings_for("zrle"), deadline)
        viewer.request(incremental=False)
        viewers.append(viewer)
    try:
        for viewer in viewers:
            viewer.type_line("sh /top/run")
        counts = [0] * len(viewers)
        pump(viewers, 2.0, counts)  # the programs start, the viewers catch up
        names = [s.name for s in statuses]
        ends = [journal_end(run_root / name) for name in names]
        viewer_cpu = time.process_time()
        cpu = rfbbench.cpu_seconds(all_pids)
        counts = [0] * len(viewers)
        began = time.monotonic()
        pump(viewers, seconds, counts)
        elapsed = time.monotonic() - began
        used = rfbbench.cpu_seconds(all_pids) - cpu
        viewer_cpu = time.process_time() - viewer_cpu
        written = [
            (journal_end(run_root / name) - end) / frame_bytes / elapsed
            for name, end in zip(names, ends, strict=True)
        ]
        for viewer in viewers:
            viewer.keys([ord("c")], ctrl=True)
    finally:
        for viewer in viewers:
            viewer.close()
    rates = [count / elapsed for count in counts]
    frames = sum(written) * elapsed
    per_frame = used / frames if frames else float("nan")
    # A viewer keeps up when it gets (nearly) every frame its program wrote.
    kept = min(rate / wrote for rate, wrote in zip(rates, written, strict=True) if wrote)
    print(
        f"  frames written per second:     median {statistics.median(written):.2f}, "
        f"min {min(written):.2f} (per domain, from the journals)"
    )
    print(
        f"  viewer update rate:            min {min(rates):.2f}, median "
        f"{statistics.median(rates):.2f} per second "
        f"(the slowest got {kept * 100:.0f} % of its program's frames: "
        f"{'every viewer keeps up' if kept >= 0.95 else 'NOT every viewer keeps up'})"
    )
    print(
        f"  CPU, all controllers + console servers: {used / elapsed * 100:.0f} % of one core "
        f"({len(all_pids)} processes)"
    )
    print(
        f"  CPU per frame of one domain:   {per_frame * 1000:.2f} ms; Xvnc + xterm alone: "
        f"{ref_cpu * 1000:.2f} ms per frame ({ref_rate:.1f} updates/s to its viewer); "
        f"ratio {per_frame / ref_cpu:.2f}x"
    )
    print(f"  the viewers' own CPU (this process): {viewer_cpu / elapsed * 100:.0f} % of one core")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--idle", type=float, default=10.0, help="idle seconds measured")
    parser.add_argument("--ksm", action="store_true", help="PSS again with KSM merging on")
    parser.add_argument("--ksm-pages", type=int, default=2000, help="ksmd pages_to_scan")
    parser.add_argument("--busy", type=int, default=0, metavar="K", help="K top-like domains")
    parser.add_argument("--busy-seconds", type=float, default=10.0)
    parser.add_argument(
        "--busy-paint", action="store_true", help="busy viewers paint tiles too (slow)"
    )
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
    frame_bytes = write_top_frames(rootfs) if args.busy else 0.0
    # Every viewer, and the controllers' and console servers' fds, are ours to hold.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    ksm_saved = ksm_settings() if args.ksm else {}
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
        start_cpu = (
            [rfbbench.cpu_seconds([s.controller_pid or 0]) for s in statuses],
            [rfbbench.cpu_seconds([s.console_server_pid or 0]) for s in statuses],
        )
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
        print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
        print(
            f"domains started:                 {args.count} in {elapsed:.1f} s "
            f"({elapsed / args.count * 1000:.0f} ms each)"
        )
        print(
            f"CPU per domain until it answered: controller "
            f"{statistics.mean(start_cpu[0]) * 1000:.0f} ms, console server "
            f"{statistics.mean(start_cpu[1]) * 1000:.0f} ms"
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
        if args.ksm:
            scans = ksm_merge(args.ksm_pages)
            # What keeping them merged costs: ksmd at the kernel's default scan rate.
            (KSM / "pages_to_scan").write_text("100")
            ksmd = ksmd_seconds()
            time.sleep(args.idle)
            ksmd = (ksmd_seconds() - ksmd) / args.idle
            merged_controller = [pss_kib(s.controller_pid or 0) for s in statuses]
            merged_server = [pss_kib(s.console_server_pid or 0) for s in statuses]
            merged_fork_server = sum(pss_kib(pid) for pid in set(forked))
            print(
                f"with KSM (merged by two full scans at pages_to_scan {args.ksm_pages}: "
                f"{scans:.0f} s; then at the default 100, ksmd used {ksmd * 100:.1f} % of a core):"
            )
            print(
                f"  PSS per domain, controller:    {statistics.mean(merged_controller) / 1024:.1f}"
                f" MiB (without: {statistics.mean(controller) / 1024:.1f})"
            )
            print(
                f"  PSS per domain, console server: {statistics.mean(merged_server) / 1024:.1f}"
                f" MiB (without: {statistics.mean(server) / 1024:.1f})"
            )
            print(
                f"  PSS of the fork server:        {merged_fork_server / 1024:.1f} MiB "
                f"(without: {fork_server / 1024:.1f})"
            )
            ksm_restore(ksm_saved)  # ksmd must not run beside the CPU measurements
            ksm_saved = {}
        sys.stdout.flush()
        for viewer in viewers:
            viewer.close()
        if args.busy:
            busy(
                statuses[: args.busy],
                home / "run",
                vzvnc_pids,
                args.busy_seconds,
                frame_bytes,
                args.busy_paint,
            )
        restarts = []
        # The last domains: the first ones may have been busy.
        for name in names[-args.restarts :]:
            old = sup.status(name)
            assert old.console_server_pid and old.vnc
            port = int(old.vnc.rsplit(":", 1)[1])
            killed = time.monotonic()
            os.kill(old.console_server_pid, signal.SIGKILL)
            while sup.status(name).console_server_pid in (None, old.console_server_pid):
                time.sleep(0.005)
            first_update_seconds(port)
            restarts.append(time.monotonic() - killed)
        print(
            f"console server restart to first update: median "
            f"{statistics.median(restarts) * 1000:.0f} ms, max {max(restarts) * 1000:.0f} ms "
            f"({len(restarts)} kills)"
        )
    finally:
        if ksm_saved:
            ksm_restore(ksm_saved)
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
