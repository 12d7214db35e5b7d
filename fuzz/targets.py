"""Fuzz targets: one pure function per parser, ``fuzz_NAME(data: bytes) -> None``.

Each target reads a few configuration bytes from the front of ``data`` (which
options the connection has, how far a valid handshake goes before the random
bytes take over, how the random bytes are chunked) and feeds the rest to the
parser. A target returns normally for any input; it raises only when vzvnc
breaks a rule:

- a parser raises anything but ``RemoteProtocolError`` (the terminal: anything
  at all, including an exception its stream swallowed and counted);
- a connection that raised is not closed, or says more after it closed;
- the outcome depends on how the bytes were chunked (the same input is run a
  second time in one chunk, and the two transcripts must agree);
- Extended Clipboard text does not survive ``provide``, or comes out longer than
  the size its sender declared.

No atheris here: ``fuzz/run.py`` drives these under libFuzzer, and
``tests/unit/test_fuzz_targets.py`` runs them over the seed corpus in the suite.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from vzvnc.errors import RemoteProtocolError
from vzvnc.rfb import auth, clipboard, encodings
from vzvnc.rfb.constants import SecurityType, VeNCryptSubtype
from vzvnc.rfb.messages import (
    ClientInit,
    Event,
    ExtendedClipboard,
    Fence,
    FramebufferUpdateRequest,
    PlainCredentials,
    SetEncodings,
    SetPixelFormat,
    StartTls,
)
from vzvnc.rfb.protocol import ConnectionState, EncodedRect, ServerConnection
from vzvnc.term.terminal import Terminal
from vzvnc.transport.websocket import WebSocketServer

CHALLENGE = bytes(range(16))
PASSWORD = b"secret"
VIEW_ONLY_PASSWORD = b"viewer"
PLAIN_USER, PLAIN_PASSWORD, PLAIN_VIEWER = "alice", "wonderland", "bob"
# The framebuffer the driver encodes for FramebufferUpdateRequest: small, but with
# edges, a gradient and a solid area, so every encoder has something to do.
FB_WIDTH, FB_HEIGHT = 12, 7
_FB = np.zeros((FB_HEIGHT, FB_WIDTH, 4), dtype=np.uint8)
_FB[..., 0] = np.arange(FB_WIDTH, dtype=np.uint8) * 21
_FB[..., 1] = np.arange(FB_HEIGHT, dtype=np.uint8)[:, None] * 37
_FB[2:5, 3:9, 2] = 0xC0
FENCE_SUPPORTED = 0b111
# A STARTTLS injection is refused only when the bytes after the subtype arrive
# with it, so that rule alone depends on the chunking.
_CHUNK_DEPENDENT = "before the TLS handshake"


class Finding(AssertionError):
    """vzvnc broke one of the rules above (not a plain exception from the parser)."""


def header(data: bytes, size: int) -> tuple[bytes, bytes]:
    """The first ``size`` bytes (zero-padded) and the rest."""
    return data[:size].ljust(size, b"\0"), data[size:]


def chunks(data: bytes, seed: int) -> Iterator[bytes]:
    """``data`` cut the way ``seed`` says: whole, byte by byte, or pseudo-random pieces
    of up to 16 or up to 256 bytes (a small LCG, so the cut is a function of the input)."""
    mode, state = seed & 3, seed >> 2
    if mode == 0:
        yield data
        return
    if mode == 1:
        yield from (data[i : i + 1] for i in range(len(data)))
        return
    limit = 16 if mode == 2 else 256
    position = 0
    while position < len(data):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        size = 1 + (state >> 8) % limit
        yield data[position : position + size]
        position += size


# -- RFB -------------------------------------------------------------------------


@dataclass(frozen=True)
class RfbConfig:
    """One server's options and one client's way through the handshake."""

    password: bool = False
    view_only_password: bool = False
    refuse: bool = False
    legacy: bool = True
    subtypes: tuple[int, ...] = ()
    version: bytes = b"RFB 003.008\n"
    # The VeNCrypt subtype (or, without VeNCrypt, the legacy type) the valid prefix picks.
    choice: int = 0
    # The credentials the valid prefix sends: full access, view only, or wrong.
    who: int = 0

    def connection(self) -> ServerConnection:
        return ServerConnection(
            password=PASSWORD if self.password else None,
            view_only_password=VIEW_ONLY_PASSWORD if self.view_only_password else None,
            challenge=CHALLENGE,
            refuse="go away" if self.refuse else None,
            vencrypt=self.subtypes,
            legacy=self.legacy,
        )

    def prefix(self) -> list[bytes]:
        """A valid client's messages for this server, one per element, up to ClientInit."""
        messages = [self.version]
        old = self.version in (b"RFB 003.003\n", b"RFB 003.005\n")
        legacy_type = SecurityType.VNC_AUTH if self.password else SecurityType.NONE
        kind = "vnc" if self.password else "none"
        if self.subtypes and not old:
            messages.append(bytes([SecurityType.VENCRYPT]))
            subtype = VeNCryptSubtype(self.subtypes[self.choice % len(self.subtypes)])
            messages += [b"\x00\x02", struct.pack(">I", subtype)]
            kind = subtype.auth
        elif not old:
            messages.append(bytes([legacy_type]))
        if kind == "vnc":
            secret = [PASSWORD, VIEW_ONLY_PASSWORD, b"wrong"][self.who % 3]
            messages.append(auth.vnc_auth_response(secret, CHALLENGE))
        elif kind == "plain":
            user = [PLAIN_USER, PLAIN_VIEWER, "mallory"][self.who % 3].encode()
            password = PLAIN_PASSWORD.encode()
            messages.append(struct.pack(">II", len(user), len(password)) + user + password)
        messages.append(b"\x01")
        return messages


