"""Fast-forwarding through a flood: most of a huge burst of lines can never be seen.

When a chunk of output holds more complete lines than the screen plus its
history can keep, every line but the last ``lines + history`` is scrolled away
unseen. If the part that scrolls away is plain (printable text, CR, LF, tab,
backspace, bell, and SGR), its only lasting effects are the pen (the last SGR
state) and the bell, so it can be replaced by a few bytes with the same effect:
the SGR sequences since the last full reset, one BEL if there were any, and
enough CR LF to leave the cursor at the bottom-left as the skipped lines would.

``rewrite`` is a pure byte transformation; ``Terminal.feed`` applies it only when
the screen is in a state where the equivalence holds (parser idle, full-screen
scroll region, origin and insert modes off). The one visible difference: a run
of bells in the skipped part counts as a single bell.
"""

from __future__ import annotations

import re

# A chunk must hold at least this many times the lines it keeps to be worth rewriting.
_WORTHWHILE = 2

_SGR = re.compile(rb"\x1b\[([0-9;:]*)m")
# After SGR sequences are removed, anything here means the part is not plain.
_NOT_PLAIN = re.compile(rb"[\x00-\x06\x0b-\x0c\x0e-\x1f\x7f]|\xc2[\x80-\x9f]")


def rewrite(data: bytes, lines: int, history: int) -> bytes | None:
    """An equivalent, shorter chunk, or None when ``data`` does not qualify."""
    keep = lines + history + 1
    newlines = data.count(b"\n")
    if newlines < _WORTHWHILE * keep:
        return None
    # Cut after the newline that leaves exactly ``keep`` newlines in the suffix.
    cut = -1
    for _ in range(newlines - keep + 1):
        cut = data.index(b"\n", cut + 1)
    cut += 1
    prefix = data[:cut]
    if not prefix.endswith(b"\r\n"):
        return None
    plain = _SGR.sub(b"", prefix)
    if b"\x1b" in plain or _NOT_PLAIN.search(plain):
        return None
    pen = b""
    for match in _SGR.finditer(prefix):
        if match.group(1) in (b"", b"0"):
            pen = b""  # a full reset: nothing before it matters
        pen += match.group(0)
    bell = b"\x07" if b"\x07" in plain else b""
    return pen + bell + b"\r\n" * lines + data[cut:]
