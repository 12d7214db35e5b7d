"""The timed TUI recordings in ``benchmarks/tuis/`` and the replayer that plays them.

``benchmarks/tuis.py`` measures vzvnc against Xvnc on these recordings; a
recording that does not hold together, or a replayer that changes the bytes,
would make its numbers meaningless. Here each committed recording must parse
(chunk lengths adding up to its ``.bin``, times never going backwards), and the
replayer, run as a real process, must write exactly the recording's bytes into
a pty (raw mode, nothing added) and, with ``--ready``, a marker, then the clear,
then exactly those bytes into a pipe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import tuireplay

BENCHMARKS = Path(tuireplay.__file__).resolve().parent

RECORDINGS = sorted((BENCHMARKS / "tuis").glob("*.json"))
NAMES = [p.stem for p in RECORDINGS]
SPEED = "50"


def test_at_least_six_different_programs_are_recorded() -> None:
    programs = {json.loads(p.read_text())["command"][0] for p in RECORDINGS}
    assert len(RECORDINGS) >= 6
    assert len(programs) >= 6


@pytest.mark.parametrize("path", RECORDINGS, ids=NAMES)
def test_recording_holds_together(path: Path) -> None:
    meta = json.loads(path.read_text())
    data = path.with_suffix(".bin").read_bytes()
    times = [seconds for seconds, _ in meta["chunks"]]
    assert times == sorted(times)
    assert sum(length for _, length in meta["chunks"]) == len(data) == meta["bytes"]
    recording = tuireplay.load(path)
    assert (recording.columns, recording.rows) == (80, 25)
    assert b"".join(piece for _, piece in recording.pieces()) == data
    # A real multi-frame session, not one screen: many bursts over seconds.
    assert recording.frames(0.030) >= 15
    assert times[-1] >= 5


def test_load_refuses_a_recording_whose_chunks_do_not_add_up(tmp_path: Path) -> None:
    source = RECORDINGS[0]
    meta = json.loads(source.read_text())
    meta["chunks"][-1][1] += 1
    broken = tmp_path / source.name
    broken.write_text(json.dumps(meta))
    broken.with_suffix(".bin").write_bytes(source.with_suffix(".bin").read_bytes())
    with pytest.raises(tuireplay.RecordingError):
        tuireplay.load(broken)


def test_load_refuses_chunk_times_going_backwards(tmp_path: Path) -> None:
    source = RECORDINGS[0]
    meta = json.loads(source.read_text())
    meta["chunks"][1][0] = meta["chunks"][0][0] - 0.5
    broken = tmp_path / source.name
    broken.write_text(json.dumps(meta))
    broken.with_suffix(".bin").write_bytes(source.with_suffix(".bin").read_bytes())
    with pytest.raises(tuireplay.RecordingError):
        tuireplay.load(broken)


def replayer(path: Path, tmp_path: Path, *extra: str, stdout: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(BENCHMARKS / "tuireplay.py"), str(path)]
    argv += [str(tmp_path / "go"), str(tmp_path / "done"), "--exit", "--speed", SPEED, *extra]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout)


@pytest.mark.parametrize("path", RECORDINGS, ids=NAMES)
def test_replayer_writes_exactly_the_recording_into_a_pty(path: Path, tmp_path: Path) -> None:
    (tmp_path / "go").touch()
    master, slave = os.openpty()
    try:
        proc = replayer(path, tmp_path, stdout=slave)
        os.close(slave)
        got = bytearray()
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the replayer exited and closed the slave
                break
            if not chunk:
                break
            got += chunk
        assert proc.wait(30) == 0
    finally:
        os.close(master)
    assert bytes(got) == path.with_suffix(".bin").read_bytes()
    report = json.loads((tmp_path / "done").read_text())
    assert report["bytes"] == len(got)
    assert report["end"] >= report["start"]


def test_replayer_with_ready_shows_the_marker_clears_it_then_replays(tmp_path: Path) -> None:
    path = min(RECORDINGS, key=lambda p: p.with_suffix(".bin").stat().st_size)
    read_fd, write_fd = os.pipe()
    proc = replayer(path, tmp_path, "--ready", stdout=write_fd)
    os.close(write_fd)
    try:
        marker = os.read(read_fd, len(tuireplay.READY))
        assert marker == tuireplay.READY
        time.sleep(0.1)  # nothing more comes until the clear file appears
        assert not (tmp_path / "done").exists()
        (tmp_path / "go.clear").touch()
        assert os.read(read_fd, len(tuireplay.CLEAR)) == tuireplay.CLEAR
        (tmp_path / "go").touch()
        rest = bytearray()
        while chunk := os.read(read_fd, 65536):
            rest += chunk
        assert proc.wait(30) == 0
    finally:
        os.close(read_fd)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert bytes(rest) == path.with_suffix(".bin").read_bytes()
