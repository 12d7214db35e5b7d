"""The migration channel over real loopback sockets, with and without real TLS."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from vzvnc.domain import channel, channel_io
from vzvnc.errors import AuthenticationError, ConfigError

SECRET = b"correct horse battery staple"


def certificate(tmp_path: Path, name: str) -> tuple[str, str]:
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-subj", f"/CN={name}", "-days", "1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


async def serving(
    handler: Callable[[channel_io.Channel], object], **kw: object
) -> tuple[asyncio.Server, int]:
    server = await channel_io.serve("127.0.0.1", 0, handler, **kw)  # type: ignore[arg-type]
    return server, server.sockets[0].getsockname()[1]


def test_a_stream_crosses_tls_intact_with_progress(tmp_path: Path) -> None:
    cert, key = certificate(tmp_path, "daemon")
    data = os.urandom(5 << 20)
    received = bytearray()

    async def handler(link: channel_io.Channel) -> None:
        request = await link.recv_json()
        size = await link.recv_stream(received.extend, limit=request["size"])
        await link.send_json({"size": size, "sha": hashlib.sha256(received).hexdigest()})

    async def scenario() -> None:
        server, port = await serving(
            handler, secret=SECRET, tls=channel_io.server_tls(cert, key, None)
        )
        progress: list[int] = []
        link = await channel_io.connect(
            "127.0.0.1", port, secret=SECRET, tls=channel_io.client_tls(cert)
        )
        async with link:
            await link.send_json({"size": len(data)})
            chunks = [data[i : i + 300_000] for i in range(0, len(data), 300_000)]
            assert await link.send_stream(chunks, progress.append) == len(data)
            answer = await link.recv_json()
        server.close()
        assert answer == {"size": len(data), "sha": hashlib.sha256(data).hexdigest()}
        assert progress[-1] == len(data) and progress == sorted(progress)

    asyncio.run(scenario())
    assert bytes(received) == data


def test_wrong_secret_wrong_ca_and_missing_secret_are_refused(tmp_path: Path) -> None:
    cert, key = certificate(tmp_path, "daemon")
    other, _ = certificate(tmp_path, "other")
    reached: list[int] = []

    async def handler(link: channel_io.Channel) -> None:
        reached.append(1)

    async def scenario() -> None:
        server, port = await serving(
            handler, secret=SECRET, tls=channel_io.server_tls(cert, key, None)
        )
        with pytest.raises(channel_io.RemoteError, match="wrong secret"):
            await channel_io.connect(
                "127.0.0.1", port, secret=b"x" * 20, tls=channel_io.client_tls(cert)
            )
        with pytest.raises(channel_io.RemoteError, match="cannot reach"):
            await channel_io.connect(
                "127.0.0.1", port, secret=SECRET, tls=channel_io.client_tls(other)
            )
        with pytest.raises(AuthenticationError, match="requires a secret"):
            await channel_io.connect(
                "127.0.0.1", port, secret=None, tls=channel_io.client_tls(cert)
            )
        server.close()

    asyncio.run(scenario())
    assert reached == []


def test_client_certificates_can_stand_in_for_a_secret(tmp_path: Path) -> None:
    cert, key = certificate(tmp_path, "daemon")
    client_cert, client_key = certificate(tmp_path, "source")
    stranger_cert, stranger_key = certificate(tmp_path, "stranger")

    async def handler(link: channel_io.Channel) -> None:
        await link.send_json({"hello": "source"})

    async def scenario() -> None:
        server, port = await serving(
            handler, secret=None, tls=channel_io.server_tls(cert, key, client_cert)
        )
        tls = channel_io.client_tls(cert, client_cert, client_key)
        async with await channel_io.connect("127.0.0.1", port, secret=None, tls=tls) as link:
            assert await link.recv_json() == {"hello": "source"}
        with pytest.raises(channel_io.RemoteError):
            stranger = channel_io.client_tls(cert, stranger_cert, stranger_key)
            link = await channel_io.connect("127.0.0.1", port, secret=None, tls=stranger)
            await link.recv_json()
        server.close()

    asyncio.run(scenario())


def test_listening_off_loopback_needs_tls_and_authentication(tmp_path: Path) -> None:
    cert, key = certificate(tmp_path, "daemon")

    async def handler(link: channel_io.Channel) -> None:
        pass

    async def scenario() -> None:
        with pytest.raises(ConfigError, match="--tls-cert"):
            await channel_io.serve("0.0.0.0", 0, handler, secret=SECRET, tls=None)
        with pytest.raises(ConfigError, match="--secret-file"):
            await channel_io.serve(
                "0.0.0.0", 0, handler, secret=None, tls=channel_io.server_tls(cert, key, None)
            )

    asyncio.run(scenario())


def test_silent_clients_are_dropped_and_damaged_streams_refused() -> None:
    results: list[str] = []

    async def handler(link: channel_io.Channel) -> None:
        try:
            await link.recv_stream(lambda data: None, limit=1 << 20)
        except channel_io.RemoteError as exc:
            results.append(str(exc))

    async def scenario() -> None:
        server, port = await serving(handler, secret=None, tls=None, handshake_timeout=0.5)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.read(4096)  # the hello; then say nothing
        assert await asyncio.wait_for(reader.read(4096), 5) == b""  # dropped
        writer.close()
        link = await channel_io.connect("127.0.0.1", port, secret=None, tls=None)
        async with link:
            link.writer.write(channel.encode(channel.DATA, b"abc"))
            link.writer.write(channel.encode(channel.END, b"\0" * 32))
            await link.writer.drain()
            await asyncio.sleep(0.3)
        server.close()

    asyncio.run(scenario())
    assert results == ["the stream arrived damaged (checksum mismatch)"]
