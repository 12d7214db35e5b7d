"""WebSocket on the RFB port, through real sockets: an RFB session carried in binary
messages, and hostile WebSocket clients dropped alone while an RFB viewer goes on."""

from __future__ import annotations

import asyncio
import contextlib
import struct

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request

from tests.integration.harness import running_console, wait_for_text
from tests.rfbclient import RAW, RfbClient
from vzvnc.console import Console


class WsRfb:
    """A minimal RFB-over-WebSocket client (wsproto), enough for the handshake."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.inbox = b""

    @classmethod
    async def connect(cls, port: int, subprotocols: list[str], target: str = "/") -> WsRfb:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
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

    async def handshake(self) -> tuple[int, int, str]:
        """RFB 3.8 with security type None; the ServerInit's size and name."""
        assert await self.read(12) == b"RFB 003.008\n"
        self.send(b"RFB 003.008\n")
        (count,) = struct.unpack(">B", await self.read(1))
        assert 1 in await self.read(count)
        self.send(b"\x01")
        assert struct.unpack(">I", await self.read(4)) == (0,)
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
