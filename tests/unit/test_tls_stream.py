"""The server side of TLS sans-IO (vzvnc.transport.tls_stream.TlsConnection), against
the standard library's client side over memory BIOs: no socket, no loop. The
client trusts the test certificate only, so a handshake that completes has
checked the server's certificate and name."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.tlscert import make_certificate
from vzvnc.errors import LocalProtocolError, RemoteProtocolError
from vzvnc.transport.tls import certificate_context
from vzvnc.transport.tls_stream import TlsConnection, looks_like_tls
from vzvnc.transport.websocket import looks_like_http


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module", params=["1.2", "1.3"])
def server_context(request: pytest.FixtureRequest, certificate: tuple[str, str]) -> ssl.SSLContext:
    """The console's certificate context (TLS 1.2, as VeNCrypt needs it), and the same
    certificate over TLS 1.3, whose server speaks after the handshake too (tickets)."""
    context = certificate_context(*certificate)
    if request.param == "1.3":
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_3
    return context


class Client:
    """A TLS client over memory BIOs that trusts only ``cafile``."""

    def __init__(self, cafile: str, server_hostname: str = "localhost") -> None:
        context = ssl.create_default_context(cafile=cafile)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.ssl = context.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname)
        self.handshake_done = False

    def step(self) -> None:
        if not self.handshake_done:
            try:
                self.ssl.do_handshake()
                self.handshake_done = True
            except ssl.SSLWantReadError:
                pass

    def read_all(self) -> bytes:
        out = b""
        while True:
            try:
                chunk = self.ssl.read(65536)
            except ssl.SSLWantReadError:
                return out
            if not chunk:
                return out
            out += chunk


def handshake(server: TlsConnection, client: Client, first: bytes | None = None) -> bytes:
    """Run the handshake (``first``: the ClientHello already taken from the client, as the
    listener's sniff takes it); the plaintext the server got on the way."""
    carried = b""
    if first is not None:
        carried += server.receive(first)
        client.incoming.write(server.data_to_send())
    for _ in range(10):
        client.step()
        data = client.outgoing.read()
        if data:
            carried += server.receive(data)
        client.incoming.write(server.data_to_send())
        client.step()
        if client.handshake_done and server.handshake_done:
            return carried
    raise AssertionError("the handshake never finished")


def client_hello(client: Client) -> bytes:
    client.step()
    return client.outgoing.read()


def test_a_client_hello_is_told_from_http_and_rfb(certificate: tuple[str, str]) -> None:
    hello = client_hello(Client(certificate[0]))
    assert looks_like_tls(hello) and not looks_like_http(hello)
    assert not looks_like_tls(b"GET / HTTP/1.1\r\n")
    assert not looks_like_tls(b"RFB 003.008\n")
    assert not looks_like_tls(b"\x16\x03")  # too short to tell
    assert not looks_like_tls(b"\x16\x04\x01")
    assert not looks_like_tls(b"")


def test_handshake_then_bytes_both_ways(
    server_context: ssl.SSLContext, certificate: tuple[str, str]
) -> None:
    server, client = TlsConnection(server_context), Client(certificate[0])
    handshake(server, client, first=client_hello(client))
    assert server.ssl_object.version() == client.ssl.version()
    client.ssl.write(b"GET / HTTP/1.1\r\n\r\n")
    assert server.receive(client.outgoing.read()) == b"GET / HTTP/1.1\r\n\r\n"
    server.send(b"RFB 003.008\n" * 3000)  # more than one record
    client.incoming.write(server.data_to_send())
    assert client.read_all() == b"RFB 003.008\n" * 3000
    assert not server.closed


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(1, 400), max_size=30))
def test_any_chunking_gives_the_same_plaintext(
    server_context: ssl.SSLContext, certificate: tuple[str, str], cuts: list[int]
) -> None:
    """The client's whole side of the conversation, cut anywhere: the handshake
    finishes and the plaintext arrives whole and in order."""
    server, client = TlsConnection(server_context), Client(certificate[0])
    payload = bytes(range(256)) * 20
    received = b""
    sent_payload = False
    stream = b""
    for _ in range(20):
        client.step()
        if client.handshake_done and not sent_payload:
            client.ssl.write(payload)
            sent_payload = True
        stream += client.outgoing.read()
        # Feed what the client said so far in pieces of the drawn sizes.
        pieces = iter(cuts)
        while stream:
            size = next(pieces, len(stream))
            piece, stream = stream[:size], stream[size:]
            received += server.receive(piece)
            client.incoming.write(server.data_to_send())
        if received == payload:
            break
    assert server.handshake_done
    assert received == payload


