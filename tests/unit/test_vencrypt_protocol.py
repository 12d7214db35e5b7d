"""VeNCrypt in the sans-IO connection (rfbproto "VeNCrypt"), byte by byte."""

from __future__ import annotations

import struct

import pytest

from vzvnc.errors import LocalProtocolError, RemoteProtocolError
from vzvnc.rfb.constants import VeNCryptSubtype
from vzvnc.rfb.messages import (
    AuthenticationFailed,
    AuthenticationSucceeded,
    PlainCredentials,
    StartTls,
)
from vzvnc.rfb.protocol import ConnectionState, ServerConnection


def to_subtypes(conn: ServerConnection) -> bytes:
    conn.data_to_send()
    conn.receive_data(b"RFB 003.008\n")
    assert conn.data_to_send() == b"\x02\x13\x02"  # VeNCrypt, then VNC Authentication
    conn.receive_data(b"\x13")
    assert conn.data_to_send() == b"\x00\x02"
    conn.receive_data(b"\x00\x02")
    return conn.data_to_send()


def test_the_subtypes_are_listed_and_tls_starts_on_the_choice() -> None:
    conn = ServerConnection(password=b"pw", vencrypt=(261, 262))
    assert to_subtypes(conn) == b"\x00\x02" + struct.pack(">II", 261, 262)
    events = conn.receive_data(struct.pack(">I", 261))
    assert events == [StartTls(anonymous=False)]
    assert conn.data_to_send() == b"\x01"
    assert conn.state is ConnectionState.TLS_HANDSHAKE
    assert conn.receive_data(b"") == []  # nothing is parsed until TLS is up
    conn.tls_established()
    challenge = conn.data_to_send()
    assert len(challenge) == 16


def test_plain_credentials_wait_for_the_owners_answer() -> None:
    conn = ServerConnection(password=b"pw", vencrypt=(259,))
    to_subtypes(conn)
    assert conn.receive_data(struct.pack(">I", 259)) == [StartTls(anonymous=True)]
    conn.data_to_send()
    conn.tls_established()
    (creds,) = conn.receive_data(struct.pack(">II", 5, 6) + b"alicesecret")
    assert creds == PlainCredentials("alice", "secret")
    assert "secret" not in repr(creds)
    assert conn.data_to_send() == b""
    assert conn.plain_checked(True, view_only=True) == [AuthenticationSucceeded(view_only=True)]
    assert conn.data_to_send() == struct.pack(">I", 0)


def test_wrong_plain_credentials_fail_with_a_reason() -> None:
    conn = ServerConnection(password=b"pw", vencrypt=(259,))
    to_subtypes(conn)
    conn.receive_data(struct.pack(">I", 259))
    assert conn.data_to_send() == b"\x01"
    conn.tls_established()
    conn.receive_data(struct.pack(">II", 1, 1) + b"ab")
    events = conn.plain_checked(False)
    assert events == [AuthenticationFailed("Authentication failed")]
    assert conn.data_to_send().startswith(struct.pack(">I", 1))
    assert conn.state is ConnectionState.CLOSED


def test_a_subtype_not_offered_and_a_wrong_version_are_protocol_errors() -> None:
    conn = ServerConnection(password=b"pw", vencrypt=(261,))
    to_subtypes(conn)
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(struct.pack(">I", 258))
    conn = ServerConnection(password=b"pw", vencrypt=(261,))
    conn.receive_data(b"RFB 003.008\n\x13")
    with pytest.raises(RemoteProtocolError, match=r"version 0\.1"):
        conn.receive_data(b"\x00\x01")


def test_an_oversized_plain_field_is_refused_before_it_is_read() -> None:
    conn = ServerConnection(password=b"pw", vencrypt=(262,))
    to_subtypes(conn)
    conn.receive_data(struct.pack(">I", 262))
    conn.tls_established()
    with pytest.raises(RemoteProtocolError, match="exceeds the limit"):
        conn.receive_data(struct.pack(">II", 1 << 30, 1))


def test_tls_established_out_of_turn_is_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        ServerConnection().tls_established()


def test_without_legacy_types_a_33_client_is_refused() -> None:
    conn = ServerConnection(password=b"pw", vencrypt=(261,), legacy=False)
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"RFB 003.003\n")
    assert b"VeNCrypt" in conn.data_to_send()


def test_vnc_subtypes_without_a_password_are_our_mistake() -> None:
    with pytest.raises(LocalProtocolError, match="need a password"):
        ServerConnection(vencrypt=[VeNCryptSubtype.X509_VNC])
