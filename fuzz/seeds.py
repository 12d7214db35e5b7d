"""The seed corpus of each fuzz target, built from valid messages, plus the inputs in
fuzz/crashes/ (TARGET-what: bugs the fuzzers found, kept so they stay fixed).

``python fuzz/seeds.py [DIR]`` writes them as DIR/TARGET/seed-NNN (DIR defaults to
fuzz/corpus, which git ignores: libFuzzer adds what it finds there). The suite
reads ``seeds(TARGET)`` directly.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fuzz import targets
from vzvnc.rfb import clipboard
from vzvnc.rfb.constants import Encoding
from vzvnc.rfb.pixelformat import PixelFormat

RGB565 = PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0)
BGR233 = PixelFormat(8, 8, False, True, 7, 7, 3, 0, 3, 6)
RGB888_BE = PixelFormat(32, 24, True, True, 255, 255, 255, 16, 8, 0)
PIXEL_FORMATS = (RGB565, BGR233, RGB888_BE)
PSEUDO = (
    Encoding.DESKTOP_SIZE,
    Encoding.LAST_RECT,
    Encoding.EXTENDED_DESKTOP_SIZE,
    Encoding.FENCE,
    Encoding.CONTINUOUS_UPDATES,
    Encoding.EXTENDED_CLIPBOARD,
    Encoding.QEMU_EXTENDED_KEY_EVENT,
)
PIXEL_ENCODINGS = (0, 2, 5, 6, 7, 16, -260)  # Raw, RRE, Hextile, Zlib, Tight, ZRLE, TightPNG


def set_pixel_format(fmt: PixelFormat) -> bytes:
    return b"\x00\x00\x00\x00" + fmt.pack()


def set_encodings(*numbers: int) -> bytes:
    return struct.pack(f">BxH{len(numbers)}i", 2, len(numbers), *numbers)


def update_request(incremental: bool, x: int, y: int, width: int, height: int) -> bytes:
    return struct.pack(">BBHHHH", 3, incremental, x, y, width, height)


def extended_clipboard(message: clipboard.ClipboardMessage) -> bytes:
    body = struct.pack(">I", message.flags) + message.payload
    return struct.pack(">Bxxxi", 6, -len(body)) + body


CLIENT_MESSAGES = [
    set_pixel_format(RGB565),
    set_encodings(16, 1, -223, -224, -258),
    update_request(False, 0, 0, 640, 480),
    update_request(True, 2, 1, 5, 5),
    struct.pack(">BBxxI", 4, 1, 0xFF0D),
    struct.pack(">BBxxI", 4, 0, 0x61),
    struct.pack(">BBHH", 5, 1, 10, 20),
    struct.pack(">BxxxI", 6, 5) + b"hello",
    extended_clipboard(clipboard.caps()),
    extended_clipboard(clipboard.provide("héllo\nworld")),
    extended_clipboard(clipboard.notify()),
    extended_clipboard(clipboard.request()),
    struct.pack(">BBHHHH", 150, 1, 0, 0, 8, 8),
    struct.pack(">BxxxIB", 248, 0x80000007, 2) + b"ab",
    struct.pack(">BxHHBx", 251, 800, 600, 1) + struct.pack(">IHHHHI", 1, 0, 0, 800, 600, 0),
    struct.pack(">BBHII", 255, 0, 1, 0x61, 30),
]


def rfb_seeds() -> list[bytes]:
    seeds = []
    session = b"".join(CLIENT_MESSAGES)
    for flags in (0x00, 0x01, 0x03, 0x07, 0x40, 0x41, 0x80, 0x81, 0xC0, 0x1C):
        config = targets.rfb_config(flags, 0, vencrypt=False)
        prefix = b"".join(config.prefix())
        # The whole way in the fuzzed bytes (stage 0, cut in pieces), and after the prefix.
        seeds.append(bytes([flags, 0, 2]) + prefix + session)
        seeds.append(bytes([flags, 7, 0]) + session)
    # Each pixel encoding in each pixel format, at two compression levels.
    for fmt in PIXEL_FORMATS:
        for encoding in PIXEL_ENCODINGS:
            for level in (-256, -247):
                messages = set_pixel_format(fmt) + set_encodings(encoding, level, -224)
                messages += update_request(False, 0, 0, 12, 7) + update_request(True, 3, 2, 4, 4)
                seeds.append(bytes([0, 7, 3]) + messages)
    # Every stage of the handshake, with a byte-by-byte cut.
    config = targets.rfb_config(0x01, 0, vencrypt=False)
    for stage in range(len(config.prefix()) + 1):
        seeds.append(bytes([0x01, stage, 1]) + b"".join(config.prefix()[stage:]) + session[:40])
    return seeds


def vencrypt_seeds() -> list[bytes]:
    seeds = []
    session = b"".join(CLIENT_MESSAGES[:4])
    chosen = set()
    for more in range(256):
        for flags in (0x01, 0x05, 0x09, 0x00, 0x21, 0x40):
            config = targets.rfb_config(flags, more, vencrypt=True)
            subtype = config.subtypes[config.choice % len(config.subtypes)]
            key = (subtype, config.password, config.who, config.legacy, config.version)
            if key in chosen:
                continue
            chosen.add(key)
            prefix = config.prefix()
            seeds.append(bytes([flags, more, 8, 0]) + session)
            # In the fuzzed bytes, cut one byte at a time so TLS can start between them.
            seeds.append(bytes([flags, more, 0, 1]) + b"".join(prefix) + session[:24])
            if len(seeds) > 60:
                return seeds
    return seeds


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A client frame, masked with a zero key (so the payload stays readable)."""
    first = (0x80 if fin else 0) | opcode
    if len(payload) < 126:
        length = struct.pack(">B", 0x80 | len(payload))
    elif len(payload) < 1 << 16:
        length = struct.pack(">BH", 0x80 | 126, len(payload))
    else:
        length = struct.pack(">BQ", 0x80 | 127, len(payload))
    return bytes([first]) + length + b"\0\0\0\0" + payload