_VERSIONS = (b"RFB 003.008\n", b"RFB 003.007\n", b"RFB 003.003\n", b"RFB 003.889\n")


def rfb_config(flags: int, more: int, vencrypt: bool) -> RfbConfig:
    """Options from two configuration bytes."""
    subtypes: tuple[int, ...] = ()
    if vencrypt:
        # Any non-empty subset of the seven subtypes, in a rotated order.
        mask = (more & 0x7F) or 0x7F
        every = [int(s) for s in VeNCryptSubtype]
        start = (more >> 4) % len(every)
        every = every[start:] + every[:start]
        subtypes = tuple(s for i, s in enumerate(every) if mask >> i & 1)
    password = bool(flags & 1)
    if not password:
        # The listener offers VNC Authentication inside TLS only with a password
        # (server.vencrypt_subtypes); the connection itself does not check that.
        subtypes = tuple(s for s in subtypes if VeNCryptSubtype(s).auth != "vnc") or (257,)
    return RfbConfig(
        password=password,
        view_only_password=password and bool(flags & 2),
        refuse=flags & 0x1C == 0x1C,  # one input in eight is turned away
        legacy=not (vencrypt and flags & 0x20),
        subtypes=subtypes,
        version=_VERSIONS[(flags >> 6) & 3],
        choice=more >> 4 if vencrypt else 0,
        who=(flags >> 2) & 3,
    )


@dataclass
class Transcript:
    """What one run of a connection said and did."""

    events: list[Event] = field(default_factory=list)
    out: bytearray = field(default_factory=bytearray)
    error: str | None = None


