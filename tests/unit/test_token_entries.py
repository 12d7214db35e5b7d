"""The gateway's token entries: a migrated domain's new entry survives the source's
teardown when hosts share one token directory."""

from __future__ import annotations

import json
from pathlib import Path

from vzvnc.domain.tokens import (
    console_token_line,
    remove_token,
    token_dir,
    token_line,
    write_token,
)

TOKEN = "abcdefghijklmnopqrstuvwxyz012345"


def test_the_source_leaves_the_entry_the_destination_wrote(tmp_path: Path) -> None:
    shared = tmp_path  # both hosts' homes see this token directory
    source_run = tmp_path / "run-a"
    source_run.mkdir()
    (source_run / "console.json").write_text(json.dumps({"host": "192.0.2.1", "port": 5901}))
    write_token(shared, "web", TOKEN, "192.0.2.1", 5901)  # the source's console listened
    write_token(shared, "web", TOKEN, "192.0.2.2", 5907)  # then the destination's
    remove_token(shared, "web", only_if=console_token_line(source_run, TOKEN))
    assert (token_dir(shared) / "web").read_text() == token_line(TOKEN, "192.0.2.2", 5907)


def test_the_source_removes_its_own_entry(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "console.json").write_text(json.dumps({"host": "127.0.0.1", "port": 5900}))
    write_token(tmp_path, "web", TOKEN, "127.0.0.1", 5900)
    remove_token(tmp_path, "web", only_if=console_token_line(run, TOKEN))
    assert not (token_dir(tmp_path) / "web").exists()


def test_without_a_console_status_the_entry_is_removed(tmp_path: Path) -> None:
    write_token(tmp_path, "web", TOKEN, "127.0.0.1", 5900)
    assert console_token_line(tmp_path / "no-run-dir", TOKEN) is None
    remove_token(tmp_path, "web", only_if=None)
    assert not (token_dir(tmp_path) / "web").exists()
