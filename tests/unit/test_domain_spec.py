"""ContainerSpec: every field validated, a JSON form that round-trips and refuses anything else."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vzvnc.domain.container import launcher_argv
from vzvnc.domain.kernel import DEFAULT_ENV, ContainerSpec
from vzvnc.errors import ConfigError, DomainError, VzvncError

GOOD: dict[str, Any] = {
    "name": "web1",
    "rootfs": "/srv/web1",
    "init": ["/bin/sh", "-l"],
    "hostname": "web1",
    "env": [["PATH", "/bin"], ["LANG", "C.UTF-8"]],
    "new_net": True,
}


def spec_json(**changes: Any) -> str:
    data = dict(GOOD)
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data)


def test_round_trip() -> None:
    spec = ContainerSpec.from_json(spec_json())
    assert spec.init == ("/bin/sh", "-l")
    assert spec.env == (("PATH", "/bin"), ("LANG", "C.UTF-8"))
    assert spec.new_net is True
    assert ContainerSpec.from_json(spec.to_json()) == spec


def test_defaults_for_optional_fields() -> None:
    spec = ContainerSpec.from_json(spec_json(env=..., new_net=...))
    assert spec.env == DEFAULT_ENV
    assert dict(spec.env)["TERM"] == "xterm-256color"
    assert spec.new_net is False


def test_lists_are_frozen_into_tuples() -> None:
    spec = ContainerSpec(
        name="a",
        rootfs="/r",
        init=["/bin/sh"],  # type: ignore[arg-type]
        hostname="a",
        env=[["A", "1"]],  # type: ignore[arg-type]
    )
    assert spec.init == ("/bin/sh",)
    assert spec.env == (("A", "1"),)
    hash(spec)


def test_a_bare_command_name_is_allowed() -> None:
    assert ContainerSpec(name="a", rootfs="/r", init=("sh",), hostname="a").init == ("sh",)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "../etc"}, "name"),
        ({"name": "a/b"}, "name"),
        ({"name": "-x"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": 3}, "name"),
        ({"rootfs": "relative/dir"}, "rootfs"),
        ({"rootfs": "/"}, "rootfs"),
        ({"rootfs": "/a\0b"}, "rootfs"),
        ({"rootfs": None}, "rootfs"),
        ({"init": []}, "init"),
        ({"init": "/bin/sh"}, "init"),
        ({"init": ["/bin/sh", 3]}, "init"),
        ({"init": ["bin/sh"]}, "init"),
        ({"init": [""]}, "init"),
        ({"init": ["/bin/sh", "a\0b"]}, "init"),
        ({"hostname": ""}, "hostname"),
        ({"hostname": "has space"}, "hostname"),
        ({"hostname": "h" * 65}, "hostname"),
        ({"env": {"PATH": "/bin"}}, "env"),
        ({"env": [["PATH"]]}, "env"),
        ({"env": [["A=B", "x"]]}, "env"),
        ({"env": [["", "x"]]}, "env"),
        ({"env": [["A", 1]]}, "env"),
        ({"env": [["A", "x\0"]]}, "env"),
        ({"env": [["A", "1"], ["A", "2"]]}, "env"),
        ({"env": ["A=1"]}, "env"),
        ({"new_net": 1}, "new_net"),
        ({"new_net": "yes"}, "new_net"),
        ({"name": ...}, "name"),
        ({"rootfs": ...}, "rootfs"),
        ({"init": ...}, "init"),
        ({"hostname": ...}, "hostname"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_fields_are_refused_by_name(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^container spec: {field}: "):
        ContainerSpec.from_json(spec_json(**changes))


@pytest.mark.parametrize("text", ["", "nonsense", "[]", '"spec"', "null"])
def test_non_objects_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="container spec"):
        ContainerSpec.from_json(text)


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ConfigError, match="hostname"):
        ContainerSpec(name="a", rootfs="/r", init=("/bin/sh",), hostname="not ok")


def test_domain_error_is_a_vzvnc_error_with_its_exit_code() -> None:
    import os

    assert issubclass(DomainError, VzvncError)
    assert DomainError("x").exit_code == os.EX_UNAVAILABLE


def test_launcher_argv_carries_the_spec_and_fds() -> None:
    spec = ContainerSpec.from_json(spec_json())
    argv = launcher_argv(spec, 7, 9, ["/cg/a", "/cg/b"])
    assert argv[1:4] == ["-S", "-m", "vzvnc.domain.launcher"]
    assert argv[argv.index("--console-fd") + 1] == "7"
    assert argv[argv.index("--status-fd") + 1] == "9"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--cgroup"] == ["/cg/a", "/cg/b"]
    assert ContainerSpec.from_json(argv[argv.index("--spec") + 1]) == spec
