"""Sans-IO RFB server connection: handshake and message state machine.

Implements rfbproto "Protocol Versions", "Handshake Messages" (ProtocolVersion,
Security, SecurityResult), "Initialisation Messages" (ClientInit, ServerInit) and
the parsing of "Client to Server Messages". Bytes go in through ``receive_data``,
events come out; bytes to send accumulate in ``data_to_send``. No sockets, no clock.

The rules, in the order a connection meets them:

1. The server speaks first with ``RFB 003.008``. A client answering 3.3 gets the
   3.3 security handshake (the server picks the type), 3.7 gets the list without a
   SecurityResult for None, 3.8 and anything newer gets 3.8. Other 3.x minors are
   treated as 3.3, as rfbproto advises; anything that is not ``RFB xxx.yyy\\n`` or
   has a major version other than 3 is refused.
2. With a password configured, only VNC Authentication is offered; without one,
   only None. A failed authentication queues SecurityResult failed (with a reason
   from 3.8 on) and the connection reports ``AuthenticationFailed`` and closes.
3. After ClientInit the owner answers with ``accept_client_init`` (it owns the
   framebuffer size and the decision about shared sessions).
4. Then client messages become events. An unknown message type cannot be skipped
   (RFB messages carry no length), so it is a ``RemoteProtocolError``.
"""

from __future__ import annotations

import enum
import re
import struct
from collections.abc import Generator, Sequence
from dataclasses import dataclass

from vzvnc.errors import LocalProtocolError, RemoteProtocolError
from vzvnc.rfb import auth
from vzvnc.rfb.clipboard import ClipboardMessage
from vzvnc.rfb.constants import (
    ClientMessageType,
    Encoding,
    ProtocolVersion,
    SecurityResult,
    SecurityType,
    ServerMessageType,
    VeNCryptSubtype,
)
from vzvnc.rfb.messages import (
    AuthenticationFailed,
    AuthenticationSucceeded,
    ClientCutText,
    ClientInit,
    ClientVersionChosen,
    ConnectionRefused,
    EnableContinuousUpdates,
    Event,
    ExtendedClipboard,
    Fence,
    FramebufferUpdateRequest,
    KeyEvent,
    PlainCredentials,
    PointerEvent,
    QemuExtendedKeyEvent,
    Screen,
    SetDesktopSize,
    SetEncodings,
    SetPixelFormat,
    StartTls,
)
from vzvnc.rfb.pixelformat import SERVER_PIXEL_FORMAT, PixelFormat
from vzvnc.rfb.reader import StreamReader

_VERSION_RE = re.compile(rb"RFB (\d{3})\.(\d{3})\n")

# Hard limits on what a peer may make us buffer.
MAX_CUT_TEXT = 4 * 1024 * 1024
MAX_FENCE_PAYLOAD = 64
MAX_SCREENS = 16
MAX_PLAIN_FIELD = 1024


class ConnectionState(enum.Enum):
    VERSION = "version"
    SECURITY = "security"
    AUTHENTICATION = "authentication"
    TLS_HANDSHAKE = "tls handshake"
    CHECKING_CREDENTIALS = "checking credentials"
    INITIALISATION = "initialisation"
    AWAITING_SERVER_INIT = "awaiting-server-init"
    NORMAL = "normal"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class EncodedRect:
    """One rectangle of a FramebufferUpdate: header fields plus the encoded payload."""

    x: int
    y: int
    width: int
    height: int
    encoding: int
    payload: bytes


