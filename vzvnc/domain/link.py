"""The wire between a domain's controller and its console server.

The controller owns the console pty; the console server owns the screen and the
viewers. They talk over a Unix stream socket in frames of ``type (1 byte) |
length (4 bytes, big-endian) | payload``:

    server -> controller
      HELLO   u64 offset      send me the journal from this console offset on, then live output
      INPUT   bytes           write these to the console (keys, pastes, terminal replies)
      RESIZE  u16 cols, u16 lines
      SAVED   u64 offset, u8 ok, text     answer to PAUSE with write=1: the console state
                                          up to offset is in the rootfs (ok=1), or why not
    controller -> server
      OUTPUT  u64 offset, bytes   console output starting at this journal offset
      LIVE                        the backlog asked for by HELLO has been sent; what follows is new
      STOPPED i32 status          the domain's init exited with this status
      PAUSE   u64 offset, u8 write    the domain is frozen and its output up to offset
                                      has been sent: refuse input, say so in the desktop
                                      name, and (write=1) write the console state into
                                      the rootfs (console.state_path), answering SAVED
      RESUME                          the domain runs again: accept input

Sans-IO: ``FrameDecoder`` turns bytes into frames and refuses oversized ones.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vzvnc.errors import RemoteProtocolError

HELLO, INPUT, RESIZE, OUTPUT, STOPPED, LIVE, PAUSE, RESUME, SAVED = 1, 2, 3, 4, 5, 6, 7, 8, 9
_KINDS = {HELLO, INPUT, RESIZE, OUTPUT, STOPPED, LIVE, PAUSE, RESUME, SAVED}
MAX_FRAME = 1 << 20
_HEADER = struct.Struct(">BI")


@dataclass(frozen=True, slots=True)
class Frame:
    kind: int
    payload: bytes


def encode(kind: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


def hello(offset: int) -> bytes:
    return encode(HELLO, struct.pack(">Q", offset))


def output(offset: int, data: bytes) -> list[bytes]:
    """OUTPUT frames for ``data`` starting at ``offset``, split to fit ``MAX_FRAME``."""
    step = MAX_FRAME - 8
    return [
        encode(OUTPUT, struct.pack(">Q", offset + i) + data[i : i + step])
        for i in range(0, len(data), step)
    ]


def resize(columns: int, lines: int) -> bytes:
    return encode(RESIZE, struct.pack(">HH", columns, lines))


def stopped(status: int) -> bytes:
    return encode(STOPPED, struct.pack(">i", status))


def pause(offset: int, write_state: bool) -> bytes:
    return encode(PAUSE, struct.pack(">QB", offset, 1 if write_state else 0))


def parse_pause(frame: Frame) -> tuple[int, bool]:
    if len(frame.payload) != 9:
        raise RemoteProtocolError("PAUSE frame of the wrong size")
    offset, write = struct.unpack(">QB", frame.payload)
    return int(offset), bool(write)


def saved(offset: int, ok: bool, message: str) -> bytes:
    text = message.encode("utf-8", "replace")[:4000]
    return encode(SAVED, struct.pack(">QB", offset, 1 if ok else 0) + text)


def parse_saved(frame: Frame) -> tuple[int, bool, str]:
    if len(frame.payload) < 9:
        raise RemoteProtocolError("SAVED frame too short")
    offset, ok = struct.unpack(">QB", frame.payload[:9])
    return int(offset), bool(ok), frame.payload[9:].decode("utf-8", "replace")


def parse_offset(frame: Frame) -> tuple[int, bytes]:
    if len(frame.payload) < 8:
        raise RemoteProtocolError("frame without its 8-byte offset")
    (offset,) = struct.unpack(">Q", frame.payload[:8])
    return int(offset), frame.payload[8:]


def parse_resize(frame: Frame) -> tuple[int, int]:
    if len(frame.payload) != 4:
        raise RemoteProtocolError("RESIZE frame of the wrong size")
    columns, lines = struct.unpack(">HH", frame.payload)
    return int(columns), int(lines)


def parse_status(frame: Frame) -> int:
    if len(frame.payload) != 4:
        raise RemoteProtocolError("STOPPED frame of the wrong size")
    (status,) = struct.unpack(">i", frame.payload)
    return int(status)


class FrameDecoder:
    """Bytes in, frames out; refuses unknown kinds and oversized frames before their
    bytes arrive. ``kinds`` and ``what`` let another wire of the same framing (the
    migration channel) reuse it."""

    def __init__(self, kinds: frozenset[int] | set[int] = _KINDS, what: str = "link") -> None:
        self._buffer = bytearray()
        self._kinds = kinds
        self._what = what

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= _HEADER.size:
            kind, length = _HEADER.unpack_from(self._buffer)
            if kind not in self._kinds:
                raise RemoteProtocolError(f"unknown {self._what} frame type {kind}")
            if length > MAX_FRAME:
                raise RemoteProtocolError(f"{self._what} frame of {length} bytes is too large")
            end = _HEADER.size + length
            if len(self._buffer) < end:
                break
            frames.append(Frame(kind, bytes(self._buffer[_HEADER.size : end])))
            del self._buffer[:end]
        return frames
