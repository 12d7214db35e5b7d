"""make_busybox_rootfs: the tree it makes, idempotence, and what it refuses."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from vzvnc.domain import rootfs as rootfs_module
from vzvnc.domain.rootfs import is_static_elf, make_busybox_rootfs
from vzvnc.errors import DomainError


def _busybox() -> str | None:
    try:
        return rootfs_module.find_busybox()
    except DomainError:
        return None


BUSYBOX = _busybox()
needs_busybox = pytest.mark.skipif(BUSYBOX is None, reason="busybox-static is not installed")


@needs_busybox
def test_makes_a_complete_tree(tmp_path: Path) -> None:
    target = tmp_path / "fs"
    make_busybox_rootfs(str(target))
    binary = target / "bin" / "busybox"
    assert binary.is_file() and not binary.is_symlink()
    assert os.access(binary, os.X_OK)
    for directory in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "var"):
        assert (target / directory).is_dir(), directory
    assert stat.S_IMODE((target / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((target / "root").stat().st_mode) == 0o700
    # One relative symlink per applet, each resolving to the copied binary.
    assert BUSYBOX is not None
    listing = subprocess.run(
        [BUSYBOX, "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in listing:
        if applet == "bin/busybox":
            continue
        link = target / applet
        assert link.is_symlink(), applet
        assert not os.readlink(link).startswith("/"), applet
        assert link.resolve() == binary.resolve(), applet
    assert os.readlink(target / "bin" / "sh") == "busybox"
    assert os.readlink(target / "usr" / "bin" / "awk") == "../../bin/busybox"
    passwd = (target / "etc" / "passwd").read_text()
    assert passwd.startswith("root:x:0:0:")
    assert "tty:x:5:" in (target / "etc" / "group").read_text()
    assert (target / "etc" / "hostname").read_text().strip()
    assert "\\h" in (target / "etc" / "profile").read_text()


@needs_busybox
def test_applets_run_from_the_tree(tmp_path: Path) -> None:
    target = tmp_path / "fs"
    make_busybox_rootfs(str(target))
    result = subprocess.run(
        [str(target / "bin" / "sh"), "-c", "echo $((6*7))"], capture_output=True, text=True
    )
    assert result.stdout.strip() == "42"


@needs_busybox
def test_is_idempotent_and_keeps_user_changes(tmp_path: Path) -> None:
    target = tmp_path / "fs"
    make_busybox_rootfs(str(target))
    (target / "etc" / "hostname").write_text("mine\n")
    (target / "bin" / "ls").unlink()
    (target / "root" / "notes").write_text("keep me")
    make_busybox_rootfs(str(target))
    assert (target / "etc" / "hostname").read_text() == "mine\n"
    assert os.readlink(target / "bin" / "ls") == "busybox"
    assert (target / "root" / "notes").read_text() == "keep me"


@needs_busybox
def test_an_existing_empty_directory_is_fine(tmp_path: Path) -> None:
    make_busybox_rootfs(str(tmp_path))
    assert (tmp_path / "bin" / "busybox").is_file()


@needs_busybox
def test_refuses_a_foreign_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("data")
    with pytest.raises(DomainError, match="not empty and not a busybox root filesystem"):
        make_busybox_rootfs(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["precious.txt"]


@needs_busybox
def test_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(DomainError, match="not a directory"):
        make_busybox_rootfs(str(target))


def test_missing_busybox_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(rootfs_module, "BUSYBOX_CANDIDATES", (str(tmp_path / "nope"),))
    with pytest.raises(DomainError, match="busybox-static"):
        make_busybox_rootfs(str(tmp_path / "fs"))
    assert not (tmp_path / "fs").exists()


def test_a_dynamic_busybox_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dynamic = shutil.which("ls") or "/bin/ls"
    if is_static_elf(dynamic):
        pytest.skip(f"{dynamic} is static here")
    monkeypatch.setattr(rootfs_module, "BUSYBOX_CANDIDATES", (dynamic,))
    with pytest.raises(DomainError, match=r"dynamically linked.*busybox-static"):
        make_busybox_rootfs(str(tmp_path / "fs"))


def test_static_elf_detection(tmp_path: Path) -> None:
    if BUSYBOX is not None:
        assert is_static_elf(BUSYBOX)
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    assert not is_static_elf(str(script))
