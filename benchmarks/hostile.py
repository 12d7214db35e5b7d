"""Hostile clients against vzvnc and against Xvnc + xterm, scenario by scenario.

Both servers ask for VNC Authentication and show the same program: ``ECHO_PROGRAM``
below, a raw-mode loop that echoes lower-case letters on the first line, drops
every other byte it reads (the input flood's ``~``, pastes) and, after Ctrl+B
until Ctrl+E, rewrites rows 10-25 fifty times a second (the "busy screen").
vzvnc runs it as ``python -m vzvnc run --password-file F -- python echo.py``; the
reference is TigerVNC's ``Xvnc -SecurityTypes VncAuth -PasswordFile F`` with one
``xterm -fn 8x16 -e python echo.py``, both 80x25 cells, 640x400. Xvnc runs with
``-UseBlacklist=0`` except in ``wrongpw``, where its blacklist is the reference.

For every scenario and server, fresh processes are started and:

1. an honest viewer (RFB 3.8, VNC Authentication, Tight, from source address
   127.0.0.2) connects, waits for the program's prompt and keeps an
   incremental FramebufferUpdateRequest for the top four text rows outstanding;
2. before, during and after the attack it types letters (a random 0-33 ms pause
   each) and times each from the KeyEvent to the first update whose pixels
   differ; the echo p50/p99 of each phase are reported, and keys with no echo
   within 2 s are counted as "lost";
3. the attack runs in a child process (``hostile.py attack ...``) from source
   address 127.0.0.1 for the "during" phase, then reports what it saw;
4. the server processes' RSS (``VmRSS``) and PSS (``smaps_rollup``) are sampled
   every 50 ms from just before the attack until it has ended: "growth" is the
   peak minus the value before. Server processes: vzvnc's python; Xvnc + xterm.

Scenarios (the attack, and what its notes column reports):

- ``baseline``: nothing.
- ``idle``: 200 TCP connections opened at once that never send a byte; at the
  end, how many the server had accepted, greeted (sent its version) and kept.
- ``slowloris``: 50 connections sending a handshake (version, security type,
  response) one byte per second; how many the server dropped, and when.
- ``garbage``: clients in a loop, each sending one kind of garbage (an HTTP
  request, random bytes, a bad version, and after authentication an unknown
  message type, a bad pixel format, 64 KiB of random bytes); dropped/sent.
- ``cuttext``: ClientCutText claiming 2^31 bytes (U32 0x80000000) and 2^31-1
  bytes, each followed by up to 64 MiB of filler, then a real 10 MB text; per
  kind whether the server dropped the client and how many MiB it took first.
- ``setenc``: two clients that never read: one toggles pseudo-encodings that
  make a server answer (Extended Clipboard, QEMU keys, Fence, Continuous
  Updates, ExtendedDesktopSize) in SetEncodings after SetEncodings, the other
  sends SetEncodings with 65535 entries; MiB they got the server to take.
- ``neverread``: 20 clients (4 KiB receive buffer) that ask for a full Raw
  update every 20 ms and never read, with the busy screen on in all phases.
- ``flood``: one client sends 100,000 key events (``~`` down/up) in one write,
  then a request for one pixel: the time to its answer is the time the server
  took to handle every event.
- ``storm``: connect + VNC Authentication + ClientInit + a full update read
  whole + close, as fast as possible: sequentially, then with 20 and with 100
  concurrent clients (threads in the attack process); cycles per second each.
  vzvnc is also run with ``--no-websocket`` (no 50 ms sniffing wait).
- ``wrongpw``: wrong passwords in a loop from 127.0.0.1: failures before the
  first refusal and when it came, whether the right password from 127.0.0.1 is
  refused then, and how long a new honest client from 127.0.0.2 takes (connect
  to first full update) while 127.0.0.1 is locked out.

Run from the repository root (needs Xvnc, xterm, xfonts-base; see README.md):

    python benchmarks/hostile.py                       # about 3 minutes
    python benchmarks/hostile.py --quick               # about 2.5 minutes
    python benchmarks/hostile.py --only vzvnc --scenarios flood,storm --json out.json

Every process runs in its own process group and is stopped on the way out, also
after an error, Ctrl+C or SIGTERM; each scenario has a deadline after which it is
abandoned (its servers and attackers killed) and the run goes on. Exit status 0
when every scenario ran, 1 when one failed, 2 without the reference's packages.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rfbbench import (
    CELL_H,
    CELL_W,
    COLUMNS,
    HEIGHT,
    LAST_RECT,
    LINES,
    MISSING_HELP,
    RAW,
    REPO,
    STARTUP_TIMEOUT,
    WIDTH,
    XTERM_ARGS,
    BenchmarkError,
    Processes,
    Viewer,
    clean_env,
    encodings_for,
    free_port,
    machine,
    missing_prerequisites,
    signals_as_exceptions,
)

PASSWORD = b"s3cret"
WRONG_PASSWORD = b"guess"
HONEST_SOURCE = "127.0.0.2"
HOSTILE_SOURCE = "127.0.0.1"
# The honest viewer asks for the top four text rows only: the busy rows are not in it.
TOP = (0, 0, WIDTH, 4 * CELL_H)
ECHO_TIMEOUT = 2.0
QUIET = 0.02
JITTER = 2 / 60
SAMPLE_EVERY = 0.05
XK_B, XK_E = ord("b"), ord("e")
# Pseudo-encodings (rfbproto) a server answers when they are switched on.
EXTENDED_CLIPBOARD, QEMU_EXTENDED_KEY, FENCE = -1063131698, -258, -312
CONTINUOUS_UPDATES, EXTENDED_DESKTOP_SIZE = -313, -308
TIGHT, ZRLE, COPY_RECT = 7, 16, 1
IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h: bind() leaves the port to connect()

ECHO_PROGRAM = r"""
import os, select, tty
tty.setraw(0)
os.write(1, b"\x1b[2J\x1b[H> ")
column = frame = 0
busy = False
while True:
    ready, _, _ = select.select([0], [], [], 0.02 if busy else None)
    if ready:
        data = os.read(0, 65536)
        if not data:
            break
        out = bytearray()
        for byte in data:
            if 97 <= byte <= 122:
                if column >= 60:
                    out += b"\r\x1b[K> "
                    column = 0
                out.append(byte)
                column += 1
            elif byte == 2:
                busy = True
            elif byte == 5:
                busy = False
        if out:
            os.write(1, bytes(out))
    if busy:
        frame += 1
        rows = b"".join(
            b"\x1b[%d;1H" % row + (b"%09d " % (frame * 31 + row)) * 8 for row in range(10, 26)
        )
        os.write(1, b"\x1b7" + rows + b"\x1b8")
