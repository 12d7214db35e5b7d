"""Mass start: N ``vzvnc run`` consoles at once beside N Xvnc + xterm, in one run.

Issue 11: "50 ``vzvnc run`` consoles started at once all listening within
Xvnc+xterm's time for 50". Four rounds, each starting ``--count`` (50) consoles
at once, every one on its own port and running ``/bin/sh`` at 80x25:

- ``reference``: TigerVNC ``Xvnc`` with one ``xterm`` each (``rfbbench.spawn_reference``,
  called from ``--count`` threads at once, so every Xvnc starts at the same time
  and its xterm as soon as it reports its display);
- ``vzvnc cold``: ``python -m vzvnc run`` with no fork server running (a fresh
  runtime directory, ``VZVNC_RUNTIME_DIR``): the first client starts it and
  the others wait for it;
- ``vzvnc warm``: the same with the fork server already running (the cold
  round's, checked with ``python -m vzvnc.run_server start``);
- ``vzvnc in-process``: ``VZVNC_NO_FORK_SERVER=1``: every console imports
  everything itself, as before the fork server.

The clock starts just before the first process is spawned and, per console,
stops when a TCP connection to its port reads the server's ProtocolVersion
("RFB 003.00x\\n"); a refused connection is retried every 10 ms. The table gives
the last console's time (the issue's number), the median, and how long spawning
took. vzvnc greets an RFB viewer after a 50 ms wait for a WebSocket request
(its default); the reference greets at once. A vzvnc console listens only once
its program runs on the pty, where Xvnc listens before its xterm has even
connected: the comparison leans, if anything, the reference's way.

Then a viewer (RFB 3.8, security None, Tight, no decoding) connects to every
console and receives a full update; one second later, PSS (``smaps_rollup``)
of the server processes / count: for the reference Xvnc + xterm, for vzvnc in
process the vzvnc processes, for vzvnc through the fork server every console
process plus the fork server itself (its share of the pages the consoles
share with it). The thin ``vzvnc run`` clients, which only wait, are shown on
their own line. Shells are left out on both sides.

    python benchmarks/massstart.py                 # about 40 s
    python benchmarks/massstart.py --count 20 --json out.json
    python benchmarks/massstart.py --python VENV/bin/python

Every Python process pays for its interpreter's ``site``: in this checkout's
editable install, setuptools' finder (pathlib, re, urllib...) is about 10 ms of
each thin client's 20; ``--python`` runs vzvnc with another interpreter (one
whose site-packages names the same directories in a plain ``.pth``, say, as a
regular install would) to see the difference.

Every process is its own process group and is stopped on the way out (also
after an error or a signal); the fork server is stopped with ``python -m
vzvnc.run_server stop`` and killed if it lingers. Nothing here imports vzvnc.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rfbbench import (
    COLUMNS,
    LINES,
    MISSING_HELP,
    REPO,
    BenchmarkError,
    Processes,
    Viewer,
    clean_env,
    encodings_for,
    machine,
    memory_kib,
    missing_prerequisites,
    signals_as_exceptions,
    spawn_reference,
)

SHELL = ["/bin/sh"]
GREET_TIMEOUT = 120.0
RETRY = 0.01


@dataclass
class Round:
    name: str
    last_s: float = 0.0
    median_s: float = 0.0
    spawned_s: float = 0.0
    pss_per_console_mib: float = 0.0
    client_pss_per_console_mib: float | None = None
    processes: dict[str, dict[str, int]] = field(default_factory=dict)


def reserve_ports(count: int) -> list[int]:
    """``count`` distinct free ports (all held at once while they are chosen)."""
    held = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
        return [int(sock.getsockname()[1]) for sock in held]
    finally:
        for sock in held:
            sock.close()


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid and stat[0] != "Z":
                    found.append(int(entry))
    return found


def wait_for_greetings(ports: list[int], started: float, check: Callable[[], None]) -> list[float]:
    """Seconds from ``started`` until each port's server sent its ProtocolVersion."""
    done: dict[int, float] = {}
    sockets: dict[int, socket.socket] = {}
    received: dict[int, bytes] = {}
    next_try = dict.fromkeys(ports, 0.0)
    last_check = 0.0
    deadline = time.monotonic() + GREET_TIMEOUT
    try:
        while len(done) < len(ports):
            now = time.monotonic()
            if now > deadline:
                missing = sorted(set(ports) - set(done))
                raise BenchmarkError(f"{len(missing)} consoles never greeted, e.g. {missing[:3]}")
            if now - last_check > 0.5:
                check()
                last_check = now
            for port in ports:
                if port in done or port in sockets or next_try[port] > now:
                    continue
                sock = socket.socket()
                sock.setblocking(False)
                code = sock.connect_ex(("127.0.0.1", port))
                if code in (0, errno.EINPROGRESS):
                    sockets[port] = sock
                    received[port] = b""
                else:
                    sock.close()
                    next_try[port] = now + RETRY
            if not sockets:
                time.sleep(RETRY)
                continue
            readable, _, _ = select.select(list(sockets.values()), [], [], RETRY)
            for sock in readable:
                port = next(p for p, s in sockets.items() if s is sock)
                try:
                    data = sock.recv(12 - len(received[port]))
                except OSError:
                    data = b""
                if not data:  # refused late or closed: try again
                    sockets.pop(port).close()
                    next_try[port] = time.monotonic() + RETRY
                    continue
                received[port] += data
                if len(received[port]) == 12:
                    if not received[port].startswith(b"RFB 003.00"):
                        raise BenchmarkError(f"port {port}: not RFB: {received[port]!r}")
                    done[port] = time.monotonic() - started
                    sockets.pop(port).close()
    finally:
        for sock in sockets.values():
            sock.close()
    return [done[port] for port in ports]


