"""Numbers from the RFB protocol (rfbproto "Protocol Messages", "Encodings").

Only names; no behaviour. Values are the registered ones from rfbproto.
"""

from __future__ import annotations

import enum


class ProtocolVersion(enum.Enum):
    """The three versions rfbproto "ProtocolVersion" defines."""

    V3_3 = (3, 3)
    V3_7 = (3, 7)
    V3_8 = (3, 8)

    @property
    def greeting(self) -> bytes:
        major, minor = self.value
        return b"RFB %03d.%03d\n" % (major, minor)


class SecurityType(enum.IntEnum):
    INVALID = 0
    NONE = 1
    VNC_AUTH = 2
    VENCRYPT = 19


class VeNCryptSubtype(enum.IntEnum):
    """rfbproto "VeNCrypt": TLS* use anonymous TLS, X509* a certificate."""

    PLAIN = 256
    TLS_NONE = 257
    TLS_VNC = 258
    TLS_PLAIN = 259
    X509_NONE = 260
    X509_VNC = 261
    X509_PLAIN = 262

    @property
    def anonymous_tls(self) -> bool:
        return self in (
            VeNCryptSubtype.TLS_NONE,
            VeNCryptSubtype.TLS_VNC,
            VeNCryptSubtype.TLS_PLAIN,
        )

    @property
    def auth(self) -> str:
        """What follows the TLS handshake: ``none``, ``vnc`` or ``plain``."""
        return {257: "none", 260: "none", 258: "vnc", 261: "vnc"}.get(int(self), "plain")


class SecurityResult(enum.IntEnum):
    OK = 0
    FAILED = 1


class ClientMessageType(enum.IntEnum):
    SET_PIXEL_FORMAT = 0
    SET_ENCODINGS = 2
    FRAMEBUFFER_UPDATE_REQUEST = 3
    KEY_EVENT = 4
    POINTER_EVENT = 5
    CLIENT_CUT_TEXT = 6
    ENABLE_CONTINUOUS_UPDATES = 150
    FENCE = 248
    SET_DESKTOP_SIZE = 251
    QEMU = 255


class ServerMessageType(enum.IntEnum):
    FRAMEBUFFER_UPDATE = 0
    SET_COLOUR_MAP_ENTRIES = 1
    BELL = 2
    SERVER_CUT_TEXT = 3
    END_OF_CONTINUOUS_UPDATES = 150
    FENCE = 248


class Encoding(enum.IntEnum):
    """Encodings and pseudo-encodings (rfbproto "Encodings")."""

    RAW = 0
    COPY_RECT = 1
    RRE = 2
    HEXTILE = 5
    ZLIB = 6
    TIGHT = 7
    ZRLE = 16
    DESKTOP_SIZE = -223
    LAST_RECT = -224
    CURSOR = -239
    DESKTOP_NAME = -307
    EXTENDED_DESKTOP_SIZE = -308
    FENCE = -312
    CONTINUOUS_UPDATES = -313
    QEMU_EXTENDED_KEY_EVENT = -258
    EXTENDED_CLIPBOARD = -1063131698  # 0xC0A1E5CE as a signed 32-bit value
    COMPRESS_LEVEL_0 = -256
    COMPRESS_LEVEL_9 = -247


# RFB 3.7+ limits the number of rectangles in one update to a U16; LastRect lifts it.
MAX_RECTS_PER_UPDATE = 0xFFFF


class FenceFlag(enum.IntFlag):
    """rfbproto "Fence": ordering guarantees a fence asks for."""

    BLOCK_BEFORE = 1 << 0
    BLOCK_AFTER = 1 << 1
    SYNC_NEXT = 1 << 2
    REQUEST = 1 << 31
