"""The ``vzvnc run`` fork server reads only well-formed requests of bounded size."""

from __future__ import annotations

import os
import socket
import struct

import pytest

from vzvnc import run_client
from vzvnc.run_server import BadRequest, parse, receive

VERSION, CONTEXT = "0123456789abcdef", "fedcba9876543210"


def body(request: bytes) -> bytes:
    assert request[:4] == run_client.MAGIC
    (length,) = struct.unpack(">I", request[4:8])
    assert len(request) == 8 + length
    return request[8:]


def test_a_run_request_round_trips_argv_environment_and_umask(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ONLY_HERE", "a=b\xe9")
    old = os.umask(0o027)
    try:
        words = ["-v", "run", "--name", "", "--", "sh", "-c", "echo $HOME"]
        request = run_client.run_request(words, VERSION, CONTEXT)
    finally:
        os.umask(old)
    parsed = parse(body(request), 4)
    assert parsed.kind == "run"
    assert (parsed.version, parsed.context) == (VERSION, CONTEXT)
    assert parsed.argv == tuple(words)
    assert parsed.umask == 0o027
    assert (b"ONLY_HERE", "a=b\xe9".encode()) in parsed.env
    assert dict(parsed.env) == dict(os.environb)


def test_control_requests_carry_no_fds() -> None:
    request = body(run_client.control_request("stop", VERSION, CONTEXT))
    assert parse(request, 0).kind == "stop"
    with pytest.raises(BadRequest):
        parse(request, 1)


def fields(*items: bytes) -> bytes:
    return b"\0".join(items)


GOOD_HEAD = (run_client.PROTOCOL, b"run", VERSION.encode(), CONTEXT.encode(), b"22")


@pytest.mark.parametrize(
    ("data", "fds"),
    [
        (fields(*GOOD_HEAD, b"1", b"run", b"0"), 3),  # an fd short
        (fields(*GOOD_HEAD, b"1", b"run", b"0"), 5),  # an fd too many
        (fields(b"vzvnc-run/0", *GOOD_HEAD[1:], b"1", b"run", b"0"), 4),  # protocol
        (fields(*GOOD_HEAD[:1], b"exec", *GOOD_HEAD[2:], b"1", b"run", b"0"), 4),  # kind
        (fields(*GOOD_HEAD[:2], b"xyz", *GOOD_HEAD[3:], b"1", b"run", b"0"), 4),  # version
        (fields(*GOOD_HEAD[:4], b"9", b"1", b"run", b"0"), 4),  # umask not octal
        (fields(*GOOD_HEAD, b"2", b"run", b"0"), 4),  # argc runs past
        (fields(*GOOD_HEAD, b"1", b"run", b"1"), 4),  # envc runs past
        (fields(*GOOD_HEAD, b"1", b"run", b"1", b"NOEQUALS"), 4),
        (fields(*GOOD_HEAD, b"1", b"run", b"1", b"=value"), 4),
        (fields(*GOOD_HEAD, b"-1", b"run", b"0"), 4),
        (fields(*GOOD_HEAD, b"1", b"run", b"0", b"extra"), 4),
    ],
)
def test_malformed_requests_are_refused(data: bytes, fds: int) -> None:
    assert parse(fields(*GOOD_HEAD, b"1", b"run", b"0"), 4).argv == ("run",)
    with pytest.raises(BadRequest):
        parse(data, fds)


def test_receive_refuses_a_huge_length_before_reading_it() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(run_client.MAGIC + struct.pack(">I", run_client.MAX_REQUEST + 1))
        with pytest.raises(BadRequest, match="too large"):
            receive(ours)


def test_receive_closes_the_fds_of_a_bad_request() -> None:
    ours, theirs = socket.socketpair()
    read_end, write_end = os.pipe()
    with ours, theirs:
        socket.send_fds(theirs, [b"XXXX" + struct.pack(">I", 3) + b"abc"], [read_end])
        os.close(read_end)
        with pytest.raises(BadRequest, match="magic"):
            receive(ours)
    # Every copy of the read end is closed: writing finds no reader.
    with pytest.raises(BrokenPipeError):
        os.write(write_end, b"x")
    os.close(write_end)


def test_receive_takes_a_request_in_pieces_with_its_fds() -> None:
    ours, theirs = socket.socketpair()
    request = run_client.run_request(["run", "--", "true"], VERSION, CONTEXT)
    descriptors = [os.open(os.devnull, os.O_RDONLY) for _ in range(4)]
    try:
        with ours, theirs:
            socket.send_fds(theirs, [request[:5]], descriptors)
            theirs.sendall(request[5:])
            data, fds = receive(ours)
            for fd in fds:
                os.close(fd)
        assert data == body(request)
        assert len(fds) == 4
    finally:
        for fd in descriptors:
            os.close(fd)
