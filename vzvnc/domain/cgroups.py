"""A domain's cgroups: limits, freezer, process tracking and cleanup.

This module owns every cgroup directory vzvnc creates. A domain ``NAME`` gets
``<own cgroup>/vzvnc/NAME`` in each hierarchy it uses, where ``<own cgroup>``
is the calling process's cgroup in that hierarchy (so a supervisor confined by
its service manager keeps its domains inside its own limits).

Each role is served by a cgroup v1 controller where one is mounted, else by
cgroup v2:

- memory: ``memory.limit_in_bytes`` (+ ``memory.memsw.limit_in_bytes`` so swap
  cannot stretch it) or ``memory.max`` (+ ``memory.swap.max = 0``);
- pids: ``pids.max``;
- freezer: ``freezer.state`` or v2's built-in ``cgroup.freeze``.

Processes are listed from every directory used (and its descendants, should
the container create any), so nothing escapes ``kill_all``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from vzvnc.domain.names import NAME_RE
from vzvnc.errors import DomainError

BASE = "vzvnc"
MOUNTINFO = "/proc/self/mountinfo"
PROC_CGROUP = "/proc/self/cgroup"
ROLES = ("memory", "pids", "freezer")
# Bounds on waiting for the kernel: a freeze to settle, killed processes to go.
FREEZE_TIMEOUT = 5.0
KILL_TIMEOUT = 10.0
POLL = 0.01

Mode = Literal["auto", "v1", "v2"]


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy, seen from the calling process."""

    version: int
    controllers: frozenset[str]
    """v1: the controllers bound to it; v2: those available in our own cgroup."""
    own: str
    """The directory of the calling process's cgroup in it."""
    path: str = ""
    """The calling process's cgroup as the hierarchy names it (``/proc/self/cgroup``)."""

    @property
    def base(self) -> str:
        return os.path.join(self.own, BASE)


def home_group(home: str | os.PathLike[str], default_home: str = "/var/lib/vzvnc") -> str:
    """The cgroup directory shared by one vzvnc home's domains: ``vzvnc`` for the
    default home, ``vzvnc-<hash of the home>`` for others, so two homes on one host
    (two daemons, a migration between them) never share a domain's cgroup."""
    path = os.path.abspath(home)
    if path == default_home:
        return BASE
    return f"{BASE}-{hashlib.sha256(path.encode()).hexdigest()[:10]}"


def _check_group(group: str) -> None:
    if not NAME_RE.fullmatch(group):
        raise DomainError(f"cgroup group {group!r} is not a valid name")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _own_paths() -> tuple[dict[frozenset[str], str], str | None]:
    """Our cgroup per v1 hierarchy (keyed by its controller names) and in v2."""
    v1: dict[frozenset[str], str] = {}
    v2: str | None = None
    with open(PROC_CGROUP) as f:
        for line in f:
            hid, _, rest = line.rstrip("\n").partition(":")
            names, _, path = rest.partition(":")
            if hid == "0" and names == "":
                v2 = path
            else:
                v1[frozenset(n for n in names.split(",") if n)] = path
    return v1, v2


def _inside(mount_root: str, path: str) -> str | None:
    """``path`` relative to a mount of the hierarchy's ``mount_root``, if it is under it."""
    if mount_root == "/":
        return path
    if path == mount_root or path.startswith(mount_root + "/"):
        return path[len(mount_root) :] or "/"
    return None


def _v2_controllers(own: str) -> frozenset[str] | None:
    """The controllers a cgroup v2 directory offers its children, None if unreadable."""
    try:
        return frozenset(_read(os.path.join(own, "cgroup.controllers")).split())
    except OSError:
        return None


def hierarchies() -> list[Hierarchy]:
    """Every cgroup hierarchy mounted here that contains our own cgroup."""
    own_v1, own_v2 = _own_paths()
    found: list[Hierarchy] = []
    seen: set[frozenset[str] | None] = set()
    with open(MOUNTINFO) as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, superopts = fields[sep + 1], fields[sep + 3]
            mount_root, mountpoint = _unescape(fields[3]), _unescape(fields[4])
            if fstype == "cgroup":
                opts = set(superopts.split(","))
                key = next((names for names in own_v1 if names and names <= opts), None)
                if key is None or key in seen:
                    continue
                relative = _inside(mount_root, own_v1[key])
                if relative is None:
                    continue
                seen.add(key)
                found.append(
                    Hierarchy(
                        1,
                        key,
                        os.path.normpath(os.path.join(mountpoint, relative.lstrip("/"))),
                        own_v1[key],
                    )
                )
            elif fstype == "cgroup2" and own_v2 is not None and None not in seen:
                relative = _inside(mount_root, own_v2)
                if relative is None:
                    continue
                own = os.path.normpath(os.path.join(mountpoint, relative.lstrip("/")))
                controllers = _v2_controllers(own)
                if controllers is None:
                    continue
                seen.add(None)
                found.append(Hierarchy(2, controllers, own, own_v2))
    return found


