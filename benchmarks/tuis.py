"""Wire bytes and server CPU per frame of recorded full-screen programs, vzvnc beside Xvnc.

Issue 11 asks for bytes per frame at most 0.5x Xvnc's, for ZRLE and for Tight,
on real full-screen programs. The programs are timed recordings in
``benchmarks/tuis/`` (``NAME.bin`` + ``NAME.json``, made by
``tests/captured/record.py --timed`` from ``benchmarks/tuis/record_all.sh``):
htop, top, mc, vim and less scrolling the GPL, a dialog gauge, a whiptail menu
and a curses clock, 7-12 s each at 80x25. ``tuireplay.py`` writes a recording's
chunks at their recorded offsets, so both terminals get the same bytes with the
same timing.

For each recording and each encoding (ZRLE, Tight), the reference and then
vzvnc, each freshly started for that one replay:

- vzvnc is ``python -m vzvnc run --size 80x25 -- REPLAYER``; the reference is
  TigerVNC's ``Xvnc`` with one ``xterm -fn 8x16 -u8`` in the C.UTF-8 locale
  running REPLAYER (no window manager), both 640x400 (``rfbbench.spawn_vzvnc`` /
  ``spawn_reference(utf8=True)``). The recordings are UTF-8 (box drawing, arrows);
  xterm draws box-drawing characters itself but leaves blank the few characters
  its 8x16 font lacks (whiptail's scroll bar arrows and shades, htop's sort
  arrow), which vzvnc draws.
- One viewer (``rfbbench.Viewer``, written from rfbproto, no vzvnc code):
  32 bpp true colour, one compressing encoding listed (then CopyRect, Raw,
  LastRect, DesktopSize, Cursor), no compression or quality level, so each server
  uses its own default zlib level and nothing is lossy. It decodes every update
  and keeps an incremental FramebufferUpdateRequest outstanding.
- The replayer shows ``ready`` (the terminal is up and drawing: the viewer sees
  it), is told to clear it, and the viewer reads until 0.3 s pass without a
  message. The replayer's parent (the terminal) must be one of the measured
  server processes, or the run fails. Then the window opens: the server
  processes' CPU is read and the replay is started.
- The viewer reads (re-requesting after each update) until the replayer reports
  its last chunk written, then until 0.3 s pass without a message. The window
  closes and the CPU is read again.

Numbers, per recording and encoding:

- ``program B``: bytes in the recording. ``frames``: bursts of output in the
  recording, a chunk written 30 ms or more after the previous one starting a new
  burst (``Recording.frames``). The same count divides both servers' numbers,
  so each ratio is a ratio of totals.
- ``B/frame``: bytes of all server messages in the window (FramebufferUpdates with
  their headers, Cursor shapes included) / frames.
- ``CPU ms/frame``: CPU time (``/proc/PID/task/*/schedstat``) in the window of the
  server processes, vzvnc's python and Xvnc + xterm (the replayer is neither) /
  frames. The viewer's decoding is not counted.
- ``ratio`` = vzvnc / Xvnc; the verdict is PASS when the bytes ratio is at most
  0.5 and the CPU ratio at most 1 (issue 11), MISS otherwise.
- ``screen``: a sanity check that the replay was shown. After the window the
  viewer asks for the whole screen (non-incremental) and compares it with what
  it had built from the updates: they must be equal pixel for pixel (``exact``).
  The final screens of the two servers are compared cell by cell: a cell is
  *inked* when its 8x16 pixels hold more than one colour (a glyph on a
  background); vzvnc must show at least 40 inked cells, and the two servers must
  agree on inked or not in at least 98 % of the 2000 cells (the fonts differ,
  the layout must not). ``ok`` when all hold, else what failed; a run whose
  screen is not ``ok`` gets no verdict.

Run from the repository root (about 8 minutes for everything):

    python benchmarks/tuis.py [--only NAME[,NAME...]] [--encodings zrle,tight] [--json FILE]

It exits 0 when every measurement ran, 1 when one failed, 2 without the
reference's packages. Every process it starts is in its own process group and
is stopped on the way out, also after an error or a signal.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rfbbench import (
    CELL_H,
    CELL_W,
    COLUMNS,
    CURSOR,
    HEIGHT,
    LINES,
    MISSING_HELP,
    STARTUP_TIMEOUT,
    WIDTH,
    BenchmarkError,
    Pixels,
    Processes,
    Viewer,
    cpu_seconds,
    encodings_for,
    machine,
    missing_prerequisites,
    signals_as_exceptions,
    spawn_reference,
    spawn_vzvnc,
)
from tuireplay import Recording, load

HERE = Path(__file__).resolve().parent
RECORDINGS = HERE / "tuis"
REPLAYER = HERE / "tuireplay.py"
FRAME_GAP = 0.030
QUIET = 0.3
LIT = 64
MIN_INKED = 40
MIN_AGREEMENT = 0.98
BYTES_TARGET = 0.5
CPU_TARGET = 1.0
KINDS = ("reference", "vzvnc")

Spawn = Callable[[Processes, str, list[str]], tuple[int, list[int]]]


def spawn_vzvnc_plain(procs: Processes, home: str, command: list[str]) -> tuple[int, list[int]]:
    return spawn_vzvnc(procs, home, command)


def spawn_reference_utf8(procs: Processes, home: str, command: list[str]) -> tuple[int, list[int]]:
    return spawn_reference(procs, home, command, utf8=True)


SPAWN: dict[str, Spawn] = {"reference": spawn_reference_utf8, "vzvnc": spawn_vzvnc_plain}


@dataclass
class Run:
    """One replay on one server with one encoding."""

    wire_bytes: int = 0
    updates: int = 0
    cursor_shapes: int = 0  # Cursor pseudo-rectangles in the window
    cpu_s: float = float("nan")
    late_s: float = 0.0  # the replayer's worst lateness
    tail_s: float = 0.0  # from the replay's last write to the last message
    exact: bool = False
    inked: int = 0
    error: str = ""
    final: Pixels | None = field(default=None, repr=False)


@dataclass
class Case:
    recording: str
    encoding: str
    program_bytes: int
    frames: int
    runs: dict[str, Run] = field(default_factory=dict)
    agreement: float = float("nan")  # cells inked alike on both final screens

    def per_frame(self, kind: str, what: str) -> float | None:
        run = self.runs.get(kind)
        if run is None or run.error:
            return None
        value = run.wire_bytes if what == "bytes" else 1000 * run.cpu_s
        return value / self.frames

    def ratio(self, what: str) -> float | None:
        ours, ref = self.per_frame("vzvnc", what), self.per_frame("reference", what)
        if ours is None or ref is None or ref == 0:
            return None
        return ours / ref

    def screen(self) -> str:
        ours, ref = self.runs.get("vzvnc"), self.runs.get("reference")
        if ours is None or ref is None or ours.error or ref.error:
            return "n/a"
        problems = [f"{k} not exact" for k in KINDS if not self.runs[k].exact]
        if ours.inked < MIN_INKED:
            problems.append(f"{ours.inked} inked cells")
        if not self.agreement >= MIN_AGREEMENT:
            problems.append(f"layout {100 * self.agreement:.0f}%")
        return "; ".join(problems) or "ok"

    def verdict(self, what: str) -> str:
        ratio = self.ratio(what)
        if ratio is None or self.screen() != "ok":
            return ""
        target = BYTES_TARGET if what == "bytes" else CPU_TARGET
        return "PASS" if ratio <= target else "MISS"


# -- screens ---------------------------------------------------------------------------------


def cells(pixels: Pixels) -> np.ndarray:
    """(LINES, COLUMNS, CELL_H * CELL_W, 3) colour samples of each cell."""
    rgb = pixels[:HEIGHT, :WIDTH, :3].reshape(LINES, CELL_H, COLUMNS, CELL_W, 3)
    return rgb.transpose(0, 2, 1, 3, 4).reshape(LINES, COLUMNS, CELL_H * CELL_W, 3)


def inked(pixels: Pixels) -> np.ndarray:
    """Cells holding more than one colour: a glyph drawn on a background."""
    samples = cells(pixels).astype(np.int16)
    return np.asarray((samples.max(axis=2) != samples.min(axis=2)).any(axis=2))


def ready_shown(pixels: Pixels) -> bool:
    """Row 12, columns 35-39 (the replayer's ``ready``) hold lit pixels."""
    row = pixels[12 * CELL_H : 13 * CELL_H, 35 * CELL_W : 40 * CELL_W, :3]
    return bool((row.max(axis=2) > LIT).any())


# -- one replay ---------------------------------------------------------------------------------


def parent_of_replayer(go: Path) -> int | None:
    """The parent pid of the replayer started with ``go`` (xterm's and vzvnc's own
    command lines hold the same words, after others)."""
    replayer, go_path = str(REPLAYER).encode(), str(go).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv[1:2] != [replayer] or argv[3:4] != [go_path]:
                continue
            return int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return None


def read_until(viewer: Viewer, done: Callable[[], bool], what: str, limit: float) -> None:
    """Read (re-requesting after each update) until ``done()``; BenchmarkError after ``limit``."""
    deadline = time.monotonic() + limit
    while not done():
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{what} within {limit:g} s")
        message = viewer.read_message(0.02)
        if message is not None and message.kind == 0:
            viewer.request()


def settle(viewer: Viewer, limit: float = 30.0) -> float:
    """Read until ``QUIET`` s pass without a message; the time the last one was read."""
    deadline = time.monotonic() + limit
    last = time.monotonic()
    while time.monotonic() < deadline:
        message = viewer.read_message(QUIET)
        if message is None:
            return last
        last = message.done
        if message.kind == 0:
            viewer.request()
    raise BenchmarkError(f"updates never stopped for {QUIET} s in {limit:g} s")


def replay_on(kind: str, recording: Path, encoding: str, home: Path) -> Run:
    run = Run()
    stem = f"{recording.stem}-{encoding}-{kind}"
    go, done = home / f"{stem}.go", home / f"{stem}.done"
    command = [sys.executable, str(REPLAYER), str(recording), str(go), str(done), "--ready"]
    procs = Processes()
    viewer: Viewer | None = None
    try:
        port, pids = SPAWN[kind](procs, str(home), command)
        try:
            viewer = Viewer.connect(
                port, encodings_for(encoding), time.monotonic() + STARTUP_TIMEOUT
            )
        except BenchmarkError:
            procs.check_alive(kind)
            raise
        if viewer.pixels.shape[:2] != (HEIGHT, WIDTH):
            raise BenchmarkError(f"framebuffer is {viewer.pixels.shape[1::-1]}")
        viewer.request(incremental=False)
        shown = viewer
        read_until(viewer, lambda: ready_shown(shown.pixels), "no 'ready' shown", STARTUP_TIMEOUT)
        Path(f"{go}.clear").touch()
        read_until(viewer, lambda: not ready_shown(shown.pixels), "'ready' never cleared", 10)
        settle(viewer)
        procs.check_alive(kind)
        # The terminal that runs the replayer must be a process we measure (it
        # would not be if vzvnc handed the console to a process of its own).
        terminal = parent_of_replayer(go)
        if terminal not in pids:
            raise BenchmarkError(f"the replayer's terminal (pid {terminal}) is not measured")
        before_bytes = viewer.consumed
        before_cursor = viewer.rects_by_encoding.get(CURSOR, 0)
        before_cpu = cpu_seconds(pids)
        go.touch()
        updates = 0
        deadline = time.monotonic() + 120
        while not done.exists():
            if time.monotonic() > deadline:
                raise BenchmarkError("the replay did not finish in 120 s")
            message = viewer.read_message(0.02)
            if message is not None and message.kind == 0:
                updates += 1
                viewer.request()
        last = settle(viewer)
        run.cpu_s = cpu_seconds(pids) - before_cpu
        run.wire_bytes = viewer.consumed - before_bytes
        run.cursor_shapes = viewer.rects_by_encoding.get(CURSOR, 0) - before_cursor
        procs.check_alive(kind)
        report = json.loads(done.read_text())
        run.late_s = float(report["late_s"])
        run.tail_s = max(0.0, last - float(report["end"]))
        run.updates = updates
        # Everything after this is outside the window.
        built = viewer.pixels.copy()
        viewer.request(incremental=False)
        settle(viewer)
        run.exact = bool(np.array_equal(built[..., :3], viewer.pixels[..., :3]))
        run.final = built
        run.inked = int(inked(built).sum())
    except BenchmarkError as exc:
        run.error = str(exc)
    finally:
        if viewer is not None:
            viewer.close()
        procs.stop()
    return run


def measure(recording: Path, encoding: str, home: Path) -> Case:
    loaded: Recording = load(recording)
    frames = loaded.frames(FRAME_GAP)
    case = Case(loaded.name, encoding, len(loaded.data), frames)
    for kind in KINDS:
        started = time.monotonic()
        print(f"  {loaded.name} {encoding} {kind} ...", end="", flush=True)
        run = replay_on(kind, recording, encoding, home)
        case.runs[kind] = run
        took = time.monotonic() - started
        print(f" {'failed: ' + run.error if run.error else f'{took:.1f} s'}", flush=True)
    ours, ref = case.runs["vzvnc"].final, case.runs["reference"].final
    if ours is not None and ref is not None:
        case.agreement = float((inked(ours) == inked(ref)).mean())
    return case


# -- report ----------------------------------------------------------------------------------------


def table(cases: list[Case]) -> str:
    def num(value: float | None, fmt: str, width: int) -> str:
        return f"{value:>{width}{fmt}}" if value is not None else f"{'n/a':>{width}}"

    header = (
        f"{'recording':<14} {'enc':<5} {'prog B':>7} {'frames':>6} | "
        f"{'vzvnc B/f':>9} {'Xvnc B/f':>9} {'ratio':>6} {'<=0.5':<5} | "
        f"{'vzvnc ms/f':>10} {'Xvnc ms/f':>9} {'ratio':>6} {'<=1':<4} | screen"
    )
    lines = [header, "-" * len(header)]
    for case in cases:
        lines.append(
            f"{case.recording:<14} {case.encoding:<5} {case.program_bytes:>7} {case.frames:>6} | "
            f"{num(case.per_frame('vzvnc', 'bytes'), '.0f', 9)} "
            f"{num(case.per_frame('reference', 'bytes'), '.0f', 9)} "
            f"{num(case.ratio('bytes'), '.2f', 6)} {case.verdict('bytes'):<5} | "
            f"{num(case.per_frame('vzvnc', 'cpu'), '.2f', 10)} "
            f"{num(case.per_frame('reference', 'cpu'), '.2f', 9)} "
            f"{num(case.ratio('cpu'), '.2f', 6)} {case.verdict('cpu'):<4} | {case.screen()}"
        )
    for encoding in sorted({c.encoding for c in cases}, reverse=True):
        mine = [c for c in cases if c.encoding == encoding and c.screen() == "ok"]
        if not mine:
            continue
        ratios = {w: [c.ratio(w) for c in mine] for w in ("bytes", "cpu")}
        summary = []
        for what, target in (("bytes", BYTES_TARGET), ("cpu", CPU_TARGET)):
            values = [r for r in ratios[what] if r is not None]
            passed = sum(r <= target for r in values)
            geo = float(np.exp(np.mean(np.log(values)))) if values else float("nan")
            summary.append(f"{what} {passed}/{len(values)} PASS, geometric mean ratio {geo:.2f}")
        lines.append(f"{encoding}: " + "; ".join(summary))
    lines += [
        "",
        "B/f = wire bytes per frame, ms/f = server CPU ms per frame (vzvnc's python;",
        "Xvnc + xterm), frames = output bursts of the recording (>= 30 ms apart);",
        "ratio = vzvnc / Xvnc; targets: bytes <= 0.5x, CPU <= 1x. Viewer: 32 bpp,",
        "no compression or quality level (lossless, each server's default zlib level).",
        "Per run (updates read, Cursor shapes, replay's worst lateness, last update",
        "after the replay's end):",
    ]
    for case in cases:
        for kind in KINDS:
            run = case.runs.get(kind)
            if run is None:
                continue
            if run.error:
                lines.append(f"  {case.recording} {case.encoding} {kind}: FAILED {run.error}")
                continue
            lines.append(
                f"  {case.recording} {case.encoding} {kind}: {run.updates} updates, "
                f"{run.cursor_shapes} cursor shapes, late {1000 * run.late_s:.1f} ms, "
                f"tail {1000 * run.tail_s:.0f} ms, {run.inked} inked cells"
                + ("" if run.exact else ", NOT EXACT")
            )
        lines.append(f"  {case.recording} {case.encoding}: layout agreement {case.agreement:.3f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", help="comma-separated recording names (default: all)")
    parser.add_argument("--encodings", default="zrle,tight", help="comma-separated: zrle,tight")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    args = parser.parse_args()
    available = {p.stem: p for p in sorted(RECORDINGS.glob("*.json"))}
    names = args.only.split(",") if args.only else list(available)
    unknown = [n for n in names if n not in available]
    encodings = args.encodings.split(",")
    if unknown:
        parser.error(f"no recording {', '.join(unknown)}; have {', '.join(available)}")
    if not set(encodings) <= {"zrle", "tight"}:
        parser.error("--encodings takes zrle and/or tight")
    missing = missing_prerequisites()
    if missing:
        print(f"tuis.py: missing {', '.join(missing)}.\n{MISSING_HELP}", file=sys.stderr)
        return 2
    print(machine(), flush=True)
    cases: list[Case] = []
    started = time.monotonic()
    with signals_as_exceptions(), tempfile.TemporaryDirectory(prefix="vzvnc-tuis-") as home:
        try:
            for name in names:
                for encoding in encodings:
                    cases.append(measure(available[name], encoding, Path(home)))
        except KeyboardInterrupt as exc:
            print(f"tuis.py: interrupted ({exc or 'SIGINT'}); servers stopped", file=sys.stderr)
            return 130
    print(f"\n{time.monotonic() - started:.0f} s\n")
    print(table(cases))
    if args.json:
        raw = []
        for case in cases:
            item = asdict(case)
            for run in item["runs"].values():
                run.pop("final", None)
            raw.append(item)
        Path(args.json).write_text(json.dumps(raw, indent=1))
    return 1 if any(r.error for c in cases for r in c.runs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
