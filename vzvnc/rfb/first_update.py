"""The first full update of a new connection, encoded once for every newcomer.

A reconnect storm is many new connections, each asking for the whole screen
(rfbproto "FramebufferUpdateRequest", incremental 0) right after ServerInit. A
new connection's zlib streams are empty, so for one framebuffer version, pixel
format, encoding and level its first update is the same bytes every time, and
encoding it is most of what a connection costs the server. The first newcomer
encodes it and leaves the pixel rectangles here with a copy of its streams as
they were after them (zlib's ``Compress.copy``); the next ones take the bytes
and a copy of the streams, and continue from there exactly as if they had
encoded it themselves.

Sans-IO: the owner passes ``now`` and asks ``expires_in`` when to drop an entry
nobody has taken for ``keep`` seconds, so a quiet console holds no copies.
"""

from __future__ import annotations

from dataclasses import dataclass

from vzvnc.fb.damage import Rect
from vzvnc.rfb.pixelformat import PixelFormat
from vzvnc.rfb.protocol import EncodedRect


@dataclass(frozen=True, slots=True)
class FirstUpdateKey:
    """Everything a first update's pixel rectangles depend on."""

    framebuffer_version: int
    """The console's count of changes to the framebuffer (frames drawn, resizes)."""
    size: tuple[int, int]
    pixel_format: PixelFormat
    encoding: int
    compress_level: int
    rects: tuple[Rect, ...]
    """The damage rectangles as arranged for the encoder."""


@dataclass(frozen=True, slots=True)
class FirstUpdate:
    rects: tuple[EncodedRect, ...]
    stream_state: object
    """The encoder's ``stream_state()`` after the rectangles; adopt a copy of it."""


class FirstUpdateCache:
    """The latest first update of one listener (one entry: the screen changes often,
    and a storm asks for one screen)."""

    def __init__(self, keep: float = 5.0) -> None:
        self.keep = keep
        self._key: FirstUpdateKey | None = None
        self._update: FirstUpdate | None = None
        self._used = 0.0
        self.hits = 0

    def get(self, key: FirstUpdateKey, now: float) -> FirstUpdate | None:
        if self._update is None or self._key != key:
            return None
        self._used = now
        self.hits += 1
        return self._update

    def put(self, key: FirstUpdateKey, update: FirstUpdate, now: float) -> None:
        self._key, self._update, self._used = key, update, now

    def expires_in(self, now: float) -> float:
        """Seconds until the entry is dropped; at 0 or less it is gone."""
        if self._update is None:
            return 0.0
        left = self._used + self.keep - now
        if left <= 0:
            self._key = self._update = None
        return left

    def __bool__(self) -> bool:
        return self._update is not None
