"""Hook scripts: arguments, stdin, aborting operations, timeouts, stray children."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest

from vzvnc.domain.config import load_domain
from vzvnc.domain.hooks import HookError, definition_json, run_hooks


def hook(directory: Path, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "domain"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


DEFINITION = definition_json(load_domain('name = "web1"\nrootfs = "/srv/web1"\n'))


def run(home: Path, operation: str, system: Path | None = None, **kw: object) -> None:
    run_hooks(home, "web1", operation, "begin", definition=DEFINITION, system_dir=system, **kw)  # type: ignore[arg-type]


def test_a_hook_sees_arguments_definition_and_environment(home: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    hook(
        home / "hooks",
        f'echo "$@ $VZVNC_DOMAIN $VZVNC_OPERATION $VZVNC_HOME" >> {log}\ncat > {log}.json\n',
    )
    run(home, "prepare")
    assert log.read_text().split() == [
        "web1",
        "prepare",
        "begin",
        "-",
        "web1",
        "prepare",
        str(home),
    ]
    document = json.loads(Path(f"{log}.json").read_text())
    assert document["name"] == "web1" and document["rootfs"] == "/srv/web1"
    assert document["init"] == ["/bin/sh"]


def test_a_failing_hook_aborts_prepare_but_not_started(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hook(home / "hooks", 'echo "no room for $1" >&2\nexit 3\n')
    with pytest.raises(HookError, match="no room for web1") as error:
        run(home, "prepare")
    assert "exit status 3" in str(error.value)
    with caplog.at_level(logging.WARNING):
        run(home, "started")
    assert "no room for web1" in caplog.text and "ignored" in caplog.text


def test_a_hanging_hook_is_killed_with_its_process_group(home: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    hook(home / "hooks", f"sleep 60 &\necho $! > {pids}\nsleep 60\n")
    began = time.monotonic()
    with pytest.raises(HookError, match=r"killed after 0\.5 s"):
        run(home, "start", timeout=0.5)
    assert time.monotonic() - began < 5
    child = int(pids.read_text())
    time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text()


def test_a_background_child_holding_stderr_does_not_hold_us(home: Path) -> None:
    hook(home / "hooks", "sleep 30 &\necho fine >&2\nexit 0\n")
    began = time.monotonic()
    run(home, "prepare")
    assert time.monotonic() - began < 3


def test_system_hook_runs_after_the_homes_and_not_after_a_refusal(
    home: Path, tmp_path: Path
) -> None:
    order = tmp_path / "order"
    system = tmp_path / "etc"
    hook(home / "hooks", f"echo home >> {order}\n")
    hook(system, f"echo system >> {order}\n")
    run(home, "prepare", system)
    assert order.read_text().split() == ["home", "system"]
    hook(home / "hooks", f"echo home >> {order}\nexit 1\n")
    with pytest.raises(HookError):
        run(home, "prepare", system)
    assert order.read_text().split() == ["home", "system", "home"]


def test_missing_hooks_do_nothing_and_non_executable_ones_are_skipped(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run(home, "prepare")  # nothing there at all
    path = hook(home / "hooks", "exit 1\n")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        run(home, "prepare")
    assert "not an executable" in caplog.text


def test_huge_stderr_is_bounded_in_the_error(home: Path) -> None:
    hook(home / "hooks", "head -c 5000000 /dev/zero | tr '\\0' x >&2\nexit 1\n")
    with pytest.raises(HookError) as error:
        run(home, "migrate")
    assert len(str(error.value)) < 3000


def test_unknown_operations_are_a_programming_error(home: Path) -> None:
    with pytest.raises(ValueError):
        run(home, "explode")
    assert os.path.exists(home) is False