class RfbDriver:
    """Plays the session's part (vzvnc.rfb.server.ClientSession) around a connection:
    answers ClientInit, StartTls and PlainCredentials at once, picks encoders, encodes
    a small framebuffer on request, answers fences and reads clipboard messages."""

    def __init__(self, config: RfbConfig) -> None:
        self.conn = config.connection()
        self.encoders = encodings.EncoderSelector()
        self.encoder: encodings.PixelEncoder = encodings.RawEncoder()
        self.transcript = Transcript(out=bytearray(self.conn.data_to_send()))
        # The format of the events handled so far: the connection's own pixel_format
        # changes when SetPixelFormat is parsed, ahead of the events its owner has seen.
        self.pixel_format = self.conn.pixel_format

    def feed(self, data: bytes) -> bool:
        """Feed one chunk; False once the connection has failed."""
        if self.transcript.error is not None:
            return False
        conn = self.conn
        try:
            self._handle(conn.receive_data(data))
        except RemoteProtocolError as exc:
            self.transcript.error = str(exc)
            if conn.state is not ConnectionState.CLOSED:
                raise Finding(f"RemoteProtocolError left the connection {conn.state}") from exc
            self.transcript.out += conn.data_to_send()
            if conn.receive_data(b"RFB 003.008\n\x00") or conn.data_to_send():
                raise Finding("a failed connection went on talking") from exc
            return False
        self.transcript.out += conn.data_to_send()
        return True

    def _handle(self, events: list[Event]) -> None:
        conn = self.conn
        for event in events:
            self.transcript.events.append(event)
            if isinstance(event, ClientInit):
                self._handle(conn.accept_client_init(FB_WIDTH, FB_HEIGHT, "fuzz"))
            elif isinstance(event, StartTls):
                self._handle(conn.tls_established())
            elif isinstance(event, PlainCredentials):
                ok = event.user in (PLAIN_USER, PLAIN_VIEWER) and event.password == PLAIN_PASSWORD
                self._handle(conn.plain_checked(ok, view_only=event.user == PLAIN_VIEWER))
            elif isinstance(event, SetPixelFormat):
                self.pixel_format = event.pixel_format
            elif isinstance(event, SetEncodings):
                self.encoder = self.encoders.choose(event.encodings)
            elif isinstance(event, FramebufferUpdateRequest):
                self._update(event)
            elif isinstance(event, Fence):
                if event.flags & 0x80000000:
                    conn.send_fence(event.flags & FENCE_SUPPORTED, event.payload)
            elif isinstance(event, ExtendedClipboard):
                read_clipboard(event.message)

    def _update(self, request: FramebufferUpdateRequest) -> None:
        x, y = min(request.x, FB_WIDTH), min(request.y, FB_HEIGHT)
        width = min(request.width, FB_WIDTH - x)
        height = min(request.height, FB_HEIGHT - y)
        rects: list[EncodedRect] = []
        if width and height:
            pixels = _FB[y : y + height, x : x + width]
            for part in self.encoder.encode_rects(pixels, self.pixel_format):
                rects.append(
                    EncodedRect(
                        x + part.x,
                        y + part.y,
                        part.width,
                        part.height,
                        self.encoder.encoding,
                        part.payload,
                    )
                )
        self.conn.send_framebuffer_update(rects, last_rect=request.incremental)


def run_rfb(config: RfbConfig, prefix: Sequence[bytes], stream: Sequence[bytes]) -> Transcript:
    """One connection fed ``prefix`` then ``stream``, chunk by chunk."""
    driver = RfbDriver(config)
    for chunk in [*prefix, *stream]:
        if not driver.feed(chunk):
            break
    return driver.transcript


def check_rfb(config: RfbConfig, stage: int, tail: bytes, seed: int) -> None:
    """The valid prefix up to ``stage`` messages, then ``tail``, cut by ``seed`` and whole:
    same outcome either way."""
    prefix = config.prefix()[:stage]
    cut = run_rfb(config, prefix, list(chunks(tail, seed)))
    whole = run_rfb(config, prefix, [tail])
    compare(cut, whole)


def compare(cut: Transcript, whole: Transcript) -> None:
    """Chunking invariance. On an error only the error must agree: the events that a
    chunk completed before the bad bytes are dropped with the exception."""
    if any(_CHUNK_DEPENDENT in (t.error or "") for t in (cut, whole)):
        return
    if cut.error != whole.error:
        raise Finding(f"chunking changed the error: {cut.error!r} vs {whole.error!r}")
    if cut.error is None and (cut.events != whole.events or cut.out != whole.out):
        raise Finding(f"chunking changed the outcome: {cut.events} vs {whole.events}")


def fuzz_rfb(data: bytes) -> None:
    """RFB without VeNCrypt: version, security, VNC/None authentication, ClientInit and
    every client message, from any state a valid prefix reaches.

    Header: [flags, stage, seed]."""
    (flags, stage, seed), tail = header(data, 3)
    check_rfb(rfb_config(flags, 0, vencrypt=False), stage % 8, tail, seed)


def fuzz_vencrypt(data: bytes) -> None:
    """RFB with VeNCrypt offered (any subset of subtypes, with or without legacy types):
    the VeNCrypt version and subtype, TLS, Plain credentials, then as fuzz_rfb.

    Header: [flags, subtypes, stage, seed]."""
    (flags, more, stage, seed), tail = header(data, 4)
    check_rfb(rfb_config(flags, more, vencrypt=True), stage % 8, tail, seed)


