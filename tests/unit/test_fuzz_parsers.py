"""Any bytes, any chunking (issue 10): the RFB connection in every state, VeNCrypt, the
WebSocket layer, Extended Clipboard payloads and the terminal's byte stream give events
(or text, or a screen) or a clean ``RemoteProtocolError``, never another exception; and
where the outcome cannot depend on how the bytes were cut, it does not.

The drivers that play the session's part are fuzz/targets.py's, so these tests and the
long atheris runs check the same rules; here hypothesis shapes the input (which state,
where the cuts fall, frames and messages that are nearly right).
"""

from __future__ import annotations

import itertools
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import seeds
from fuzz.targets import (
    HANDSHAKES,
    RfbConfig,
    compare,
    read_clipboard,
    run_rfb,
    run_terminal,
    run_websocket,
)
from vzvnc.errors import RemoteProtocolError
from vzvnc.rfb import clipboard
from vzvnc.rfb.constants import VeNCryptSubtype
from vzvnc.rfb.messages import AuthenticationSucceeded, ClientInit, StartTls
from vzvnc.rfb.protocol import ConnectionState, ServerConnection
from vzvnc.transport.websocket import WebSocketServer

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VERSIONS = [b"RFB 003.008\n", b"RFB 003.007\n", b"RFB 003.003\n", b"RFB 003.889\n"]


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` split at ``points`` (taken modulo its length)."""
    marks = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in itertools.pairwise(marks)]


cuts = st.lists(st.integers(0, 1 << 16), max_size=20)

# Client messages, whole, cut short, or as noise: random streams then reach every
# message type and every length check, not only the unknown-type error.
rfb_pieces = st.one_of(
    st.sampled_from(seeds.CLIENT_MESSAGES),
    st.sampled_from(seeds.CLIENT_MESSAGES).flatmap(
        lambda m: st.integers(0, len(m)).map(lambda n: m[:n])
    ),
    st.binary(max_size=12),
    st.sampled_from([b"\x00", b"\x02", b"\x03", b"\x06", b"\x96", b"\xf8", b"\xfb", b"\xff"]),
)
rfb_streams = st.one_of(st.binary(max_size=300), st.lists(rfb_pieces, max_size=12).map(b"".join))


@st.composite
def rfb_configs(draw: st.DrawFn, vencrypt: bool) -> RfbConfig:
    password = draw(st.booleans())
    subtypes: tuple[int, ...] = ()
    if vencrypt:
        allowed = [s for s in VeNCryptSubtype if password or s.auth != "vnc"]
        subtypes = tuple(draw(st.lists(st.sampled_from(allowed), min_size=1, unique=True)))
    return RfbConfig(
        password=password,
        view_only_password=password and draw(st.booleans()),
        refuse=draw(st.integers(0, 7)) == 0,
        legacy=not vencrypt or draw(st.booleans()),
        subtypes=subtypes,
        version=draw(st.sampled_from(VERSIONS)),
        choice=draw(st.integers(0, 6)),
        who=draw(st.integers(0, 2)),
    )


# -- RFB ---------------------------------------------------------------------------


@FUZZ
@given(rfb_configs(vencrypt=False), st.integers(0, 7), rfb_streams, cuts)
def test_rfb_any_bytes_in_any_state_and_any_chunks(
    config: RfbConfig, stage: int, tail: bytes, points: list[int]
) -> None:
    """A valid handshake up to ``stage`` messages (so every state is reached), then
    anything: the driver raises on any exception but RemoteProtocolError, and the
    chunked run and the one-chunk run agree."""
    prefix = config.prefix()[:stage]
    compare(run_rfb(config, prefix, cut(tail, points)), run_rfb(config, prefix, [tail]))


@FUZZ
@given(rfb_configs(vencrypt=False), rfb_streams, cuts)
def test_rfb_a_whole_session_cut_anywhere_gives_the_same_events(
    config: RfbConfig, tail: bytes, points: list[int]
) -> None:
    """The handshake itself is cut too: no chunk boundary is special before VeNCrypt."""
    stream = b"".join(config.prefix()) + tail
    whole = run_rfb(config, [], [stream])
    pieces = run_rfb(config, [], cut(stream, points))
    compare(pieces, whole)
    bytewise = run_rfb(config, [], [stream[i : i + 1] for i in range(len(stream))])
    compare(bytewise, whole)


@FUZZ
@given(rfb_configs(vencrypt=False), st.integers(0, 7), st.binary(max_size=60))
def test_rfb_after_an_error_the_connection_stays_closed(
    config: RfbConfig, stage: int, tail: bytes
) -> None:
    """A connection that raised takes nothing more and sends nothing more; and the wrong
    password authenticates no one, whatever follows it."""
    conn = config.connection()
    events = []
    try:
        for message in [*config.prefix()[:stage], tail]:
            for event in conn.receive_data(message):
                events.append(event)
                if isinstance(event, ClientInit):
                    events += conn.accept_client_init(8, 8, "x")
    except RemoteProtocolError:
        assert conn.state is ConnectionState.CLOSED
        conn.data_to_send()
        assert conn.receive_data(b"\x04\x01\x00\x00\x00\x00\x00\x41") == []
        assert conn.data_to_send() == b""
    if config.password and config.who == 2 and not config.refuse:
        assert not any(isinstance(e, AuthenticationSucceeded) for e in events)


# -- VeNCrypt ----------------------------------------------------------------------


@FUZZ
@given(rfb_configs(vencrypt=True), st.integers(0, 8), rfb_streams, cuts)
def test_vencrypt_any_bytes_in_any_state_and_any_chunks(
    config: RfbConfig, stage: int, tail: bytes, points: list[int]
) -> None:
    """Through the VeNCrypt version, the subtype, TLS (the driver says it is up at
    once) and Plain credentials, then anything."""
    prefix = config.prefix()[:stage]
    compare(run_rfb(config, prefix, cut(tail, points)), run_rfb(config, prefix, [tail]))


@FUZZ
@given(
    st.sampled_from([s for s in VeNCryptSubtype if s is not VeNCryptSubtype.PLAIN]),
    st.binary(min_size=1, max_size=40),
)
def test_vencrypt_bytes_sent_with_the_tls_choice_are_refused(
    subtype: VeNCryptSubtype, early: bytes
) -> None:
    """STARTTLS injection: whatever follows the subtype in the same read would be taken
    as if it came through TLS, so it is refused, whatever it is."""
    conn = ServerConnection(password=b"pw", vencrypt=(int(subtype),))
    conn.receive_data(b"RFB 003.008\n\x13\x00\x02")
    with pytest.raises(RemoteProtocolError, match="before the TLS handshake"):
        conn.receive_data(struct.pack(">I", subtype) + early)
    assert conn.state is ConnectionState.CLOSED


@FUZZ
@given(st.sampled_from(list(VeNCryptSubtype)), st.binary(max_size=80), cuts)
def test_vencrypt_nothing_is_parsed_before_tls_is_up(
    subtype: VeNCryptSubtype, later: bytes, points: list[int]
) -> None:
    conn = ServerConnection(password=b"pw", vencrypt=(int(subtype),))
    conn.receive_data(b"RFB 003.008\n\x13\x00\x02")
    events = conn.receive_data(struct.pack(">I", subtype))
    if subtype is VeNCryptSubtype.PLAIN:
        assert events == []
        return
    assert events == [StartTls(anonymous=subtype.anonymous_tls)]
    conn.data_to_send()
    for piece in cut(later, points):
        assert conn.receive_data(piece) == []
    assert conn.state is ConnectionState.TLS_HANDSHAKE
    assert conn.data_to_send() == b""


# -- WebSocket ---------------------------------------------------------------------


def frame(opcode: int, payload: bytes, fin: bool, rsv: int, mask: bytes | None, wide: int) -> bytes:
    """A frame as a client might write it, rightly or not: ``wide`` picks the length
    form (0: shortest, 1: 16-bit, 2: 64-bit, even where a shorter one would do)."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    flag = 0x80 if mask is not None else 0
    if wide == 0 and len(payload) < 126:
        head += bytes([flag | len(payload)])
    elif wide <= 1 and len(payload) < 1 << 16:
        head += bytes([flag | 126]) + struct.pack(">H", len(payload))
    else:
        head += bytes([flag | 127]) + struct.pack(">Q", len(payload))
    if mask is None:
        return head + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


good_frames = st.builds(
    frame,
    opcode=st.sampled_from([0, 2]),
    payload=st.binary(max_size=140),
    fin=st.booleans(),
    rsv=st.just(0),
    mask=st.binary(min_size=4, max_size=4),
    wide=st.integers(0, 2),
)
any_frames = st.builds(
    frame,
    opcode=st.integers(0, 15),
    payload=st.one_of(st.binary(max_size=140), st.sampled_from([b"\x03\xe8", b"\x03\xe8ok"])),
    fin=st.booleans(),
    rsv=st.integers(0, 7),
    mask=st.one_of(st.none(), st.binary(min_size=4, max_size=4)),
    wide=st.integers(0, 2),
)
frame_streams = st.one_of(
    st.lists(st.one_of(good_frames, any_frames), max_size=8).map(b"".join),
    st.binary(max_size=200),
)


@FUZZ
@given(
    st.sampled_from(HANDSHAKES[1:]),
    frame_streams,
    cuts,
    st.sampled_from([64, 1 << 20]),
)
def test_websocket_any_frames_in_any_chunks(
    handshake: bytes, stream: bytes, points: list[int], max_message: int
) -> None:
    """After the opening handshake: frames right and wrong (opcodes, RSV bits, lengths,
    unmasked, oversized control frames), or noise. Error or not, and what was carried,
    do not depend on the cut."""
    pieces = run_websocket(max_message, [handshake, *cut(stream, points)], echo=True)
    whole = run_websocket(max_message, [handshake, stream], echo=False)
    assert (pieces.error is None) == (whole.error is None), (pieces.error, whole.error)
    if whole.error is None:
        assert pieces.carried == whole.carried


def message(fragments: list[bytes], masks: list[bytes]) -> bytes:
    """One binary message in fragments (binary, then continuations, the last one final),
    each length in its shortest form as RFC 6455 §5.2 requires."""
    last = len(fragments) - 1
    return b"".join(
        frame(0 if i else 2, data, i == last, 0, masks[i % len(masks)], 0)
        for i, data in enumerate(fragments)
    )


@FUZZ
@given(
    st.lists(st.lists(st.binary(max_size=130), min_size=1, max_size=4), min_size=1, max_size=6),
    st.lists(st.binary(min_size=4, max_size=4), min_size=1, max_size=3),
    cuts,
)
def test_websocket_binary_messages_carry_exactly_their_payloads(
    messages: list[list[bytes]], masks: list[bytes], points: list[int]
) -> None:
    stream = b"".join(message(fragments, masks) for fragments in messages)
    result = run_websocket(1 << 20, [HANDSHAKES[1], *cut(stream, points)], echo=True)
    assert result.error is None and result.open and result.path == "/websockify"
    assert result.carried == b"".join(itertools.chain.from_iterable(messages))


header_names = st.sampled_from(
    [
        b"Host",
        b"Upgrade",
        b"Connection",
        b"Sec-WebSocket-Key",
        b"Sec-WebSocket-Version",
        b"Sec-WebSocket-Protocol",
        b"Sec-WebSocket-Extensions",
        b"Content-Length",
        b"Transfer-Encoding",
    ]
)
header_values = st.one_of(
    st.sampled_from(
        [b"websocket", b"Upgrade", b"13", b"dGhlIHNhbXBsZSBub25jZQ==", b"binary", b"x", b""]
    ),
    st.binary(max_size=20).filter(lambda v: b"\r" not in v and b"\n" not in v),
)
requests = st.builds(
    lambda line, headers, body: (
        line + b"".join(n + b": " + v + b"\r\n" for n, v in headers) + b"\r\n" + body
    ),
    st.sampled_from([b"GET / HTTP/1.1\r\n", b"GET /websockify HTTP/1.0\r\n", b"GET x\r\n"]),
    st.lists(st.tuples(header_names, header_values), max_size=8),
    st.binary(max_size=30),
)


@FUZZ
@given(st.one_of(requests, st.binary(max_size=200).map(lambda b: b"GET " + b)), cuts)
def test_websocket_any_opening_handshake_in_any_chunks(request: bytes, points: list[int]) -> None:
    """HTTP requests nearly right and not at all: a 101, an HTTP error, or waiting."""
    run_websocket(1 << 20, cut(request, points), echo=True)
    run_websocket(1 << 20, [request], echo=False)


def test_websocket_a_host_that_is_not_idna_is_a_remote_error() -> None:
    """Found by fuzzing (fuzz/crashes/websocket-host-not-idna): wsproto decodes Host as
    IDNA and raised UnicodeError; no upgrade headers were needed."""
    server = WebSocketServer()
    with pytest.raises(RemoteProtocolError):
        server.receive(b"GET / HTTP/1.1\r\nHost: \xe7\r\n\r\n")
    assert server.closed and server.data_to_send().startswith(b"HTTP/1.1 400 ")


# -- Extended Clipboard ------------------------------------------------------------

flags = st.one_of(
    st.integers(0, 0xFFFFFFFF),
    st.sampled_from([clipboard.ACTION_PROVIDE | 1, clipboard.ACTION_CAPS | 1, 1, 0]),
)


@FUZZ
@given(flags, st.binary(max_size=200))
def test_clipboard_any_payload_is_text_none_or_a_remote_error(flag: int, payload: bytes) -> None:
    message = clipboard.ClipboardMessage(flag, payload)
    try:
        text = clipboard.provided_text(message)
    except RemoteProtocolError:
        return
    assert text is None or isinstance(text, str)
    assert 0 <= clipboard.peer_text_limit(message) <= 0xFFFFFFFF


@FUZZ
@given(st.integers(0, 0xFFFFFFFF), st.binary(max_size=200), st.integers(0, 9), st.booleans())
def test_clipboard_any_inflated_stream_is_text_or_a_remote_error(
    size: int, data: bytes, level: int, truncate: bool
) -> None:
    """Well-formed zlib around a lying size, cut short or not."""
    body = zlib.compress(struct.pack(">I", size) + data, level)
    if truncate:
        body = body[: len(body) // 2]
    message = clipboard.ClipboardMessage(clipboard.ACTION_PROVIDE | clipboard.FORMAT_TEXT, body)
    try:
        text = clipboard.provided_text(message)
    except RemoteProtocolError:
        return
    assert text is not None and len(text) <= min(size, clipboard.MAX_TEXT)


def test_clipboard_a_declared_size_of_zero_inflates_nothing() -> None:
    """Found by fuzzing (fuzz/crashes/clipboard-size-zero-unbounded): zlib reads
    max_length=0 as "no limit", so 2 KiB became 2 MiB of text (4 GB within the 4 MiB
    message limit)."""
    body = zlib.compress(struct.pack(">I", 0) + b"A" * (2 << 20))
    message = clipboard.ClipboardMessage(clipboard.ACTION_PROVIDE | clipboard.FORMAT_TEXT, body)
    assert len(body) < 4096
    assert clipboard.provided_text(message) == ""


@FUZZ
@given(st.text(max_size=200))
def test_clipboard_text_survives_provide(text: str) -> None:
    expected = text.replace("\r\n", "\n").rstrip("\0")
    assert read_clipboard(clipboard.provide(text)) == expected


# -- the terminal ------------------------------------------------------------------

# Bytes that steer the parser: introducers, C1 in both forms, parameters, finals.
steering = st.sampled_from(
    [
        *(b"\x1b", b"\x1b[", b"\x1b]", b"\x1bP", b"\x1b_", b"\x1b^", b"\x1bX", b"\x1b\\"),
        *(b"\x9b", b"\xc2\x9b", b"\xc2\x9d", b"\xc2\x90", b"\x07", b"\x18", b"\x1a", b"\x0e"),
        *(b"\x0f", b"?", b">", b"=", b"<", b"!", b" ", b'"', b"$", b"'", b";", b":", b"0", b"1"),
        *(b"99999", b"-1", b"4294967296", b"(", b")", b"#", b"%", b"\r", b"\n", b"\t", b"\x08"),
    ]
)
finals = st.integers(0x40, 0x7E).map(lambda c: bytes([c]))
terminal_streams = st.lists(st.one_of(steering, finals, st.binary(max_size=4)), max_size=60).map(
    b"".join
)
sizes = st.tuples(st.integers(1, 12), st.integers(1, 6))


@FUZZ
@given(terminal_streams, sizes, st.integers(0, 8), cuts, st.one_of(st.none(), sizes))
def test_terminal_no_handler_ever_fails(
    data: bytes,
    size: tuple[int, int],
    history: int,
    points: list[int],
    resize: tuple[int, int] | None,
) -> None:
    """``feed`` never raises because the stream catches what a handler raises: each
    such catch is still a bug, and run_terminal raises for it. The screen stays
    consistent and the cut changes nothing, with a resize before the last piece."""
    pieces = cut(data, points) or [b""]
    split = len(data) - len(pieces[-1])
    whole = run_terminal(size, history, [data[:split], data[split:]], resize)
    assert run_terminal(size, history, pieces, resize) == whole
