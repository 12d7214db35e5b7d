"""Replays a timed recording (``benchmarks/tuis/NAME.json`` + ``NAME.bin``) in real time.

A timed recording is what ``tests/captured/record.py NAME --timed DIR`` writes:
``NAME.bin`` holds every byte a program wrote to its pty, and ``NAME.json``'s
``"chunks"`` list holds one ``[seconds, length]`` pair per read, in order,
``seconds`` counted from the program's start. ``load`` parses and checks one.

    python benchmarks/tuireplay.py RECORDING.json GO_FILE DONE_FILE [--ready] [--exit]
        [--speed N]

The replayer is the program ``tuis.py`` runs in each terminal. It puts its
terminal in raw mode (the recorded bytes already hold the ``\\r\\n`` the
program's tty made; a cooked tty would add another ``\\r``). With ``--ready``
it then shows ``ready`` in the middle of the screen, so the benchmark can see
that the terminal is up and drawing, waits until ``GO_FILE.clear`` exists and
clears the screen again (``CSI H CSI 2 J``). It waits until GO_FILE exists (so
a viewer can connect and settle first), then writes each chunk when its offset
has passed since the start, and finally writes DONE_FILE, JSON
``{"start": T0, "end": T1, "bytes": N, "late_s": L}``: ``time.monotonic()``
when it began and when the last chunk had been written (the clock the
benchmark's viewer uses), the bytes written and the most any chunk was late.
Then it sleeps until it is killed (both servers exit with their program), or,
with ``--exit``, exits. It never reads what the terminal answers. ``--speed N``
plays N times faster (the tests use it; the benchmark never does).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tty
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Recording:
    name: str
    columns: int
    rows: int
    data: bytes
    chunks: list[tuple[float, int]]  # (seconds from the start, length), in order
    meta: dict[str, object]

    def pieces(self) -> list[tuple[float, bytes]]:
        """(seconds, bytes) of every chunk."""
        found = []
        position = 0
        for seconds, length in self.chunks:
            found.append((seconds, self.data[position : position + length]))
            position += length
        return found

    def frames(self, gap: float) -> int:
        """Bursts of output: chunks closer than ``gap`` seconds to the previous one join it."""
        count = 0
        last = float("-inf")
        for seconds, _ in self.chunks:
            if seconds - last >= gap:
                count += 1
            last = seconds
        return count


class RecordingError(Exception):
    """A timed recording does not hold together."""


def load(json_path: Path) -> Recording:
    meta = json.loads(json_path.read_text(encoding="utf-8"))
    data = json_path.with_suffix(".bin").read_bytes()
    chunks = [(float(seconds), int(length)) for seconds, length in meta["chunks"]]
    if sum(length for _, length in chunks) != len(data) or meta["bytes"] != len(data):
        raise RecordingError(f"{json_path.name}: chunk lengths do not add up to the .bin")
    if any(length <= 0 for _, length in chunks):
        raise RecordingError(f"{json_path.name}: empty chunk")
    times = [seconds for seconds, _ in chunks]
    if times != sorted(times) or (times and times[0] < 0):
        raise RecordingError(f"{json_path.name}: chunk times go backwards")
    columns, rows = (int(v) for v in str(meta["size"]).split("x"))
    return Recording(str(meta["name"]), columns, rows, data, chunks, meta)


READY = b"\x1b[H\x1b[2J\x1b[13;36Hready"
CLEAR = b"\x1b[H\x1b[2J"


def wait_for(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.005)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def replay(recording: Recording, fd: int, speed: float = 1.0) -> dict[str, float]:
    start = time.monotonic()
    late = 0.0
    written = 0
    for seconds, piece in recording.pieces():
        delay = start + seconds / speed - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            late = max(late, -delay)
        write_all(fd, piece)
        written += len(piece)
    return {"start": start, "end": time.monotonic(), "bytes": written, "late_s": late}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("recording", type=Path, help="NAME.json (NAME.bin beside it)")
    parser.add_argument("go", help="start once this file exists")
    parser.add_argument("done", help="write the timing here when finished")
    parser.add_argument("--ready", action="store_true", help="show a marker first (see above)")
    parser.add_argument("--exit", action="store_true", help="exit after the replay")
    parser.add_argument("--speed", type=float, default=1.0, help="play N times faster")
    args = parser.parse_args()
    recording = load(args.recording)
    if os.isatty(1):
        tty.setraw(1)
    if args.ready:
        write_all(1, READY)
        wait_for(args.go + ".clear")
        write_all(1, CLEAR)
    wait_for(args.go)
    report = replay(recording, 1, args.speed)
    Path(args.done + ".tmp").write_text(json.dumps(report))
    os.rename(args.done + ".tmp", args.done)
    if args.exit:
        return 0
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
