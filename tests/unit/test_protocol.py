"""The sans-IO RFB server connection, byte by byte (rfbproto handshake and client messages)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vzvnc.errors import RemoteProtocolError
from vzvnc.rfb import auth, clipboard
from vzvnc.rfb.messages import (
    AuthenticationFailed,
    AuthenticationSucceeded,
    ClientCutText,
    ClientInit,
    ClientVersionChosen,
    EnableContinuousUpdates,
    ExtendedClipboard,
    Fence,
    FramebufferUpdateRequest,
    KeyEvent,
    PointerEvent,
    QemuExtendedKeyEvent,
    SetDesktopSize,
    SetEncodings,
    SetPixelFormat,
)
from vzvnc.rfb.pixelformat import PixelFormat
from vzvnc.rfb.protocol import ConnectionState, EncodedRect, ServerConnection

CHALLENGE = bytes(range(16))

# Client messages as a client would write them, packed by hand from rfbproto's tables.
RGB565 = PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0)
CLIENT_MESSAGES: list[tuple[bytes, object]] = [
    (b"\x00\x00\x00\x00" + RGB565.pack(), SetPixelFormat(RGB565)),
    (
        b"\x02\x00\x00\x03" + struct.pack(">iii", 16, 1, -223),
        SetEncodings((16, 1, -223)),
    ),
    (b"\x02\x00\x00\x00", SetEncodings(())),
    (
        b"\x03\x01" + struct.pack(">HHHH", 1, 2, 300, 400),
        FramebufferUpdateRequest(True, 1, 2, 300, 400),
    ),
    (
        b"\x03\x00" + struct.pack(">HHHH", 0, 0, 640, 400),
        FramebufferUpdateRequest(False, 0, 0, 640, 400),
    ),
    (b"\x04\x01\x00\x00" + struct.pack(">I", 0xFF0D), KeyEvent(True, 0xFF0D)),
    (b"\x04\x00\x00\x00" + struct.pack(">I", 0x01000041), KeyEvent(False, 0x01000041)),
    (b"\x05\x05" + struct.pack(">HH", 10, 20), PointerEvent(5, 10, 20)),
    (b"\x06\x00\x00\x00" + struct.pack(">I", 5) + b"hello", ClientCutText(b"hello")),
    (b"\x06\x00\x00\x00" + struct.pack(">I", 0), ClientCutText(b"")),
    (b"\x96\x01" + struct.pack(">HHHH", 0, 0, 8, 8), EnableContinuousUpdates(True, 0, 0, 8, 8)),
    (b"\xf8\x00\x00\x00" + struct.pack(">IB", 3, 2) + b"ab", Fence(3, b"ab")),
    (b"\xf8\x00\x00\x00" + struct.pack(">IB", 3, 0), Fence(3, b"")),
    (b"\xfb\x00" + struct.pack(">HHBx", 800, 600, 0), SetDesktopSize(800, 600, ())),
    (b"\xff\x00" + struct.pack(">HII", 1, 0x61, 30), QemuExtendedKeyEvent(True, 0x61, 30)),
]


def handshake_bytes(version: bytes = b"RFB 003.008\n", *, password: bytes | None = None) -> bytes:
    data = version
    if version != b"RFB 003.003\n":
        data += bytes([2 if password else 1])
    if password is not None:
        data += auth.vnc_auth_response(password, CHALLENGE)
    return data + b"\x01"  # ClientInit, shared


def connected(password: bytes | None = None) -> ServerConnection:
    conn = ServerConnection(password=password, challenge=CHALLENGE)
    events = conn.receive_data(handshake_bytes(password=password))
    assert isinstance(events[-1], ClientInit)
    conn.accept_client_init(640, 400, "test")
    conn.data_to_send()
    return conn


def feed_bytewise(conn: ServerConnection, data: bytes) -> list[object]:
    events: list[object] = []
    for i in range(len(data)):
        events.extend(conn.receive_data(data[i : i + 1]))
    return events


def test_server_speaks_first_with_version_3_8() -> None:
    conn = ServerConnection()
    assert conn.data_to_send() == b"RFB 003.008\n"


def test_handshake_3_8_without_password() -> None:
    conn = ServerConnection()
    conn.data_to_send()
    assert conn.receive_data(b"RFB 003.008\n") == [ClientVersionChosen((3, 8))]
    assert conn.data_to_send() == b"\x01\x01"  # one security type: None
    assert conn.receive_data(b"\x01") == [AuthenticationSucceeded(view_only=False)]
    assert conn.data_to_send() == b"\x00\x00\x00\x00"  # SecurityResult OK (3.8 sends it for None)
    assert conn.receive_data(b"\x00") == [ClientInit(shared=False)]
    conn.accept_client_init(640, 400, "név")
    server_init = conn.data_to_send()
    width, height = struct.unpack(">HH", server_init[:4])
    assert (width, height) == (640, 400)
    assert PixelFormat.unpack(server_init[4:20]).bits_per_pixel == 32
    (name_length,) = struct.unpack(">I", server_init[20:24])
    assert server_init[24:] == "név".encode() and name_length == len("név".encode())
    assert conn.state is ConnectionState.NORMAL


def test_handshake_3_7_has_no_security_result_for_none() -> None:
    conn = ServerConnection()
    conn.data_to_send()
    conn.receive_data(b"RFB 003.007\n")
    assert conn.data_to_send() == b"\x01\x01"
    conn.receive_data(b"\x01")
    assert conn.data_to_send() == b""
    assert conn.receive_data(b"\x01") == [ClientInit(shared=True)]


def test_handshake_3_3_server_picks_the_type() -> None:
    conn = ServerConnection(password=b"secret", challenge=CHALLENGE)
    conn.data_to_send()
    conn.receive_data(b"RFB 003.003\n")
    assert conn.data_to_send() == b"\x00\x00\x00\x02" + CHALLENGE
    events = conn.receive_data(auth.vnc_auth_response(b"secret", CHALLENGE))
    assert events == [AuthenticationSucceeded(view_only=False)]
    assert conn.data_to_send() == b"\x00\x00\x00\x00"


@pytest.mark.parametrize(
    ("greeting", "expected"),
    [
        (b"RFB 003.005\n", (3, 3)),  # rfbproto: unknown 3.x minors behave as 3.3
        (b"RFB 003.006\n", (3, 3)),
        (b"RFB 003.889\n", (3, 8)),  # Apple's, newer than 3.8: we speak 3.8
    ],
)
def test_other_minor_versions(greeting: bytes, expected: tuple[int, int]) -> None:
    conn = ServerConnection()
    assert conn.receive_data(greeting)[0] == ClientVersionChosen(expected)


@pytest.mark.parametrize(
    "greeting", [b"RFB 004.000\n", b"HTTP/1.1 GET", b"RFB 03.008\n\n", b"\x00" * 12]
)
def test_bad_versions_are_refused(greeting: bytes) -> None:
    conn = ServerConnection()
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(greeting)
    assert conn.state is ConnectionState.CLOSED


def test_wrong_password_fails_with_a_reason_in_3_8() -> None:
    conn = ServerConnection(password=b"secret", challenge=CHALLENGE)
    conn.data_to_send()
    conn.receive_data(b"RFB 003.008\n")
    assert conn.data_to_send() == b"\x01\x02"
    conn.receive_data(b"\x02")
    assert conn.data_to_send() == CHALLENGE
    events = conn.receive_data(auth.vnc_auth_response(b"wrong", CHALLENGE))
    assert events == [AuthenticationFailed("Authentication failed")]
    reply = conn.data_to_send()
    assert reply[:4] == b"\x00\x00\x00\x01"
    (length,) = struct.unpack(">I", reply[4:8])
    assert reply[8:] == b"Authentication failed" and length == len(reply) - 8
    assert conn.state is ConnectionState.CLOSED
    assert conn.receive_data(b"\x01") == []


def test_wrong_password_3_7_has_no_reason() -> None:
    conn = ServerConnection(password=b"secret", challenge=CHALLENGE)
    conn.receive_data(b"RFB 003.007\n\x02")
    conn.data_to_send()
    conn.receive_data(auth.vnc_auth_response(b"nope", CHALLENGE))
    assert conn.data_to_send() == b"\x00\x00\x00\x01"


def test_view_only_password() -> None:
    conn = ServerConnection(password=b"full", view_only_password=b"look", challenge=CHALLENGE)
    events = conn.receive_data(handshake_bytes(password=b"look"))
    assert AuthenticationSucceeded(view_only=True) in events


def test_client_choosing_an_unoffered_type_is_refused() -> None:
    conn = ServerConnection(password=b"secret")
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"RFB 003.008\n\x01")  # None, while only VNC auth was offered


@pytest.mark.parametrize(("data", "event"), CLIENT_MESSAGES)
def test_each_client_message(data: bytes, event: object) -> None:
    assert connected().receive_data(data) == [event]


@pytest.mark.parametrize(("data", "event"), CLIENT_MESSAGES)
def test_each_client_message_byte_by_byte(data: bytes, event: object) -> None:
    assert feed_bytewise(connected(), data) == [event]


def test_whole_session_byte_by_byte_equals_one_chunk() -> None:
    stream = handshake_bytes(password=b"pw") + b"".join(data for data, _ in CLIENT_MESSAGES)

    def run(feed: object) -> list[object]:
        conn = ServerConnection(password=b"pw", challenge=CHALLENGE)
        events: list[object] = []
        for chunk in feed:  # type: ignore[attr-defined]
            for event in conn.receive_data(chunk):
                events.append(event)
                if isinstance(event, ClientInit):
                    events.extend(conn.accept_client_init(8, 8, "x"))
        return events

    whole = run([stream])
    bytewise = run([stream[i : i + 1] for i in range(len(stream))])
    assert whole == bytewise
    assert whole[-len(CLIENT_MESSAGES) :] == [event for _, event in CLIENT_MESSAGES]


@given(st.binary(min_size=0, max_size=400), st.integers(min_value=1, max_value=50))
@settings(max_examples=200, deadline=None)
def test_any_bytes_give_events_or_a_remote_protocol_error(data: bytes, chunk: int) -> None:
    conn = connected()
    try:
        for i in range(0, len(data), chunk):
            conn.receive_data(data[i : i + chunk])
    except RemoteProtocolError:
        assert conn.state is ConnectionState.CLOSED


@given(st.binary(min_size=0, max_size=100))
@settings(max_examples=200, deadline=None)
def test_any_handshake_bytes_never_raise_anything_else(data: bytes) -> None:
    conn = ServerConnection(password=b"pw")
    try:
        for event in conn.receive_data(data):
            if isinstance(event, ClientInit):
                conn.accept_client_init(8, 8, "x")
    except RemoteProtocolError:
        pass


def test_unknown_message_type_is_a_remote_error() -> None:
    with pytest.raises(RemoteProtocolError, match="unknown client message type 7"):
        connected().receive_data(b"\x07")


def test_huge_cut_text_is_refused_before_buffering() -> None:
    with pytest.raises(RemoteProtocolError, match="ClientCutText"):
        connected().receive_data(b"\x06\x00\x00\x00" + struct.pack(">I", 1 << 30))


def test_extended_clipboard_messages_both_ways() -> None:
    conn = connected()
    message = clipboard.provide("héllo\nworld")
    body = struct.pack(">I", message.flags) + message.payload
    events = conn.receive_data(b"\x06\x00\x00\x00" + struct.pack(">i", -len(body)) + body)
    assert events == [ExtendedClipboard(message)]
    assert clipboard.provided_text(message) == "héllo\nworld"
    conn.send_extended_clipboard(clipboard.notify())
    assert conn.data_to_send() == b"\x03\x00\x00\x00" + struct.pack(">iI", -4, (1 << 27) | 1)


def test_extended_clipboard_without_flags_is_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="without flags"):
        connected().receive_data(b"\x06\x00\x00\x00" + struct.pack(">i", -2) + b"ab")


def test_colour_map_pixel_format_is_refused() -> None:
    colour_map = bytes([8, 8, 0, 0]) + bytes(12)
    with pytest.raises(RemoteProtocolError):
        connected().receive_data(b"\x00\x00\x00\x00" + colour_map)


def test_messages_pipelined_behind_client_init_wait_for_server_init() -> None:
    conn = ServerConnection()
    key = b"\x04\x01\x00\x00" + struct.pack(">I", 0x61)
    events = conn.receive_data(b"RFB 003.008\n\x01\x01" + key)
    assert events[-1] == ClientInit(shared=True)
    assert conn.accept_client_init(8, 8, "x") == [KeyEvent(True, 0x61)]


def test_framebuffer_update_wire_format() -> None:
    conn = connected()
    conn.send_framebuffer_update([EncodedRect(1, 2, 3, 4, 0, b"PIX")], last_rect=False)
    assert conn.data_to_send() == (
        b"\x00\x00\x00\x01" + struct.pack(">HHHHi", 1, 2, 3, 4, 0) + b"PIX"
    )
    conn.send_framebuffer_update([], last_rect=True)
    assert conn.data_to_send() == b"\x00\x00\xff\xff" + struct.pack(">HHHHi", 0, 0, 0, 0, -224)


def test_bell_and_server_cut_text() -> None:
    conn = connected()
    conn.send_bell()
    conn.send_cut_text("héllo")
    assert conn.data_to_send() == b"\x02" + b"\x03\x00\x00\x00" + struct.pack(
        ">I", 5
    ) + "héllo".encode("latin-1")


def test_key_events_do_not_reveal_keys_in_repr() -> None:
    assert "0x61" not in repr(KeyEvent(True, 0x61)) and "97" not in repr(KeyEvent(True, 0x61))
    assert "secret" not in repr(ClientCutText(b"secret"))
