"""Incremental byte reader for generator-based parsers.

A parser is a generator that ``yield from reader.read_exact(n)``; it suspends until
``n`` bytes have arrived, so the same parser works whether the peer's bytes come one
at a time or all at once. Every read names a hard limit so a hostile length field can
never make us buffer unbounded data.
"""

from __future__ import annotations

from collections.abc import Generator

from vzvnc.errors import RemoteProtocolError


class StreamReader:
    """Bytes received but not yet parsed."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def __len__(self) -> int:
        return len(self._buffer)

    def read_exact(self, size: int) -> Generator[None, None, bytes]:
        """Wait for and consume exactly ``size`` bytes."""
        while len(self._buffer) < size:
            yield
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read_limited(self, size: int, limit: int, what: str) -> Generator[None, None, bytes]:
        """Like ``read_exact`` but refuse a ``size`` above ``limit`` before buffering it."""
        if size > limit:
            raise RemoteProtocolError(f"{what} of {size} bytes exceeds the limit of {limit}")
        return (yield from self.read_exact(size))
