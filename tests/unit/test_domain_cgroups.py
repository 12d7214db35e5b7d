"""Where a domain's cgroups go: hierarchies found from mountinfo and /proc/self/cgroup.

These run on canned files, so the cgroup v1, v2 and mixed layouts other hosts
have are covered whatever this host mounts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vzvnc.domain import cgroups
from vzvnc.domain.cgroups import Cgroups
from vzvnc.errors import DomainError

V1_MOUNTINFO = """\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 /outer /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V1_CGROUP = """\
9:name=systemd:/user.slice
8:pids:/outer/inner
6:freezer:/
4:memory:/svc/x
1:cpu,cpuacct:/
0::/user.slice
"""
V2_MOUNTINFO = """\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 27 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
"""
V2_CGROUP = "0::/system.slice/vzvnc.service\n"


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point the module at canned /proc files; returns where to write them."""
    monkeypatch.setattr(cgroups, "MOUNTINFO", str(tmp_path / "mountinfo"))
    monkeypatch.setattr(cgroups, "PROC_CGROUP", str(tmp_path / "cgroup"))
    return tmp_path


def fake_v2(monkeypatch: pytest.MonkeyPatch, controllers: str) -> None:
    monkeypatch.setattr(cgroups, "_v2_controllers", lambda own: frozenset(controllers.split()))


def test_v1_hierarchies_with_our_own_paths(host: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (host / "mountinfo").write_text(V1_MOUNTINFO)
    (host / "cgroup").write_text(V1_CGROUP)
    fake_v2(monkeypatch, "hugetlb\n")
    found = {h.controllers: h for h in cgroups.hierarchies()}
    assert found[frozenset({"memory"})].own == "/sys/fs/cgroup/memory/svc/x"
    assert found[frozenset({"freezer"})].own == "/sys/fs/cgroup/freezer"
    # A mount of a sub-tree: our path is relative to the mount's root.
    assert found[frozenset({"pids"})].own == "/sys/fs/cgroup/pids/inner"
    assert found[frozenset({"cpu", "cpuacct"})].own == "/sys/fs/cgroup/cpu,cpuacct"
    layout = cgroups._layout("auto")
    assert {role: h.version for role, h in layout.items()} == {
        "memory": 1,
        "pids": 1,
        "freezer": 1,
    }
    assert layout["memory"].base == "/sys/fs/cgroup/memory/svc/x/vzvnc"
    groups = Cgroups("web1", layout)
    assert groups.paths == [
        "/sys/fs/cgroup/memory/svc/x/vzvnc/web1",
        "/sys/fs/cgroup/pids/inner/vzvnc/web1",
        "/sys/fs/cgroup/freezer/vzvnc/web1",
    ]


def test_v2_only(host: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (host / "mountinfo").write_text(V2_MOUNTINFO)
    (host / "cgroup").write_text(V2_CGROUP)
    fake_v2(monkeypatch, "cpu memory pids\n")
    layout = cgroups._layout("auto")
    assert {role: h.version for role, h in layout.items()} == {
        "memory": 2,
        "pids": 2,
        "freezer": 2,
    }
    assert Cgroups("web1", layout).paths == ["/sys/fs/cgroup/system.slice/vzvnc.service/vzvnc/web1"]


def test_mixed_v1_and_v2_fills_the_gaps_from_v2(
    host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (host / "mountinfo").write_text(
        "\n".join(line for line in V1_MOUNTINFO.splitlines() if "memory" not in line) + "\n"
    )
    (host / "cgroup").write_text(V1_CGROUP)
    fake_v2(monkeypatch, "memory\n")
    layout = cgroups._layout("auto")
    assert layout["memory"].version == 2
    assert layout["pids"].version == 1
    # Forced modes, as the tests use them.
    assert {h.version for h in cgroups._layout("v2").values()} == {2}
    assert {h.version for h in cgroups._layout("v1").values()} == {1}


def test_v2_without_controllers_serves_only_the_freezer(
    host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (host / "mountinfo").write_text(V2_MOUNTINFO)
    (host / "cgroup").write_text(V2_CGROUP)
    fake_v2(monkeypatch, "\n")
    assert set(cgroups._layout("auto")) == {"freezer"}
    with pytest.raises(DomainError, match=r"memory limit .* no memory cgroup controller"):
        Cgroups.create("web1", memory_limit=1 << 20, pids_limit=None)


def test_escaped_mount_points(host: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (host / "mountinfo").write_text(
        "35 31 0:32 / /cg\\040dir/memory rw - cgroup cgroup rw,memory\n"
    )
    (host / "cgroup").write_text("4:memory:/\n")
    assert cgroups.hierarchies()[0].own == "/cg dir/memory"


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(DomainError, match="not a valid domain name"):
        Cgroups.create(name, memory_limit=None, pids_limit=None)
    with pytest.raises(DomainError, match="not a valid domain name"):
        Cgroups.attach(name)


@pytest.mark.parametrize("limit", [0, -5, True])
def test_bad_limits_are_refused(limit: int) -> None:
    with pytest.raises(DomainError, match="must be a positive number"):
        Cgroups.create("web1", memory_limit=limit, pids_limit=None)
