"""TLS that vzvnc terminates itself on the RFB port, so browsers can use ``wss://``
(RFC 6455 §4.1: a ``wss`` URI means TLS first, then the opening handshake inside
it; §11.1.2 registers the scheme on port 443 or any port given). The WebSocket
carries RFB as ``ws://`` does (rfbproto §7, "Protocol Messages").

The listener tells transports apart by the first bytes (``streams.py``), so by the
time it sees a TLS handshake record the ClientHello has already been read from the
socket. asyncio's ``start_tls`` reads the handshake from the socket itself and
cannot be handed those bytes back; here TLS runs sans-IO over two
``ssl.MemoryBIO``: socket bytes in, plaintext out, and back.

``TlsConnection`` is that core: no socket, no loop. It is fed socket bytes (the
sniffed ClientHello first), answers the handshake, and returns the plaintext the
records carried; what it has to say to the peer (handshake replies, alerts,
close_notify) waits in ``data_to_send()``. The stream pair around it, which the
WebSocket streams wrap, is ``TlsReader``/``TlsWriter`` in ``streams.py``.

A peer that breaks TLS (bad records, a certificate it refuses, a handshake cut
short) is a ``RemoteProtocolError`` with OpenSSL's reason, raised after the
alert OpenSSL wrote has been queued for it. close_notify, or the socket ending
after the handshake, is the end of the stream.
"""

from __future__ import annotations

import ssl

from vzvnc.errors import LocalProtocolError, RemoteProtocolError

READ_CHUNK = 64 * 1024
# TLS record content type "handshake" (RFC 8446 §5.1, RFC 5246 §6.2.1). A
# ClientHello's record says version 3.1 (TLS 1.0) for compatibility even when the
# client speaks 1.3, and at most 3.3.
HANDSHAKE_RECORD = 0x16


def looks_like_tls(data: bytes) -> bool:
    """The first bytes of a TLS handshake record (a ClientHello). An RFB client
    says nothing first, and a WebSocket client says ``GET ``."""
    return len(data) >= 3 and data[0] == HANDSHAKE_RECORD and data[1] == 3 and 1 <= data[2] <= 3


def _reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.strerror or exc)


class TlsConnection:
    """The server side of one TLS connection, sans-IO."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.ssl_object = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.handshake_done = False
        self.closed = False
        """The peer sent close_notify or its socket ended, we closed, or TLS failed."""

    def receive(self, data: bytes) -> bytes:
        """Feed bytes from the socket (``b""`` when it ended); returns the plaintext
        they completed.

        Raises ``RemoteProtocolError`` when the peer broke TLS or ended the socket
        before the handshake was done.
        """
        if self.closed:
            return b""
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()
        try:
            if not self.handshake_done:
                try:
                    self.ssl_object.do_handshake()
                except ssl.SSLWantReadError:
                    return b""  # the next flight of the handshake is still to come
                self.handshake_done = True
            # A TLS 1.2 client may send its request right behind its Finished (False
            # Start), so the bytes that ended the handshake can already hold data.
            return self._plaintext()
        except ssl.SSLError as exc:
            self.closed = True
            if isinstance(exc, ssl.SSLEOFError) and not self.handshake_done:
                raise RemoteProtocolError("TLS: the client left during the handshake") from exc
            raise RemoteProtocolError(f"TLS: {_reason(exc)}") from exc

    def _plaintext(self) -> bytes:
        out = bytearray()
        while True:
            try:
                chunk = self.ssl_object.read(READ_CHUNK)
            except ssl.SSLWantReadError:
                return bytes(out)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                # The socket ended without close_notify: a truncation RFB cannot be
                # hurt by (WebSocket ends its messages itself), so it is just the end.
                self.closed = True
                return bytes(out)
            if not chunk:  # close_notify: answer it, then nothing more comes
                self._shutdown()
                self.closed = True
                return bytes(out)
            out += chunk

    def send(self, data: bytes) -> None:
        """Plaintext to go out once the handshake is done; dropped after close."""
        if self.closed or not data:
            return
        if not self.handshake_done:
            raise LocalProtocolError("TLS: data to send before the handshake is done")
        view = memoryview(data)
        while view:
            # A memory BIO takes everything; the loop is for partial writes all the same.
            written = self.ssl_object.write(view)
            view = view[written:]

    def close(self) -> None:
        """Queue close_notify (when there is a session to close) and stop."""
        if not self.closed and self.handshake_done:
            self._shutdown()
        self.closed = True

    def _shutdown(self) -> None:
        try:
            self.ssl_object.unwrap()
        except ssl.SSLWantReadError:
            pass  # our close_notify is queued; the peer's answer is not awaited
        except ssl.SSLError:
            pass  # nothing sensible left to say on a broken connection

    def data_to_send(self) -> bytes:
        return self._outgoing.read()
