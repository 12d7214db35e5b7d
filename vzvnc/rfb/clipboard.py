"""Extended Clipboard pseudo-encoding payloads (rfbproto "Extended Clipboard Pseudo-Encoding").

A message is a U32 of flags (formats in bits 0-15, one action in bits 24-31)
and, for ``caps``, one U32 size limit per format, or, for ``provide``, a zlib
stream holding one (U32 length, data) pair per format. Only UTF-8 text is
handled: it travels with CRLF line endings and a terminating NUL.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from vzvnc.errors import RemoteProtocolError

FORMAT_TEXT = 1 << 0
ACTION_CAPS = 1 << 24
ACTION_REQUEST = 1 << 25
ACTION_PEEK = 1 << 26
ACTION_NOTIFY = 1 << 27
ACTION_PROVIDE = 1 << 28
ACTIONS = ACTION_CAPS | ACTION_REQUEST | ACTION_PEEK | ACTION_NOTIFY | ACTION_PROVIDE

# What we accept, decompressed; larger pastes are refused.
MAX_TEXT = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ClipboardMessage:
    flags: int
    payload: bytes = b""

    @property
    def action(self) -> int:
        return self.flags & ACTIONS

    @property
    def formats(self) -> int:
        return self.flags & 0xFFFF


def caps(max_text: int = MAX_TEXT) -> ClipboardMessage:
    actions = ACTION_CAPS | ACTION_REQUEST | ACTION_PEEK | ACTION_NOTIFY | ACTION_PROVIDE
    return ClipboardMessage(actions | FORMAT_TEXT, struct.pack(">I", max_text))


def notify() -> ClipboardMessage:
    return ClipboardMessage(ACTION_NOTIFY | FORMAT_TEXT)


def request() -> ClipboardMessage:
    return ClipboardMessage(ACTION_REQUEST | FORMAT_TEXT)


def provide(text: str) -> ClipboardMessage:
    data = text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8") + b"\0"
    body = zlib.compress(struct.pack(">I", len(data)) + data)
    return ClipboardMessage(ACTION_PROVIDE | FORMAT_TEXT, body)


def peer_text_limit(message: ClipboardMessage) -> int:
    """From a peer's caps: the largest text it accepts unsolicited (0 if none)."""
    if not message.formats & FORMAT_TEXT or len(message.payload) < 4:
        return 0
    # Sizes are listed for each format bit set, lowest bit first: text is first.
    (limit,) = struct.unpack(">I", message.payload[:4])
    return int(limit)


def provided_text(message: ClipboardMessage) -> str | None:
    """The text in a ``provide`` message, or None if it carries none."""
    if not message.formats & FORMAT_TEXT:
        return None
    inflater = zlib.decompressobj()
    try:
        header = inflater.decompress(message.payload, 4)
        if len(header) < 4:
            raise RemoteProtocolError("extended clipboard provide message is truncated")
        (size,) = struct.unpack(">I", header)
        if size > MAX_TEXT:
            raise RemoteProtocolError(f"extended clipboard text of {size} bytes is too large")
        # max_length 0 would mean "no limit" to zlib: a zero size inflates nothing.
        data = inflater.decompress(inflater.unconsumed_tail, size) if size else b""
    except zlib.error as exc:
        raise RemoteProtocolError(f"extended clipboard data is not zlib: {exc}") from exc
    if len(data) < size:
        raise RemoteProtocolError("extended clipboard text is truncated")
    text = data.decode("utf-8", errors="replace").rstrip("\0")
    return text.replace("\r\n", "\n")