class ServerConnection:
    """The server side of one RFB connection."""

    def __init__(
        self,
        *,
        password: bytes | None = None,
        view_only_password: bytes | None = None,
        challenge: bytes | None = None,
        refuse: str | None = None,
        vencrypt: Sequence[int] = (),
        legacy: bool = True,
    ) -> None:
        """``refuse``: a reason to turn this client away at the security stage (it
        is locked out, or there are too many viewers); it gets the reason and is
        closed before any authentication. ``vencrypt``: VeNCrypt subtypes to offer
        (security type 19), most preferred first; ``legacy``: also offer VNC
        Authentication (or None, without a password) outside TLS."""
        self._refuse = refuse
        self._subtypes = tuple(VeNCryptSubtype(subtype) for subtype in vencrypt)
        self._legacy = legacy
        self._plain_result: bool | None = None
        self._plain_view_only = False
        if view_only_password is not None and password is None:
            raise LocalProtocolError("a view-only password needs a full-access password too")
        if password is None and any(subtype.auth == "vnc" for subtype in self._subtypes):
            raise LocalProtocolError("VeNCrypt subtypes with VNC Authentication need a password")
        self._password = password
        self._view_only_password = view_only_password
        self._challenge = challenge if challenge is not None else auth.make_challenge()
        if len(self._challenge) != auth.CHALLENGE_SIZE:
            raise LocalProtocolError("the VNC Authentication challenge must be 16 bytes")
        self.state = ConnectionState.VERSION
        self.version: ProtocolVersion | None = None
        self.pixel_format: PixelFormat = SERVER_PIXEL_FORMAT
        self.security = ""
        """The security type (and VeNCrypt subtype) the client chose, for logs."""
        self._reader = StreamReader()
        self._out = bytearray(ProtocolVersion.V3_8.greeting)
        self._events: list[Event] = []
        self._parser = self._parse()
        next(self._parser)

    # -- input --------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; return the events they complete.

        Raises ``RemoteProtocolError`` when the peer breaks the protocol; the
        connection is then closed and must be dropped.
        """
        if self.state is ConnectionState.CLOSED:
            return []
        self._reader.feed(data)
        try:
            next(self._parser)
        except StopIteration:
            self.state = ConnectionState.CLOSED
        except RemoteProtocolError:
            self.state = ConnectionState.CLOSED
            raise
        events, self._events = self._events, []
        return events

    # -- output -------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes queued for the peer since the last call."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def accept_client_init(self, width: int, height: int, name: str) -> list[Event]:
        """Answer ClientInit with ServerInit (rfbproto "ServerInit").

        Returns the events of any messages the client pipelined behind ClientInit.
        """
        if self.state is not ConnectionState.AWAITING_SERVER_INIT:
            raise LocalProtocolError(f"ServerInit is not due in state {self.state.value}")
        encoded_name = name.encode("utf-8")
        self._out += struct.pack(">HH", width, height)
        self._out += SERVER_PIXEL_FORMAT.pack()
        self._out += struct.pack(">I", len(encoded_name)) + encoded_name
        self.state = ConnectionState.NORMAL
        return self.receive_data(b"")

    def tls_established(self) -> list[Event]:
        """The transport now runs TLS (after ``StartTls``): go on with authentication."""
        if self.state is not ConnectionState.TLS_HANDSHAKE:
            raise LocalProtocolError(f"no TLS handshake is due in state {self.state.value}")
        self.state = ConnectionState.AUTHENTICATION
        return self.receive_data(b"")

    def plain_checked(self, ok: bool, view_only: bool = False) -> list[Event]:
        """The answer to ``PlainCredentials``: SecurityResult follows."""
        if self.state is not ConnectionState.CHECKING_CREDENTIALS:
            raise LocalProtocolError(f"no credentials are being checked in {self.state.value}")
        self._plain_result, self._plain_view_only = ok, view_only
        self.state = ConnectionState.AUTHENTICATION
        return self.receive_data(b"")

    def refuse_client_init(self) -> None:
        """Close instead of sending ServerInit (e.g. a non-shared client we turn away)."""
        self.state = ConnectionState.CLOSED

    def send_framebuffer_update(self, rects: Sequence[EncodedRect], *, last_rect: bool) -> None:
        """Queue one FramebufferUpdate (rfbproto "FramebufferUpdate").

        With ``last_rect`` the count is 0xFFFF and a LastRect pseudo-rectangle ends
        the list (only when the client announced LastRect support).
        """
        count = 0xFFFF if last_rect else len(rects)
        self.send_framebuffer_update_start(count, rects)
        if last_rect:
            self._out += struct.pack(">HHHHi", 0, 0, 0, 0, Encoding.LAST_RECT)

    def send_framebuffer_update_start(self, count: int, rects: Sequence[EncodedRect]) -> None:
        """Queue the start of a FramebufferUpdate of ``count`` rectangles: its header and
        the first of them (``rects``). The rest follow with ``send_rectangle``, with
        nothing else queued in between: the caller sees to that."""
        self._require_normal()
        if count > 0xFFFF:
            raise LocalProtocolError("more than 65535 rectangles without LastRect")
        self._out += struct.pack(">BxH", ServerMessageType.FRAMEBUFFER_UPDATE, count)
        for rect in rects:
            self.send_rectangle(rect)

    def send_rectangle(self, rect: EncodedRect) -> None:
        """One rectangle of the FramebufferUpdate being sent."""
        self._out += struct.pack(">HHHHi", rect.x, rect.y, rect.width, rect.height, rect.encoding)
        self._out += rect.payload

    def send_bell(self) -> None:
        self._require_normal()
        self._out += struct.pack(">B", ServerMessageType.BELL)

    def send_cut_text(self, text: str) -> None:
        """ServerCutText carries ISO 8859-1; characters outside it become '?'."""
        self._require_normal()
        data = text.encode("latin-1", errors="replace")
        self._out += struct.pack(">BxxxI", ServerMessageType.SERVER_CUT_TEXT, len(data)) + data

    def send_end_of_continuous_updates(self) -> None:
        """rfbproto "EndOfContinuousUpdates": announces support, or confirms a stop."""
        self._require_normal()
        self._out += struct.pack(">B", ServerMessageType.END_OF_CONTINUOUS_UPDATES)

    def send_fence(self, flags: int, payload: bytes) -> None:
        """rfbproto "Fence" (server to client)."""
        self._require_normal()
        if len(payload) > MAX_FENCE_PAYLOAD:
            raise LocalProtocolError("fence payload longer than 64 bytes")
        self._out += struct.pack(">BxxxIB", ServerMessageType.FENCE, flags, len(payload))
        self._out += payload

    def send_extended_clipboard(self, message: ClipboardMessage) -> None:
        """A ServerCutText with a negative length (Extended Clipboard)."""
        self._require_normal()
        length = 4 + len(message.payload)
        self._out += struct.pack(
            ">BxxxiI", ServerMessageType.SERVER_CUT_TEXT, -length, message.flags
        )
        self._out += message.payload

    def _require_normal(self) -> None:
        if self.state is not ConnectionState.NORMAL:
            raise LocalProtocolError(f"cannot send messages in state {self.state.value}")

    # -- the parser ----------------------------------------------------------

    def _parse(self) -> Generator[None, None, None]:
        yield  # primed by the constructor
        read = self._reader.read_exact
        version = yield from self._parse_version()
        self.version = version
        self._events.append(ClientVersionChosen(version.value))
        self.state = ConnectionState.SECURITY
        if self._refuse is not None:
            self._refuse_connection(version, self._refuse)
            return
        security_type = yield from self._negotiate_security(version)
        kind = "vnc" if security_type is SecurityType.VNC_AUTH else "none"
        if security_type is SecurityType.VENCRYPT:
            kind = yield from self._vencrypt()
        if kind == "vnc":
            self.state = ConnectionState.AUTHENTICATION
            self._out += self._challenge
            response = yield from read(auth.CHALLENGE_SIZE)
            view_only = self._check_response(response)
            if view_only is None:
                self._send_security_failure(version, "Authentication failed")
                return
            self._events.append(AuthenticationSucceeded(view_only=view_only))
            self._out += struct.pack(">I", SecurityResult.OK)
        elif kind == "plain":
            self.state = ConnectionState.AUTHENTICATION
            user_length, password_length = struct.unpack(">II", (yield from read(8)))
            user = yield from self._reader.read_limited(user_length, MAX_PLAIN_FIELD, "user")
            password = yield from self._reader.read_limited(
                password_length, MAX_PLAIN_FIELD, "password"
            )
            self._events.append(
                PlainCredentials(
                    user.decode("utf-8", "replace"), password.decode("utf-8", "replace")
                )
            )
            self.state = ConnectionState.CHECKING_CREDENTIALS
            while self._plain_result is None:
                yield
            if not self._plain_result:
                self._send_security_failure(version, "Authentication failed")
                return
            self._events.append(AuthenticationSucceeded(view_only=self._plain_view_only))
            self._out += struct.pack(">I", SecurityResult.OK)
        else:
            self._events.append(AuthenticationSucceeded(view_only=False))
            if version is ProtocolVersion.V3_8 or security_type is SecurityType.VENCRYPT:
                self._out += struct.pack(">I", SecurityResult.OK)
        self.state = ConnectionState.INITIALISATION
        (shared,) = yield from read(1)
        self.state = ConnectionState.AWAITING_SERVER_INIT
        self._events.append(ClientInit(shared=bool(shared)))
        # Messages pipelined behind ClientInit wait until the owner has answered it.
        while self.state is ConnectionState.AWAITING_SERVER_INIT:
            yield
        while True:
            event = yield from self._parse_message()
            self._events.append(event)

    def _parse_version(self) -> Generator[None, None, ProtocolVersion]:
        data = yield from self._reader.read_exact(12)
        match = _VERSION_RE.fullmatch(data)
        if match is None:
            raise RemoteProtocolError(f"not an RFB ProtocolVersion message: {data!r}")
        major, minor = int(match.group(1)), int(match.group(2))
        if major != 3:
            raise RemoteProtocolError(f"unsupported RFB major version {major}")
        if minor >= 8:
            return ProtocolVersion.V3_8
        if minor == 7:
            return ProtocolVersion.V3_7
        return ProtocolVersion.V3_3

    def _legacy_type(self) -> SecurityType:
        return SecurityType.VNC_AUTH if self._password is not None else SecurityType.NONE

    def _negotiate_security(self, version: ProtocolVersion) -> Generator[None, None, SecurityType]:
        offered = [SecurityType.VENCRYPT] if self._subtypes else []
        if self._legacy:
            offered.append(self._legacy_type())
        if version is ProtocolVersion.V3_3:
            # rfbproto "Security" for 3.3: the server decides and sends a U32; VeNCrypt
            # needs the list of 3.7.
            if not self._legacy:
                self._refuse_connection(version, "this server needs VeNCrypt (RFB 3.7 or newer)")
                raise RemoteProtocolError("a 3.3 client, and only VeNCrypt is allowed")
            self._out += struct.pack(">I", self._legacy_type())
            self.security = self._legacy_type().name
            return self._legacy_type()
        if not offered:
            self._refuse_connection(version, "no security type is allowed here (use TLS)")
            raise RemoteProtocolError("no security type to offer this client")
        self._out += struct.pack(">B", len(offered)) + bytes(offered)
        (chosen,) = yield from self._reader.read_exact(1)
        if chosen not in offered:
            raise RemoteProtocolError(f"client chose security type {chosen}, not offered")
        self.security = SecurityType(chosen).name
        return SecurityType(chosen)

    def _vencrypt(self) -> Generator[None, None, str]:
        """rfbproto "VeNCrypt": version 0.2, the subtype, then TLS; returns the
        authentication that follows (``none``, ``vnc`` or ``plain``)."""
        self._out += b"\x00\x02"
        major, minor = yield from self._reader.read_exact(2)
        if (major, minor) != (0, 2):
            self._out += b"\x01"
            raise RemoteProtocolError(f"VeNCrypt version {major}.{minor}, not 0.2")
        self._out += b"\x00"
        self._out += struct.pack(">B", len(self._subtypes))
        self._out += b"".join(struct.pack(">I", subtype) for subtype in self._subtypes)
        (chosen,) = struct.unpack(">I", (yield from self._reader.read_exact(4)))
        if chosen not in self._subtypes:
            self._out += b"\x00"
            raise RemoteProtocolError(f"client chose VeNCrypt subtype {chosen}, not offered")
        subtype = VeNCryptSubtype(chosen)
        self.security = f"VENCRYPT {subtype.name}"
        if subtype is not VeNCryptSubtype.PLAIN and len(self._reader):
            # Bytes before the TLS handshake would be read as if they came through
            # TLS: the STARTTLS injection attack.
            raise RemoteProtocolError("data sent before the TLS handshake")
        self._out += b"\x01"
        if subtype is not VeNCryptSubtype.PLAIN:
            self._events.append(StartTls(anonymous=subtype.anonymous_tls))
            self.state = ConnectionState.TLS_HANDSHAKE
            while self.state is ConnectionState.TLS_HANDSHAKE:
                yield
        return subtype.auth

    def _check_response(self, response: bytes) -> bool | None:
        """True: view-only; False: full access; None: wrong password."""
        assert self._password is not None
        full = auth.check_vnc_auth(self._password, self._challenge, response)
        view = self._view_only_password is not None and auth.check_vnc_auth(
            self._view_only_password, self._challenge, response
        )
        if full:
            return False
        if view:
            return True
        return None

    def _refuse_connection(self, version: ProtocolVersion, reason: str) -> None:
        """rfbproto "Security": no security types (3.7+), or type 0 (3.3), then the reason."""
        encoded = reason.encode("utf-8", "replace")
        if version is ProtocolVersion.V3_3:
            self._out += struct.pack(">I", 0)
        else:
            self._out += struct.pack(">B", 0)
        self._out += struct.pack(">I", len(encoded)) + encoded
        self._events.append(ConnectionRefused(reason))
        self.state = ConnectionState.CLOSED

    def _send_security_failure(self, version: ProtocolVersion, reason: str) -> None:
        self._out += struct.pack(">I", SecurityResult.FAILED)
        if version is ProtocolVersion.V3_8:
            encoded = reason.encode()
            self._out += struct.pack(">I", len(encoded)) + encoded
        self._events.append(AuthenticationFailed(reason))
        self.state = ConnectionState.CLOSED

    def _parse_message(self) -> Generator[None, None, Event]:
        read = self._reader.read_exact
        (kind,) = yield from read(1)
        if kind == ClientMessageType.SET_PIXEL_FORMAT:
            data = yield from read(19)
            pixel_format = PixelFormat.unpack(data[3:])
            self.pixel_format = pixel_format
            return SetPixelFormat(pixel_format)
        if kind == ClientMessageType.SET_ENCODINGS:
            data = yield from read(3)
            (count,) = struct.unpack(">xH", data)
            body = yield from read(4 * count)
            return SetEncodings(struct.unpack(f">{count}i", body))
        if kind == ClientMessageType.FRAMEBUFFER_UPDATE_REQUEST:
            data = yield from read(9)
            incremental, x, y, width, height = struct.unpack(">BHHHH", data)
            return FramebufferUpdateRequest(bool(incremental), x, y, width, height)
        if kind == ClientMessageType.KEY_EVENT:
            data = yield from read(7)
            down, keysym = struct.unpack(">BxxI", data)
            return KeyEvent(bool(down), keysym)
        if kind == ClientMessageType.POINTER_EVENT:
            data = yield from read(5)
            mask, x, y = struct.unpack(">BHH", data)
            return PointerEvent(mask, x, y)
        if kind == ClientMessageType.CLIENT_CUT_TEXT:
            data = yield from read(7)
            (length,) = struct.unpack(">xxxi", data)
            if length < 0:
                # rfbproto "Extended Clipboard Pseudo-Encoding": flags, then data.
                body = yield from self._reader.read_limited(
                    -length, MAX_CUT_TEXT, "extended clipboard message"
                )
                if len(body) < 4:
                    raise RemoteProtocolError("extended clipboard message without flags")
                (flags,) = struct.unpack(">I", body[:4])
                return ExtendedClipboard(ClipboardMessage(flags, body[4:]))
            text = yield from self._reader.read_limited(length, MAX_CUT_TEXT, "ClientCutText")
            return ClientCutText(text)
        if kind == ClientMessageType.ENABLE_CONTINUOUS_UPDATES:
            data = yield from read(9)
            enable, x, y, width, height = struct.unpack(">BHHHH", data)
            return EnableContinuousUpdates(bool(enable), x, y, width, height)
        if kind == ClientMessageType.FENCE:
            data = yield from read(8)
            flags, length = struct.unpack(">xxxIB", data)
            payload = yield from self._reader.read_limited(length, MAX_FENCE_PAYLOAD, "Fence")
            return Fence(flags, payload)
        if kind == ClientMessageType.SET_DESKTOP_SIZE:
            data = yield from read(7)
            width, height, count = struct.unpack(">xHHBx", data)
            if count > MAX_SCREENS:
                raise RemoteProtocolError(f"SetDesktopSize with {count} screens")
            screens = []
            for _ in range(count):
                raw = yield from read(16)
                screens.append(Screen(*struct.unpack(">IHHHHI", raw)))
            return SetDesktopSize(width, height, tuple(screens))
        if kind == ClientMessageType.QEMU:
            (subtype,) = yield from read(1)
            if subtype != 0:
                raise RemoteProtocolError(f"unknown QEMU client message subtype {subtype}")
            data = yield from read(10)
            down, keysym, keycode = struct.unpack(">HII", data)
            return QemuExtendedKeyEvent(bool(down), keysym, keycode)
        raise RemoteProtocolError(f"unknown client message type {kind}")
