"""The server side of RFC 6455 WebSocket, sans-IO, over wsproto: raw bytes in, the
RFB byte stream out, and back.

- The opening handshake is accepted on any path, with the ``binary`` subprotocol
  when the client offers it (noVNC does) and without one otherwise (RFC 6455
  §4.2.2); anything that is not a WebSocket upgrade gets an HTTP error.
- Data travels in binary messages; fragmentation, client masking (§5.1, enforced
  by wsproto), ping/pong (§5.5.2-3) and the closing handshake (§5.5.1) are the
  library's. Text messages (the long-gone base64 sub-protocol) are refused.
- A message may be at most ``max_message`` bytes: a peer that sends more is a
  protocol error, found before the bytes are held.
"""

from __future__ import annotations

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError as WsProtocolError

from vzvnc.errors import RemoteProtocolError

# RFB messages are small; a viewer's cut text is the largest thing it sends.
DEFAULT_MAX_MESSAGE = 1024 * 1024
SUBPROTOCOL = "binary"
# Close codes for a peer that broke the protocol (RFC 6455 §7.4.1).
BROKEN_BY_PEER = frozenset({1002, 1007, 1009})


def looks_like_http(data: bytes) -> bool:
    """The first bytes of an HTTP request (a WebSocket client speaks first; an RFB
    client waits for the server's version)."""
    return data[:4] == b"GET "


class WebSocketServer:
    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self._ws = WSConnection(ConnectionType.SERVER)
        self._out = bytearray()
        self._message_bytes = 0
        self.max_message = max_message
        self.open = False
        """The opening handshake is done: data may flow."""
        self.closed = False
        """The peer closed, or we did: nothing more comes in or goes out."""
        self.path = ""

    def receive(self, data: bytes) -> bytes:
        """Feed raw bytes from the socket; returns the RFB bytes they carried.

        Raises ``RemoteProtocolError`` when the peer broke RFC 6455 (after queueing
        what should be said to it: an HTTP error or a close frame).
        """
        if self.closed:
            return b""
        try:
            self._ws.receive_data(data if data else None)
            return self._events()
        except WsProtocolError as exc:
            self._fail(exc)
            raise RemoteProtocolError(f"websocket: {exc}") from exc
        except ValueError as exc:
            # wsproto lets a few malformed requests through as plain ValueErrors (a
            # Host header that is not IDNA raises UnicodeError, for one).
            if not self.open:
                self._out += b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
            self.closed = True
            raise RemoteProtocolError(f"websocket: malformed request: {exc}") from exc

    def _events(self) -> bytes:
        carried = bytearray()
        for event in self._ws.events():
            if isinstance(event, Request):
                self.path = event.target
                offered = SUBPROTOCOL if SUBPROTOCOL in event.subprotocols else None
                self._out += self._ws.send(AcceptConnection(subprotocol=offered))
                self.open = True
            elif isinstance(event, BytesMessage):
                self._message_bytes += len(event.data)
                if self._message_bytes > self.max_message:
                    self._close(1009, "message too big")
                    raise RemoteProtocolError(
                        f"websocket: a message of more than {self.max_message} bytes"
                    )
                if event.message_finished:
                    self._message_bytes = 0
                carried += event.data
            elif isinstance(event, TextMessage):
                self._close(1003, "binary frames only")
                raise RemoteProtocolError("websocket: a text message (only binary is spoken)")
            elif isinstance(event, Ping):
                self._out += self._ws.send(event.response())
            elif isinstance(event, CloseConnection):
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    self._out += self._ws.send(event.response())
                self.closed = True
                if event.code in BROKEN_BY_PEER:
                    # wsproto reports a frame it could not accept (unmasked, bad
                    # opcode, bad UTF-8) as a close with one of these codes.
                    raise RemoteProtocolError(f"websocket: {event.reason or event.code}")
        return bytes(carried)

    def _fail(self, exc: WsProtocolError) -> None:
        hint = exc.event_hint
        if isinstance(hint, RejectConnection) or (
            isinstance(hint, CloseConnection) and self._ws.state is ConnectionState.OPEN
        ):
            self._out += self._ws.send(hint)
        self.closed = True

    def _close(self, code: int, reason: str) -> None:
        if self._ws.state is ConnectionState.OPEN:
            self._out += self._ws.send(CloseConnection(code=code, reason=reason))
        self.closed = True

    def send(self, data: bytes) -> None:
        """RFB bytes to go out, as one binary message."""
        if data and self.open and not self.closed:
            self._out += self._ws.send(BytesMessage(data=data))

    def close(self, code: int = 1000) -> None:
        self._close(code, "")

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out
