"""Minimal root filesystems: a busybox tree for demos and tests.

This module owns ``make_busybox_rootfs``: a directory tree with a statically
linked busybox (Debian's ``busybox-static``), one relative symlink per applet,
the mount points the launcher fills (``proc``, ``sys``, ``dev``) and the few
files in ``etc`` a shell and ``ps``/``id`` expect. Any other root filesystem
(debootstrap, an unpacked image) works with the kernel layer too; nothing here
is required by it.
"""

from __future__ import annotations

import contextlib
import filecmp
import os
import shutil
import struct
import subprocess

from vzvnc.errors import DomainError

BUSYBOX_CANDIDATES = ("/usr/bin/busybox", "/bin/busybox")
PACKAGE = "busybox-static"

DIRECTORIES = (
    ("bin", 0o755),
    ("sbin", 0o755),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("etc", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("dev", 0o755),
    ("tmp", 0o1777),
    ("root", 0o700),
    ("var", 0o755),
    ("var/log", 0o755),
    ("var/tmp", 0o1777),
)

ETC_FILES = (
    (
        "etc/passwd",
        0o644,
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    ),
    ("etc/group", 0o644, "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"),
    # Locked: nobody logs in with a password; the console is already root's.
    ("etc/shadow", 0o600, "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n"),
    ("etc/hostname", 0o644, "busybox\n"),
    ("etc/hosts", 0o644, "127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
    (
        "etc/profile",
        0o644,
        "# Read by login shells (sh -l), and by interactive ones when ENV=/etc/profile.\n"
        "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
        "export PS1='\\u@\\h:\\w\\$ '\n"
        "umask 022\n",
    ),
)

PT_INTERP = 3


def find_busybox() -> str:
    """The host's busybox, refused unless statically linked (the rootfs has no libc)."""
    for candidate in BUSYBOX_CANDIDATES:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            if not is_static_elf(candidate):
                raise DomainError(
                    f"{candidate} is dynamically linked and would not run in a root filesystem "
                    f"without libc: install Debian's {PACKAGE} package"
                )
            return candidate
    raise DomainError(
        f"busybox not found ({' or '.join(BUSYBOX_CANDIDATES)}): install Debian's {PACKAGE} package"
    )


def is_static_elf(path: str) -> bool:
    """True for an ELF executable without a program interpreter (no dynamic loader)."""
    with open(path, "rb") as f:
        header = f.read(64)
        if len(header) < 52 or header[:4] != b"\x7fELF":
            return False
        bits, order = header[4], "<" if header[5] == 1 else ">"
        if bits == 2:
            (phoff,) = struct.unpack_from(order + "Q", header, 32)
            phentsize, phnum = struct.unpack_from(order + "HH", header, 54)
        else:
            (phoff,) = struct.unpack_from(order + "I", header, 28)
            phentsize, phnum = struct.unpack_from(order + "HH", header, 42)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        (p_type,) = struct.unpack_from(order + "I", table, i * phentsize)
        if p_type == PT_INTERP:
            return False
    return True


def is_busybox_rootfs(target: str) -> bool:
    busybox = os.path.join(target, "bin", "busybox")
    return os.path.isfile(busybox) and not os.path.islink(busybox)


def _applets(busybox: str) -> list[str]:
    try:
        listing = subprocess.run(
            [busybox, "--list-full"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise DomainError(f"{busybox} --list-full failed: {exc}") from None
    applets = []
    for line in listing.split():
        path = os.path.normpath(line)
        # Only relative paths inside the tree, and never the binary itself.
        if path.startswith(("/", "..")) or path in ("bin/busybox", "."):
            continue
        applets.append(path)
    return applets


def make_busybox_rootfs(target: str) -> None:
    """Make (or complete) a busybox root filesystem in ``target``.

    Idempotent: on an existing busybox rootfs it refreshes the binary and adds
    whatever is missing, keeping files the user changed. A non-empty directory
    that is not a busybox rootfs is refused, so nothing of value is overwritten.
    """
    busybox = find_busybox()
    target = os.path.abspath(target)
    if os.path.lexists(target) and not os.path.isdir(target):
        raise DomainError(f"{target} exists and is not a directory")
    if os.path.isdir(target) and os.listdir(target) and not is_busybox_rootfs(target):
        raise DomainError(
            f"{target} is not empty and not a busybox root filesystem; refusing to write into it"
        )
    try:
        os.makedirs(os.path.join(target, "bin"), mode=0o755, exist_ok=True)
        # The binary first: it is what marks the tree as ours if we are interrupted.
        _install_binary(busybox, os.path.join(target, "bin", "busybox"))
        for relative, mode in DIRECTORIES:
            path = os.path.join(target, relative)
            if not os.path.isdir(path):
                os.mkdir(path)
                # chmod: mkdir's mode is filtered through the umask, and tmp needs its sticky bit.
                os.chmod(path, mode)
        for applet in _applets(busybox):
            link = os.path.join(target, applet)
            if os.path.lexists(link):
                continue
            os.makedirs(os.path.dirname(link), exist_ok=True)
            # Relative links resolve the same from the host and from inside the container.
            os.symlink(os.path.relpath("bin/busybox", os.path.dirname(applet) or "."), link)
        for relative, mode, text in ETC_FILES:
            path = os.path.join(target, relative)
            if not os.path.lexists(path):
                with open(path, "x") as f:
                    f.write(text)
                os.chmod(path, mode)
    except OSError as exc:
        raise DomainError(f"cannot make a root filesystem in {target}: {exc}") from None


def _install_binary(source: str, destination: str) -> None:
    if os.path.isfile(destination) and filecmp.cmp(source, destination, shallow=False):
        return
    temporary = destination + ".new"
    try:
        shutil.copyfile(source, temporary)
        os.chmod(temporary, 0o755)
        # Renamed into place, so a running container keeps its (old) binary intact.
        os.replace(temporary, destination)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