def connect_viewers(ports: list[int]) -> list[Viewer]:
    viewers = []
    deadline = time.monotonic() + GREET_TIMEOUT
    try:
        for port in ports:
            viewer = Viewer.connect(port, encodings_for("tight"), deadline, decode=False)
            viewers.append(viewer)
            viewer.request(incremental=False)
        for viewer in viewers:
            while True:
                message = viewer.read_message(max(0.1, deadline - time.monotonic()))
                if message is None:
                    raise BenchmarkError("a console sent no first update")
                if message.kind == 0:
                    break
    except BaseException:
        for viewer in viewers:
            viewer.close()
        raise
    return viewers


def total_mib(memory: dict[str, dict[str, int]]) -> float:
    return sum(entry.get("Pss", 0) for entry in memory.values()) / 1024


class VzvncSide:
    """The vzvnc consoles' environment: a runtime directory of the run's own."""

    def __init__(self, home: str, python: str) -> None:
        self.home = home
        self.python = python
        self.runtime = Path(home) / "runtime"
        self.runtime.mkdir(mode=0o700)
        self.env = clean_env(home)
        if python == sys.executable:  # another interpreter brings its own vzvnc
            self.env["PYTHONPATH"] = str(REPO)
        self.env["VZVNC_RUNTIME_DIR"] = str(self.runtime)

    def control(self, command: str) -> str:
        result = subprocess.run(
            [self.python, "-m", "vzvnc.run_server", command],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return result.stdout.strip()

    def server_pid(self) -> int | None:
        status = self.control("status")
        if not status.startswith("running: pid "):
            return None
        return int(status.split()[2].rstrip(","))

    def all_servers(self) -> list[int]:
        """The fork servers (current or stepping aside) serving this directory."""
        found = []
        marker = f"--dir\0{self.runtime}\0".encode()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with suppress(OSError):
                    cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                    # Its consoles share its command line; they are named vzvnc.
                    console = Path(f"/proc/{entry}/comm").read_text().strip() == "vzvnc"
                    serving = b"vzvnc.run_server\0serve\0" in cmdline and marker in cmdline
                    if serving and not console:
                        found.append(int(entry))
        return found

    def stop_server(self) -> None:
        servers = self.all_servers()
        for pid in servers:  # SIGTERM: a stop request
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for pid in servers:
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def log_tail(self) -> str:
        lines = []
        for log in self.runtime.glob("run-*.log"):
            lines += log.read_text(errors="replace").splitlines()[-10:]
        return "\n".join(lines)


def run_round(
    name: str,
    count: int,
    spawn_all: Callable[[Processes, list[int]], list[list[int]]],
    server_pids: Callable[[list[list[int]]], tuple[list[int], list[int]]],
) -> Round:
    """Start ``count`` consoles with ``spawn_all``, time their greetings, measure PSS
    with a viewer each, stop them. ``server_pids`` maps the spawned pids to (server
    processes, thin clients)."""
    result = Round(name)
    procs = Processes()
    ports = reserve_ports(count)
    spawned: list[list[int]] = []
    failure: list[BaseException] = []
    viewers: list[Viewer] = []

    def spawner() -> None:
        try:
            spawned.extend(spawn_all(procs, ports))
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)
        result.spawned_s = time.monotonic() - started

    def check() -> None:
        if failure:
            raise BenchmarkError(f"{name}: starting failed: {failure[0]}")
        procs.check_alive(name)

    try:
        started = time.monotonic()
        thread = threading.Thread(target=spawner)
        thread.start()
        times = wait_for_greetings(ports, started, check)
        thread.join()
        check()
        result.last_s = max(times)
        result.median_s = statistics.median(times)
        viewers = connect_viewers(ports)
        time.sleep(1.0)
        servers, clients = server_pids(spawned)
        result.processes = memory_kib(servers)
        result.pss_per_console_mib = total_mib(result.processes) / count
        if clients:
            result.client_pss_per_console_mib = total_mib(memory_kib(clients)) / count
    finally:
        for viewer in viewers:
            viewer.close()
        procs.stop()
    return result