# -- Extended Clipboard -------------------------------------------------------------


def read_clipboard(message: clipboard.ClipboardMessage) -> str | None:
    """What the session reads from a peer's message; RemoteProtocolError is the peer's fault."""
    _ = message.action, message.formats
    limit = clipboard.peer_text_limit(message)
    if not 0 <= limit <= 0xFFFFFFFF:
        raise Finding(f"peer text limit {limit}")
    try:
        text = clipboard.provided_text(message)
    except RemoteProtocolError:
        return None
    if text is None:
        return None
    # Each character came from at least one byte of the size the peer declared.
    (declared,) = struct.unpack(">I", zlib.decompressobj().decompress(message.payload, 4))
    if len(text) > min(declared, clipboard.MAX_TEXT):
        raise Finding(f"{len(text)} characters of clipboard text, declared {declared}")
    return text


def fuzz_clipboard(data: bytes) -> None:
    """Extended Clipboard payloads: any flags and payload (raw, or zlib-compressed by
    the target so the inflated side is fuzzed too); and any text survives provide().

    Header: [mode, flags x4]."""
    (mode, *_), rest = header(data, 1)
    flags_bytes, payload = header(rest, 4)
    (flags,) = struct.unpack(">I", flags_bytes)
    if mode & 1:
        payload = zlib.compress(payload, (mode >> 1) % 10)
    read_clipboard(clipboard.ClipboardMessage(flags, payload))
    text = payload.decode("utf-8", "replace")
    got = read_clipboard(clipboard.provide(text))
    expected = text.replace("\r\n", "\n").rstrip("\0")
    if got != expected:
        raise Finding(f"clipboard round trip: {expected!r} came back as {got!r}")


# -- WebSocket ----------------------------------------------------------------------

HANDSHAKES = (
    b"",  # the fuzzer writes the request itself
    b"GET /websockify HTTP/1.1\r\nHost: vzvnc\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: binary\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: vzvnc\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
)


@dataclass
class WsTranscript:
    carried: bytearray = field(default_factory=bytearray)
    out: bytearray = field(default_factory=bytearray)
    error: str | None = None
    open: bool = False
    path: str = ""


def run_websocket(max_message: int, stream: Sequence[bytes], echo: bool) -> WsTranscript:
    """A server fed ``stream``; with ``echo`` it sends back what each chunk carried."""
    server = WebSocketServer(max_message=max_message)
    result = WsTranscript()
    for chunk in stream:
        try:
            carried = server.receive(chunk)
        except RemoteProtocolError as exc:
            result.error = str(exc)
            if not server.closed:
                raise Finding("RemoteProtocolError left the WebSocket open") from exc
            break
        finally:
            result.out += server.data_to_send()
        if carried and not server.open:
            raise Finding("data carried before the opening handshake")
        result.carried += carried
        if echo:
            server.send(carried)
            result.out += server.data_to_send()
        if server.closed:
            break
    if server.closed:
        server.send(b"after the close")
        if server.receive(b"\x82\x80\0\0\0\0") or server.data_to_send():
            raise Finding("a closed WebSocket went on talking")
    result.open, result.path = server.open, server.path
    return result


