"""Telling the transports apart on one port, and the stream pair a session reads
and writes whichever it is (the I/O shell around ``websocket.py`` and
``tls_stream.py``).

An RFB client says nothing until it has the server's version (rfbproto §7.1.1);
a WebSocket client sends its HTTP upgrade at once, and a browser opening
``wss://`` sends a TLS ClientHello first (RFC 6455 §4.1). So the first bytes,
awaited for ``sniff_time`` seconds, decide: ``GET `` is WebSocket (``ws``), a TLS
handshake record is WebSocket inside TLS (``wss``, only when the listener has a
certificate), silence is RFB. A browser's first bytes follow its connection
within a millisecond on any path; the wait is what every RFB client pays, once,
at connect. VeNCrypt is unaffected: it starts TLS later, inside RFB.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Any, Protocol

from vzvnc.errors import RemoteProtocolError
from vzvnc.transport.tls_stream import TlsConnection, looks_like_tls

if TYPE_CHECKING:
    # wsproto and h11 cost every console 13 ms at start; only a client that speaks
    # first (a browser) needs them, so they are imported then.
    from vzvnc.transport.websocket import WebSocketServer

READ_CHUNK = 64 * 1024
DEFAULT_SNIFF_TIME = 0.05
# How long a WebSocket client may take to finish its opening handshake (for wss,
# the TLS handshake before it included).
HANDSHAKE_TIMEOUT = 10.0


class Reader(Protocol):
    async def read(self, n: int) -> bytes: ...


class Writer(Protocol):
    """What the WebSocket layer writes to: the socket's ``asyncio.StreamWriter``, or
    a ``TlsWriter`` over it."""

    @property
    def transport(self) -> asyncio.WriteTransport: ...
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def is_closing(self) -> bool: ...
    async def wait_closed(self) -> None: ...
    async def drain(self) -> None: ...
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


class PrefixedReader:
    """A stream reader that first gives back what was read to decide the transport."""

    def __init__(self, reader: asyncio.StreamReader, prefix: bytes, at_eof: bool) -> None:
        self._reader = reader
        self._prefix = prefix
        self._at_eof = at_eof

    async def read(self, n: int) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix[:n], self._prefix[n:]
            return data
        if self._at_eof:
            return b""
        return await self._reader.read(n)


class _Layer(Protocol):
    """A sans-IO layer over the socket: what goes in, what it has to send."""

    def send(self, data: bytes) -> None: ...
    def data_to_send(self) -> bytes: ...
    def close(self) -> None: ...


class LayeredWriter:
    """What a session writes, passed through ``layer`` (TLS, WebSocket) to the
    writer below; the rest of ``asyncio.StreamWriter``'s interface is the socket's,
    so write-buffer limits count the bytes on the wire."""

    def __init__(self, writer: Writer, layer: _Layer) -> None:
        self._writer = writer
        self._layer = layer
        self.transport = writer.transport

    def write(self, data: bytes) -> None:
        self._layer.send(data)
        self.flush()

    def flush(self) -> None:
        out = self._layer.data_to_send()
        if out and not self._writer.is_closing():
            self._writer.write(out)

    def close(self) -> None:
        if not self._writer.is_closing():
            self._layer.close()
            self.flush()
        self._writer.close()

    def is_closing(self) -> bool:
        return self._writer.is_closing()

    async def wait_closed(self) -> None:
        await self._writer.wait_closed()

    async def drain(self) -> None:
        await self._writer.drain()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._writer.get_extra_info(name, default)


class TlsWriter(LayeredWriter):
    """Plaintext written here goes out encrypted."""

    def __init__(self, writer: asyncio.StreamWriter, tls: TlsConnection) -> None:
        super().__init__(writer, tls)
        self._tls = tls

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        ssl_object = self._tls.ssl_object
        if name == "ssl_object":
            return ssl_object
        if name == "sslcontext":
            return ssl_object.context
        if name == "peercert":
            return ssl_object.getpeercert() if self._tls.handshake_done else default
        if name == "cipher":
            return ssl_object.cipher()
        return self._writer.get_extra_info(name, default)


class TlsReader:
    """The plaintext of the peer's records; ``prefix`` is socket bytes already read
    (the sniffed ClientHello), fed before anything more is read."""

    def __init__(
        self, reader: asyncio.StreamReader, tls: TlsConnection, writer: TlsWriter, prefix: bytes
    ) -> None:
        self._reader = reader
        self._tls = tls
        self._writer = writer
        self._prefix = prefix
        self._pending = b""

    async def read(self, n: int) -> bytes:
        while not self._pending:
            if self._tls.closed:
                return b""
            if self._prefix:
                raw, self._prefix = self._prefix, b""
            else:
                raw = await self._reader.read(READ_CHUNK)
            try:
                self._pending = self._tls.receive(raw)
            finally:
                self._writer.flush()  # handshake flights, alerts, close_notify answers
        data, self._pending = self._pending[:n], self._pending[n:]
        return data


def open_tls(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    context: ssl.SSLContext,
    prefix: bytes,
) -> tuple[TlsReader, TlsWriter]:
    """The stream pair for a TLS connection whose first ``prefix`` bytes were already
    read; the handshake happens as the reader is read."""
    tls = TlsConnection(context)
    tls_writer = TlsWriter(writer, tls)
    return TlsReader(reader, tls, tls_writer, prefix), tls_writer


class WebSocketWriter(LayeredWriter):
    """What a session writes, sent as binary WebSocket messages."""

    def __init__(self, writer: Writer, ws: WebSocketServer) -> None:
        super().__init__(writer, ws)
        self.scheme = "wss" if isinstance(writer, TlsWriter) else "ws"
        """How the client reached us, for the log."""


class WebSocketReader:
    """The RFB bytes a WebSocket client's messages carry."""

    def __init__(self, reader: Reader, ws: WebSocketServer, writer: WebSocketWriter) -> None:
        self._reader = reader
        self._ws = ws
        self._writer = writer
        self._pending = b""

    def take(self, data: bytes) -> None:
        self._pending += data

    async def read(self, n: int) -> bytes:
        while not self._pending:
            if self._ws.closed:
                return b""
            raw = await self._reader.read(READ_CHUNK)
            try:
                self._pending = self._ws.receive(raw)
            finally:
                self._writer.flush()  # pongs, close answers, errors
            if not raw:
                return b""
        data, self._pending = self._pending[:n], self._pending[n:]
        return data