def websocket_seeds() -> list[bytes]:
    hello = frame(2, b"RFB 003.008\n")
    frames = [
        hello,
        frame(2, b"abc", fin=False) + frame(0, b"def", fin=False) + frame(0, b"gh"),
        frame(9, b"ping") + frame(2, b"\x01"),
        frame(10, b"unsolicited pong"),
        frame(2, bytes(200)),
        frame(1, b"text is refused"),
        frame(8, struct.pack(">H", 1000) + b"bye"),
        frame(8, b""),
        frame(2, b"x" * 70),  # over the small limit
        hello + frame(2, b"\x01") + frame(2, bytes([3, 0, 0, 0, 0, 0, 0, 8, 0, 8])),
    ]
    seeds = []
    for mode in (1, 2, 5, 9, 13):
        for index, frames_ in enumerate(frames):
            seeds.append(bytes([mode, index % 4]) + frames_)
    request = targets.HANDSHAKES[1]
    seeds.append(bytes([0, 1]) + request + hello)
    seeds.append(bytes([0, 2]) + request.replace(b"binary", b"base64, binary") + hello)
    seeds.append(bytes([0, 3]) + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    seeds.append(bytes([0, 0]) + b"POST / HTTP/1.0\r\n\r\n")
    return seeds


def clipboard_seeds() -> list[bytes]:
    text = "héllo\r\nwörld ✓\0".encode()
    provide = clipboard.ACTION_PROVIDE | clipboard.FORMAT_TEXT
    seeds = [
        bytes([1]) + struct.pack(">I", provide) + struct.pack(">I", len(text)) + text,
        bytes([19]) + struct.pack(">I", provide) + struct.pack(">I", 1 << 21) + text,
        bytes([0]) + struct.pack(">I", provide) + clipboard.provide("plain\ntext").payload,
        bytes([0]) + struct.pack(">I", clipboard.caps().flags) + clipboard.caps().payload,
        bytes([0]) + struct.pack(">I", clipboard.ACTION_NOTIFY | 1),
        bytes([0]) + struct.pack(">I", clipboard.ACTION_REQUEST | 1),
        bytes([0]) + struct.pack(">I", provide) + b"not zlib at all",
    ]
    return seeds


def terminal_seeds() -> list[bytes]:
    pieces = [
        b"hello\r\nworld\r\n",
        b"\x1b[31mred\x1b[0m \x1b[1;4;7mbold\x1b[m \x1b[38;5;196mx",
        b"\x1b[48;2;1;2;3my\x1b[38:2::1:2:3mz\x1b[2;9m",
        b"\x1b[?1049h\x1b[2J\x1b[Hvim\x1b[?1049l",
        b"\x1b[?4m\x1b[>4;1m\x1b[?25l\x1b[?25h\x1b[5 q",
        b"\x1b]0;title\x07\x1b]2;other\x1b\\\x1b]10;?\x07",
        b"\x1bPq#0;2;0;0;0\x1b\\\x1b_apc\x1b\\",
        b"\x1b(0lqk\x0ex\x0f\x1b(B",
        "wide 漢字 and e\u0301 and 👍🏽 and 👨‍👩‍👧 ✔️".encode(),
        b"\x1b[2;5r\x1b[5;1H\n\n\n\x1b[S\x1b[2T\x1b[3L\x1b[2M\x1b[r",
        b"\x1b7\x1b[10;10H\x1b8\x1b[s\x1b[u\x1b[5b\x1b[2Z\x1b[4@\x1b[3P\x1b[2X",
        b"\x1b[6n\x1b[c\x1b[>c\x1b[5n",
        b"\x1b[?1000h\x1b[?1006h\x1b[?2004h\x1b[?1h\x1b=\x1b>",
        b"\t\tx\x1bH\x1b[3g\x1b[0g\x08\x08\x07\x1bc",
        b"\xc2\x9b31m\xc2\x9d0;t\xc2\x9c\xff\xfe\xed\xa0\x80",
        b"x" * 300 + b"\r\n" * 30,
    ]
    seeds = []
    for index, piece in enumerate(pieces):
        seeds.append(bytes([80 + index, 24, 8, index % 4, 101, 0x35]) + piece)
        seeds.append(bytes([index, index % 5, 3, 1, 0, 0]) + piece)
    seeds.append(bytes([79, 23, 15, 2, 128, 0x2A]) + b"".join(pieces))
    return seeds


SEEDS = {
    "rfb": rfb_seeds,
    "vencrypt": vencrypt_seeds,
    "websocket": websocket_seeds,
    "clipboard": clipboard_seeds,
    "terminal": terminal_seeds,
}


CRASHES = Path(__file__).resolve().parent / "crashes"


def crashes(target: str) -> list[bytes]:
    """The reproducers in fuzz/crashes/ for ``target``."""
    return [path.read_bytes() for path in sorted(CRASHES.glob(f"{target}-*"))]


def seeds(target: str) -> list[bytes]:
    return SEEDS[target]() + crashes(target)


def write(directory: str) -> None:
    for target in SEEDS:
        path = os.path.join(directory, target)
        os.makedirs(path, exist_ok=True)
        for number, seed in enumerate(seeds(target)):
            with open(os.path.join(path, f"seed-{number:03d}"), "wb") as file:
                file.write(seed)


if __name__ == "__main__":
    write(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus"))
