"""vzvnc against TigerVNC's Xvnc + xterm, side by side in one run.

Both servers show the same thing: ``/bin/sh`` with ``PS1='$ '`` in an 80x25
terminal with an 8x16 font, so both framebuffers are 640x400. The reference is
``Xvnc -geometry 640x400 -depth 24`` (Debian tigervnc-standalone-server) with one
``xterm -geometry 80x25+0+0 -fn 8x16 -b 0 -bw 0`` (Debian xterm, xfonts-base) and
no window manager. Xvnc runs with ``-retro``: its root window is a grey weave, so
the startup check below also proves that the xterm covers the whole screen.

One small RFB 3.8 client (written here from rfbproto, blocking sockets, no vzvnc
code) talks to both. It sets the same pixel format on both (32 bpp, depth 24,
little-endian, shifts 16/8/0) and asks for Raw only (SetEncodings ``[0]``), so
the bytes on the wire compare like for like: neither server may compress.

Measured, one server at a time (the reference first):

1. startup (median of ``--starts``, 3): from spawning the server process(es)
   until the client holds a full frame that shows the prompt: ``$`` in the first
   cell, the cursor two cells further, everything else dark. The client connects
   as soon as the port accepts, asks for a full update, then keeps an incremental
   request open.
2. echo latency: a printable key (KeyEvent down + up) at the prompt, timed until
   the first FramebufferUpdate whose pixels differ from the client's copy, with
   an incremental request always outstanding; ``--keys`` keys (200), the line
   cleared with Ctrl+U every 20 keys; p50 and p99. Each key waits a random
   0-33 ms more than ``QUIET`` so keys do not fall in step with a frame clock,
   and one unmeasured key goes first (xterm hides the X pointer on it).
3. bytes per echoed key: every byte the server sent from the key until no
   message came for ``QUIET`` seconds, averaged over the keys.
4. CPU per key: user+sys ticks (``/proc/PID/stat``) of the server process(es)
   over the whole key phase (Ctrl+U clears included), divided by the keys.
5. idle: ``--idle`` seconds (10) with the client connected and an incremental
   request outstanding: bytes received and user+sys CPU as % of one core.
6. memory: PSS (``/proc/PID/smaps_rollup``) after the idle phase.

"Server process(es)" are the python process for vzvnc and Xvnc + xterm for the
reference; the shells are left out of both.

Run from the repository root:

    python benchmarks/spine.py [--starts 3] [--keys 200] [--idle 10] [--json FILE]

It needs ``Xvnc``, ``xterm`` and the ``8x16`` font (see benchmarks/README.md),
prints a table and exits 0. Every process it starts runs in its own process
group and is killed on the way out, also after an error or a signal.
"""

from __future__ import annotations

import argparse
import json
import random
import select
import socket
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rfbbench import (
    CELL_H,
    CELL_W,
    CLK_TCK,
    HEIGHT,
    MISSING_HELP,
    STARTUP_TIMEOUT,
    WIDTH,
    XK_CONTROL_L,
    BenchmarkError,
    Processes,
    cpu_ticks,
    machine,
    memory_kib,
    missing_prerequisites,
    signals_as_exceptions,
    spawn_reference,
    spawn_vzvnc,
)

# No message for this long after an echo means the server has finished with that key.
QUIET = 0.1
CLEAR_EVERY = 20
# Keys go out after QUIET plus a random 0..JITTER s: two frames at the 60 fps both default to.
JITTER = 2 / 60
ECHO_TIMEOUT = 3.0
# A pixel is "lit" when some channel is above this (both backgrounds are black).
LIT = 64
# At most this many lit pixels outside the first row: the X pointer, not a weave.
POINTER_PIXELS = 200


# -- a small RFB client -----------------------------------------------------------


@dataclass
class Message:
    kind: int  # 0 FramebufferUpdate, 2 Bell, 3 ServerCutText
    size: int  # bytes on the wire, header included
    changed: bool  # an update whose pixels differ from what the client had


