"""A small asyncio RFB client for the integration tests, written from rfbproto.

Independent of the server's code except for the DES response (vzvnc.rfb.auth,
which its own tests check against vncdotool's DES). It keeps a framebuffer in the
server's native 32-bit little-endian BGRX layout and decodes Raw, CopyRect,
DesktopSize and LastRect.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from dataclasses import dataclass, field

import numpy as np

from vzvnc.rfb.auth import vnc_auth_response

RAW, COPY_RECT, DESKTOP_SIZE, LAST_RECT = 0, 1, -223, -224
DESKTOP_NAME, EXTENDED_DESKTOP_SIZE = -307, -308
EXTENDED_CLIPBOARD = -1063131698
QEMU_EXTENDED_KEY = -258
FENCE, CONTINUOUS_UPDATES = -312, -313
XK_RETURN = 0xFF0D
XK_CONTROL_L = 0xFFE3


class AuthFailed(Exception):
    pass


class Refused(Exception):
    """The server listed no security types (or type 0): it turned us away, saying why."""


@dataclass
class UpdateStats:
    updates: int = 0
    rects_by_encoding: dict[int, int] = field(default_factory=dict)


class RfbClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.width = 0
        self.height = 0
        self.name = ""
        self.pixels = np.zeros((0, 0, 4), dtype=np.uint8)
        self.stats = UpdateStats()
        self.bells = 0
        self.cut_texts: list[bytes] = []
        # Extended Clipboard messages as (flags, payload).
        self.extended_cut: list[tuple[int, bytes]] = []
        # ExtendedDesktopSize rectangles as (reason, status, width, height).
        self.size_replies: list[tuple[int, int, int, int]] = []
        self.bytes_received = 0
        self.qemu_keys_confirmed = False
        self.end_of_continuous_updates = 0
        self.fences: list[tuple[int, bytes]] = []
        self.offered_subtypes: tuple[int, ...] = ()

    @classmethod
    async def connect(
        cls,
        port: int,
        *,
        password: bytes | None = None,
        shared: bool = True,
        encodings: tuple[int, ...] = (COPY_RECT, RAW, DESKTOP_SIZE, LAST_RECT),
        version: bytes = b"RFB 003.008\n",
        sock: socket.socket | None = None,
    ) -> RfbClient:
        """Connect to 127.0.0.1:``port``, or over ``sock`` when given (one connected
        in another network namespace, say)."""
        if sock is not None:
            reader, writer = await asyncio.open_connection(sock=sock)
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        try:
            await client._handshake(password, shared, version)
        except BaseException:
            await client.close()
            raise
        client.set_encodings(encodings)
        return client

    async def _read(self, n: int) -> bytes:
        data = await self.reader.readexactly(n)
        self.bytes_received += n
        return data

    async def _handshake(self, password: bytes | None, shared: bool, version: bytes) -> None:
        assert (await self._read(12)).startswith(b"RFB 003.")
        self.writer.write(version)
        if version == b"RFB 003.003\n":
            (sec_type,) = struct.unpack(">I", await self._read(4))
            if sec_type == 0:
                raise Refused(await self._reason())
        else:
            (count,) = await self._read(1)
            if count == 0:
                raise Refused(await self._reason())
            types = await self._read(count)
            sec_type = 2 if password is not None and 2 in types else types[0]
            self.writer.write(bytes([sec_type]))
        if sec_type == 2:
            assert password is not None, "server wants a password"
            challenge = await self._read(16)
            self.writer.write(vnc_auth_response(password, challenge))
        if sec_type == 2 or version == b"RFB 003.008\n":
            (result,) = struct.unpack(">I", await self._read(4))
            if result != 0:
                reason = b""
                if version == b"RFB 003.008\n":
                    (length,) = struct.unpack(">I", await self._read(4))
                    reason = await self._read(length)
                raise AuthFailed(reason.decode())
        self.writer.write(b"\x01" if shared else b"\x00")
        header = await self._read(24)
        self.width, self.height = struct.unpack(">HH", header[:4])
        (name_length,) = struct.unpack(">I", header[20:24])
        self.name = (await self._read(name_length)).decode()
        self.pixels = np.zeros((self.height, self.width, 4), dtype=np.uint8)

    @classmethod
    async def connect_vencrypt(
        cls,
        port: int,
        subtype: int,
        tls: ssl.SSLContext,
        *,
        password: bytes | None = None,
        user: str | None = None,
        encodings: tuple[int, ...] = (RAW,),
    ) -> RfbClient:
        """RFB 3.8 with VeNCrypt (security type 19) and ``subtype``: version 0.2, the
        subtype, TLS (``tls`` as the client's context), then its authentication."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        try:
            assert await client._read(12) == b"RFB 003.008\n"
            writer.write(b"RFB 003.008\n")
            (count,) = await client._read(1)
            if count == 0:
                raise Refused(await client._reason())
            assert 19 in await client._read(count), "VeNCrypt is not offered"
            writer.write(b"\x13")
            assert await client._read(2) == b"\x00\x02"
            writer.write(b"\x00\x02")
            assert await client._read(1) == b"\x00"
            (count,) = await client._read(1)
            offered = struct.unpack(f">{count}I", await client._read(4 * count))
            client.offered_subtypes = offered
            writer.write(struct.pack(">I", subtype))
            if await client._read(1) != b"\x01":
                raise Refused(f"subtype {subtype} refused")
            await writer.start_tls(tls, server_hostname="localhost")
            if subtype in (258, 261):
                assert password is not None
                writer.write(vnc_auth_response(password, await client._read(16)))
            elif subtype in (256, 259, 262):
                assert user is not None and password is not None
                writer.write(struct.pack(">II", len(user.encode()), len(password)))
                writer.write(user.encode() + password)
            (result,) = struct.unpack(">I", await client._read(4))
            if result != 0:
                (length,) = struct.unpack(">I", await client._read(4))
                raise AuthFailed((await client._read(length)).decode())
            writer.write(b"\x01")
            header = await client._read(24)
            client.width, client.height = struct.unpack(">HH", header[:4])
            (name_length,) = struct.unpack(">I", header[20:24])
            client.name = (await client._read(name_length)).decode()
            client.pixels = np.zeros((client.height, client.width, 4), dtype=np.uint8)
        except BaseException:
            await client.close()
            raise
        client.set_encodings(encodings)
        return client

    async def _reason(self) -> str:
        (length,) = struct.unpack(">I", await self._read(4))
        return (await self._read(length)).decode()

    # -- client messages -------------------------------------------------------

    def set_encodings(self, encodings: tuple[int, ...]) -> None:
        self.writer.write(
            struct.pack(">BxH", 2, len(encodings)) + struct.pack(f">{len(encodings)}i", *encodings)
        )

    def request(
        self, incremental: bool = True, rect: tuple[int, int, int, int] | None = None
    ) -> None:
        x, y, w, h = rect or (0, 0, self.width, self.height)
        self.writer.write(struct.pack(">BBHHHH", 3, int(incremental), x, y, w, h))

    def key(self, keysym: int, down: bool) -> None:
        self.writer.write(struct.pack(">BBxxI", 4, int(down), keysym))

    def press(self, keysym: int) -> None:
        self.key(keysym, True)
        self.key(keysym, False)

    def type(self, text: str) -> None:
        for char in text:
            if char == "\n":
                self.press(XK_RETURN)
            else:
                code = ord(char)
                self.press(code if code < 0x100 else 0x01000000 + code)

    def ctrl(self, letter: str) -> None:
        self.key(XK_CONTROL_L, True)
        self.press(ord(letter))
        self.key(XK_CONTROL_L, False)

    def cut_text(self, text: bytes) -> None:
        self.writer.write(struct.pack(">BxxxI", 6, len(text)) + text)

    def extended_cut_text(self, flags: int, payload: bytes = b"") -> None:
        self.writer.write(struct.pack(">BxxxiI", 6, -(4 + len(payload)), flags) + payload)

    def qemu_key(self, keysym: int, keycode: int, down: bool) -> None:
        self.writer.write(struct.pack(">BBHII", 255, 0, int(down), keysym, keycode))

    def enable_continuous_updates(self, enable: bool) -> None:
        self.writer.write(struct.pack(">BBHHHH", 150, int(enable), 0, 0, self.width, self.height))

    def fence(self, flags: int, payload: bytes) -> None:
        self.writer.write(struct.pack(">BxxxIB", 248, flags, len(payload)) + payload)

    def pointer(self, mask: int, x: int, y: int) -> None:
        self.writer.write(struct.pack(">BBHH", 5, mask, x, y))

    def set_desktop_size(self, width: int, height: int) -> None:
        screen = struct.pack(">IHHHHI", 0, 0, 0, width, height, 0)
        self.writer.write(struct.pack(">BxHHBx", 251, width, height, 1) + screen)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()

    async def __aenter__(self) -> RfbClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Closed even when the test fails: a writer left to the garbage collector after
        # its loop closed raises in an unrelated later test.
        await self.close()

    # -- server messages -------------------------------------------------------

    async def read_message(self, timeout: float | None = None) -> int:
        """Read and apply one server message; returns its type.

        ``timeout`` bounds the wait for the message to start; once it has, the rest
        is read whole so a timeout never leaves the stream mid-message.
        """
        (kind,) = await asyncio.wait_for(self._read(1), timeout)
        if kind == 0:
            await self._read_update()
        elif kind == 2:
            self.bells += 1
        elif kind == 3:
            (length,) = struct.unpack(">xxxi", await self._read(7))
            if length < 0:
                body = await self._read(-length)
                (flags,) = struct.unpack(">I", body[:4])
                self.extended_cut.append((flags, body[4:]))
            else:
                self.cut_texts.append(await self._read(length))
        elif kind == 150:
            self.end_of_continuous_updates += 1
        elif kind == 248:
            flags, length = struct.unpack(">xxxIB", await self._read(8))
            self.fences.append((flags, await self._read(length)))
        else:
            raise AssertionError(f"unexpected server message type {kind}")
        return int(kind)

    async def _read_update(self) -> None:
        (count,) = struct.unpack(">xH", await self._read(3))
        self.stats.updates += 1
        index = 0
        while count == 0xFFFF or index < count:
            index += 1
            x, y, w, h, encoding = struct.unpack(">HHHHi", await self._read(12))
            self.stats.rects_by_encoding[encoding] = (
                self.stats.rects_by_encoding.get(encoding, 0) + 1
            )
            if encoding == LAST_RECT:
                break
            if encoding == RAW:
                data = await self._read(w * h * 4)
                rect = np.frombuffer(data, np.uint8).reshape(h, w, 4).copy()
                rect[:, :, 3] = 0  # no channel uses the spare byte: a client ignores it
                self.pixels[y : y + h, x : x + w] = rect
            elif encoding == COPY_RECT:
                sx, sy = struct.unpack(">HH", await self._read(4))
                self.pixels[y : y + h, x : x + w] = self.pixels[sy : sy + h, sx : sx + w].copy()
            elif encoding == DESKTOP_SIZE:
                self.width, self.height = w, h
                self.pixels = np.zeros((h, w, 4), dtype=np.uint8)
            elif encoding == EXTENDED_DESKTOP_SIZE:
                (screens,) = struct.unpack(">Bxxx", await self._read(4))
                await self._read(16 * screens)
                self.size_replies.append((x, y, w, h))
                if y == 0 and (w, h) != (self.width, self.height):
                    self.width, self.height = w, h
                    self.pixels = np.zeros((h, w, 4), dtype=np.uint8)
            elif encoding == QEMU_EXTENDED_KEY:
                self.qemu_keys_confirmed = True
            elif encoding == DESKTOP_NAME:
                (length,) = struct.unpack(">I", await self._read(4))
                self.name = (await self._read(length)).decode()
            else:
                raise AssertionError(f"unexpected encoding {encoding}")

    async def update(self, incremental: bool = True, timeout: float = 5.0) -> None:
        """Request an update and read messages until one FramebufferUpdate has arrived."""
        self.request(incremental)
        while await self.read_message(timeout) != 0:
            pass

    async def drain_updates(self, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Keep requesting until no update arrives for ``quiet`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.request(True)
        while loop.time() < deadline:
            try:
                kind = await self.read_message(quiet)
            except TimeoutError:
                return
            if kind == 0:
                self.request(True)
        raise AssertionError("updates never stopped")