def transport_name(writer: object) -> str:
    """``rfb``, ``ws`` or ``wss``: what a session's writer from ``open_transport`` runs over."""
    return writer.scheme if isinstance(writer, WebSocketWriter) else "rfb"


async def open_transport(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    websocket: bool = True,
    sniff_time: float = DEFAULT_SNIFF_TIME,
    tls: ssl.SSLContext | None = None,
) -> tuple[Reader, Any]:
    """The reader and writer a session uses: the socket's own, or WebSocket ones
    (inside TLS when the client starts with a ClientHello and ``tls`` is given).

    Raises ``RemoteProtocolError`` for a client that breaks TLS or the WebSocket
    opening handshake (after it was told why) and ``TimeoutError`` for one that
    stalls in either.
    """
    if not websocket:
        return reader, writer
    try:
        first = await asyncio.wait_for(reader.read(READ_CHUNK), sniff_time)
    except TimeoutError:
        return PrefixedReader(reader, b"", at_eof=False), writer
    if tls is not None and looks_like_tls(first):
        return await asyncio.wait_for(_open_wss(reader, writer, tls, first), HANDSHAKE_TIMEOUT)
    if not _looks_like_http(first):
        # Without a certificate a ClientHello lands here too: the RFB core finds
        # no version in it and drops the client.
        return PrefixedReader(reader, first, at_eof=not first), writer
    return await asyncio.wait_for(_open_websocket(reader, writer, first), HANDSHAKE_TIMEOUT)


async def _open_wss(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: ssl.SSLContext, hello: bytes
) -> tuple[WebSocketReader, WebSocketWriter]:
    tls_reader, tls_writer = open_tls(reader, writer, tls, hello)
    try:
        first = await tls_reader.read(READ_CHUNK)
        if not first:
            raise RemoteProtocolError("TLS: the client closed before saying anything")
        # The request line normally arrives in one record; gather at least "GET "
        # in case it was cut short.
        while len(first) < 4 and b"GET ".startswith(first):
            more = await tls_reader.read(READ_CHUNK)
            if not more:
                break
            first += more
        if not _looks_like_http(first):
            raise RemoteProtocolError(
                "TLS without a WebSocket upgrade inside it: direct TLS on this port "
                "is for wss:// only (VNC viewers start TLS inside RFB, with VeNCrypt)"
            )
        return await _open_websocket(tls_reader, tls_writer, first)
    except BaseException:
        # Said what could be said (an alert, an HTTP error): close the socket too,
        # with close_notify when the TLS session stands.
        tls_writer.close()
        raise


def _looks_like_http(data: bytes) -> bool:
    from vzvnc.transport.websocket import looks_like_http

    return looks_like_http(data)


async def _open_websocket(
    reader: Reader, writer: Writer, first: bytes
) -> tuple[WebSocketReader, WebSocketWriter]:
    from vzvnc.transport.websocket import WebSocketServer

    ws = WebSocketServer()
    ws_writer = WebSocketWriter(writer, ws)
    ws_reader = WebSocketReader(reader, ws, ws_writer)
    data = first
    while True:
        try:
            carried = ws.receive(data)
        finally:
            ws_writer.flush()
        if ws.open:
            ws_reader.take(carried)
            return ws_reader, ws_writer
        if ws.closed or not data:
            raise RemoteProtocolError("websocket: the opening handshake did not complete")
        data = await reader.read(READ_CHUNK)
