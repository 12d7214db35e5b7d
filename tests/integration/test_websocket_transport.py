"""WebSocket on the RFB port, through real sockets: an RFB session carried in binary
messages, and hostile WebSocket clients dropped alone while an RFB viewer goes on;
with a certificate, ``wss://`` on the same port (TLS from the first byte, then the
WebSocket upgrade inside it), beside ``ws://`` and RFB with VeNCrypt."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
from pathlib import Path

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request

from tests.integration.harness import running_console, wait_for_text
from tests.rfbclient import RAW, AuthFailed, RfbClient
from tests.tlscert import make_certificate
from vzvnc.console import Console
from vzvnc.rfb.auth import vnc_auth_response
from vzvnc.transport import streams

X509_VNC = 261


class WsRfb:
    """A minimal RFB-over-WebSocket client (wsproto), enough for the handshake."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.inbox = b""

    @classmethod
    async def connect(
        cls,
        port: int,
        subprotocols: list[str],
        target: str = "/",
        tls: ssl.SSLContext | None = None,
    ) -> WsRfb:
        """``ws://127.0.0.1:port/target``, or ``wss://`` with ``tls`` as the client's context."""
        if tls is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        else:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=tls, server_hostname="localhost"
            )
        client = cls(reader, writer)
        writer.write(
            client.ws.send(Request(host="127.0.0.1", target=target, subprotocols=subprotocols))
        )
        event = await client.next_event()
        assert isinstance(event, AcceptConnection), event
        assert event.subprotocol == ("binary" if "binary" in subprotocols else None)
        return client

    async def next_event(self) -> object:
        while True:
            for event in self.ws.events():
                return event
            data = await asyncio.wait_for(self.reader.read(65536), 5)
            self.ws.receive_data(data or None)

    async def read(self, n: int) -> bytes:
        while len(self.inbox) < n:
            event = await self.next_event()
            if isinstance(event, CloseConnection):
                raise ConnectionError("closed")
            assert isinstance(event, BytesMessage), event
            self.inbox += event.data
        data, self.inbox = self.inbox[:n], self.inbox[n:]
        return data

    def send(self, data: bytes) -> None:
        self.writer.write(self.ws.send(BytesMessage(data=data)))

    def type(self, text: str) -> None:
        """Key presses and releases, one message each (rfbproto "KeyEvent")."""
        for char in text:
            keysym = 0xFF0D if char == "\n" else ord(char)
            self.send(struct.pack(">BBxxI", 4, 1, keysym) + struct.pack(">BBxxI", 4, 0, keysym))

    async def security_types(self) -> bytes:
        """RFB 3.8 up to the security types the server offers (empty: refused)."""
        assert await self.read(12) == b"RFB 003.008\n"
        self.send(b"RFB 003.008\n")
        (count,) = struct.unpack(">B", await self.read(1))
        return await self.read(count)

    async def handshake(self, password: bytes | None = None) -> tuple[int, int, str]:
        """RFB 3.8 with security type None, or VNC Authentication with ``password``;
        the ServerInit's size and name."""
        types = await self.security_types()
        if password is None:
            assert 1 in types
            self.send(b"\x01")
        else:
            assert 2 in types
            self.send(b"\x02")
            self.send(vnc_auth_response(password, await self.read(16)))
        if struct.unpack(">I", await self.read(4)) != (0,):
            (length,) = struct.unpack(">I", await self.read(4))
            raise AuthFailed((await self.read(length)).decode())
        self.send(b"\x01")  # shared
        width, height = struct.unpack(">HH", await self.read(4))
        await self.read(16)
        (length,) = struct.unpack(">I", await self.read(4))
        return width, height, (await self.read(length)).decode()


