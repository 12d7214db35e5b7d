"""The console state file in a root filesystem the container controls: what a hostile
container root can plant there is refused, moved aside inside the rootfs, and never
followed out of it."""

from __future__ import annotations

import os
import stat
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_state import compress_zeros, seal
from vzvnc import state
from vzvnc.domain.rootfs_state import (
    read_console_state,
    remove_console_state,
    write_console_state,
)
from vzvnc.fb.snapshot import render_rgb
from vzvnc.state import MAGIC, SnapshotError
from vzvnc.term.terminal import Terminal

PATH = "/.vzvnc/console.state"


def snapshot(offset: int = 1234) -> state.Snapshot:
    terminal = Terminal(80, 25)
    terminal.feed(b"\x1b[1;31mred\x1b[0m plain\r\n\x1b[5;10Hmoved \xe2\x94\x80 line")
    taken = state.capture(terminal, offset)
    assert taken is not None
    return taken


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    path = tmp_path / "rootfs"
    path.mkdir()
    return path


@pytest.fixture
def host_file(tmp_path: Path) -> Path:
    path = tmp_path / "host-secret"
    path.write_bytes(b"the host's own file\n")
    os.utime(path, (1_000_000, 1_000_000))
    return path


def untouched(path: Path) -> bool:
    return path.read_bytes() == b"the host's own file\n" and path.stat().st_mtime == 1_000_000


def test_round_trip_keeps_the_screen_and_makes_private_files(rootfs: Path) -> None:
    original = snapshot()
    write_console_state(rootfs, PATH, original)
    loaded = read_console_state(rootfs, PATH)
    assert loaded is not None and loaded.offset == 1234
    restored, source = state.restore(loaded), state.restore(original)
    assert restored.text_lines() == source.text_lines()
    assert np.array_equal(render_rgb(restored), render_rgb(source))
    assert stat.S_IMODE((rootfs / ".vzvnc").stat().st_mode) == 0o700
    assert stat.S_IMODE((rootfs / ".vzvnc/console.state").stat().st_mode) == 0o600
    remove_console_state(rootfs, PATH)
    assert read_console_state(rootfs, PATH) is None
    remove_console_state(rootfs, PATH)  # nothing there: fine


def test_nothing_there_is_none(rootfs: Path) -> None:
    assert read_console_state(rootfs, PATH) is None
    assert read_console_state(rootfs, "/deep/er/state") is None


def test_a_symlink_at_the_state_path_is_replaced_never_followed(
    rootfs: Path, host_file: Path
) -> None:
    (rootfs / ".vzvnc").mkdir()
    (rootfs / ".vzvnc/console.state").symlink_to(host_file)
    with pytest.raises(SnapshotError, match="symbolic link"):
        read_console_state(rootfs, PATH)
    assert untouched(host_file)
    assert (rootfs / ".vzvnc/console.state.corrupt-1").is_symlink()  # aside, inside
    (rootfs / ".vzvnc/console.state").symlink_to(host_file)
    write_console_state(rootfs, PATH, snapshot())
    assert untouched(host_file)
    assert not (rootfs / ".vzvnc/console.state").is_symlink()
    assert read_console_state(rootfs, PATH) == snapshot()