def test_garbage_after_a_handshake_byte_is_a_clean_error(
    server_context: ssl.SSLContext,
) -> None:
    server = TlsConnection(server_context)
    with pytest.raises(RemoteProtocolError, match=r"^TLS: "):
        server.receive(b"\x16\x03\x01\x00\x05hello, this is not a ClientHello\r\n")
    alert = server.data_to_send()
    assert alert[:1] == b"\x15"  # the peer is told, with a TLS alert record
    assert server.closed
    assert server.receive(b"more") == b""


@pytest.mark.parametrize("junk", [b"\x16\x03\x01\xff\xff" + b"\0" * 64, b"\x16\x03\x03\x00\x00"])
def test_bad_records_are_remote_protocol_errors(
    server_context: ssl.SSLContext, junk: bytes
) -> None:
    server = TlsConnection(server_context)
    with pytest.raises(RemoteProtocolError):
        server.receive(junk)
        server.receive(b"")


def test_a_client_that_does_not_trust_the_certificate_fails(
    server_context: ssl.SSLContext, tmp_path: Path
) -> None:
    other_ca, _ = make_certificate(tmp_path, "someone-else")
    server, client = TlsConnection(server_context), Client(other_ca)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server, client, first=client_hello(client))
    # The client's alert reaches the server as the reason.
    with pytest.raises(RemoteProtocolError, match=r"(?i)unknown.ca|certificate"):
        server.receive(client.outgoing.read())


def test_close_notify_ends_the_stream_and_is_answered(
    server_context: ssl.SSLContext, certificate: tuple[str, str]
) -> None:
    server, client = TlsConnection(server_context), Client(certificate[0])
    handshake(server, client, first=client_hello(client))
    client.ssl.write(b"last words")
    with pytest.raises(ssl.SSLWantReadError):
        client.ssl.unwrap()
    assert server.receive(client.outgoing.read()) == b"last words"
    assert server.closed
    client.incoming.write(server.data_to_send())
    client.ssl.unwrap()  # the server's close_notify completes the shutdown
    server.send(b"dropped after close")
    assert server.data_to_send() == b""


def test_the_server_closes_with_close_notify(
    server_context: ssl.SSLContext, certificate: tuple[str, str]
) -> None:
    server, client = TlsConnection(server_context), Client(certificate[0])
    handshake(server, client, first=client_hello(client))
    server.close()
    assert server.closed
    client.incoming.write(server.data_to_send())
    # An empty read, not SSLWantReadError: the client saw close_notify.
    assert client.ssl.read(100) == b""
    client.ssl.unwrap()  # and so its own shutdown completes at once


def test_the_socket_ending_after_the_handshake_is_the_end(
    server_context: ssl.SSLContext, certificate: tuple[str, str]
) -> None:
    server, client = TlsConnection(server_context), Client(certificate[0])
    handshake(server, client, first=client_hello(client))
    assert server.receive(b"") == b""
    assert server.closed


def test_the_socket_ending_during_the_handshake_is_an_error(
    server_context: ssl.SSLContext, certificate: tuple[str, str]
) -> None:
    server = TlsConnection(server_context)
    hello = client_hello(Client(certificate[0]))
    assert server.receive(hello[:10]) == b""
    with pytest.raises(RemoteProtocolError, match="during the handshake"):
        server.receive(b"")


def test_sending_before_the_handshake_is_our_bug(server_context: ssl.SSLContext) -> None:
    with pytest.raises(LocalProtocolError):
        TlsConnection(server_context).send(b"too early")