"""

SCENARIOS = (
    "baseline",
    "idle",
    "slowloris",
    "garbage",
    "cuttext",
    "setenc",
    "neverread",
    "flood",
    "storm",
    "wrongpw",
)


@dataclass(frozen=True)
class Timing:
    before: float = 1.0
    during: float = 2.5
    after: float = 1.0
    slowloris: float = 11.0  # long enough for vzvnc's 10 s handshake timeout
    storm_phase: float = 2.0  # each of: sequential, 20 and 100 at once
    wrongpw: float = 3.0


QUICK = Timing(before=0.8, during=1.5, after=0.8, slowloris=3.0, storm_phase=1.0, wrongpw=2.0)


def during_seconds(scenario: str, timing: Timing) -> float:
    if scenario == "slowloris":
        return timing.slowloris
    if scenario == "storm":
        return 3 * timing.storm_phase
    if scenario == "wrongpw":
        return timing.wrongpw
    return timing.during


# -- RFB with VNC Authentication -------------------------------------------------------


class Refused(BenchmarkError):
    """The server turned us away before authentication, saying why."""


class AuthFailed(BenchmarkError):
    """The server said our password was wrong."""


_REVERSE_BITS = bytes(int(f"{value:08b}"[::-1], 2) for value in range(256))


def vnc_response(password: bytes, challenge: bytes) -> bytes:
    """rfbproto VNC Authentication: DES of the challenge, keyed with the password
    (8 bytes, NUL padded) whose every byte has its bits reversed (as d3des does)."""
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    key = password[:8].ljust(8, b"\0").translate(_REVERSE_BITS)
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()


class AuthViewer(Viewer):
    """``rfbbench.Viewer`` with VNC Authentication instead of security type None."""

    password = PASSWORD

    def handshake(self, encodings: list[int], deadline: float) -> None:
        version = self._take(12, deadline)
        if version == b"RFB 003.003\n":  # how Xvnc's blacklist turns a client away
            (sec_type,) = struct.unpack(">I", self._take(4, deadline))
            if sec_type == 0:
                raise Refused(self._reason(deadline))
            raise BenchmarkError(f"RFB 3.3 security type {sec_type}")
        if not version.startswith(b"RFB 003.00"):
            raise BenchmarkError(f"not an RFB server: {version!r}")
        self.sock.sendall(b"RFB 003.008\n")
        (count,) = self._take(1, deadline)
        if count == 0:
            raise Refused(self._reason(deadline))
        if 2 not in self._take(count, deadline):
            raise BenchmarkError("the server does not offer VNC Authentication")
        self.sock.sendall(b"\x02")
        self.sock.sendall(vnc_response(self.password, self._take(16, deadline)))
        (result,) = struct.unpack(">I", self._take(4, deadline))
        if result != 0:
            raise AuthFailed(self._reason(deadline))
        self.sock.sendall(b"\x01")  # shared
        width, height = struct.unpack(">HH", self._take(4, deadline))
        self._take(16, deadline)
        (name_length,) = struct.unpack(">I", self._take(4, deadline))
        self._take(name_length, deadline)
        self.pixels = np.zeros((height, width, 4), np.uint8)
        pixel_format = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
        message = struct.pack(">B3x", 0) + pixel_format
        message += struct.pack(">BxH", 2, len(encodings))
        message += b"".join(struct.pack(">i", e) for e in encodings)
        # The pointer where Xvnc starts it: with Cursor listed, Xvnc stops drawing it.
        message += struct.pack(">BBHH", 5, 0, width // 2, height // 2)
        self.sock.sendall(message)

    def _reason(self, deadline: float) -> str:
        (length,) = struct.unpack(">I", self._take(4, deadline))
        return self._take(length, deadline).decode(errors="replace")

    def request_top(self, incremental: bool = True) -> None:
        self.sock.sendall(struct.pack(">BBHHHH", 3, int(incremental), *TOP))


def open_socket(
    port: int, source: str | None = None, timeout: float = 5.0, rcvbuf: int = 0
) -> socket.socket:
    """A TCP connection to 127.0.0.1:``port`` (from ``source`` when given)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source is not None:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def connect_viewer(
    port: int,
    *,
    source: str | None = None,
    password: bytes = PASSWORD,
    encodings: list[int] | None = None,
    decode: bool = True,
    timeout: float = 5.0,
    rcvbuf: int = 0,
) -> AuthViewer:
    sock = open_socket(port, source, timeout, rcvbuf)
    viewer = AuthViewer(sock, decode=decode)
    viewer.password = password
    try:
        viewer.handshake(encodings or encodings_for("tight"), time.monotonic() + timeout)
    except BaseException:
        sock.close()
        raise
    return viewer


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (reads and drops what it sent), at once."""
    timeout = sock.gettimeout()
    sock.setblocking(False)  # a socket with a timeout would wait for data first
    try:
        while True:
            if not sock.recv(65536):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        with suppress(OSError):
            sock.settimeout(timeout)


def wait_closed(sock: socket.socket, timeout: float) -> float | None:
    """Seconds until the server closes ``sock`` (reading all it sends), or None."""
    start = time.monotonic()
    sock.settimeout(0.1)
    while time.monotonic() - start < timeout:
        try:
            if not sock.recv(65536):
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - start
    return None


# -- the servers ----------------------------------------------------------------------


@dataclass
class Server:
    kind: str  # vzvnc, vzvnc-nows, xvnc
    port: int
    pids: list[int]  # the processes whose memory counts


def write_home(home: Path) -> None:
    (home / "echo.py").write_text(ECHO_PROGRAM)
    password = home / "password"
    password.write_bytes(PASSWORD + b"\n")
    password.chmod(0o600)
    obfuscated = subprocess.run(
        ["vncpasswd", "-f"], input=PASSWORD + b"\n", capture_output=True, check=True
    ).stdout
    (home / "xvnc-password").write_bytes(obfuscated)
    (home / "xvnc-password").chmod(0o600)


def spawn_server(procs: Processes, kind: str, home: Path, scenario: str) -> Server:
    port = free_port()
    env = clean_env(str(home))
    program = [sys.executable, str(home / "echo.py")]
    if kind.startswith("vzvnc"):
        env["PYTHONPATH"] = str(REPO)
        env["VZVNC_NO_FORK_SERVER"] = "1"  # the measured pid is the console itself
        argv = [sys.executable, "-m", "vzvnc", "run", "--listen", f"127.0.0.1:{port}"]
        argv += ["--size", f"{COLUMNS}x{LINES}", "--password-file", str(home / "password")]
        if kind == "vzvnc-nows":
            argv.append("--no-websocket")
        pid = procs.spawn([*argv, "--", *program], env, cwd=str(home))
        return Server(kind, port, [pid])
    read_fd, write_fd = os.pipe()
    blacklist = "1" if scenario == "wrongpw" else "0"
    argv = ["Xvnc", "-displayfd", str(write_fd), "-rfbport", str(port)]
    argv += ["-geometry", f"{WIDTH}x{HEIGHT}", "-depth", "24", "-localhost", "-nolisten", "tcp"]
    argv += ["-SecurityTypes", "VncAuth", "-PasswordFile", str(home / "xvnc-password")]
    argv += [f"-UseBlacklist={blacklist}"]
    try:
        xvnc = procs.spawn(argv, env, pass_fds=(write_fd,), cwd=str(home))
        os.close(write_fd)
        write_fd = -1
        display = b""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not display.endswith(b"\n"):
            ready, _, _ = select.select([read_fd], [], [], deadline - time.monotonic())
            chunk = os.read(read_fd, 16) if ready else b""
            if not chunk:
                procs.check_alive("Xvnc")
                raise BenchmarkError("Xvnc never reported its display number")
            display += chunk
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    env["DISPLAY"] = f":{int(display)}"
    xterm = procs.spawn(["xterm", *XTERM_ARGS, "-e", *program], env, cwd=str(home))
    return Server(kind, port, [xvnc, xterm])


def connect_honest(procs: Processes, server: Server) -> AuthViewer:
    """The honest viewer, once the program's prompt is on screen and a key has echoed."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            viewer = connect_viewer(server.port, source=HONEST_SOURCE)
            break
        except (ConnectionRefusedError, TimeoutError):
            procs.check_alive(server.kind)
            if time.monotonic() > deadline:
                raise BenchmarkError(f"{server.kind}: nothing accepts on {server.port}") from None
            time.sleep(0.02)
    try:
        viewer.request_top(incremental=False)
        while not viewer.pixels[:CELL_H, :CELL_W, :3].max() > 64:  # the prompt's '>'
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchmarkError(f"{server.kind}: the program's prompt never appeared")
            message = viewer.read_message(min(remaining, 0.5))
            if message is None:
                procs.check_alive(server.kind)
            elif message.kind == 0:
                viewer.request_top()
        time.sleep(0.2)
        # Unmeasured keys: xterm hides the X pointer on the first one.
        echo_phase(viewer, 0.3, random.Random(0), Echo())
    except BaseException:
        viewer.close()
        raise
    return viewer


