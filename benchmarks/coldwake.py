"""What one update costs a console right after it slept, against the same update run hot.

A console wakes for each frame of a program's output (10 a second for top), does
one update's work and sleeps again. This measures that work in-process, with
vzvnc's own terminal, renderer and encoders (no sockets): feed the frame's bytes,
render, plan the rectangles and encode them for a ZRLE viewer, as the server
does. Each workload runs ``--rounds`` times back to back (hot: caches and branch
predictors hold the code and data of the round before), then with a sleep of
1, 10 and 100 ms before every round (cold: whatever else ran on the CPU
meanwhile has evicted them, as between a console's frames). The time is the
thread's own CPU time (``time.thread_time``), so being descheduled does not
count.

The reference is the same rounds of work for zlib alone (C, deflating the same
update's uncompressed ZRLE data): a compact C loop against vzvnc's Python and
numpy pipeline, which touches far more code and data per update.

Workloads: "one cell", a clock-like update of one cell; "top-like", one
redraw of ``toplike.py``'s screen (about 1000 changed cells).

    python benchmarks/coldwake.py [--rounds 40]

It prints microseconds per round and the cold/hot ratio for each.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import toplike

from vzvnc.fb.damage import Rect
from vzvnc.fb.display import Display
from vzvnc.fb.font import default_atlas
from vzvnc.fb.render import Renderer
from vzvnc.rfb import encodings
from vzvnc.rfb.pixelformat import SERVER_PIXEL_FORMAT
from vzvnc.term.terminal import Terminal

GAPS = (0.0, 0.001, 0.01, 0.1)


class Console:
    """A terminal, its renderer and a ZRLE encoder: one update's work, no I/O."""

    def __init__(self) -> None:
        self.terminal = Terminal(80, 25, history=1000)
        self.display = Display(self.terminal)
        self.renderer = Renderer(default_atlas(), 80, 25)
        self.encoder = encodings.EncoderSelector().choose([16])
        self.screen = Rect(0, 0, 640, 400)
        self.last_data: list[bytes] = []

    def update(self, output: bytes) -> int:
        self.terminal.feed(output)
        result = self.renderer.render(self.display)
        fb = self.renderer.framebuffer
        rects = encodings.arrange(self.encoder, list(result.changed), (8, 16), self.screen)
        parts = encodings.encode_damage(
            self.encoder, fb.pixels, rects, SERVER_PIXEL_FORMAT, fb.cells
        )
        return sum(len(part.payload) for rect_parts in parts for part in rect_parts)


def measure(work: Callable[[int], object], rounds: int, gap: float) -> float:
    """Mean thread CPU microseconds of ``work(i)`` with ``gap`` seconds of sleep before each."""
    total = 0.0
    for number in range(rounds):
        if gap:
            time.sleep(gap)
        start = time.thread_time()
        work(number)
        total += time.thread_time() - start
    return total / rounds * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()

    one_cell = Console()
    one_cell.terminal.feed(b"\x1b[2J" + b"some text on the screen\r\n" * 20)
    one_cell.update(b"")

    rng = random.Random(7)
    tasks = toplike.make_tasks(rng, 40)
    frames = []
    for number in range(4 * args.rounds * len(GAPS) + 20):
        toplike.step(rng, tasks, 0.1)
        frames.append(toplike.frame(rng, tasks, number * 0.1))
    top = Console()
    for frame in frames[:10]:
        top.update(frame)
    top_frames = iter(frames[10:])

    # The reference: deflate one top-like update's worth of data (about 30 KB) in C.
    sample = bytes(rng.getrandbits(8) % 4 for _ in range(30000))

    def deflate(number: int) -> object:
        stream = zlib.compressobj(6)
        return stream.compress(sample) + stream.flush(zlib.Z_SYNC_FLUSH)

    workloads: list[tuple[str, Callable[[int], object]]] = [
        ("one cell (vzvnc)", lambda n: one_cell.update(b"\x1b[5;10H%d" % (n % 10))),
        ("top-like frame (vzvnc)", lambda n: top.update(next(top_frames))),
        ("zlib of 30 KB (C reference)", deflate),
    ]
    print(
        f"{'workload':30} " + " ".join(f"{'gap ' + str(int(g * 1000)) + ' ms':>12}" for g in GAPS)
    )
    for name, work in workloads:
        for _ in range(5):
            work(0)
        cells = [measure(work, args.rounds, gap) for gap in GAPS]
        row = " ".join(f"{value:9.0f} us" for value in cells)
        print(f"{name:30} {row}   cold/hot {cells[-1] / cells[0]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