def fuzz_websocket(data: bytes) -> None:
    """RFC 6455 server side over wsproto: the HTTP upgrade (written by the fuzzer, or a
    valid one) and then frames, in any chunks; what arrives must not depend on them.

    Header: [mode, seed]. Mode: handshake (bits 0-1), small message limit (bit 2),
    echo (bit 3).

    A client must wait for the server's handshake before it sends frames (RFC 6455
    §4.1); wsproto drops whatever arrives with the request. So the valid handshake goes
    in a chunk of its own, and one the fuzzer wrote is not checked for invariance."""
    (mode, seed), tail = header(data, 2)
    handshake = HANDSHAKES[(mode & 3) % len(HANDSHAKES)]
    max_message = 64 if mode & 4 else 1 << 20
    echo = bool(mode & 8)
    if not handshake:
        run_websocket(max_message, list(chunks(tail, seed)), echo)
        run_websocket(max_message, [tail], echo)
        return
    cut = run_websocket(max_message, [handshake, *chunks(tail, seed)], echo)
    whole = run_websocket(max_message, [handshake, tail], echo)
    # Which error can depend on the cut (wsproto hands out a text message in pieces,
    # so one is refused as text before its bad UTF-8 is seen); whether there is one cannot.
    if (cut.error is None) != (whole.error is None):
        raise Finding(f"chunking changed the error: {cut.error!r} vs {whole.error!r}")
    if (cut.open, cut.path) != (whole.open, whole.path):
        raise Finding("chunking changed the handshake")
    if cut.error is None and cut.carried != whole.carried:
        raise Finding(f"chunking changed the data: {bytes(cut.carried)!r}")
    if cut.error is None and not echo and cut.out != whole.out:
        raise Finding(f"chunking changed the replies: {bytes(cut.out)!r}")


# -- the terminal -------------------------------------------------------------------


class _SwallowedErrors(logging.Handler):
    """Collects the exceptions the terminal stream catches and counts (``feed`` never
    raises; each one is still a bug, so the target reports it)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


def fuzz_terminal(data: bytes) -> None:
    """The terminal's byte stream (UTF-8, C0/C1, ESC, CSI, OSC, DCS ...), in any chunks,
    with a resize somewhere: nothing raises, no handler fails, the screen stays
    consistent, and the chunking does not change the screen.

    Header: [columns, lines, history, seed, resize at, new size]."""
    (columns, lines, history, seed, at, new), tail = header(data, 6)
    size = (1 + columns % 40, 1 + lines % 12)
    resize = (1 + new % 40, 1 + (new >> 4) % 12) if at & 1 else None
    split = (at * len(tail)) // 255
    states = [
        run_terminal(size, history % 16, [*chunks(tail[:split], seed), tail[split:]], resize),
        run_terminal(size, history % 16, [tail[:split], tail[split:]], resize),
    ]
    if states[0] != states[1]:
        raise Finding("chunking changed the screen")


def run_terminal(
    size: tuple[int, int], history: int, stream: list[bytes], resize: tuple[int, int] | None
) -> tuple[object, ...]:
    handler = _SwallowedErrors()
    logger = logging.getLogger("vzvnc.term.stream")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        terminal = Terminal(*size, history=history)
        for i, chunk in enumerate(stream):
            if resize is not None and i == len(stream) - 1:
                terminal.resize(*resize)
            terminal.feed(chunk)
            terminal.take_replies()
            terminal.take_bells()
        terminal.take_scrolls()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    if handler.records or terminal.handler_errors:
        record = handler.records[0] if handler.records else None
        detail = logging.Formatter().formatException(record.exc_info) if record else ""
        raise Finding(f"the terminal swallowed {terminal.handler_errors} errors:\n{detail}")
    return terminal_state(terminal)


def terminal_state(terminal: Terminal) -> tuple[object, ...]:
    chars, fg, bg, attrs = terminal.cells()
    shape = (terminal.lines, terminal.columns)
    if not chars.shape == fg.shape == bg.shape == attrs.shape == shape:
        raise Finding(f"cell arrays of shapes {chars.shape}, not {shape}")
    if not (0 <= terminal.cursor_x < terminal.columns and 0 <= terminal.cursor_y < terminal.lines):
        raise Finding(f"cursor at {terminal.cursor_x},{terminal.cursor_y} outside {shape}")
    text = terminal.text_lines()
    if len(text) != terminal.lines:
        raise Finding(f"{len(text)} text lines on a screen of {terminal.lines}")
    return (
        chars.tobytes(),
        fg.tobytes(),
        bg.tobytes(),
        attrs.tobytes(),
        tuple(text),
        terminal.cursor_x,
        terminal.cursor_y,
        terminal.cursor_visible,
        terminal.alternate_screen,
        terminal.history_size,
        terminal.title,
    )


TARGETS: dict[str, Callable[[bytes], None]] = {
    "rfb": fuzz_rfb,
    "vencrypt": fuzz_vencrypt,
    "websocket": fuzz_websocket,
    "clipboard": fuzz_clipboard,
    "terminal": fuzz_terminal,
}
