"""The asyncio shell of the migration channel (``channel.py``): sockets, TLS, streams.

``serve`` accepts connections for ``vzvnc daemon`` and hands each to a handler
once the handshake has authenticated it; ``connect`` is the source's end. Every
receive has a timeout (a dead peer never hangs a migration), and a stream
(``send_stream``/``recv_stream``) ends with the sha256 of its bytes, checked.

Policy: listening off loopback needs TLS (certificate and key) and either a
shared secret or client certificates (a CA to check them against); nothing
off loopback is ever unauthenticated. The client checks the server's
certificate against the CA file it is given (for a self-signed setup, the
server's certificate itself); host names are not checked, because operators
address daemons by IP as often as by name, and the certificate and secret
already pin the peer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import os
import ssl
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from vzvnc.config import is_loopback
from vzvnc.domain import channel
from vzvnc.errors import AuthenticationError, ConfigError, RemoteProtocolError, VzvncError

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0
RECEIVE_TIMEOUT = 120.0
CHUNK = 256 * 1024
MIN_SECRET = 16


class RemoteError(VzvncError):
    """The peer gave up and said why (an ERROR frame), or went away."""

    exit_code = os.EX_TEMPFAIL


def read_secret(path: Path) -> bytes:
    try:
        text = path.read_bytes().splitlines()
    except OSError as exc:
        raise ConfigError(f"secret-file: cannot read {path}: {exc.strerror}") from None
    secret = text[0].strip() if text else b""
    if len(secret) < MIN_SECRET:
        raise ConfigError(f"secret-file: {path} must hold at least {MIN_SECRET} bytes")
    return secret


def server_tls(cert: str, key: str | None, ca: str | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
        if ca:
            context.load_verify_locations(ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls-cert: cannot load {cert} / {key}: {exc}") from None
    return context


def client_tls(ca: str, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    try:
        context.load_verify_locations(ca)
        if cert:
            context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls-ca: cannot load {ca}: {exc}") from None
    return context


class Channel:
    """One authenticated connection: JSON messages, streams, errors."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = RECEIVE_TIMEOUT
        self._decoder = channel.FrameDecoder()
        self._frames: collections.deque[channel.Frame] = collections.deque()

    async def _frame(self) -> channel.Frame:
        while not self._frames:
            try:
                data = await asyncio.wait_for(self.reader.read(CHUNK), self.timeout)
            except TimeoutError:
                raise RemoteError(f"no word from the peer in {self.timeout:.0f} s") from None
            except (ConnectionError, ssl.SSLError) as exc:
                raise RemoteError(f"the connection broke: {exc}") from None
            if not data:
                raise RemoteError("the peer closed the connection")
            self._frames.extend(self._decoder.feed(data))
        frame = self._frames.popleft()
        if frame.kind == channel.ERROR:
            raise RemoteError(channel.error_message(frame))
        return frame

    async def _send(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), self.timeout)
        except TimeoutError:
            raise RemoteError("the peer stopped reading") from None
        except (ConnectionError, ssl.SSLError) as exc:
            # A peer that gave up usually said why before closing: prefer its words.
            self.timeout = 1.0
            while True:
                try:
                    await self._frame()
                except RemoteError as said:
                    if "connection" not in str(said) and "no word" not in str(said):
                        raise said from None
                    break
                except RemoteProtocolError:
                    break
            raise RemoteError(f"the connection broke: {exc}") from None

    async def send_json(self, obj: dict[str, Any]) -> None:
        await self._send(channel.encode_json(obj))

    async def recv_json(self) -> dict[str, Any]:
        frame = await self._frame()
        if frame.kind != channel.JSON:
            raise RemoteProtocolError("expected a message, got stream data")
        return channel.parse_json(frame)

    async def send_error(self, message: str) -> None:
        await self._send(channel.encode_error(message))

    async def send_stream(
        self,
        chunks: AsyncIterable[bytes] | Iterable[bytes],
        progress: Callable[[int], None] | None = None,
    ) -> int:
        digest = hashlib.sha256()
        sent = 0

        async def each() -> Any:
            if isinstance(chunks, AsyncIterable):
                async for chunk in chunks:
                    yield chunk
            else:
                for chunk in chunks:
                    yield chunk

        async for chunk in each():
            for start in range(0, len(chunk), channel.MAX_FRAME):
                piece = chunk[start : start + channel.MAX_FRAME]
                digest.update(piece)
                await self._send(channel.encode(channel.DATA, piece))
                sent += len(piece)
            if progress is not None:
                progress(sent)
        await self._send(channel.encode(channel.END, digest.digest()))
        return sent

    async def recv_stream(
        self,
        sink: Callable[[bytes], object],
        limit: int,
        drain: Callable[[], Awaitable[None]] | None = None,
    ) -> int:
        digest = hashlib.sha256()
        received = 0
        while True:
            frame = await self._frame()
            if frame.kind == channel.END:
                if frame.payload != digest.digest():
                    raise RemoteError("the stream arrived damaged (checksum mismatch)")
                return received
            if frame.kind != channel.DATA:
                raise RemoteProtocolError("expected stream data")
            received += len(frame.payload)
            if received > limit:
                raise RemoteError(f"the stream is larger than the {limit} bytes announced")
            digest.update(frame.payload)
            sink(frame.payload)
            if drain is not None:
                await drain()

    async def send_file(self, path: Path, progress: Callable[[int], None] | None = None) -> int:
        def chunks() -> Iterable[bytes]:
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk

        return await self.send_stream(chunks(), progress)

    async def recv_file(self, path: Path, limit: int) -> int:
        """Receive a stream into a new file (never following or replacing what is there)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            with os.fdopen(fd, "wb", closefd=False) as f:
                size = await self.recv_stream(f.write, limit)
                f.flush()
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return size

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2)

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def connect(
    host: str,
    port: int,
    *,
    secret: bytes | None,
    tls: ssl.SSLContext | None,
    timeout: float = HANDSHAKE_TIMEOUT,
) -> Channel:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=tls), timeout
        )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        raise RemoteError(f"cannot reach the vzvnc daemon at {host}:{port}: {exc}") from None
    link = Channel(reader, writer)
    link.timeout = timeout
    try:
        hello = await link.recv_json()
        nonce_c = os.urandom(32)
        await link.send_json(channel.client_answer(hello, secret, nonce_c))
        proof = await link.recv_json()
        channel.client_check(proof, secret, bytes.fromhex(hello["nonce"]), nonce_c)
    except BaseException:
        await link.close()
        raise
    link.timeout = RECEIVE_TIMEOUT
    return link


async def serve(
    host: str,
    port: int,
    handler: Callable[[Channel], Awaitable[None]],
    *,
    secret: bytes | None,
    tls: ssl.SSLContext | None,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
) -> asyncio.Server:
    if not is_loopback(host):
        if tls is None:
            raise ConfigError(f"listen: {host} is not loopback; --tls-cert and --tls-key needed")
        if secret is None and tls.verify_mode != ssl.CERT_REQUIRED:
            raise ConfigError(
                f"listen: {host} is not loopback; --secret-file or --tls-ca (client "
                "certificates) needed"
            )

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = Channel(reader, writer)
        link.timeout = handshake_timeout
        peer = writer.get_extra_info("peername")
        try:
            nonce_s = os.urandom(32)
            await link.send_json(channel.server_hello(nonce_s, secret is not None))
            answer = await link.recv_json()
            try:
                proof, _ = channel.server_check(answer, secret, nonce_s)
            except AuthenticationError as exc:
                log.warning("migration connection from %s refused: %s", peer, exc)
                await link.send_error(str(exc))
                return
            await link.send_json(proof)
            link.timeout = RECEIVE_TIMEOUT
            await handler(link)
        except (VzvncError, ConnectionError) as exc:
            log.info("migration connection from %s ended: %s", peer, exc)
        except Exception:
            log.exception("migration connection from %s failed", peer)
        finally:
            await link.close()

    try:
        return await asyncio.start_server(accepted, host, port, ssl=tls)
    except OSError as exc:
        raise ConfigError(f"listen: cannot listen on {host}:{port}: {exc.strerror}") from None
