"""A reconnect storm's first updates: encoded once, and every newcomer continues
the first one's zlib streams (``vzvnc.rfb.first_update``) and decodes exactly."""

from __future__ import annotations

import asyncio
import struct

import numpy as np

from tests.decoders import ZRLE, Decoder
from tests.integration.harness import running_console, wait_for_text, wait_until
from vzvnc.rfb.pixelformat import SERVER_PIXEL_FORMAT

XK_RETURN = 0xFF0D


class ZrleClient:
    """A raw-socket client that asks for ZRLE only and decodes with its own streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = Decoder(SERVER_PIXEL_FORMAT, 0, 0)

    @classmethod
    async def connect(cls, port: int) -> ZrleClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        assert (await reader.readexactly(12)).startswith(b"RFB 003.")
        writer.write(b"RFB 003.008\n")
        count = (await reader.readexactly(1))[0]
        assert 1 in await reader.readexactly(count)
        writer.write(b"\x01")
        assert await reader.readexactly(4) == b"\0\0\0\0"
        writer.write(b"\x01")
        width, height = struct.unpack(">HH", await reader.readexactly(4))
        await reader.readexactly(16)
        await reader.readexactly(struct.unpack(">I", await reader.readexactly(4))[0])
        client.decoder = Decoder(SERVER_PIXEL_FORMAT, width, height)
        writer.write(struct.pack(">BxHi", 2, 1, ZRLE))
        return client

    async def update(self, incremental: bool) -> None:
        self.writer.write(struct.pack(">BBHHHH", 3, int(incremental), 0, 0, 640, 400))
        kind, count = struct.unpack(">BxH", await self.reader.readexactly(4))
        assert kind == 0
        for _ in range(count):
            x, y, w, h, encoding = struct.unpack(">HHHHi", await self.reader.readexactly(12))
            assert encoding == ZRLE
            length = await self.reader.readexactly(4)
            data = await self.reader.readexactly(struct.unpack(">I", length)[0])
            self.decoder.decode(encoding, x, y, w, h, length + data)

    def key(self, keysym: int) -> None:
        for down in (1, 0):
            self.writer.write(struct.pack(">BBxxI", 4, down, keysym))


def test_newcomers_share_one_first_update_and_continue_its_streams() -> None:
    async def scenario() -> None:
        async with running_console() as console:
            await wait_for_text(console, "$")
            port = console.address[1]
            clients = []
            for _ in range(3):
                client = await ZrleClient.connect(port)
                await client.update(incremental=False)
                clients.append(client)
            sessions = list(console.sessions)
            assert sessions[0]._first_updates is not None
            assert sessions[0]._first_updates.hits >= 2
            for char in "echo streams-go-on":
                clients[0].key(ord(char))
            clients[0].key(XK_RETURN)
            await wait_until(
                lambda: "streams-go-on" in [line.strip() for line in console.terminal.text_lines()]
            )
            for client in clients:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 10
                while not np.array_equal(client.decoder.fb, console.framebuffer.pixels):
                    assert loop.time() < deadline, "a newcomer's decoder fell out of step"
                    await asyncio.wait_for(client.update(incremental=True), 5)
            for client in clients:
                client.writer.close()

    asyncio.run(scenario())
