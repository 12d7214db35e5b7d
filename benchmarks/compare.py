"""vzvnc against TigerVNC's Xvnc + xterm: the workloads of issue 4, side by side in one run.

Both servers show an 80x25 terminal with an 8x16 font (640x400): vzvnc
(``python -m vzvnc run --size 80x25``) and the reference, ``Xvnc`` (Debian
tigervnc-standalone-server, no window manager) with one ``xterm -fn 8x16``
(details in ``rfbbench.py``). The program in the terminal is ``/bin/sh`` with
``PS1='$ '`` in a clean environment, in a scratch directory shared by both.

One viewer (``rfbbench.Viewer``, written from rfbproto, no vzvnc code) measures
both the same way. It sets 32 bpp true colour, decodes every update into its
own framebuffer and keeps an incremental FramebufferUpdateRequest outstanding
(a new one as soon as an update has been read). It lists one compressing
encoding, then CopyRect, Raw, LastRect, DesktopSize and Cursor; no compression
or quality level, so each server uses its own default zlib level and nothing
is lossy. Unless said otherwise the encoding is Tight (TigerVNC's viewer
prefers it too).

For each server, in this order, on one console (a fresh one after a failure):

1. idle: ``--idle`` seconds (10) at the prompt with the viewer connected and a
   request outstanding: bytes received, and CPU of the server process(es) from
   ``/proc/PID/task/*/schedstat`` (nanoseconds) as % of one core. Then PSS
   (``/proc/PID/smaps_rollup``) of that one idle console.
2. echo: ``--keys`` printable keys (200) at the prompt, each a KeyEvent down and
   up, timed to the first FramebufferUpdate whose pixels differ from the
   viewer's copy; then the next key after ``QUIET`` s without a message plus a
   random 0-33 ms; Ctrl+U every 20 keys; p50 and p99. One unmeasured key first.
3. echo while another console floods: the same, while a second server of the
   same kind (a second vzvnc process; a second Xvnc + xterm) runs ``yes LINE``
   with its own connected viewer (``rfbbench.py drain``: a separate process that
   parses every update without decoding and keeps a request outstanding).
4. top-like: ``toplike.py`` redraws a top-like screen ``--top-frames`` times (50)
   at 10 fps; a new viewer with ZRLE, then one with Tight, each counts the bytes
   of the updates that arrive in the window between 50 ms before the 11th frame
   is written and 50 ms before the last one (frame times come from toplike.py's
   own log, on the same monotonic clock): bytes per frame. Also the bytes per
   frame the program wrote, and the server processes' CPU per frame in the same
   window (sampled at least every 20 ms; the viewer's own decoding is not counted).
5. floods: ``cat plain`` (``--flood-mb`` MB, 20, of numbered lines of words)
   and ``cat colour`` (the same size of ``ls --color``-like lines, an SGR change
   every 2-11 visible characters), each file ending with a line of 16 red-background blanks.
   The screen is cleared first and the command typed and echoed; the clock
   starts when Return is sent and stops when the viewer's framebuffer, just
   decoded, shows that red bar (16 cells of xterm red 205,0,0 in one row).

Then, per server kind: ``--consoles`` (50) idle consoles at once, each checked
to show its prompt (a viewer connects, sees it, leaves); PSS of all their
server processes / count.

"Server process(es)" are the python process for vzvnc and Xvnc + xterm for the
reference; the shells and the programs in the terminal are left out.

Run from the repository root (about 5 minutes; ``--quick``: about 1.5):

    python benchmarks/compare.py [--quick] [--json FILE]

It prints a table with the ratio vzvnc / reference and PASS/MISS per target of
issue 4. Every process it starts is in its own process group and is stopped on
the way out, also after an error or a signal.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rfbbench import (
    CELL_H,
    CELL_W,
    COLUMNS,
    HEIGHT,
    LINES,
    MISSING_HELP,
    STARTUP_TIMEOUT,
    WIDTH,
    BenchmarkError,
    Message,
    Pixels,
    Processes,
    Viewer,
    clean_env,
    cpu_seconds,
    encodings_for,
    machine,
    memory_kib,
    missing_prerequisites,
    signals_as_exceptions,
    spawn_reference,
    spawn_vzvnc,
)

HERE = Path(__file__).resolve().parent
QUIET = 0.1  # no message for this long: the server is done with what we did
JITTER = 2 / 60
CLEAR_EVERY = 20
ECHO_TIMEOUT = 5.0
FLOOD_TIMEOUT = 180.0
LIT = 64
MARKER_CELLS = 16
RED = (0, 0, 205)  # xterm's colour 1 as B, G, R
OTHER_FLOOD_LINE = "y" * 10 + " the other console floods with this line of plain text, yes"
DRAIN_SECONDS = 600.0
SHELL = ["/bin/sh"]

Spawn = Callable[[Processes, str, list[str]], tuple[int, list[int]]]


@dataclass(frozen=True)
class Kind:
    name: str
    spawn: Spawn


def spawn_vzvnc_plain(procs: Processes, home: str, command: list[str]) -> tuple[int, list[int]]:
    return spawn_vzvnc(procs, home, command)


KINDS = (Kind("reference", spawn_reference), Kind("vzvnc", spawn_vzvnc_plain))


# -- screens ----------------------------------------------------------------------------


def lit(pixels: Pixels) -> np.ndarray:
    return np.asarray(pixels[..., :3].max(axis=2) > LIT)


def prompt_visible(pixels: Pixels) -> bool:
    """``$`` in cell (0, 0), cell (0, 1) dark, the cursor at (0, 2), rows 1.. dark."""
    if pixels.shape[:2] != (HEIGHT, WIDTH):
        return False
    on = lit(pixels)
    first = on[:CELL_H]
    return bool(
        first[:, :CELL_W].any()
        and not first[:, CELL_W : 2 * CELL_W].any()
        and first[:, 2 * CELL_W : 3 * CELL_W].any()
        and not on[CELL_H:].any()
    )


def marker_visible(pixels: Pixels) -> bool:
    """A row with ``MARKER_CELLS`` adjacent cells entirely of xterm red."""
    red = np.all(pixels[..., :3] == RED, axis=2)
    cells = red.reshape(LINES, CELL_H, COLUMNS, CELL_W).all(axis=(1, 3))
    counts = np.concatenate([np.zeros((LINES, 1), np.int32), cells.cumsum(axis=1)], axis=1)
    return bool((counts[:, MARKER_CELLS:] - counts[:, :-MARKER_CELLS] == MARKER_CELLS).any())


# -- flood files -----------------------------------------------------------------------------

_WORDS_TEXT = (
    "the quick brown fox jumps over lazy dog console server terminal pixel frame "
    "update request kernel namespace cgroup socket buffer render damage region encode "
    "decode zlib tight palette bitmap cursor scroll line column byte packet latency "
    "echo flood idle"
)
WORDS = tuple(_WORDS_TEXT.split())
SGR = (
    "01;34",
    "01;36",
    "01;32",
    "00;32",
    "40;33;01",
    "01;35",
    "33",
    "35",
    "30;42",
    "34;42",
    "37;44",
    "00;36",
    "01;33",
    "01;37;46",
    "38;5;208",
    "38;5;117",
    "00",
)
NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-."
MARKER_LINE = b"\033[41m" + b" " * MARKER_CELLS + b"\033[m\n"


def plain_flood(size: int, rng: random.Random) -> bytes:
    """Numbered lines of words, 20-78 columns, ``size`` bytes then the marker line."""
    lines = []
    total = 0
    number = 0
    while total < size:
        number += 1
        width = rng.randrange(12, 70)
        words: list[str] = []
        length = 0
        while length < width:
            word = rng.choice(WORDS)
            words.append(word)
            length += len(word) + 1
        line = f"{number:>7} {' '.join(words)[:70]}\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size] + b"\n" + MARKER_LINE


def colour_flood(size: int, rng: random.Random) -> bytes:
    """``ls --color``-like lines: coloured names, an SGR change every few characters."""
    out: list[str] = []
    total = 0
    while total < size:
        parts = []
        columns = 0
        while True:
            name = "".join(rng.choice(NAME_CHARS) for _ in range(rng.randrange(2, 12)))
            if columns + len(name) + 2 > COLUMNS - 2:
                break
            parts.append(f"\033[{rng.choice(SGR)}m{name}\033[0m")
            columns += len(name) + 2
        line = "  ".join(parts) + "\n"
        out.append(line)
        total += len(line)
    return "".join(out).encode()[:size] + b"\033[0m\n" + MARKER_LINE


# -- one console, measured ---------------------------------------------------------------------


@dataclass
class TopResult:
    frames: int = 0
    updates: int = 0  # FramebufferUpdates in the window
    wire_bytes: int = 0
    program_bytes: int = 0
    cpu_s: float = float("nan")  # server processes' CPU in the window
    rects: dict[int, int] = field(default_factory=dict)

    @property
    def cpu_ms_per_frame(self) -> float:
        return 1000 * self.cpu_s / self.frames if self.frames else float("nan")

    @property
    def wire_per_frame(self) -> float:
        return self.wire_bytes / self.frames if self.frames else float("nan")

    @property
    def program_per_frame(self) -> float:
        return self.program_bytes / self.frames if self.frames else float("nan")


@dataclass
class Result:
    idle_bytes: int | None = None
    idle_cpu_percent: float | None = None
    pss_one_kib: dict[str, dict[str, int]] = field(default_factory=dict)
    echo_idle_s: list[float] = field(default_factory=list)
    echo_busy_s: list[float] = field(default_factory=list)
    top: dict[str, TopResult] = field(default_factory=dict)
    flood_s: dict[str, float] = field(default_factory=dict)
    flood_frames: dict[str, int] = field(default_factory=dict)
    consoles: int = 0
    pss_many_kib: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class Console:
    """One running server of a kind, with the shell at its prompt and one viewer."""

    def __init__(self, kind: Kind, home: str, encoding: str = "tight") -> None:
        self.kind = kind
        self.home = home
        self.procs = Processes()
        self.viewer: Viewer | None = None
        try:
            self.port, self.pids = kind.spawn(self.procs, home, SHELL)
            self.viewer = wait_for_prompt(self.procs, kind.name, self.port, encoding)
        except BaseException:
            self.stop()
            raise

    def reconnect(self, encoding: str) -> Viewer:
        """Replace the viewer with a new one that prefers ``encoding``; full frame read."""
        if self.viewer is not None:
            self.viewer.close()
            self.viewer = None
        viewer = Viewer.connect(
            self.port, encodings_for(encoding), time.monotonic() + STARTUP_TIMEOUT
        )
        self.viewer = viewer
        viewer.request(incremental=False)
        read_update(viewer, 10.0)
        viewer.request()
        settle(viewer)
        return viewer

    def alive(self) -> bool:
        return all(proc.poll() is None for proc in self.procs.procs)

    def stop(self) -> None:
        if self.viewer is not None:
            self.viewer.close()
            self.viewer = None
        self.procs.stop()


def read_update(viewer: Viewer, timeout: float) -> Message:
    deadline = time.monotonic() + timeout
    while True:
        message = viewer.read_message(max(0.0, deadline - time.monotonic()))
        if message is None:
            raise BenchmarkError(f"no update within {timeout:g} s")
        if message.kind == 0:
            return message


def wait_for_prompt(procs: Processes, what: str, port: int, encoding: str) -> Viewer:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    try:
        viewer = Viewer.connect(port, encodings_for(encoding), deadline)
    except BenchmarkError:
        procs.check_alive(what)
        raise
    try:
        if viewer.pixels.shape[:2] != (HEIGHT, WIDTH):
            raise BenchmarkError(f"{what}: framebuffer is {viewer.pixels.shape[1::-1]}")
        viewer.request(incremental=False)
        while True:
            message = viewer.read_message(max(0.0, deadline - time.monotonic()))
            if message is None:
                procs.check_alive(what)
                raise BenchmarkError(f"{what}: no prompt within {STARTUP_TIMEOUT:.0f} s")
            if message.kind == 0:
                viewer.request()
                if prompt_visible(viewer.pixels):
                    return viewer
    except BaseException:
        viewer.close()
        raise


def settle(viewer: Viewer, quiet: float = QUIET, limit: float = 30.0) -> None:
    """Read (and re-request) until no message comes for ``quiet`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        message = viewer.read_message(quiet)
        if message is None:
            return
        if message.kind == 0:
            viewer.request()
    raise BenchmarkError(f"updates never stopped for {quiet} s in {limit:g} s")


def run_line(viewer: Viewer, text: str) -> None:
    viewer.type_line(text)
    settle(viewer)


def measure_idle(console: Console, seconds: float, result: Result) -> None:
    viewer = console.viewer
    assert viewer is not None
    settle(viewer)  # leaves a request outstanding
    received = viewer.consumed
    cpu_before = cpu_seconds(console.pids)
    t0 = time.monotonic()
    end = t0 + seconds
    while (remaining := end - time.monotonic()) > 0:
        message = viewer.read_message(remaining)
        if message is not None and message.kind == 0:
            viewer.request()
    elapsed = time.monotonic() - t0
    result.idle_bytes = viewer.consumed - received
    result.idle_cpu_percent = 100 * (cpu_seconds(console.pids) - cpu_before) / elapsed
    result.pss_one_kib = memory_kib(console.pids)


def measure_echo(viewer: Viewer, keys: int, latencies: list[float]) -> None:
    viewer.keys([ord("u")], ctrl=True)
    settle(viewer)
    # One key not measured: xterm hides the X pointer on the first key.
    viewer.keys([ord("a")])
    settle(viewer)
    viewer.keys([ord("u")], ctrl=True)
    settle(viewer)
    jitter = random.Random(1)
    for index in range(keys):
        if index and index % CLEAR_EVERY == 0:
            viewer.keys([ord("u")], ctrl=True)
            settle(viewer)
        time.sleep(jitter.uniform(0.0, JITTER))
        sent = time.monotonic()
        viewer.keys([ord("a") + index % 26])
        latency = None
        while True:
            message = viewer.read_message(ECHO_TIMEOUT if latency is None else QUIET)
            if message is None:
                break
            if message.kind == 0:
                if message.changed and latency is None:
                    latency = message.done - sent
                viewer.request()
        if latency is None:
            raise BenchmarkError(f"key {index}: no echo within {ECHO_TIMEOUT} s")
        latencies.append(latency)
    viewer.keys([ord("u")], ctrl=True)
    settle(viewer)


@contextmanager
def other_console_flooding(kind: Kind, home: str) -> Iterator[None]:
    """A second server of ``kind`` running ``yes``, with a viewer of its own, meanwhile."""
    procs = Processes()
    try:
        port, _ = kind.spawn(procs, home, ["yes", OTHER_FLOOD_LINE])
        drain = [sys.executable, str(HERE / "rfbbench.py"), "drain", str(port), "tight"]
        procs.spawn([*drain, str(DRAIN_SECONDS)], clean_env(home))
        time.sleep(1.5)  # the server up, the viewer connected, the flood under way
        procs.check_alive(f"the other {kind.name} console")
        yield
        procs.check_alive(f"the other {kind.name} console")
    finally:
        procs.stop()


def measure_top(console: Console, encoding: str, frames: int, result: Result) -> None:
    viewer = console.reconnect(encoding)
    stats = Path(console.home) / f"top-{console.kind.name}-{encoding}.json"
    stats.unlink(missing_ok=True)
    viewer.keys([ord(c) for c in f"sh t {frames} {stats.name}"])
    settle(viewer)
    viewer.type_line("")
    log: list[Message] = []
    cpu: list[tuple[float, float]] = []  # (monotonic time, server CPU seconds)
    deadline = time.monotonic() + frames / 10 + 30
    while not stats.exists():
        if time.monotonic() > deadline:
            raise BenchmarkError("toplike.py did not finish")
        message = viewer.read_message(0.02)
        cpu.append((time.monotonic(), cpu_seconds(console.pids)))
        if message is not None:
            log.append(message)
            if message.kind == 0:
                viewer.request()
    settle(viewer)
    time.sleep(0.1)
    written = json.loads(stats.read_text())["frames"]
    first = 10 if len(written) > 15 else 1
    start, end = written[first][0] - 0.05, written[-1][0] - 0.05
    top = TopResult(frames=len(written) - 1 - first)
    window = [m for m in log if start <= m.done < end]
    top.wire_bytes = sum(m.size for m in window)
    top.updates = sum(1 for m in window if m.kind == 0)
    top.program_bytes = sum(size for _, size in written[first:-1])
    top.rects = dict(viewer.rects_by_encoding)
    # The samples nearest the window's ends (taken at least every 20 ms).
    at_start = min(cpu, key=lambda sample: abs(sample[0] - start))
    at_end = min(cpu, key=lambda sample: abs(sample[0] - end))
    top.cpu_s = at_end[1] - at_start[1]
    result.top[encoding] = top


def measure_flood(console: Console, name: str, encoding: str, result: Result) -> None:
    viewer = console.reconnect(encoding)
    run_line(viewer, "clear")
    if marker_visible(viewer.pixels):
        raise BenchmarkError("the end marker is on the screen before the flood")
    viewer.keys([ord(c) for c in f"cat {name}"])
    settle(viewer)
    t0 = time.monotonic()
    viewer.type_line("")
    frames = 0
    while True:
        remaining = t0 + FLOOD_TIMEOUT - time.monotonic()
        message = viewer.read_message(max(0.0, min(5.0, remaining)))
        if message is None:
            if remaining <= 0:
                raise BenchmarkError(f"{name} flood: no end within {FLOOD_TIMEOUT:g} s")
            if not console.alive():
                raise BenchmarkError(f"{name} flood: the server died")
            continue
        if message.kind != 0:
            continue
        viewer.request()
        frames += 1
        if message.changed and marker_visible(viewer.pixels):
            result.flood_s[name] = message.done - t0
            result.flood_frames[name] = frames
            break
    settle(viewer, limit=60.0)


def measure_consoles(kind: Kind, home: str, count: int, result: Result) -> None:
    procs = Processes()
    try:
        started = [kind.spawn(procs, home, SHELL) for _ in range(count)]
        for port, _ in started:
            wait_for_prompt(procs, kind.name, port, "tight").close()
        time.sleep(1.0)
        pids = [pid for _, group in started for pid in group]
        result.pss_many_kib = memory_kib(pids)
        result.consoles = count
    finally:
        procs.stop()


def measure_kind(kind: Kind, home: str, args: argparse.Namespace) -> Result:
    result = Result()
    console: Console | None = None
    sections: list[tuple[str, Callable[[Console], None]]] = []
    wanted = set(args.sections.split(","))

    def need_console() -> Console:
        nonlocal console
        if console is not None and not console.alive():
            console.stop()
            console = None
        if console is None:
            console = Console(kind, home)
        return console

    if "idle" in wanted:
        sections.append(("idle", lambda c: measure_idle(c, args.idle, result)))
    if "echo" in wanted:

        def echo_idle(c: Console) -> None:
            measure_echo(c.reconnect("tight"), args.keys, result.echo_idle_s)

        def echo_busy(c: Console) -> None:
            with other_console_flooding(kind, home):
                measure_echo(c.reconnect("tight"), args.keys, result.echo_busy_s)

        sections += [("echo", echo_idle), ("echo during flood", echo_busy)]
    if "top" in wanted:
        for encoding in ("zrle", "tight"):
            sections.append(
                (
                    f"top {encoding}",
                    lambda c, e=encoding: measure_top(c, e, args.top_frames, result),
                )
            )
    if "flood" in wanted:
        for name in ("plain", "colour"):
            sections.append(
                (
                    f"flood {name}",
                    lambda c, n=name: measure_flood(c, n, args.flood_encoding, result),
                )
            )
    try:
        for title, section in sections:
            t0 = time.monotonic()
            print(f"  {kind.name}: {title} ...", end="", flush=True)
            try:
                section(need_console())
            except BenchmarkError as exc:
                result.errors.append(f"{title}: {exc}")
                print(f" failed: {exc}", flush=True)
                if console is not None:
                    console.stop()
                    console = None
                continue
            print(f" {time.monotonic() - t0:.1f} s", flush=True)
    finally:
        if console is not None:
            console.stop()
    if "memory" in wanted:
        t0 = time.monotonic()
        print(f"  {kind.name}: {args.consoles} idle consoles ...", end="", flush=True)
        try:
            measure_consoles(kind, home, args.consoles, result)
            print(f" {time.monotonic() - t0:.1f} s", flush=True)
        except BenchmarkError as exc:
            result.errors.append(f"consoles: {exc}")
            print(f" failed: {exc}", flush=True)
    return result


# -- report ---------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.array(values), q)) if values else None


def pss_mib(memory: dict[str, dict[str, int]], per: int = 1) -> float | None:
    if not memory or per <= 0:
        return None
    return sum(m["Pss"] for m in memory.values()) / 1024 / per


@dataclass
class Row:
    name: str
    ours: float | None
    ref: float | None
    fmt: str
    target: float | None = None  # the ratio must be at most this
    absolute: Callable[[float], bool] | None = None  # or vzvnc's value must pass this
    absolute_text: str = ""

    def ratio(self) -> float | None:
        if self.ours is None or self.ref is None:
            return None
        if self.ref == 0:
            return 1.0 if self.ours == 0 else float("inf")
        return self.ours / self.ref

    def verdict(self) -> str:
        if self.absolute is not None:
            return "" if self.ours is None else ("PASS" if self.absolute(self.ours) else "MISS")
        ratio = self.ratio()
        if self.target is None or ratio is None:
            return ""
        return "PASS" if ratio <= self.target else "MISS"

    def target_text(self) -> str:
        if self.absolute is not None:
            return self.absolute_text
        return f"<= {self.target:g}" if self.target is not None else ""


def rows(ours: Result, ref: Result, mb: float) -> list[Row]:
    def ms(values: list[float], q: float) -> float | None:
        p = percentile(values, q)
        return None if p is None else p * 1000

    def top(result: Result, encoding: str, program: bool = False) -> float | None:
        found = result.top.get(encoding)
        if found is None:
            return None
        return found.program_per_frame if program else found.wire_per_frame

    def top_cpu(result: Result, encoding: str) -> float | None:
        found = result.top.get(encoding)
        return None if found is None else found.cpu_ms_per_frame

    table = [
        Row(
            f"flood plain {mb:g} MB: time (s)",
            ours.flood_s.get("plain"),
            ref.flood_s.get("plain"),
            ".2f",
            0.8,
        ),
        Row(
            f"flood colourful {mb:g} MB: time (s)",
            ours.flood_s.get("colour"),
            ref.flood_s.get("colour"),
            ".2f",
            1.0,
        ),
        Row("echo p50, idle (ms)", ms(ours.echo_idle_s, 50), ms(ref.echo_idle_s, 50), ".2f", 0.3),
        Row("echo p99, idle (ms)", ms(ours.echo_idle_s, 99), ms(ref.echo_idle_s, 99), ".2f", 0.5),
        Row(
            "echo p50, other floods (ms)", ms(ours.echo_busy_s, 50), ms(ref.echo_busy_s, 50), ".2f"
        ),
        Row(
            "echo p99, other floods (ms)",
            ms(ours.echo_busy_s, 99),
            ms(ref.echo_busy_s, 99),
            ".2f",
            1.0,
        ),
        Row("top-like: wire B/frame, ZRLE", top(ours, "zrle"), top(ref, "zrle"), ".0f", 0.5),
        Row("top-like: wire B/frame, Tight", top(ours, "tight"), top(ref, "tight"), ".0f", 0.5),
        Row(
            "top-like: CPU ms/frame, ZRLE",
            top_cpu(ours, "zrle"),
            top_cpu(ref, "zrle"),
            ".2f",
            1.0,
        ),
        Row(
            "top-like: CPU ms/frame, Tight",
            top_cpu(ours, "tight"),
            top_cpu(ref, "tight"),
            ".2f",
            1.0,
        ),
        Row(
            "top-like: program B/frame",
            top(ours, "tight", True),
            top(ref, "tight", True),
            ".0f",
        ),
        Row(
            "idle: bytes sent",
            ours.idle_bytes,
            ref.idle_bytes,
            ".0f",
            absolute=lambda v: v == 0,
            absolute_text="= 0",
        ),
        Row(
            "idle: CPU (% of a core)",
            ours.idle_cpu_percent,
            ref.idle_cpu_percent,
            ".3f",
            absolute=lambda v: v < 0.1,
            absolute_text="< 0.1",
        ),
        Row(
            "PSS, one idle console (MiB)",
            pss_mib(ours.pss_one_kib),
            pss_mib(ref.pss_one_kib),
            ".1f",
        ),
        Row(
            f"PSS per console, {ours.consoles or ref.consoles} (MiB)",
            pss_mib(ours.pss_many_kib, ours.consoles),
            pss_mib(ref.pss_many_kib, ref.consoles),
            ".1f",
            0.25,
        ),
    ]
    return table


def table(ours: Result, ref: Result, args: argparse.Namespace) -> str:
    def cell(value: float | None, fmt: str) -> str:
        return f"{value:>10{fmt}}" if value is not None else f"{'n/a':>10}"

    header = f"{'metric':<31} {'vzvnc':>10} {'reference':>10} {'ratio':>7}  {'target':<7} verdict"
    lines = [header, "-" * len(header)]
    for row in rows(ours, ref, args.flood_mb):
        ratio = row.ratio()
        ratio_text = f"{ratio:>7.2f}" if ratio is not None else f"{'n/a':>7}"
        lines.append(
            f"{row.name:<31} {cell(row.ours, row.fmt)} {cell(row.ref, row.fmt)} {ratio_text}  "
            f"{row.target_text():<7} {row.verdict()}".rstrip()
        )
    lines += [
        "",
        "ratio = vzvnc / reference (Xvnc + xterm -fn 8x16, no window manager), both 640x400;",
        "idle targets are on vzvnc's own value, the others on the ratio.",
        f"viewer: 32 bpp, no compression level; floods with {args.flood_encoding.capitalize()},"
        " echo with Tight;",
        f"{args.keys} keys per echo row; top-like {args.top_frames} frames at 10 fps;"
        f" idle {args.idle:g} s.",
    ]
    for name, result in (("vzvnc", ours), ("reference", ref)):
        for error in result.errors:
            lines.append(f"{name}: FAILED {error}")
        frames = ", ".join(f"{k} {v}" for k, v in result.flood_frames.items())
        if frames:
            lines.append(f"{name}: updates read during the floods: {frames}")
        tops = ", ".join(
            f"{k} {t.updates} updates for {t.frames} frames" for k, t in result.top.items()
        )
        if tops:
            lines.append(f"{name}: top-like window: {tops}")
    return "\n".join(lines)


def write_files(home: Path, flood_bytes: int) -> None:
    rng = random.Random(20)
    (home / "plain").write_bytes(plain_flood(flood_bytes, rng))
    (home / "colour").write_bytes(colour_flood(flood_bytes, rng))
    top = f'exec {sys.executable} {HERE / "toplike.py"} --frames "$1" --stats "$2"\n'
    (home / "t").write_text(top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run (about 1.5 min)")
    parser.add_argument("--flood-mb", type=float, help="MB per flood (20; quick 4)")
    parser.add_argument("--keys", type=int, help="keys per echo measurement (200; quick 50)")
    parser.add_argument("--idle", type=float, help="idle seconds (10; quick 3)")
    parser.add_argument("--top-frames", type=int, help="top-like frames (50; quick 30)")
    parser.add_argument("--consoles", type=int, help="idle consoles at once (50; quick 10)")
    parser.add_argument(
        "--flood-encoding", choices=("tight", "zrle"), default="tight", help="(default tight)"
    )
    parser.add_argument(
        "--sections",
        default="idle,echo,top,flood,memory",
        help="comma-separated subset of idle,echo,top,flood,memory",
    )
    parser.add_argument(
        "--only", choices=[k.name for k in KINDS], help="measure one server kind only"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    args = parser.parse_args()
    defaults = {"flood_mb": (20, 4), "keys": (200, 50), "idle": (10, 3)}
    defaults |= {"top_frames": (50, 30), "consoles": (50, 10)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    missing = missing_prerequisites()
    if missing:
        print(f"compare.py: missing {', '.join(missing)}.\n{MISSING_HELP}", file=sys.stderr)
        return 2
    print(machine(), flush=True)
    results: dict[str, Result] = {k.name: Result() for k in KINDS}
    started = time.monotonic()
    with signals_as_exceptions(), tempfile.TemporaryDirectory(prefix="vzvnc-compare-") as home:
        write_files(Path(home), int(args.flood_mb * 1_000_000))
        try:
            for kind in KINDS:
                if args.only in (None, kind.name):
                    print(f"{kind.name}:", flush=True)
                    results[kind.name] = measure_kind(kind, home, args)
        except KeyboardInterrupt as exc:
            print(f"compare.py: interrupted ({exc or 'SIGINT'}); servers stopped", file=sys.stderr)
            return 130
    print(f"\n{time.monotonic() - started:.0f} s\n")
    print(table(results["vzvnc"], results["reference"], args))
    if args.json:
        raw = {name: asdict(result) for name, result in results.items()}
        Path(args.json).write_text(json.dumps(raw, indent=1))
    return 1 if any(r.errors for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
