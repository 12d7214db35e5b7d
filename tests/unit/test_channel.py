"""The migration channel's frames and handshake, byte by byte (no sockets)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vzvnc.domain import channel
from vzvnc.errors import AuthenticationError, RemoteProtocolError

SECRET = b"correct horse battery staple"
NONCE_S, NONCE_C = bytes(range(32)), bytes(range(32, 64))


def stream() -> bytes:
    return (
        channel.encode_json({"op": "begin", "name": "box"})
        + channel.encode(channel.DATA, b"x" * 70_000)
        + channel.encode(channel.END, b"\x01" * 32)
        + channel.encode_error("disk full")
    )


def test_frames_are_the_same_in_any_chunking() -> None:
    data = stream()
    for size in (1, 5, 4096, len(data)):
        decoder = channel.FrameDecoder()
        frames = [f for i in range(0, len(data), size) for f in decoder.feed(data[i : i + size])]
        assert [f.kind for f in frames] == [channel.JSON, channel.DATA, channel.END, channel.ERROR]
        assert channel.parse_json(frames[0]) == {"op": "begin", "name": "box"}
        assert frames[1].payload == b"x" * 70_000
        assert channel.error_message(frames[3]) == "disk full"


def test_unknown_oversized_and_non_object_frames_are_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="type"):
        channel.FrameDecoder().feed(b"\x09\x00\x00\x00\x00")
    with pytest.raises(RemoteProtocolError, match="too large"):
        channel.FrameDecoder().feed(b"\x02\x7f\xff\xff\xff")  # refused before it arrives
    (frame,) = channel.FrameDecoder().feed(channel.encode(channel.JSON, b"[1, 2]"))
    with pytest.raises(RemoteProtocolError, match="not an object"):
        channel.parse_json(frame)


def test_handshake_with_a_shared_secret_authenticates_both_ends() -> None:
    hello = channel.server_hello(NONCE_S, True)
    answer = channel.client_answer(hello, SECRET, NONCE_C)
    proof, nonce_c = channel.server_check(answer, SECRET, NONCE_S)
    assert nonce_c == NONCE_C
    channel.client_check(proof, SECRET, NONCE_S, NONCE_C)


def test_a_wrong_secret_is_refused_by_the_server() -> None:
    answer = channel.client_answer(channel.server_hello(NONCE_S, True), b"x" * 20, NONCE_C)
    with pytest.raises(AuthenticationError, match="wrong secret"):
        channel.server_check(answer, SECRET, NONCE_S)


def test_an_impostor_server_is_caught_by_the_client() -> None:
    hello = channel.server_hello(NONCE_S, True)
    answer = channel.client_answer(hello, SECRET, NONCE_C)
    impostor = {"mac": "00" * 32}  # it cannot compute the proof without the secret
    with pytest.raises(AuthenticationError, match="could not prove"):
        channel.client_check(impostor, SECRET, NONCE_S, NONCE_C)
    # A replayed proof from another session does not pass either.
    other = channel.client_answer(hello, SECRET, bytes(32))
    replayed, _ = channel.server_check(other, SECRET, NONCE_S)
    with pytest.raises(AuthenticationError):
        channel.client_check(replayed, SECRET, NONCE_S, NONCE_C)
    assert answer["mac"] != other["mac"]


def test_secret_on_one_end_only_is_refused_with_a_clear_message() -> None:
    with pytest.raises(AuthenticationError, match="requires a secret"):
        channel.client_answer(channel.server_hello(NONCE_S, True), None, NONCE_C)
    with pytest.raises(AuthenticationError, match="has no secret"):
        channel.client_answer(channel.server_hello(NONCE_S, False), SECRET, NONCE_C)
    # A client without a secret cannot talk its way past a server that has one.
    forged = {"nonce": NONCE_C.hex(), "mac": ""}
    with pytest.raises(AuthenticationError):
        channel.server_check(forged, SECRET, NONCE_S)


def test_no_secret_at_either_end_works() -> None:
    answer = channel.client_answer(channel.server_hello(NONCE_S, False), None, NONCE_C)
    proof, _ = channel.server_check(answer, None, NONCE_S)
    channel.client_check(proof, None, NONCE_S, NONCE_C)


def test_malformed_handshakes_are_protocol_errors() -> None:
    with pytest.raises(RemoteProtocolError):
        channel.client_answer({"hello": "http"}, SECRET, NONCE_C)
    with pytest.raises(RemoteProtocolError, match="nonce"):
        channel.server_check({"nonce": "zz", "mac": ""}, SECRET, NONCE_S)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_arbitrary_bytes_give_frames_or_a_protocol_error(chunks: list[bytes]) -> None:
    decoder = channel.FrameDecoder()
    try:
        for chunk in chunks:
            for frame in decoder.feed(chunk):
                assert frame.kind in (channel.JSON, channel.DATA, channel.END, channel.ERROR)
                if frame.kind == channel.JSON:
                    with contextlib.suppress(RemoteProtocolError):
                        channel.parse_json(frame)
    except RemoteProtocolError:
        pass