# -- measuring the honest viewer -------------------------------------------------------


@dataclass
class Echo:
    latencies_ms: list[float] = field(default_factory=list)
    lost: int = 0
    dropped: str = ""  # why the honest viewer lost its connection, if it did

    def p(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        return float(np.percentile(np.array(self.latencies_ms), q))


_letters = iter(range(1 << 62))


def echo_phase(viewer: AuthViewer, seconds: float, rng: random.Random, echo: Echo) -> Echo:
    """Type letters for ``seconds``, timing each to its first changed update."""
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            time.sleep(rng.uniform(0.0, JITTER))
            sent = time.monotonic()
            viewer.keys([ord("a") + next(_letters) % 26])
            latency = None
            while True:
                message = viewer.read_message(ECHO_TIMEOUT if latency is None else QUIET)
                if message is None:
                    break
                if message.kind == 0:
                    if message.changed and latency is None:
                        latency = message.done - sent
                    viewer.request_top()
            if latency is None:
                echo.lost += 1
            else:
                echo.latencies_ms.append(latency * 1000)
    except (BenchmarkError, OSError) as exc:
        echo.dropped = str(exc) or type(exc).__name__
    return echo


def memory_now(pids: list[int]) -> tuple[int, int]:
    """RSS and anonymous PSS of ``pids`` in KiB.

    PSS counts shared file pages in part, so it moves when unrelated processes that
    map the same files (another Xvnc, another python) start or end: only its
    anonymous part (``Pss_Anon``) is taken, which is what a hostile client can grow.
    """
    rss = pss = 0
    for pid in pids:
        with suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss_Anon:"):
                    pss += int(line.split()[1])
    return rss, pss


class MemorySampler(threading.Thread):
    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.start_value = memory_now(pids)
        self.peak = self.start_value
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(SAMPLE_EVERY):
            rss, pss = memory_now(self.pids)
            self.peak = (max(self.peak[0], rss), max(self.peak[1], pss))

    def finish(self) -> tuple[float, float]:
        """Peak growth of RSS and PSS in MiB."""
        self._stop_event.set()
        self.join()
        rss, pss = memory_now(self.pids)
        self.peak = (max(self.peak[0], rss), max(self.peak[1], pss))
        return (
            (self.peak[0] - self.start_value[0]) / 1024,
            (self.peak[1] - self.start_value[1]) / 1024,
        )


# -- one scenario against one server ---------------------------------------------------------


@dataclass
class Run:
    scenario: str
    server: str
    before: Echo = field(default_factory=Echo)
    during: Echo = field(default_factory=Echo)
    after: Echo = field(default_factory=Echo)
    rss_growth_mib: float | None = None
    pss_growth_mib: float | None = None
    attack: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0


class ScenarioTimeout(BenchmarkError):
    pass


@contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Raise ``ScenarioTimeout`` in the main thread after ``seconds``."""

    def expired(signum: int, frame: object) -> None:
        raise ScenarioTimeout(f"no result within {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_scenario(scenario: str, kind: str, timing: Timing) -> Run:
    run = Run(scenario, kind)
    during = during_seconds(scenario, timing)
    budget = STARTUP_TIMEOUT + timing.before + during + timing.after + 40
    procs = Processes()
    attackers = Processes()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vzvnc-hostile-") as home_name:
        home = Path(home_name)
        try:
            with alarm(budget):
                write_home(home)
                server = spawn_server(procs, kind, home, scenario)
                viewer = connect_honest(procs, server)
                try:
                    measure(run, server, viewer, attackers, home, timing, during)
                finally:
                    viewer.close()
        except BenchmarkError as exc:
            run.error = str(exc)
        finally:
            attackers.stop()
            procs.stop()
    run.seconds = time.monotonic() - started
    return run


def measure(
    run: Run,
    server: Server,
    viewer: AuthViewer,
    attackers: Processes,
    home: Path,
    timing: Timing,
    during: float,
) -> None:
    rng = random.Random(hash((run.scenario, run.server)) & 0xFFFF)
    busy = run.scenario == "neverread"
    if busy:
        viewer.keys([XK_B], ctrl=True)
    echo_phase(viewer, timing.before, rng, run.before)
    out = home / "attack.json"
    argv = [sys.executable, __file__, "attack", run.scenario, str(server.port)]
    argv += ["--seconds", str(during), "--out", str(out)]
    if run.scenario == "storm":
        argv += ["--storm-phase", str(timing.storm_phase)]
    attacker = attackers.spawn(argv, dict(os.environ))
    ready = out.with_suffix(".ready")
    wait_until = time.monotonic() + 20
    while not ready.exists():  # its imports done, it waits for the go
        attackers.check_alive("the attack")
        if time.monotonic() > wait_until:
            raise BenchmarkError("the attack process never got ready")
        time.sleep(0.01)
    sampler = MemorySampler(server.pids)
    sampler.start()
    out.with_suffix(".go").touch()
    end = time.monotonic() + during
    if not run.before.dropped:
        echo_phase(viewer, during, rng, run.during)
    # The attack ends by itself when its time is up; give it a little more.
    proc = attackers.procs[-1]
    assert proc.pid == attacker
    try:
        proc.wait(max(0.0, end - time.monotonic()) + 15)
    except subprocess.TimeoutExpired:
        run.error = "the attack did not end in time (killed)"
    attackers.stop()
    run.rss_growth_mib, run.pss_growth_mib = sampler.finish()
    if busy:
        with suppress(OSError):
            viewer.keys([XK_B], ctrl=True)
    if not (run.before.dropped or run.during.dropped):
        echo_phase(viewer, timing.after, rng, run.after)
    if busy:
        with suppress(OSError):
            viewer.keys([XK_E], ctrl=True)
    with suppress(OSError, ValueError):
        run.attack = json.loads(out.read_text())


# -- the attacks (run in a child process: ``hostile.py attack SCENARIO PORT``) ------------------


def attack_idle(port: int, seconds: float) -> dict[str, Any]:
    end = time.monotonic() + seconds
    socks = []
    # All 200 at once (non-blocking): a server whose accept queue is full makes
    # each connect wait for the client's SYN retries, and the window must hold.
    for _ in range(200):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((HOSTILE_SOURCE, 0))
        sock.connect_ex(("127.0.0.1", port))
        socks.append(sock)
    time.sleep(max(0.0, end - time.monotonic()))
    _, writable, _ = select.select([], socks, [], 0)
    connected = [s for s in writable if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0]
    greeted = still_open = 0
    for sock in connected:
        with suppress(OSError):
            greeted += bool(sock.recv(12, socket.MSG_PEEK))
        still_open += not closed_by_peer(sock)
    for sock in socks:
        sock.close()
    note = (
        f"after {seconds:g} s: {len(connected)}/200 connected,"
        f" {greeted} greeted, {still_open} still open"
    )
    return {
        "connected": len(connected),
        "greeted": greeted,
        "still_open": still_open,
        "note": note,
    }


def attack_slowloris(port: int, seconds: float) -> dict[str, Any]:
    script = b"RFB 003.008\n" + b"\x02" + bytes(16) + b"\x01"
    start = time.monotonic()
    socks = [open_socket(port, HOSTILE_SOURCE) for _ in range(50)]
    dropped_at: dict[int, float] = {}
    sent = 0
    while (now := time.monotonic()) - start < seconds:
        due = int(now - start) + 1  # one byte a second, the first at once
        for index, sock in enumerate(socks):
            if index in dropped_at:
                continue
            if closed_by_peer(sock):
                dropped_at[index] = time.monotonic() - start
                continue
            if sent < due and sent < len(script):
                try:
                    sock.send(script[sent : sent + 1])
                except OSError:
                    dropped_at[index] = time.monotonic() - start
        sent = due
        time.sleep(0.05)
    for index, sock in enumerate(socks):
        if index not in dropped_at and closed_by_peer(sock):
            dropped_at[index] = time.monotonic() - start
        sock.close()
    times = sorted(dropped_at.values())
    note = f"{len(times)}/{len(socks)} dropped in {seconds:g} s"
    if times:
        note += f", median at {statistics.median(times):.1f} s"
    return {"clients": len(socks), "dropped": len(times), "drop_times_s": times, "note": note}


def _authenticated_socket(port: int, **kwargs: Any) -> socket.socket:
    viewer = connect_viewer(port, source=HOSTILE_SOURCE, encodings=[RAW], **kwargs)
    if viewer.buffer:
        raise BenchmarkError("bytes after ServerInit the attack would lose")
    return viewer.sock


def attack_garbage(port: int, seconds: float) -> dict[str, Any]:
    rng = random.Random(7)
    kinds: list[tuple[str, bool, bytes]] = [
        ("http", False, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("noise", False, rng.randbytes(4096)),
        ("bad-version", False, b"XYZ 003.008\n" + rng.randbytes(64)),
        ("unknown-type", True, b"\x07" * 16),
        ("bad-pixel-format", True, b"\x00\x00\x00\x00" + bytes([7, 7, 0, 1]) + bytes(12)),
        ("noise-after-auth", True, rng.randbytes(65536)),
    ]
    end = time.monotonic() + seconds
    results: dict[str, list[int]] = {name: [0, 0] for name, _, _ in kinds}
    drop_times: list[float] = []
    index = 0
    while time.monotonic() < end:
        name, authenticate, garbage = kinds[index % len(kinds)]
        index += 1
        try:
            if authenticate:
                sock = _authenticated_socket(port)
            else:
                sock = open_socket(port, HOSTILE_SOURCE)
                if name != "http":
                    sock.recv(12)
        except (OSError, BenchmarkError):
            continue
        results[name][1] += 1
        with suppress(OSError):
            sock.sendall(garbage)
        took = wait_closed(sock, min(2.0, max(0.1, end - time.monotonic())))
        sock.close()
        if took is not None:
            results[name][0] += 1
            drop_times.append(took)
    dropped = sum(d for d, _ in results.values())
    sent = sum(s for _, s in results.values())
    kept = [name for name, (d, s) in results.items() if s and d < s]
    note = f"{dropped}/{sent} dropped"
    if drop_times:
        note += f" (median {statistics.median(drop_times) * 1000:.0f} ms)"
    if kept:
        note += f"; kept: {','.join(kept)}"
    return {"by_kind": results, "note": note}


def verdict(dropped: int, tries: int) -> str:
    return (
        "dropped" if dropped == tries else "kept" if not dropped else f"{dropped}/{tries} dropped"
    )


def attack_cuttext(port: int, seconds: float) -> dict[str, Any]:
    end = time.monotonic() + seconds
    chunk = b"~" * 65536
    found: dict[str, dict[str, Any]] = {}
    while time.monotonic() < end:
        for name, claim, body in (
            ("claim-2^31", 1 << 31, None),
            ("claim-2^31-1", (1 << 31) - 1, None),
            ("real-10MB", 10_000_000, b"~" * 10_000_000),
        ):
            if time.monotonic() >= end:
                break
            try:
                sock = _authenticated_socket(port)
            except (OSError, BenchmarkError):
                continue
            sock.settimeout(1.0)
            sent = 0
            dropped = False
            try:
                sock.sendall(struct.pack(">BxxxI", 6, claim))
                if body is not None:
                    sock.sendall(body)
                    sent = len(body)
                else:
                    while sent < 64 << 20 and time.monotonic() < end:
                        sock.sendall(chunk)
                        sent += len(chunk)
                        if closed_by_peer(sock):
                            dropped = True
                            break
            except OSError:
                dropped = True  # reset, or it stopped reading for a second
            if not dropped:
                dropped = wait_closed(sock, 0.5) is not None
            sock.close()
            entry = found.setdefault(name, {"tries": 0, "dropped": 0, "mib_sent": 0.0})
            entry["tries"] += 1
            entry["dropped"] += int(dropped)
            entry["mib_sent"] = max(entry["mib_sent"], round(sent / (1 << 20), 1))
    note = "; ".join(
        f"{name}: {verdict(e['dropped'], e['tries'])} ({e['mib_sent']:g} MiB in)"
        for name, e in found.items()
    )
    return {"by_kind": found, "note": note}


def attack_setenc(port: int, seconds: float) -> dict[str, Any]:
    end = time.monotonic() + seconds
    toggles = (EXTENDED_CLIPBOARD, QEMU_EXTENDED_KEY, FENCE, CONTINUOUS_UPDATES)
    on = (*toggles, EXTENDED_DESKTOP_SIZE, TIGHT, ZRLE, COPY_RECT, RAW, LAST_RECT)
    on_message = struct.pack(f">BxH{len(on)}i", 2, len(on), *on)
    off_message = struct.pack(">BxHi", 2, 1, RAW)
    toggler = on_message + off_message
    huge = struct.pack(">BxH", 2, 65535) + struct.pack(">65535i", *(range(-32768, 32767)))
    sent = [0, 0]

    def send_forever(index: int, message: bytes) -> None:
        try:
            sock = _authenticated_socket(port, rcvbuf=4096)
        except (OSError, BenchmarkError):
            return
        payload = message * max(1, 65536 // len(message))
        sock.settimeout(0.2)
        while time.monotonic() < end:
            try:
                sock.sendall(payload)
                sent[index] += len(payload)
            except TimeoutError:
                continue  # the server stopped reading for now
            except OSError:
                break
        sock.close()

    threads = [
        threading.Thread(target=send_forever, args=(0, toggler), daemon=True),
        threading.Thread(target=send_forever, args=(1, huge), daemon=True),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 5)
    note = f"toggles {sent[0] / (1 << 20):.0f} MiB, 65535-entry {sent[1] / (1 << 20):.0f} MiB in"
    return {"toggle_bytes": sent[0], "huge_bytes": sent[1], "note": note}


def attack_neverread(port: int, seconds: float) -> dict[str, Any]:
    end = time.monotonic() + seconds
    socks = []
    for _ in range(20):
        with suppress(OSError, BenchmarkError):
            socks.append(_authenticated_socket(port, rcvbuf=4096))
    for sock in socks:
        sock.setblocking(False)
    request = struct.pack(">BBHHHH", 3, 0, 0, 0, WIDTH, HEIGHT)
    requests = blocked = 0
    while time.monotonic() < end:
        for sock in socks:
            try:
                sock.send(request)
                requests += 1
            except BlockingIOError:
                blocked += 1
            except OSError:
                pass
        time.sleep(0.02)
    alive = sum(not closed_by_peer(s) for s in socks)
    for sock in socks:
        sock.close()
    note = f"{len(socks)} clients, {requests} requests, {alive} still connected"
    return {"clients": len(socks), "requests": requests, "alive": alive, "note": note}


def attack_flood(port: int, seconds: float) -> dict[str, Any]:
    end = time.monotonic() + seconds
    viewer = connect_viewer(port, source=HOSTILE_SOURCE, encodings=[RAW], decode=False)
    events = b"".join(struct.pack(">BBxxI", 4, down, 0x7E) for down in (1, 0)) * 50_000
    # Then a request for one pixel: its answer comes once the server has handled
    # every event before it (a server handles one client's messages in order).
    events += struct.pack(">BBHHHH", 3, 0, 0, 0, 1, 1)
    viewer.sock.settimeout(max(seconds, 30.0))
    start = time.monotonic()
    viewer.sock.sendall(events)
    handled = None
    while time.monotonic() < start + 30:
        message = viewer.read_message(1.0)
        if message is not None and message.kind == 0:
            handled = time.monotonic() - start
            break
    time.sleep(max(0.0, end - time.monotonic()))
    viewer.close()
    note = "100k events handled in " + (f"{handled:.2f} s" if handled else "(no answer)")
    return {"events": 100_000, "handled_s": handled, "note": note}


def storm_cycle(port: int) -> None:
    viewer = connect_viewer(port, decode=False, encodings=encodings_for("tight"))
    try:
        viewer.request(incremental=False)
        deadline = time.monotonic() + 5.0
        while True:
            message = viewer.read_message(max(0.0, deadline - time.monotonic()))
            if message is None:
                raise BenchmarkError("no update")
            if message.kind == 0:
                return
    finally:
        viewer.close()


def attack_storm(port: int, seconds: float, phase: float) -> dict[str, Any]:
    rates: dict[str, float] = {}
    errors: dict[str, int] = {}
    for name, concurrency in (("sequential", 1), ("c20", 20), ("c100", 100)):
        end = time.monotonic() + phase
        done = [0] * concurrency
        failed = [0] * concurrency

        def worker(
            index: int, end: float = end, done: list[int] = done, failed: list[int] = failed
        ) -> None:
            while time.monotonic() < end:
                try:
                    storm_cycle(port)
                    done[index] += 1
                except (OSError, BenchmarkError):
                    failed[index] += 1
                    time.sleep(0.01)

        start = time.monotonic()
        threads = [
            threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(phase + 10)
        elapsed = time.monotonic() - start
        rates[name] = round(sum(done) / elapsed, 1)
        errors[name] = sum(failed)
    note = ", ".join(f"{name} {rate:.0f}/s" for name, rate in rates.items())
    if any(errors.values()):
        note += f" (errors {errors})"
    return {"cycles_per_s": rates, "errors": errors, "note": note}


def attack_wrongpw(port: int, seconds: float) -> dict[str, Any]:
    start = time.monotonic()
    end = start + seconds
    failures_before = 0
    refused_at: float | None = None
    reason = ""
    attempts = refusals = 0
    right_refused: bool | None = None
    honest_ms: float | None = None
    while time.monotonic() < end:
        attempts += 1
        try:
            viewer = connect_viewer(port, source=HOSTILE_SOURCE, password=WRONG_PASSWORD)
            viewer.close()
        except AuthFailed:
            if refused_at is None:
                failures_before += 1
        except Refused as exc:
            refusals += 1
            if refused_at is None:
                refused_at = time.monotonic() - start
                reason = str(exc)
                try:
                    connect_viewer(port, source=HOSTILE_SOURCE).close()
                    right_refused = False
                except Refused:
                    right_refused = True
                t0 = time.monotonic()
                honest = connect_viewer(port, source=HONEST_SOURCE, decode=False)
                honest.request(incremental=False)
                while (message := honest.read_message(5.0)) is not None and message.kind != 0:
                    pass
                honest.close()
                if message is not None:
                    honest_ms = (time.monotonic() - t0) * 1000
        except (OSError, BenchmarkError):
            time.sleep(0.01)
    note = (
        f"{attempts / seconds:.0f} tries/s; "
        + (
            f"locked out after {failures_before} failures at {refused_at:.2f} s"
            if refused_at is not None
            else f"never locked out ({failures_before} failures)"
        )
        + (f"; right password then refused: {right_refused}" if right_refused is not None else "")
        + (f"; 127.0.0.2 served in {honest_ms:.0f} ms" if honest_ms is not None else "")
    )
    return {
        "attempts": attempts,
        "failures_before_lockout": failures_before,
        "lockout_at_s": refused_at,
        "refusals": refusals,
        "reason": reason,
        "right_password_refused": right_refused,
        "honest_connect_ms": honest_ms,
        "note": note,
    }


def attack_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hostile.py attack")
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("port", type=int)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--storm-phase", type=float, default=2.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.with_suffix(".ready").touch()
    go = out.with_suffix(".go")
    while not go.exists():
        time.sleep(0.005)
    attacks: dict[str, Callable[[int, float], dict[str, Any]]] = {
        "baseline": lambda port, seconds: time.sleep(seconds) or {"note": ""},  # type: ignore[func-returns-value]
        "idle": attack_idle,
        "slowloris": attack_slowloris,
        "garbage": attack_garbage,
        "cuttext": attack_cuttext,
        "setenc": attack_setenc,
        "neverread": attack_neverread,
        "flood": attack_flood,
        "storm": lambda port, seconds: attack_storm(port, seconds, args.storm_phase),
        "wrongpw": attack_wrongpw,
    }
    try:
        result = attacks[args.scenario](args.port, args.seconds)
    except (OSError, BenchmarkError) as exc:
        result = {"note": f"attack failed: {exc}", "error": str(exc)}
    Path(args.out).write_text(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)  # daemon threads stuck in a socket call must not hold us


# -- the report --------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def table(runs: list[Run]) -> str:
    head = (
        f"{'scenario':<10} {'server':<11} {'p50 before/during/after (ms)':>29}"
        f" {'p99 before/during/after (ms)':>29} {'lost':>4} {'RSS+':>6} {'PSSa+':>6}  notes"
    )
    lines = [head, "-" * len(head)]
    for run in runs:
        p50 = "/".join(fmt(e.p(50)) for e in (run.before, run.during, run.after))
        p99 = "/".join(fmt(e.p(99)) for e in (run.before, run.during, run.after))
        lost = run.before.lost + run.during.lost + run.after.lost
        notes = run.attack.get("note", "")
        dropped = next((e.dropped for e in (run.before, run.during, run.after) if e.dropped), "")
        if dropped:
            notes = f"HONEST VIEWER DROPPED ({dropped}); {notes}"
        if run.error:
            notes = f"ERROR: {run.error}; {notes}"
        lines.append(
            f"{run.scenario:<10} {run.server:<11} {p50:>29} {p99:>29} {lost:>4}"
            f" {fmt(run.rss_growth_mib):>6} {fmt(run.pss_growth_mib):>6}  {notes}"
        )
    return "\n".join(lines)


def ratios(runs: list[Run]) -> str:
    by = {(r.scenario, r.server): r for r in runs}
    lines = [
        "",
        "ratios vzvnc / Xvnc (during-phase echo p99; peak RSS growth; storm cycles/s):",
    ]
    for scenario in dict.fromkeys(r.scenario for r in runs):
        ours, ref = by.get((scenario, "vzvnc")), by.get((scenario, "xvnc"))
        if ours is None or ref is None:
            continue
        parts = []
        a, b = ours.during.p(99), ref.during.p(99)
        if a is not None and b:
            parts.append(f"echo p99 {a / b:.2f}")
        if ours.rss_growth_mib is not None and ref.rss_growth_mib is not None:
            parts.append(f"RSS+ {ours.rss_growth_mib:.1f} vs {ref.rss_growth_mib:.1f} MiB")
        if scenario == "storm":
            nows = by.get(("storm", "vzvnc-nows"))
            for phase in ("sequential", "c20", "c100"):
                ref_rate = ref.attack.get("cycles_per_s", {}).get(phase)
                for run in (ours, nows):
                    rate = None if run is None else run.attack.get("cycles_per_s", {}).get(phase)
                    if rate is not None and ref_rate:
                        parts.append(f"{phase} {run.server} {rate / ref_rate:.2f}")  # type: ignore[union-attr]
        lines.append(f"  {scenario:<10} " + "; ".join(parts))
    return "\n".join(lines)


def targets(runs: list[Run]) -> str:
    by = {(r.scenario, r.server): r for r in runs}
    lines = ["", "issue 10 targets (vzvnc):"]
    neverread = by.get(("neverread", "vzvnc"))
    if neverread is not None and neverread.rss_growth_mib is not None:
        ok = neverread.rss_growth_mib <= 5
        lines.append(
            f"  20 never-readers add <= 5 MiB: {neverread.rss_growth_mib:.1f} MiB RSS,"
            f" {fmt(neverread.pss_growth_mib)} MiB PSS  {'PASS' if ok else 'MISS'}"
        )
    flood = by.get(("flood", "vzvnc"))
    if flood is not None and flood.during.p(99) is not None:
        p99 = flood.during.p(99) or 0.0
        ok = p99 < 20 and not flood.during.lost
        lines.append(
            f"  echo p99 < 20 ms during a 100k-event flood: {p99:.1f} ms"
            f" ({len(flood.during.latencies_ms)} keys)  {'PASS' if ok else 'MISS'}"
        )
    for kind in ("vzvnc", "vzvnc-nows"):
        storm = by.get(("storm", kind))
        if storm is not None and storm.attack.get("cycles_per_s"):
            best = max(storm.attack["cycles_per_s"].values())
            lines.append(
                f"  connect + VNC auth + first full update >= 1000/s ({kind}): best {best:.0f}/s"
                f"  {'PASS' if best >= 1000 else 'MISS'}"
            )
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "attack":
        return attack_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases (about 2.5 min)")
    parser.add_argument("--only", choices=("vzvnc", "xvnc"), help="run one server only")
    parser.add_argument(
        "--scenarios", help=f"comma-separated subset of: {','.join(SCENARIOS)} (default all)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    args = parser.parse_args()
    scenarios = list(SCENARIOS)
    if args.scenarios:
        scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
        unknown = set(scenarios) - set(SCENARIOS)
        if unknown:
            parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.only != "vzvnc":
        missing = missing_prerequisites()
        if missing:
            print(f"hostile.py: missing {', '.join(missing)}.\n{MISSING_HELP}", file=sys.stderr)
            return 2
    timing = QUICK if args.quick else Timing()
    print(machine(), flush=True)
    runs: list[Run] = []
    started = time.monotonic()
    with signals_as_exceptions():
        try:
            for scenario in scenarios:
                kinds = []
                if args.only != "xvnc":
                    kinds.append("vzvnc")
                    if scenario == "storm":
                        kinds.append("vzvnc-nows")
                if args.only != "vzvnc":
                    kinds.append("xvnc")
                for kind in kinds:
                    print(f"{scenario} / {kind} ...", flush=True)
                    run = run_scenario(scenario, kind, timing)
                    runs.append(run)
                    if run.error:
                        print(f"  {run.error}", flush=True)
        except KeyboardInterrupt as exc:
            print(f"hostile.py: interrupted ({exc or 'SIGINT'}); servers stopped", file=sys.stderr)
            return 130
    print()
    print(table(runs))
    if args.only is None:
        print(ratios(runs))
    print(targets(runs))
    print(
        f"\nphases (s): before {timing.before:g}, during {timing.during:g}"
        f" (slowloris {timing.slowloris:g}, storm 3 x {timing.storm_phase:g},"
        f" wrongpw {timing.wrongpw:g}), after {timing.after:g};"
        f" honest viewer from {HONEST_SOURCE}, attackers from {HOSTILE_SOURCE};"
        f" RSS+/PSSa+ = peak growth in MiB (RSS; anonymous PSS) of the server process(es)"
        f" (vzvnc: python; Xvnc: Xvnc + xterm); total {time.monotonic() - started:.0f} s"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                [asdict(r) | {"p50_p99": _percentiles(r)} for r in runs], indent=1, default=str
            )
        )
    return 1 if any(r.error for r in runs) else 0


def _percentiles(run: Run) -> dict[str, list[float | None]]:
    return {
        phase: [echo.p(50), echo.p(99)]
        for phase, echo in (("before", run.before), ("during", run.during), ("after", run.after))
    }


if __name__ == "__main__":
    sys.exit(main())
