"""The console state file inside a domain's root filesystem, which the container controls.

Suspend, save and migration leave the console state (a ``vzvnc.state``
snapshot: the terminal and the console offset it stands for) at the domain's
``console.state_path`` (default ``/.vzvnc/console.state``) inside its rootfs,
and the domain's next life reads it back from there. The container's root can
replace anything in that tree at any time, so:

- every component below the rootfs is opened with ``O_NOFOLLOW`` relative to
  its parent's fd: a symlink anywhere on the way (a ``/.vzvnc`` pointing at a
  host directory, say) is refused, never followed, and nothing is created
  outside the rootfs; missing directories are made (0700) the same way;
- a planted symlink, FIFO or device at the file's own path is never opened for
  writing: the new file is written to a fresh temporary name (``O_EXCL``) and
  renamed over it, which replaces the planted entry itself;
- reading opens only a regular file, checks its size before reading it and
  everything else (checksum, bounded decompression, every field) before
  trusting it (``state.read_snapshot``); a bad file is moved aside inside the
  rootfs (``console.state.corrupt-<n>``) and ``SnapshotError`` says why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from vzvnc import state
from vzvnc.domain.config import check_state_path
from vzvnc.state import SnapshotError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _split(rootfs: str | Path, state_path: str) -> tuple[Path, Path, str]:
    check_state_path(state_path)
    root = Path(rootfs)
    parts = state_path.strip("/").split("/")
    return root, root.joinpath(*parts[:-1]), parts[-1]


def _make_directories(root: Path, directory: Path) -> None:
    """Create the missing directories between ``root`` and ``directory``, refusing any
    component that is not a real directory."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in directory.relative_to(root).parts:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o700, dir_fd=fd)
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                why = (
                    "is a symbolic link or not a directory"
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR)
                    else exc.strerror
                )
                raise SnapshotError(
                    f"console state directory {root}/{part}: {why}; refused"
                ) from None
            os.close(fd)
            fd = next_fd
    finally:
        os.close(fd)


def write_console_state(rootfs: str | Path, state_path: str, snapshot: state.Snapshot) -> None:
    """Write ``snapshot`` to ``state_path`` inside ``rootfs`` atomically;
    ``SnapshotError`` when the tree refuses it (nothing outside the rootfs is touched)."""
    root, directory, name = _split(rootfs, state_path)
    try:
        _make_directories(root, directory)
    except OSError as exc:
        raise SnapshotError(f"cannot make {directory}: {exc.strerror}") from None
    state.write_snapshot(directory, snapshot, name, root=root)


def read_console_state(rootfs: str | Path, state_path: str) -> state.Snapshot | None:
    """The console state at ``state_path`` inside ``rootfs``; None if there is none.
    ``SnapshotError`` (the file moved aside, when it is the file that is bad)."""
    root, directory, name = _split(rootfs, state_path)
    try:
        return state.read_snapshot(directory, name, root=root)
    except SnapshotError as exc:
        raise SnapshotError(f"console state in {root}: {exc}") from None


def peek_console_state(rootfs: str | Path, state_path: str) -> bytes | None:
    """The state file's bytes, unparsed and with nothing moved or created: for telling
    whether two hosts see the same file. None when it is missing or not a plain,
    reasonably sized file reachable without following a link."""
    root, directory, name = _split(rootfs, state_path)
    fds: list[int] = []
    try:
        fds.append(os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        for part in directory.relative_to(root).parts:
            fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        fds.append(os.open(name, flags, dir_fd=fds[-1]))
        info = os.fstat(fds[-1])
        if not stat.S_ISREG(info.st_mode) or info.st_size > state.MAX_SNAPSHOT_BYTES:
            return None
        data = os.read(fds[-1], info.st_size + 1)
        return data if len(data) == info.st_size else None
    except OSError:
        return None
    finally:
        for fd in fds:
            os.close(fd)


def remove_console_state(rootfs: str | Path, state_path: str) -> None:
    """Remove the state file (not following links), so a later boot cannot reuse it."""
    root, directory, name = _split(rootfs, state_path)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in directory.relative_to(root).parts:
            next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=fd)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise SnapshotError(f"cannot remove the console state in {root}: {exc}") from None
    finally:
        os.close(fd)