def _layout(mode: Mode) -> dict[str, Hierarchy]:
    """Which hierarchy serves each role (a role no hierarchy can serve is left out)."""
    found = hierarchies()
    v1 = [h for h in found if h.version == 1] if mode != "v2" else []
    v2 = next((h for h in found if h.version == 2), None) if mode != "v1" else None
    layout: dict[str, Hierarchy] = {}
    for role in ROLES:
        chosen = next((h for h in v1 if role in h.controllers), None)
        # v2's freezer is part of the core (cgroup.freeze), not a controller.
        if chosen is None and v2 is not None and (role == "freezer" or role in v2.controllers):
            chosen = v2
        if chosen is not None:
            layout[role] = chosen
    return layout


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _walk_bottom_up(top: str) -> Iterator[str]:
    """``top`` and every cgroup below it, children before parents."""
    for dirpath, _, _ in os.walk(top, topdown=False):
        yield dirpath


class Cgroups:
    """The domain's cgroups under the supervisor's own cgroup: v1 memory/pids/freezer where
    mounted, else cgroup v2."""

    def __init__(self, name: str, layout: dict[str, Hierarchy], group: str = BASE) -> None:
        self.name = name
        self.group = group
        self._layout = layout
        self._dirs = {role: os.path.join(h.own, group, name) for role, h in layout.items()}

    # -- construction -----------------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: str,
        *,
        memory_limit: int | None,
        pids_limit: int | None,
        reuse: bool = False,
        mode: Mode = "auto",
        group: str = BASE,
    ) -> Cgroups:
        """Make the domain's cgroups and set its limits.

        Refuses if they exist and hold processes (the domain is running, or a
        dead controller left it running); an empty leftover is replaced.
        With ``reuse``, existing cgroups are adopted as they are, processes and
        all (to clean up after a dead controller); missing ones are made and
        the limits given (not None) applied.
        ``mode`` forces one cgroup version (for tests); the default picks per role.
        ``group`` is the directory the domains of one vzvnc home share (``home_group``).
        """
        if not NAME_RE.fullmatch(name):
            raise DomainError(f"cgroup name {name!r} is not a valid domain name")
        _check_group(group)
        for what, limit in (("memory", memory_limit), ("pids", pids_limit)):
            if limit is not None and (isinstance(limit, bool) or limit <= 0):
                raise DomainError(f"{what} limit {limit!r} must be a positive number")
        layout = _layout(mode)
        for role, limit in (("memory", memory_limit), ("pids", pids_limit)):
            if limit is not None and role not in layout:
                raise DomainError(
                    f"a {role} limit was asked for but this host has no {role} cgroup controller"
                    " we can use (neither cgroup v1 nor v2)"
                )
        if not layout:
            raise DomainError("no cgroup hierarchy is mounted that contains our own cgroup")
        self = cls(name, layout, group)
        if reuse:
            self._make(memory_limit, pids_limit, exist_ok=True)
            return self
        if self.pids():
            raise DomainError(
                f"the cgroups of domain {name} hold processes {self.pids()}: "
                "it is running, or a dead controller left it running"
            )
        self.remove()
        try:
            self._make(memory_limit, pids_limit)
        except BaseException:
            with contextlib.suppress(DomainError):
                self.remove()
            raise
        return self

    @classmethod
    def attach(cls, name: str, *, mode: Mode = "auto", group: str = BASE) -> Cgroups:
        """The cgroups of an existing domain (say a stale one), without creating anything."""
        if not NAME_RE.fullmatch(name):
            raise DomainError(f"cgroup name {name!r} is not a valid domain name")
        _check_group(group)
        return cls(name, _layout(mode), group)

    @classmethod
    def stale(cls, *, mode: Mode = "auto", group: str = BASE) -> list[str]:
        """Names of every domain cgroup present. The caller decides which are stale (no
        live controller) and cleans them with ``attach(name).kill_all()`` and ``remove()``."""
        names: set[str] = set()
        for hierarchy in set(_layout(mode).values()):
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(os.path.join(hierarchy.own, group)):
                    if entry.is_dir(follow_symlinks=False) and NAME_RE.fullmatch(entry.name):
                        names.add(entry.name)
        return sorted(names)

    def _make(
        self, memory_limit: int | None, pids_limit: int | None, *, exist_ok: bool = False
    ) -> None:
        wanted_v2 = {
            role
            for role, limit in (("memory", memory_limit), ("pids", pids_limit))
            if limit is not None and self._layout[role].version == 2
        }
        for hierarchy in self._hierarchies():
            if hierarchy.version == 2 and wanted_v2:
                self._delegate_v2(hierarchy, wanted_v2)
            self._mkdir(hierarchy, exist_ok=exist_ok)
        if memory_limit is not None:
            self._set_memory_limit(memory_limit)
        if pids_limit is not None:
            self._set(self._dirs["pids"], "pids.max", str(pids_limit))

    def _base(self, hierarchy: Hierarchy) -> str:
        return os.path.join(hierarchy.own, self.group)

    def _mkdir(self, hierarchy: Hierarchy, *, exist_ok: bool) -> None:
        base = self._base(hierarchy)
        path = os.path.join(base, self.name)
        if exist_ok and os.path.isdir(path):
            return
        # Another domain's remove() may rmdir the shared base between our two mkdirs.
        for _ in range(5):
            with contextlib.suppress(FileExistsError):
                os.mkdir(base)
            try:
                os.mkdir(path)
                return
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise DomainError(f"cannot create cgroup {path}: {exc.strerror}") from None
        raise DomainError(f"cannot create cgroup {path}: its parent keeps disappearing")

    def _delegate_v2(self, hierarchy: Hierarchy, controllers: set[str]) -> None:
        """Enable controllers for our subtree: v2 only gives a cgroup the controllers its
        parent lists in ``cgroup.subtree_control``."""
        enable = " ".join(f"+{c}" for c in sorted(controllers))
        for parent in (hierarchy.own, self._base(hierarchy)):
            with contextlib.suppress(FileExistsError):
                os.mkdir(parent)
            try:
                _write(os.path.join(parent, "cgroup.subtree_control"), enable)
            except OSError as exc:
                hint = (
                    ": it holds processes, and cgroup v2 only lets a cgroup without processes "
                    "hand controllers down; run vzvnc in a leaf cgroup of its own "
                    "(e.g. a systemd service with Delegate=yes)"
                    if exc.errno == errno.EBUSY
                    else f": {exc.strerror}"
                )
                raise DomainError(f"cannot enable {enable} in cgroup {parent}{hint}") from None

    def _set(self, directory: str, knob: str, value: str) -> None:
        try:
            _write(os.path.join(directory, knob), value)
        except OSError as exc:
            raise DomainError(
                f"cannot set {knob} = {value} in cgroup {directory}: {exc.strerror}"
            ) from None

    def _set_memory_limit(self, limit: int) -> None:
        directory = self._dirs["memory"]
        if self._layout["memory"].version == 1:
            self._set(directory, "memory.limit_in_bytes", str(limit))
            # memory+swap: without it the limit only moves the excess to swap.
            if os.path.exists(os.path.join(directory, "memory.memsw.limit_in_bytes")):
                self._set(directory, "memory.memsw.limit_in_bytes", str(limit))
        else:
            self._set(directory, "memory.max", str(limit))
            if os.path.exists(os.path.join(directory, "memory.swap.max")):
                self._set(directory, "memory.swap.max", "0")

    # -- queries ---------------------------------------------------------------------

    def _hierarchies(self) -> list[Hierarchy]:
        unique: list[Hierarchy] = []
        for h in self._layout.values():
            if h not in unique:
                unique.append(h)
        return unique

    @property
    def paths(self) -> list[str]:
        """The domain's cgroup directory in each hierarchy used (a process joins by writing
        its pid into ``cgroup.procs`` of each)."""
        return [os.path.join(self._base(h), self.name) for h in self._hierarchies()]

    def criu_roots(self) -> list[str]:
        """``--cgroup-root`` values that put restored tasks in these cgroups, whatever
        cgroups they were dumped from (another home's, on this or another host)."""
        roots = []
        for h in self._hierarchies():
            path = "/".join(p for p in (h.path.strip("/"), self.group, self.name) if p)
            prefix = ",".join(sorted(h.controllers)) + ":" if h.version == 1 else ""
            roots.append(f"{prefix}/{path}")
        return roots

    def exists(self) -> bool:
        return any(os.path.isdir(p) for p in self.paths)

    def add(self, pid: int) -> None:
        for path in self.paths:
            try:
                _write(os.path.join(path, "cgroup.procs"), str(pid))
            except OSError as exc:
                raise DomainError(
                    f"cannot move pid {pid} into cgroup {path}: {exc.strerror}"
                ) from None

    def pids(self) -> list[int]:
        """Every process in the domain's cgroups (host pids), sub-cgroups included."""
        found: set[int] = set()
        for path in self.paths:
            if not os.path.isdir(path):
                continue
            for directory in _walk_bottom_up(path):
                with contextlib.suppress(FileNotFoundError):
                    found.update(
                        int(p) for p in _read(os.path.join(directory, "cgroup.procs")).split()
                    )
        return sorted(found)

    def memory_usage(self) -> int | None:
        if "memory" not in self._layout:
            return None
        knob = "memory.usage_in_bytes" if self._layout["memory"].version == 1 else "memory.current"
        try:
            return int(_read(os.path.join(self._dirs["memory"], knob)))
        except (OSError, ValueError):
            return None

    # -- freezer -------------------------------------------------------------------------

    def _freezer(self) -> tuple[str, int]:
        if "freezer" not in self._layout:
            raise DomainError("this host has no cgroup freezer (v1 freezer or cgroup v2)")
        return self._dirs["freezer"], self._layout["freezer"].version

    @property
    def freezer_path(self) -> str | None:
        """The domain's freezer cgroup directory (v1 freezer, or its v2 cgroup)."""
        return self._dirs.get("freezer")

    def _freezer_state(self) -> str:
        directory, version = self._freezer()
        if version == 1:
            return _read(os.path.join(directory, "freezer.state"))
        events = dict(
            line.split(" ", 1)
            for line in _read(os.path.join(directory, "cgroup.events")).splitlines()
        )
        return "FROZEN" if events.get("frozen") == "1" else "THAWED"

    def freeze(self) -> None:
        """Stop every process of the domain; returns once all are frozen."""
        directory, version = self._freezer()
        if version == 1:
            self._set(directory, "freezer.state", "FROZEN")
        else:
            self._set(directory, "cgroup.freeze", "1")
        deadline = time.monotonic() + FREEZE_TIMEOUT
        while self._freezer_state() != "FROZEN":
            if time.monotonic() > deadline:
                raise DomainError(
                    f"domain {self.name} did not freeze within {FREEZE_TIMEOUT:.0f} s "
                    "(a process stuck in the kernel?)"
                )
            time.sleep(POLL)

    def thaw(self) -> None:
        directory, version = self._freezer()
        if version == 1:
            self._set(directory, "freezer.state", "THAWED")
        else:
            self._set(directory, "cgroup.freeze", "0")

    def frozen(self) -> bool:
        if "freezer" not in self._layout or not os.path.isdir(self._dirs["freezer"]):
            return False
        # v1 reports FREEZING while a freeze is under way; that is not frozen yet.
        return self._freezer_state() == "FROZEN"

    # -- teardown --------------------------------------------------------------------

    def kill_all(self) -> None:
        """SIGKILL every process of the domain and wait (bounded) until none is left.

        Where there is a freezer, the processes are frozen first so none can fork
        between our reading the list and signalling it, then thawed so the
        pending SIGKILLs take effect (a v1-frozen process cannot die).
        """
        if not self.exists():
            return
        can_freeze = "freezer" in self._layout and os.path.isdir(self._dirs["freezer"])
        if can_freeze:
            with contextlib.suppress(DomainError):
                self.freeze()
        deadline = time.monotonic() + KILL_TIMEOUT
        while True:
            pids = self.pids()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if can_freeze:
                with contextlib.suppress(DomainError, OSError):
                    self.thaw()
                can_freeze = False
            if not pids:
                return
            if time.monotonic() > deadline:
                raise DomainError(
                    f"processes {pids} of domain {self.name} survived SIGKILL for "
                    f"{KILL_TIMEOUT:.0f} s"
                )
            time.sleep(POLL)

    def remove(self) -> None:
        """Kill what is left, then remove the domain's cgroups everywhere. Idempotent."""
        if not self.exists():
            return
        if self.pids():
            self.kill_all()
        elif self.frozen():
            self.thaw()
        for path in self.paths:
            if not os.path.isdir(path):
                continue
            for directory in _walk_bottom_up(path):
                self._rmdir(directory)
            # The shared base goes too once the last domain is gone.
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(path))

    def _rmdir(self, directory: str) -> None:
        # A cgroup whose last process just exited can stay busy for a moment.
        deadline = time.monotonic() + 2.0
        while True:
            try:
                os.rmdir(directory)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise DomainError(f"cannot remove cgroup {directory}: {exc.strerror}") from None
            time.sleep(POLL)

    def __repr__(self) -> str:
        return f"Cgroups({self.name!r}, {self.paths})"