def vzvnc_spawner(side: VzvncSide, extra_env: dict[str, str]) -> Callable[..., list[list[int]]]:
    env = {**side.env, **extra_env}

    def spawn_all(procs: Processes, ports: list[int]) -> list[list[int]]:
        pids = []
        for port in ports:
            argv = [side.python, "-m", "vzvnc", "run", "--listen", f"127.0.0.1:{port}"]
            argv += ["--size", f"{COLUMNS}x{LINES}", "--", *SHELL]
            pids.append([procs.spawn(argv, env, cwd=side.home)])
        return pids

    return spawn_all


def reference_spawner(home: str) -> Callable[..., list[list[int]]]:
    def spawn_all(procs: Processes, ports: list[int]) -> list[list[int]]:
        with ThreadPoolExecutor(max_workers=len(ports)) as pool:
            futures = [
                pool.submit(spawn_reference, procs, home, SHELL, port=port) for port in ports
            ]
            return [future.result()[1] for future in futures]

    return spawn_all


def wait_consoles_gone(side: VzvncSide) -> None:
    deadline = time.monotonic() + 20
    while any(children_of(pid) for pid in side.all_servers()) and time.monotonic() < deadline:
        time.sleep(0.05)


def measure(count: int, settle: float, python: str) -> list[Round]:
    home = tempfile.mkdtemp(prefix="vzvnc-massstart-")
    side = VzvncSide(home, python)
    rounds = []

    def forked_pids(spawned: list[list[int]]) -> tuple[list[int], list[int]]:
        # Every fork server of our directory: one replaced meanwhile (vzvnc's files
        # changed) keeps serving the consoles it forked.
        servers = side.all_servers()
        consoles = [pid for server in servers for pid in children_of(server)]
        if len(consoles) != count:
            raise BenchmarkError(
                f"{len(servers)} fork servers have {len(consoles)} consoles, not {count}; "
                f"the log:\n{side.log_tail()}"
            )
        return [*consoles, *servers], [pid for group in spawned for pid in group]

    def own_pids(spawned: list[list[int]]) -> tuple[list[int], list[int]]:
        return [pid for group in spawned for pid in group], []

    try:
        plan: list[tuple[str, Callable[..., list[list[int]]], Callable[..., object]]] = [
            ("Xvnc + xterm", reference_spawner(home), own_pids),
            ("vzvnc cold", vzvnc_spawner(side, {}), forked_pids),
            ("vzvnc warm", vzvnc_spawner(side, {}), forked_pids),
            ("vzvnc in-process", vzvnc_spawner(side, {"VZVNC_NO_FORK_SERVER": "1"}), own_pids),
        ]
        for name, spawn_all, pids in plan:
            for _ in range(3):
                if name == "vzvnc cold" and side.server_pid() is not None:
                    raise BenchmarkError("a fork server runs already: cold would be warm")
                if name == "vzvnc warm" and not side.control("start").startswith("running"):
                    raise BenchmarkError(f"the fork server is not running:\n{side.log_tail()}")
                print(f"  {name}: {count} consoles at once ...", end="", flush=True)
                before = side.server_pid()
                result = run_round(name, count, spawn_all, pids)  # type: ignore[arg-type]
                print(f" last listening after {result.last_s:.2f} s", flush=True)
                replaced = name == "vzvnc warm" and (
                    side.server_pid() != before or len(side.all_servers()) > 1
                )
                wait_consoles_gone(side)
                time.sleep(settle)
                if not replaced:
                    break
                # vzvnc's files changed meanwhile (someone edits the checkout): the
                # server was replaced, so the round was not warm.
                print("  (the fork server was replaced during the round: once more)")
            rounds.append(result)
    finally:
        side.stop_server()
        shutil.rmtree(home, ignore_errors=True)
    return rounds


