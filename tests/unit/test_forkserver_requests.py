"""The fork server's request check: a known program, plain arguments, the right sockets."""

from __future__ import annotations

import pytest

from vzvnc.domain.forkserver import Request, _parse, _program_arguments


def test_well_formed_requests_are_taken() -> None:
    data = b'{"program": "console-server", "args": ["--run-dir", "/h/run/x"], "log": "/h/l"}'
    assert _parse(data, 1) == Request("console-server", ("--run-dir", "/h/run/x"), "/h/l")
    data = b'{"program": "controller", "args": ["--home", "/h", "x"], "log": "/h/l"}'
    assert _parse(data, 0) == Request("controller", ("--home", "/h", "x"), "/h/l")


@pytest.mark.parametrize(
    ("data", "fds"),
    [
        (b"", 0),
        (b"not json", 0),
        (b"[]", 0),
        (b'{"program": "controller", "args": []}', 0),
        (b'{"program": "controller", "args": [], "log": "/l", "env": {}}', 0),
        (b'{"program": "sh", "args": [], "log": "/l"}', 0),
        (b'{"program": "controller", "args": "--home /h", "log": "/l"}', 0),
        (b'{"program": "controller", "args": [1], "log": "/l"}', 0),
        (b'{"program": "controller", "args": ["x"], "log": "l"}', 0),
        (b'{"program": "controller", "args": ["x"], "log": "/l"}', 1),
        (b'{"program": "console-server", "args": [], "log": "/l"}', 0),
        (b'{"program": "console-server", "args": ["--fd", "3"], "log": "/l"}', 1),
        (
            b'{"program": "controller", "args": ["a", "b", "c", "d", "e", "f", "g", "h", '
            b'"i", "j", "k", "l", "m", "n", "o", "p", "q"], "log": "/l"}',
            0,
        ),
    ],
)
def test_malformed_requests_are_refused(data: bytes, fds: int) -> None:
    with pytest.raises(ValueError):
        _parse(data, fds)


def test_each_program_s_arguments_are_parsed_before_the_fork() -> None:
    server = _program_arguments(
        Request("console-server", ("--domain-file", "/h/d.toml", "--run-dir", "/h/run/x"), "/l"), 7
    )
    assert (server.fd, server.domain_file, server.run_dir) == (7, "/h/d.toml", "/h/run/x")
    controller = _program_arguments(Request("controller", ("--home", "/h", "x"), "/l"), -1)
    assert (controller.home, controller.name, controller.restore) == ("/h", "x", None)


@pytest.mark.parametrize(
    "request_",
    [
        Request("controller", ("--home", "/h"), "/l"),
        Request("controller", ("--home", "/h", "x", "--bogus"), "/l"),
        Request("console-server", ("--run-dir", "/h/run/x"), "/l"),
    ],
)
def test_arguments_the_program_would_refuse_are_refused_in_the_fork_server(
    request_: Request,
) -> None:
    with pytest.raises(ValueError, match="bad arguments"):
        _program_arguments(request_, 3)