def test_a_symlinked_state_directory_is_refused_and_nothing_lands_outside(
    rootfs: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "host-dir"
    outside.mkdir()
    (outside / "console.state").write_bytes(snapshot(5).to_bytes())
    (rootfs / ".vzvnc").symlink_to(outside)
    with pytest.raises(SnapshotError, match="symbolic link"):
        write_console_state(rootfs, PATH, snapshot())
    with pytest.raises(SnapshotError):
        read_console_state(rootfs, PATH)  # even a valid file behind the link is not read
    assert sorted(p.name for p in outside.iterdir()) == ["console.state"]
    assert (outside / "console.state").read_bytes() == snapshot(5).to_bytes()


def test_a_symlink_deeper_in_a_configured_path_is_refused(rootfs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (rootfs / "var").mkdir()
    (rootfs / "var/lib").symlink_to(outside)
    with pytest.raises(SnapshotError):
        write_console_state(rootfs, "/var/lib/vzvnc/state", snapshot())
    assert list(outside.iterdir()) == []


@pytest.mark.timeout(10)
def test_a_fifo_is_refused_without_blocking(rootfs: Path) -> None:
    (rootfs / ".vzvnc").mkdir()
    os.mkfifo(rootfs / ".vzvnc/console.state")
    began = time.monotonic()
    with pytest.raises(SnapshotError, match="FIFO"):
        read_console_state(rootfs, PATH)
    assert time.monotonic() - began < 2
    write_console_state(rootfs, PATH, snapshot())  # and the console comes back
    assert read_console_state(rootfs, PATH) == snapshot()


def test_a_10_gb_sparse_file_is_refused_unread(rootfs: Path) -> None:
    (rootfs / ".vzvnc").mkdir()
    with open(rootfs / ".vzvnc/console.state", "wb") as f:
        f.truncate(10 << 30)
    began = time.monotonic()
    with pytest.raises(SnapshotError, match="too large"):
        read_console_state(rootfs, PATH)
    assert time.monotonic() - began < 2
    assert (rootfs / ".vzvnc/console.state.corrupt-1").stat().st_size == 10 << 30


def test_a_directory_at_the_file_path_is_refused(rootfs: Path) -> None:
    (rootfs / ".vzvnc/console.state").mkdir(parents=True)
    with pytest.raises(SnapshotError, match="directory"):
        read_console_state(rootfs, PATH)


BAD_FILES = {
    "zlib bomb": seal(b"{}", compressed=compress_zeros(64 << 20), raw_size=1000),
    "wrong magic": b"NOTVZVNC" + snapshot().to_bytes()[8:],
    "wrong version": MAGIC + b"\x00\x63" + snapshot().to_bytes()[10:],
    "truncated": snapshot().to_bytes()[:-100],
    "random bytes": bytes(np.random.default_rng(7).integers(0, 256, 5000, dtype=np.uint8)),
    "empty": b"",
}


@pytest.mark.parametrize("content", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_files_are_refused_moved_aside_and_a_new_state_works(
    rootfs: Path, content: bytes
) -> None:
    (rootfs / ".vzvnc").mkdir()
    (rootfs / ".vzvnc/console.state").write_bytes(content)
    with pytest.raises(SnapshotError, match="refused"):
        read_console_state(rootfs, PATH)
    assert (rootfs / ".vzvnc/console.state.corrupt-1").read_bytes() == content
    assert read_console_state(rootfs, PATH) is None  # reported once, then gone
    write_console_state(rootfs, PATH, snapshot())
    assert read_console_state(rootfs, PATH) == snapshot()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_load_or_fail_cleanly(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / ".vzvnc").mkdir()
        (Path(tmp) / ".vzvnc/console.state").write_bytes(MAGIC + data if data[:1] else data)
        try:
            result = read_console_state(tmp, PATH)
        except SnapshotError:
            return
        assert result is None or isinstance(result, state.Snapshot)


def test_peeking_reads_plain_files_only_and_moves_nothing(
    rootfs: Path, tmp_path: Path, host_file: Path
) -> None:
    from vzvnc.domain.rootfs_state import peek_console_state

    assert peek_console_state(rootfs, PATH) is None
    write_console_state(rootfs, PATH, snapshot())
    assert peek_console_state(rootfs, PATH) == snapshot().to_bytes()
    (rootfs / ".vzvnc/console.state").write_bytes(b"garbage")
    assert peek_console_state(rootfs, PATH) == b"garbage"  # not parsed, not moved
    assert not (rootfs / ".vzvnc/console.state.corrupt-1").exists()
    (rootfs / ".vzvnc/console.state").unlink()
    (rootfs / ".vzvnc/console.state").symlink_to(host_file)
    assert peek_console_state(rootfs, PATH) is None
    assert (rootfs / ".vzvnc/console.state").is_symlink() and untouched(host_file)
