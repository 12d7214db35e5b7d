"""The server side of RFC 6455 (vzvnc.transport.websocket), byte by byte, against
wsproto's client side as the peer, and against hand-made frames a client must not send."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from vzvnc.errors import RemoteProtocolError
from vzvnc.transport.websocket import WebSocketServer, looks_like_http


def client(subprotocols: list[str] | None = None) -> tuple[WSConnection, bytes]:
    peer = WSConnection(ConnectionType.CLIENT)
    request = Request(host="127.0.0.1", target="/websockify", subprotocols=subprotocols or [])
    return peer, peer.send(request)


def opened(subprotocols: list[str] | None = None) -> tuple[WebSocketServer, WSConnection]:
    server = WebSocketServer(max_message=1000)
    peer, hello = client(subprotocols)
    assert server.receive(hello) == b""
    peer.receive_data(server.data_to_send())
    events = list(peer.events())
    assert isinstance(events[0], AcceptConnection)
    return server, peer


def test_the_first_bytes_tell_http_from_rfb() -> None:
    assert looks_like_http(b"GET / HTTP/1.1\r\n")
    assert not looks_like_http(b"RFB 003.008\n")
    assert not looks_like_http(b"")


@pytest.mark.parametrize("offered", [["binary"], ["base64", "binary"], []])
def test_the_handshake_takes_any_path_and_binary_when_offered(offered: list[str]) -> None:
    server = WebSocketServer()
    peer, hello = client(offered)
    server.receive(hello)
    assert server.open and server.path == "/websockify"
    peer.receive_data(server.data_to_send())
    (accept,) = list(peer.events())
    assert isinstance(accept, AcceptConnection)
    assert accept.subprotocol == ("binary" if "binary" in offered else None)


def test_rfb_bytes_travel_both_ways_in_binary_messages() -> None:
    server, peer = opened(["binary"])
    server.send(b"RFB 003.008\n")
    peer.receive_data(server.data_to_send())
    (message,) = list(peer.events())
    assert isinstance(message, BytesMessage) and message.data == b"RFB 003.008\n"
    assert server.receive(peer.send(BytesMessage(data=b"RFB 003.008\n"))) == b"RFB 003.008\n"


def test_a_fragmented_message_arrives_whole() -> None:
    server, peer = opened()
    raw = peer.send(BytesMessage(data=b"abc", message_finished=False))
    raw += peer.send(BytesMessage(data=b"def", message_finished=False))
    raw += peer.send(BytesMessage(data=b"gh", message_finished=True))
    assert server.receive(raw) == b"abcdefgh"


@given(st.binary(min_size=1, max_size=300), st.lists(st.integers(1, 50), max_size=40))
def test_any_chunking_gives_the_same_bytes(payload: bytes, cuts: list[int]) -> None:
    server, peer = opened()
    raw = peer.send(BytesMessage(data=payload)) + peer.send(Ping(payload=b"p"))
    got = b""
    position = 0
    for cut in [*cuts, len(raw)]:
        got += server.receive(raw[position : position + cut])
        position += cut
        if position >= len(raw):
            break
    assert got == payload
    peer.receive_data(server.data_to_send())
    assert any(isinstance(event, Pong) for event in peer.events())


def test_a_ping_is_answered_with_its_payload() -> None:
    server, peer = opened()
    server.receive(peer.send(Ping(payload=b"are you there")))
    peer.receive_data(server.data_to_send())
    (pong,) = list(peer.events())
    assert isinstance(pong, Pong) and pong.payload == b"are you there"


def test_a_close_is_answered_and_ends_the_stream() -> None:
    server, peer = opened()
    server.receive(peer.send(CloseConnection(code=1000, reason="bye")))
    assert server.closed
    peer.receive_data(server.data_to_send())
    (answer,) = list(peer.events())
    assert isinstance(answer, CloseConnection) and answer.code == 1000
    server.send(b"more")
    assert server.data_to_send() == b""
    assert server.receive(b"anything") == b""


def test_an_unmasked_client_frame_is_refused() -> None:
    server, _ = opened()
    unmasked = bytes([0x82, 3]) + b"abc"  # FIN + binary, no mask bit
    with pytest.raises(RemoteProtocolError, match="unmasked"):
        server.receive(unmasked)
    assert server.closed


def masked_frame(opcode: int, payload: bytes, length_field: bytes | None = None) -> bytes:
    mask = b"\x01\x02\x03\x04"
    if length_field is None:
        length_field = bytes([0x80 | len(payload)])
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode]) + length_field + mask + body


def test_a_text_message_is_refused_with_a_close() -> None:
    server, peer = opened()
    with pytest.raises(RemoteProtocolError, match="text"):
        server.receive(peer.send(TextMessage(data="UkZC")))
    peer.receive_data(server.data_to_send())
    (close,) = list(peer.events())
    assert isinstance(close, CloseConnection) and close.code == 1003


def test_a_message_over_the_limit_is_refused_before_it_is_held() -> None:
    server, _ = opened()
    # A frame that claims 2^40 bytes: refused on the first bytes of its payload.
    header = bytes([0x80 | 127]) + struct.pack(">Q", 1 << 40)
    with pytest.raises(RemoteProtocolError, match="more than 1000 bytes"):
        server.receive(masked_frame(2, b"x" * 2000, header)[:3000])
    assert server.closed


def test_many_small_fragments_count_towards_the_limit() -> None:
    server, peer = opened()
    with pytest.raises(RemoteProtocolError):
        for _ in range(20):
            server.receive(peer.send(BytesMessage(data=b"y" * 100, message_finished=False)))


def test_a_request_that_is_not_an_upgrade_gets_an_http_error() -> None:
    server = WebSocketServer()
    with pytest.raises(RemoteProtocolError):
        server.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    reply = server.data_to_send()
    assert reply.startswith(b"HTTP/1.1 4")


def test_a_reject_is_readable_by_a_client() -> None:
    server = WebSocketServer()
    with pytest.raises(RemoteProtocolError):
        server.receive(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
    peer = WSConnection(ConnectionType.CLIENT)
    peer.send(Request(host="x", target="/"))
    peer.receive_data(server.data_to_send())
    assert any(isinstance(e, RejectConnection | RejectData) for e in peer.events())


@given(st.binary(max_size=200))
def test_garbage_after_get_never_raises_anything_but_a_protocol_error(tail: bytes) -> None:
    server = WebSocketServer()
    try:
        server.receive(b"GET " + tail)
        server.receive(b"\r\n\r\n" + tail)
    except RemoteProtocolError:
        pass
