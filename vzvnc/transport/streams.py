"""Telling a WebSocket client from an RFB client on one port, and the stream pair a
session reads and writes either way (the I/O shell around ``websocket.py``).

An RFB client says nothing until it has the server's version (rfbproto §7.1.1);
a WebSocket client sends its HTTP upgrade at once. So the first bytes, awaited
for ``sniff_time`` seconds, decide: ``GET `` is WebSocket, silence is RFB. A
WebSocket client's request follows its connection within a millisecond on any
path; the wait is what every RFB client pays, once, at connect.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from vzvnc.errors import RemoteProtocolError
from vzvnc.transport.websocket import WebSocketServer, looks_like_http

READ_CHUNK = 64 * 1024
DEFAULT_SNIFF_TIME = 0.05
# How long a WebSocket client may take to finish its opening handshake.
HANDSHAKE_TIMEOUT = 10.0


class Reader(Protocol):
    async def read(self, n: int) -> bytes: ...


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


class WebSocketWriter:
    """What a session writes, sent as binary WebSocket messages; the rest of
    ``asyncio.StreamWriter``'s interface is the socket's."""

    def __init__(self, writer: asyncio.StreamWriter, ws: WebSocketServer) -> None:
        self._writer = writer
        self._ws = ws
        self.transport = writer.transport

    def write(self, data: bytes) -> None:
        self._ws.send(data)
        self.flush()

    def flush(self) -> None:
        out = self._ws.data_to_send()
        if out and not self._writer.is_closing():
            self._writer.write(out)

    def close(self) -> None:
        if not self._writer.is_closing():
            self._ws.close()
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


class WebSocketReader:
    """The RFB bytes a WebSocket client's messages carry."""

    def __init__(
        self, reader: asyncio.StreamReader, ws: WebSocketServer, writer: WebSocketWriter
    ) -> None:
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


async def open_transport(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    websocket: bool = True,
    sniff_time: float = DEFAULT_SNIFF_TIME,
) -> tuple[Reader, Any]:
    """The reader and writer a session uses: the socket's own, or WebSocket ones.

    Raises ``RemoteProtocolError`` for a WebSocket client that breaks the opening
    handshake (after it was told why) and ``TimeoutError`` for one that stalls.
    """
    if not websocket:
        return reader, writer
    try:
        first = await asyncio.wait_for(reader.read(READ_CHUNK), sniff_time)
    except TimeoutError:
        return PrefixedReader(reader, b"", at_eof=False), writer
    if not looks_like_http(first):
        return PrefixedReader(reader, first, at_eof=not first), writer
    ws = WebSocketServer()
    ws_writer = WebSocketWriter(writer, ws)
    ws_reader = WebSocketReader(reader, ws, ws_writer)

    async def handshake() -> None:
        data = first
        while True:
            try:
                carried = ws.receive(data)
            finally:
                ws_writer.flush()
            if ws.open:
                ws_reader.take(carried)
                return
            if ws.closed or not data:
                raise RemoteProtocolError("websocket: the opening handshake did not complete")
            data = await reader.read(READ_CHUNK)

    await asyncio.wait_for(handshake(), HANDSHAKE_TIMEOUT)
    return ws_reader, ws_writer