def table(rounds: list[Round], count: int) -> str:
    width = 18
    lines = ["".ljust(34) + "".join(r.name.rjust(width) for r in rounds)]

    def row(label: str, values: list[str]) -> None:
        lines.append(label.ljust(34) + "".join(v.rjust(width) for v in values))

    row(f"last of {count} listening (s)", [f"{r.last_s:.2f}" for r in rounds])
    row("median listening (s)", [f"{r.median_s:.2f}" for r in rounds])
    row("all spawned after (s)", [f"{r.spawned_s:.2f}" for r in rounds])
    row("PSS per console (MiB)", [f"{r.pss_per_console_mib:.1f}" for r in rounds])
    row(
        "  + thin vzvnc run client (MiB)",
        [
            "-" if r.client_pss_per_console_mib is None else f"{r.client_pss_per_console_mib:.1f}"
            for r in rounds
        ],
    )
    reference = rounds[0]
    lines.append("")
    lines.append(f"ratios / {reference.name} (below 1: vzvnc is faster or smaller)")
    for r in rounds[1:]:
        clients = r.client_pss_per_console_mib or 0.0
        lines.append(
            f"  {r.name:18} last listening {r.last_s / reference.last_s:5.2f}x   "
            f"median {r.median_s / reference.median_s:5.2f}x   "
            f"PSS {r.pss_per_console_mib / reference.pss_per_console_mib:5.2f}x"
            + (
                f" ({(r.pss_per_console_mib + clients) / reference.pss_per_console_mib:.2f}x "
                "with the clients)"
                if clients
                else ""
            )
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=50, help="consoles at once (50)")
    parser.add_argument(
        "--settle", type=float, default=2.0, help="seconds of rest between rounds (2)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter that runs vzvnc (default: this one); e.g. one whose "
        "site-packages holds no editable-install finder, to see what that costs",
    )
    args = parser.parse_args()
    missing = missing_prerequisites()
    if missing:
        print(f"missing: {', '.join(missing)}\n{MISSING_HELP}", file=sys.stderr)
        return 2
    print(machine())
    try:
        with signals_as_exceptions():
            rounds = measure(args.count, args.settle, args.python)
    except BenchmarkError as exc:
        print(f"\nfailed: {exc}", file=sys.stderr)
        return 1
    print()
    print(table(rounds, args.count))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rounds], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