async def closed(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def viewer_still_works(console: Console, client: RfbClient, word: str) -> None:
    client.type(f"echo {word}\n")
    await wait_for_text(console, word)
    await client.update(incremental=True)


def test_an_rfb_session_inside_websocket_messages() -> None:
    async def scenario() -> None:
        async with running_console(name="ws-console") as console:
            port = console.address[1]
            for subprotocols in (["binary"], []):
                ws = await WsRfb.connect(port, subprotocols)
                assert await ws.handshake() == (640, 400, "ws-console")
                # A key event in a message reaches the program.
                for char in "echo over-ws\n":
                    keysym = 0xFF0D if char == "\n" else ord(char)
                    ws.send(
                        struct.pack(">BBxxI", 4, 1, keysym) + struct.pack(">BBxxI", 4, 0, keysym)
                    )
                await wait_for_text(console, "over-ws")
                await closed(ws.writer)

    asyncio.run(scenario())


def test_hostile_websocket_clients_are_dropped_alone() -> None:
    async def scenario() -> None:
        async with running_console() as console:
            port = console.address[1]
            viewer = await RfbClient.connect(port, encodings=(RAW,))
            await viewer.update(incremental=False)
            bad_frames = [
                bytes([0x82, 3]) + b"abc",  # unmasked
                bytes([0x81, 0x84]) + b"\0\0\0\0" + b"UkZC",  # text
                bytes([0x82, 0xFF]) + struct.pack(">Q", 1 << 40) + b"\0\0\0\0" + b"x" * 65536,
            ]
            for frame in bad_frames:
                ws = await WsRfb.connect(port, ["binary"])
                ws.writer.write(frame)
                # Dropped: the socket ends (after a close frame, or reset with our
                # unread bytes still in the server's buffer).
                with contextlib.suppress(ConnectionResetError):
                    while await asyncio.wait_for(ws.reader.read(65536), 5):
                        pass
                await closed(ws.writer)
            # Not an upgrade at all: an HTTP error, then the end.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = await asyncio.wait_for(reader.read(), 5)
            assert reply.startswith(b"HTTP/1.1 4")
            await closed(writer)
            await viewer_still_works(console, viewer, "still-here")
            await viewer.close()

    asyncio.run(scenario())


def test_an_rfb_client_that_speaks_first_is_still_heard() -> None:
    async def scenario() -> None:
        async with running_console() as console:
            reader, writer = await asyncio.open_connection("127.0.0.1", console.address[1])
            writer.write(b"RFB 003.008\n")  # early: before the server's version
            assert await asyncio.wait_for(reader.readexactly(12), 5) == b"RFB 003.008\n"
            (count,) = struct.unpack(">B", await reader.readexactly(1))
            assert 1 in await reader.readexactly(count)
            await closed(writer)

    asyncio.run(scenario())


def test_websocket_can_be_turned_off() -> None:
    async def scenario() -> None:
        async with running_console(websocket=False) as console:
            reader, writer = await asyncio.open_connection("127.0.0.1", console.address[1])
            # The server speaks first at once: no waiting for a WebSocket request.
            assert await asyncio.wait_for(reader.readexactly(12), 1) == b"RFB 003.008\n"
            await closed(writer)

    asyncio.run(scenario())


# -- wss:// ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_certificate(tmp_path_factory.mktemp("wss"))


def trusting(cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


def logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)


async def dropped(reader: asyncio.StreamReader) -> bytes:
    """Everything the server still says before it closes the connection."""
    data = b""
    with contextlib.suppress(ConnectionResetError, ssl.SSLError):
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            data += chunk
    return data


def test_wss_carries_rfb_with_vnc_authentication_off_loopback(
    certificate: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Listening off loopback with a certificate, plain VNC Authentication is refused
    outside TLS (ws:// gets no security type at all) but offered inside wss://,
    whose TLS is the console's certificate; VeNCrypt is not offered inside it."""
    caplog.set_level(logging.INFO, logger="vzvnc")
    cert, key = certificate

    async def scenario() -> None:
        async with running_console(
            host="0.0.0.0", password=b"wss-pw", tls_cert_file=cert, tls_key_file=key, name="wss"
        ) as console:
            port = console.address[1]
            for subprotocols in (["binary"], []):
                ws = await WsRfb.connect(port, subprotocols, tls=trusting(cert))
                ssl_object = ws.writer.get_extra_info("ssl_object")
                assert ssl_object is not None and ssl_object.getpeercert()["subject"]
                assert await ws.handshake(password=b"wss-pw") == (640, 400, "wss")
                ws.type(f"echo over-wss-{len(subprotocols)}\n")
                await wait_for_text(console, f"over-wss-{len(subprotocols)}")
                await closed(ws.writer)
            ws = await WsRfb.connect(port, ["binary"], tls=trusting(cert))
            assert await ws.security_types() == b"\x02"
            await closed(ws.writer)
            ws = await WsRfb.connect(port, ["binary"], tls=trusting(cert))
            with pytest.raises(AuthFailed):
                await ws.handshake(password=b"wrong")
            await closed(ws.writer)
            # ws:// is not encrypted: nothing to offer it off loopback.
            ws = await WsRfb.connect(port, ["binary"])
            with contextlib.suppress(ConnectionError):  # closed before the reason came
                assert await ws.security_types() == b""
            await closed(ws.writer)
            # RFB on the same port still starts TLS inside, with VeNCrypt.
            viewer = await RfbClient.connect_vencrypt(
                port, X509_VNC, trusting(cert), password=b"wss-pw"
            )
            viewer.type("echo vencrypt-beside-wss\n")
            await wait_for_text(console, "vencrypt-beside-wss")
            await viewer.close()

    asyncio.run(scenario())
    assert logged(caplog, "client connected (wss)")
    assert logged(caplog, "client connected (ws)")
    assert logged(caplog, "client connected (rfb)")


def test_ws_rfb_and_wss_side_by_side_on_loopback(certificate: tuple[str, str]) -> None:
    cert, key = certificate

    async def scenario() -> None:
        async with running_console(
            password=b"pw", tls_cert_file=cert, tls_key_file=key, name="three-ways"
        ) as console:
            port = console.address[1]
            viewer = await RfbClient.connect(port, password=b"pw", encodings=(RAW,))
            ws = await WsRfb.connect(port, ["binary"])
            wss = await WsRfb.connect(port, ["binary"], tls=trusting(cert))
            assert await ws.handshake(password=b"pw") == (640, 400, "three-ways")
            assert await wss.handshake(password=b"pw") == (640, 400, "three-ways")
            wss.type("echo one-$((1+1))\n")
            await wait_for_text(console, "one-2")
            ws.type("echo two-$((1+2))\n")
            await wait_for_text(console, "two-3")
            await viewer_still_works(console, viewer, "three-$((1+3))")
            await wait_for_text(console, "three-4")
            for writer in (ws.writer, wss.writer):
                await closed(writer)
            await viewer.close()

    asyncio.run(scenario())


def test_a_client_that_does_not_trust_the_certificate_gets_nothing(
    certificate: tuple[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vzvnc")
    cert, key = certificate
    other_ca, _ = make_certificate(tmp_path, "another-ca")

    async def scenario() -> None:
        async with running_console(tls_cert_file=cert, tls_key_file=key) as console:
            port = console.address[1]
            with pytest.raises(ssl.SSLCertVerificationError):
                await WsRfb.connect(port, ["binary"], tls=trusting(other_ca))
            # The server goes on: a trusting client right after gets in.
            wss = await WsRfb.connect(port, ["binary"], tls=trusting(cert))
            assert (await wss.handshake())[2]
            await closed(wss.writer)

    asyncio.run(scenario())
    assert logged(caplog, "dropped before RFB: TLS: ")


def test_tls_without_a_websocket_upgrade_inside_is_refused(
    certificate: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vzvnc")
    cert, key = certificate

    async def scenario() -> None:
        async with running_console(password=b"pw", tls_cert_file=cert, tls_key_file=key) as console:
            port = console.address[1]
            # An RFB viewer that wraps the whole connection in TLS (as stunnel
            # would) and speaks first: not served, told nothing but close_notify.
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=trusting(cert), server_hostname="localhost"
            )
            writer.write(b"RFB 003.008\n")
            assert await dropped(reader) == b""
            await closed(writer)
            # Garbage after a handshake record type: a TLS alert, then the end.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"\x16\x03\x01\x00\x10not a ClientHello")
            said = await dropped(reader)
            assert said[:1] in (b"", b"\x15"), said  # nothing, or an alert record
            assert b"RFB" not in said
            await closed(writer)
            # A plain RFB viewer still gets in.
            viewer = await RfbClient.connect(port, password=b"pw")
            await viewer.close()

    asyncio.run(scenario())
    assert logged(caplog, "TLS without a WebSocket upgrade inside it")
    assert logged(caplog, "dropped before RFB: TLS: ")


def test_a_wss_client_that_stalls_is_dropped_after_the_handshake_timeout(
    certificate: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    monkeypatch.setattr(streams, "HANDSHAKE_TIMEOUT", 0.5)

    async def scenario() -> None:
        async with running_console(tls_cert_file=cert, tls_key_file=key) as console:
            port = console.address[1]
            loop = asyncio.get_running_loop()
            # TLS done, then no upgrade request; then a ClientHello and silence.
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=trusting(cert), server_hostname="localhost"
            )
            started = loop.time()
            assert await dropped(reader) == b""
            assert 0.4 < loop.time() - started < 3
            await closed(writer)
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            client = trusting(cert).wrap_bio(incoming, outgoing, server_hostname="localhost")
            with contextlib.suppress(ssl.SSLWantReadError):
                client.do_handshake()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(outgoing.read())
            started = loop.time()
            said = await dropped(reader)
            assert said[:1] == b"\x16"  # the server's hello, and then nothing more
            assert 0.4 < loop.time() - started < 3
            await closed(writer)

    asyncio.run(scenario())


def test_a_client_hello_without_a_certificate_is_an_rfb_client_sending_garbage() -> None:
    async def scenario() -> None:
        async with running_console() as console:
            port = console.address[1]
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            client = ssl.create_default_context().wrap_bio(
                incoming, outgoing, server_hostname="localhost"
            )
            with contextlib.suppress(ssl.SSLWantReadError):
                client.do_handshake()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(outgoing.read())
            # The server greets it as a viewer, finds no version in its reply and
            # drops it; the console goes on.
            assert await dropped(reader) == b"RFB 003.008\n"
            await closed(writer)
            viewer = await RfbClient.connect(port)
            await viewer.close()

    asyncio.run(scenario())
