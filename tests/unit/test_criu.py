"""Finding a CRIU that can checkpoint here, the command lines, and the checkpoint record.

The "criu" programs below are stand-in scripts that only print a version: they test
how vzvnc chooses and refuses a binary, never a checkpoint (the integration tests
run the real CRIU for that)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vzvnc.domain import criu


def fake_criu(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "criu"
    path.write_text(f"#!/bin/sh\necho 'Version: {version}'\n")
    path.chmod(0o755)
    return path


def test_a_too_old_or_missing_criu_is_refused_saying_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = fake_criu(tmp_path / "old", "3.17.1")
    monkeypatch.setattr(criu, "CANDIDATES", ())
    monkeypatch.setenv("PATH", str(old.parent))
    with pytest.raises(criu.CriuError, match=r"4\.1 or newer.*3\.17.*tools/build-criu"):
        criu.find_criu()
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(criu.CriuError, match="Suspend, resume and cold migration work"):
        criu.find_criu()


def test_the_newest_enough_criu_is_taken_before_the_one_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = fake_criu(tmp_path / "local", "4.1.1")
    old = fake_criu(tmp_path / "old", "3.17.1")
    monkeypatch.setattr(criu, "CANDIDATES", (str(local),))
    monkeypatch.setenv("PATH", str(old.parent))
    assert criu.find_criu() == str(local)
    monkeypatch.setattr(criu, "CANDIDATES", ())
    newer = fake_criu(tmp_path / "newer", "4.10")
    monkeypatch.setenv("PATH", str(newer.parent))
    assert criu.find_criu() == str(newer)


def test_command_lines_name_the_console_and_the_cgroups(tmp_path: Path) -> None:
    tty = criu.ConsoleTty(rdev=0x8803, dev=0x1A)
    dump = criu.dump_argv("criu", 42, tmp_path, tty, "/sys/fs/cgroup/freezer/v/x", tmp_path / "l")
    assert dump[dump.index("--tree") + 1] == "42"
    assert "tty[8803:1a]" in dump and "--leave-running" in dump
    assert dump[dump.index("--freeze-cgroup") + 1] == "/sys/fs/cgroup/freezer/v/x"
    restore = criu.restore_argv(
        "criu", tmp_path, "/srv/r", tty, 7, "/dev/pts/9", tmp_path / "pid",
        ["memory:/a/vzvnc/x", "freezer:/vzvnc/x"], tmp_path / "l",
    )  # fmt: skip
    assert "fd[7]:tty[8803:1a]" in restore and "mnt[console]:/dev/pts/9" in restore
    roots = [restore[i + 1] for i, word in enumerate(restore) if word == "--cgroup-root"]
    assert roots == ["memory:/a/vzvnc/x", "freezer:/vzvnc/x"]


def record(tmp_path: Path, data: object) -> Path:
    (tmp_path / criu.CONSOLE_RECORD).write_text(json.dumps(data))
    return tmp_path


GOOD = {"version": 1, "name": "box", "offset": 10, "console": {"rdev": 1, "dev": 2}}


def test_the_checkpoint_record_is_checked(tmp_path: Path) -> None:
    loaded = criu.read_record(record(tmp_path, GOOD))
    assert (loaded.offset, loaded.console) == (10, criu.ConsoleTty(1, 2))
    for bad in (
        {**GOOD, "version": 2},
        {**GOOD, "offset": -1},
        {**GOOD, "offset": True},
        {**GOOD, "console": {"rdev": "1", "dev": 2}},
        {"version": 1},
        [1, 2],
    ):
        with pytest.raises(criu.CriuError, match="not valid"):
            criu.read_record(record(tmp_path, bad))
    (tmp_path / criu.CONSOLE_RECORD).write_bytes(b" " * 5000)
    with pytest.raises(criu.CriuError, match="not valid"):
        criu.read_record(tmp_path)