class RfbClient:
    """RFB 3.8, security None, true colour 32 bpp, Raw and CopyRect decoding."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.bytes_received = 0
        self.pixels = np.zeros((0, 0, 4), np.uint8)

    @classmethod
    def connect(cls, port: int, deadline: float) -> RfbClient:
        """Connect as soon as ``port`` accepts (polling), then do the handshake."""
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=1.0)
                break
            except OSError:
                if time.perf_counter() > deadline:
                    raise BenchmarkError(f"nothing accepts on 127.0.0.1:{port}") from None
                time.sleep(0.002)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = cls(sock)
        try:
            client.handshake(deadline)
        except BaseException:
            sock.close()
            raise
        return client

    @property
    def consumed(self) -> int:
        """Bytes read from the server and already parsed."""
        return self.bytes_received - len(self.buffer)

    def close(self) -> None:
        self.sock.close()

    def _fill(self, n: int, deadline: float) -> None:
        while len(self.buffer) < n:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError
            readable, _, _ = select.select([self.sock], [], [], remaining)
            if not readable:
                raise TimeoutError
            data = self.sock.recv(1 << 20)
            if not data:
                raise BenchmarkError("the server closed the connection")
            self.buffer += data
            self.bytes_received += len(data)

    def _take(self, n: int, deadline: float) -> bytes:
        self._fill(n, deadline)
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def handshake(self, deadline: float) -> None:
        version = self._take(12, deadline)
        if not version.startswith(b"RFB 003.00"):
            raise BenchmarkError(f"not an RFB server: {version!r}")
        self.sock.sendall(b"RFB 003.008\n")
        (count,) = self._take(1, deadline)
        if count == 0:
            (length,) = struct.unpack(">I", self._take(4, deadline))
            raise BenchmarkError(f"refused: {self._take(length, deadline)!r}")
        if 1 not in self._take(count, deadline):
            raise BenchmarkError("the server does not offer security type None")
        self.sock.sendall(b"\x01")
        (result,) = struct.unpack(">I", self._take(4, deadline))
        if result != 0:
            raise BenchmarkError("security handshake failed")
        self.sock.sendall(b"\x01")  # shared
        width, height = struct.unpack(">HH", self._take(4, deadline))
        self._take(16, deadline)  # the server's pixel format: we set our own
        (name_length,) = struct.unpack(">I", self._take(4, deadline))
        self._take(name_length, deadline)
        self.pixels = np.zeros((height, width, 4), np.uint8)
        # 32 bpp, depth 24, little-endian, true colour, 255/255/255, shifts 16/8/0.
        pixel_format = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
        self.sock.sendall(
            struct.pack(">B3x", 0) + pixel_format + struct.pack(">BxHi", 2, 1, 0)  # Raw only
        )

    def request(self, incremental: bool) -> None:
        height, width = self.pixels.shape[:2]
        self.sock.sendall(struct.pack(">BBHHHH", 3, int(incremental), 0, 0, width, height))

    def press(self, keysym: int, *, ctrl: bool = False) -> None:
        events = [(1, keysym), (0, keysym)]
        if ctrl:
            events = [(1, XK_CONTROL_L), *events, (0, XK_CONTROL_L)]
        self.sock.sendall(b"".join(struct.pack(">BBxxI", 4, d, k) for d, k in events))

    def read_message(self, timeout: float) -> Message | None:
        """One server message, or None if none starts within ``timeout`` seconds."""
        try:
            self._fill(1, time.perf_counter() + timeout)
        except TimeoutError:
            return None
        before = self.consumed
        deadline = time.perf_counter() + 10.0  # once a message starts, read it whole
        kind = self._take(1, deadline)[0]
        changed = False
        if kind == 0:
            changed = self._read_update(deadline)
        elif kind == 3:
            (length,) = struct.unpack(">3xI", self._take(7, deadline))
            self._take(length, deadline)
        elif kind != 2:
            raise BenchmarkError(f"unexpected server message type {kind}")
        return Message(kind, self.consumed - before, changed)

    def _read_update(self, deadline: float) -> bool:
        (count,) = struct.unpack(">xH", self._take(3, deadline))
        changed = False
        for _ in range(count):
            x, y, w, h, encoding = struct.unpack(">HHHHi", self._take(12, deadline))
            target = self.pixels[y : y + h, x : x + w]
            if encoding == 0:
                data = np.frombuffer(self._take(w * h * 4, deadline), np.uint8).reshape(h, w, 4)
            elif encoding == 1:
                sx, sy = struct.unpack(">HH", self._take(4, deadline))
                data = self.pixels[sy : sy + h, sx : sx + w].copy()
            else:
                raise BenchmarkError(f"unexpected encoding {encoding} (we asked for Raw only)")
            if not np.array_equal(target[..., :3], data[..., :3]):
                changed = True
                target[...] = data
        return changed


def prompt_visible(pixels: np.ndarray) -> bool:
    """``$`` in cell (0, 0), cell (0, 1) dark, the cursor at (0, 2), rows 1.. dark.

    "Dark" below the first row allows a few lit pixels: Xvnc draws the X pointer
    (an I-beam over xterm) into the framebuffer because our client does not ask
    for the Cursor pseudo-encoding. Xvnc's ``-retro`` root weave would light half
    of them, so this also shows the terminal covers the whole screen.
    """
    if pixels.shape[:2] != (HEIGHT, WIDTH):
        return False
    lit = pixels[..., :3].max(axis=2) > LIT
    first_row = lit[:CELL_H]
    return bool(
        first_row[:, 0:CELL_W].any()
        and not first_row[:, CELL_W : 2 * CELL_W].any()
        and first_row[:, 2 * CELL_W : 3 * CELL_W].any()
        and lit[CELL_H:].sum() < POINTER_PIXELS
    )


@dataclass
class Started:
    client: RfbClient
    pids: list[int]  # the server process(es) we measure
    startup: float


def start_vzvnc(procs: Processes, home: str) -> Started:
    t0 = time.perf_counter()
    port, pids = spawn_vzvnc(procs, home, ["/bin/sh"])
    return wait_for_prompt(procs, "vzvnc", port, t0, pids)


def start_reference(procs: Processes, home: str) -> Started:
    t0 = time.perf_counter()
    port, pids = spawn_reference(procs, home, ["/bin/sh"])
    return wait_for_prompt(procs, "Xvnc + xterm", port, t0, pids)


def wait_for_prompt(procs: Processes, what: str, port: int, t0: float, pids: list[int]) -> Started:
    deadline = t0 + STARTUP_TIMEOUT
    try:
        client = RfbClient.connect(port, deadline)
    except BenchmarkError:
        procs.check_alive(what)
        raise
    try:
        if client.pixels.shape[:2] != (HEIGHT, WIDTH):
            raise BenchmarkError(f"{what}: framebuffer is {client.pixels.shape[1::-1]}")
        client.request(incremental=False)
        while True:
            message = client.read_message(deadline - time.perf_counter())
            if message is None:
                procs.check_alive(what)
                raise BenchmarkError(
                    f"{what}: no prompt within {STARTUP_TIMEOUT:.0f} s (or the terminal"
                    " does not fill the screen)"
                )
            if message.kind == 0:
                if prompt_visible(client.pixels):
                    return Started(client, pids, time.perf_counter() - t0)
                client.request(incremental=True)
    except BaseException:
        client.close()
        raise


# -- the measurements ---------------------------------------------------------------


@dataclass
class Result:
    startups_s: list[float] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    bytes_per_key: list[int] = field(default_factory=list)
    cpu_ms_per_key: float = 0.0
    idle_bytes: int = 0
    idle_cpu_percent: float = 0.0
    memory_kib: dict[str, dict[str, int]] = field(default_factory=dict)

    def pss_mib(self, key: str = "Pss") -> float:
        return sum(m[key] for m in self.memory_kib.values()) / 1024


def settle(client: RfbClient) -> None:
    """Read (and re-request) until no message comes for ``QUIET`` seconds."""
    deadline = time.perf_counter() + 10.0
    while time.perf_counter() < deadline:
        message = client.read_message(QUIET)
        if message is None:
            return
        if message.kind == 0:
            client.request(incremental=True)
    raise BenchmarkError("updates never stopped")


def measure_keys(started: Started, keys: int, result: Result) -> None:
    client = started.client
    client.request(incremental=True)
    settle(client)
    # One key not measured: xterm hides the X pointer on the first key (an update of
    # its own, before the echo); vzvnc gets the same warm-up.
    client.press(ord("a"))
    settle(client)
    client.press(ord("u"), ctrl=True)
    settle(client)
    jitter = random.Random(1)
    cpu_before = cpu_ticks(started.pids)
    for index in range(keys):
        if index and index % CLEAR_EVERY == 0:
            client.press(ord("u"), ctrl=True)
            settle(client)
        keysym = ord("a") + index % 26
        # A random pause, so keys do not fall in step with a server's frame clock.
        time.sleep(jitter.uniform(0.0, JITTER))
        received = client.consumed
        sent = time.perf_counter()
        client.press(keysym)
        latency = None
        while True:
            message = client.read_message(ECHO_TIMEOUT if latency is None else QUIET)
            if message is None:
                break
            if message.kind == 0:
                if message.changed and latency is None:
                    latency = time.perf_counter() - sent
                client.request(incremental=True)
        if latency is None:
            raise BenchmarkError(f"key {index}: no echo within {ECHO_TIMEOUT} s")
        result.latencies_s.append(latency)
        result.bytes_per_key.append(client.consumed - received)
    result.cpu_ms_per_key = (cpu_ticks(started.pids) - cpu_before) / CLK_TCK * 1000 / keys


def measure_idle(started: Started, seconds: float, result: Result) -> None:
    client = started.client
    client.press(ord("u"), ctrl=True)
    settle(client)  # leaves an incremental request outstanding
    received = client.consumed
    cpu_before = cpu_ticks(started.pids)
    t0 = time.perf_counter()
    end = t0 + seconds
    while (remaining := end - time.perf_counter()) > 0:
        message = client.read_message(remaining)
        if message is not None and message.kind == 0:
            client.request(incremental=True)
    elapsed = time.perf_counter() - t0
    result.idle_bytes = client.consumed - received
    cpu = (cpu_ticks(started.pids) - cpu_before) / CLK_TCK
    result.idle_cpu_percent = 100 * cpu / elapsed
    result.memory_kib = memory_kib(started.pids)


def run_one(
    start: Callable[[Processes, str], Started], starts: int, keys: int, idle: float
) -> Result:
    """Start the server ``starts`` times (timing each); measure the rest on the last."""
    result = Result()
    for attempt in range(starts):
        procs = Processes()
        with tempfile.TemporaryDirectory(prefix="vzvnc-bench-") as home:
            try:
                started = start(procs, home)
                try:
                    result.startups_s.append(started.startup)
                    if attempt == starts - 1:
                        measure_keys(started, keys, result)
                        measure_idle(started, idle, result)
                finally:
                    started.client.close()
            finally:
                procs.stop()
    return result


# -- report -------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def rows(ours: Result, ref: Result) -> Iterator[tuple[str, float, float, str]]:
    def both(get: Callable[[Result], float]) -> tuple[float, float]:
        return get(ours), get(ref)

    yield "startup to prompt (ms)", *both(lambda r: statistics.median(r.startups_s) * 1000), ".0f"
    yield "echo latency p50 (ms)", *both(lambda r: percentile(r.latencies_s, 50) * 1000), ".2f"
    yield "echo latency p99 (ms)", *both(lambda r: percentile(r.latencies_s, 99) * 1000), ".2f"
    yield "bytes per echoed key", *both(lambda r: statistics.fmean(r.bytes_per_key)), ".0f"
    yield "CPU per echoed key (ms)", *both(lambda r: r.cpu_ms_per_key), ".2f"
    yield "idle: bytes received", *both(lambda r: r.idle_bytes), ".0f"
    yield "idle: CPU (% of a core)", *both(lambda r: r.idle_cpu_percent), ".2f"
    yield "memory: PSS (MiB)", *both(lambda r: r.pss_mib()), ".1f"
    yield "  of which anonymous (MiB)", *both(lambda r: r.pss_mib("Pss_Anon")), ".1f"


def table(ours: Result, ref: Result, starts: int, keys: int, idle: float) -> str:
    lines = [
        f"{'metric':<26} {'vzvnc':>10} {'reference':>10} {'ratio':>8}",
        "-" * 57,
    ]
    for name, a, b, fmt in rows(ours, ref):
        ratio = f"{a / b:.2f}" if b else ("1.00" if a == b else "inf")
        lines.append(f"{name:<26} {a:>10{fmt}} {b:>10{fmt}} {ratio:>8}")
    lines += [
        "",
        "reference: TigerVNC Xvnc + xterm (-fn 8x16), no window manager; both 640x400.",
        "encoding: Raw only on both (SetEncodings [0]), 32 bpp; ratio = vzvnc / reference.",
        f"startup: median of {starts}; {keys} keys (Ctrl+U every {CLEAR_EVERY});"
        f" {idle:g} s idle; server processes:"
        " vzvnc = its python; reference = Xvnc + xterm (shells excluded).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--starts", type=int, default=3, help="startups to time, median shown (default 3)"
    )
    parser.add_argument("--keys", type=int, default=200, help="keys to echo (default 200)")
    parser.add_argument("--idle", type=float, default=10.0, help="idle seconds (default 10)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    args = parser.parse_args()
    missing = missing_prerequisites()
    if missing:
        print(f"spine.py: missing {', '.join(missing)}.\n{MISSING_HELP}", file=sys.stderr)
        return 2
    print(machine(), flush=True)
    with signals_as_exceptions():
        try:
            print("reference (Xvnc + xterm) ...", flush=True)
            ref = run_one(start_reference, args.starts, args.keys, args.idle)
            print("vzvnc ...", flush=True)
            ours = run_one(start_vzvnc, args.starts, args.keys, args.idle)
        except BenchmarkError as exc:
            print(f"spine.py: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt as exc:
            print(f"spine.py: interrupted ({exc or 'SIGINT'}); servers stopped", file=sys.stderr)
            return 130
    print()
    print(table(ours, ref, args.starts, args.keys, args.idle))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"vzvnc": asdict(ours), "reference": asdict(ref)}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
