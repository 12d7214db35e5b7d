"""A bounded on-disk journal of a domain's console output, addressed by byte offset.

Offsets count every byte the console has produced since the domain started. The
journal keeps the newest output in two segment files; when the active one is
full the older one is recycled, so disk use stays under ``2 * segment_size``.
Each segment begins with an 8-byte header holding the offset of its first byte.
Written only by the controller; read by anyone (console servers, screenshots).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

DEFAULT_SEGMENT_SIZE = 8 * 1024 * 1024
_HEADER = struct.Struct(">Q")


class Journal:
    def __init__(self, directory: Path, segment_size: int = DEFAULT_SEGMENT_SIZE) -> None:
        self.directory = directory
        self.segment_size = segment_size
        self.paths = (directory / "journal.0", directory / "journal.1")
        self.end = 0
        self._active = 0
        self._active_size = 0
        self._fd = -1

    def open_new(self, start: int = 0) -> None:
        """Start an empty journal (a domain's start); a restored domain's console output
        goes on from the offset its console state was saved at."""
        for path in self.paths:
            path.unlink(missing_ok=True)
        self._active = 0
        self.end = start
        self._open_segment(0, start=start)

    def _open_segment(self, index: int, start: int) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
        self._fd = os.open(self.paths[index], flags, 0o600)
        os.write(self._fd, _HEADER.pack(start))
        self._active = index
        self._active_size = 0

    def append(self, data: bytes) -> int:
        """Write console output; returns the offset of its first byte."""
        offset = self.end
        if self._active_size + len(data) > self.segment_size and self._active_size:
            self._open_segment(1 - self._active, start=self.end)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._active_size += len(data)
        self.end += len(data)
        return offset

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_journal(directory: Path, start: int) -> tuple[int, bytes]:
    """Everything from ``start`` on (or from the oldest byte kept, if later): (offset, data)."""
    segments = []
    for name in ("journal.0", "journal.1"):
        path = directory / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue
        with os.fdopen(fd, "rb") as f:
            header = f.read(_HEADER.size)
            if len(header) < _HEADER.size:
                continue
            (first,) = _HEADER.unpack(header)
            segments.append((int(first), f.read()))
    segments.sort()
    # Keep only a contiguous run ending at the newest segment.
    if len(segments) == 2 and segments[0][0] + len(segments[0][1]) != segments[1][0]:
        segments = segments[1:]
    if not segments:
        return start, b""
    oldest = segments[0][0]
    data = b"".join(chunk for _, chunk in segments)
    begin = max(start, oldest)
    return begin, data[begin - oldest :]
