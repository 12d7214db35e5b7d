"""Client-to-server events, one frozen dataclass per message (rfbproto "Client to Server Messages").

Also the handshake events the connection reports to its owner.
"""

from __future__ import annotations

from dataclasses import dataclass

from vzvnc.rfb.clipboard import ClipboardMessage
from vzvnc.rfb.pixelformat import PixelFormat


@dataclass(frozen=True, slots=True)
class ClientVersionChosen:
    """The client's ProtocolVersion, as negotiated (major, minor)."""

    version: tuple[int, int]


@dataclass(frozen=True, slots=True)
class AuthenticationSucceeded:
    """Security handshake passed; ``view_only`` when the view-only password matched."""

    view_only: bool


@dataclass(frozen=True, slots=True)
class StartTls:
    """VeNCrypt: the client chose a TLS subtype; the owner upgrades the transport
    (``anonymous``: anonymous TLS, else with the certificate) and then calls
    ``tls_established``. Nothing more is parsed until then."""

    anonymous: bool


@dataclass(frozen=True, slots=True, repr=False)
class PlainCredentials:
    """VeNCrypt Plain: a user name and password to check; the owner answers with
    ``plain_checked``. The password never appears in a repr."""

    user: str
    password: str

    def __repr__(self) -> str:
        return "PlainCredentials(<hidden>)"


@dataclass(frozen=True, slots=True)
class ConnectionRefused:
    """The client was turned away before authentication (locked out, too many
    viewers); it has been sent ``reason`` and the connection is closing."""

    reason: str


@dataclass(frozen=True, slots=True)
class AuthenticationFailed:
    """Security handshake failed; the connection has queued its reply and is closing."""

    reason: str


@dataclass(frozen=True, slots=True)
class ClientInit:
    """rfbproto "ClientInit": the owner must answer with ``accept_client_init``."""

    shared: bool


@dataclass(frozen=True, slots=True)
class SetPixelFormat:
    pixel_format: PixelFormat


@dataclass(frozen=True, slots=True)
class SetEncodings:
    encodings: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class FramebufferUpdateRequest:
    incremental: bool
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class KeyEvent:
    down: bool
    keysym: int

    def __repr__(self) -> str:
        # Keys are never logged: a repr that ends up in a log must not reveal them.
        return f"KeyEvent(down={self.down}, keysym=<hidden>)"


@dataclass(frozen=True, slots=True)
class PointerEvent:
    button_mask: int
    x: int
    y: int


@dataclass(frozen=True, slots=True)
class ClientCutText:
    text: bytes

    def __repr__(self) -> str:
        return f"ClientCutText(<{len(self.text)} bytes hidden>)"


@dataclass(frozen=True, slots=True)
class ExtendedClipboard:
    """A ClientCutText with a negative length: an Extended Clipboard message."""

    message: ClipboardMessage

    def __repr__(self) -> str:
        return f"ExtendedClipboard(flags={self.message.flags:#x}, <payload hidden>)"


@dataclass(frozen=True, slots=True)
class EnableContinuousUpdates:
    enable: bool
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Fence:
    flags: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Screen:
    id: int
    x: int
    y: int
    width: int
    height: int
    flags: int


@dataclass(frozen=True, slots=True)
class SetDesktopSize:
    width: int
    height: int
    screens: tuple[Screen, ...]


@dataclass(frozen=True, slots=True)
class QemuExtendedKeyEvent:
    down: bool
    keysym: int
    keycode: int

    def __repr__(self) -> str:
        return f"QemuExtendedKeyEvent(down={self.down}, <key hidden>)"


Event = (
    ClientVersionChosen
    | AuthenticationSucceeded
    | AuthenticationFailed
    | ConnectionRefused
    | StartTls
    | PlainCredentials
    | ClientInit
    | SetPixelFormat
    | SetEncodings
    | FramebufferUpdateRequest
    | KeyEvent
    | PointerEvent
    | ClientCutText
    | ExtendedClipboard
    | EnableContinuousUpdates
    | Fence
    | SetDesktopSize
    | QemuExtendedKeyEvent
)
