"""The host-to-host migration channel, sans-IO: frames and the mutual authentication.

Frames are those of the controller link (``link.py``), ``type (u8) | length (u32,
big-endian) | payload``, with their own types:

    JSON   a UTF-8 JSON object (at most 1 MiB): requests, answers, events
    DATA   raw bytes of a stream (at most 1 MiB each)
    END    end of a stream; payload: the sha256 of all its DATA
    ERROR  a JSON object {"message": ...}: the peer gives up, saying why

The handshake authenticates both ends with a shared secret (HMAC-SHA256,
RFC 2104), so a source never ships a container to an impostor and a
destination never takes one from a stranger:

    server -> client  JSON {"hello": "vzvnc-migrate", "version": 1,
                            "nonce": hex(32 bytes), "secret": bool}
    client -> server  JSON {"nonce": hex(32 bytes), "mac": hex(HMAC(secret,
                            "vzvnc-migrate client" + nonce_s + nonce_c))}
    server -> client  JSON {"mac": hex(HMAC(secret, "vzvnc-migrate server" +
                            nonce_s + nonce_c))}  or ERROR

Without a secret at both ends (allowed on loopback only, by the I/O shell) the
macs are empty strings. Randomness is passed in, so all of this is testable
byte by byte.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from vzvnc.domain import link
from vzvnc.errors import AuthenticationError, RemoteProtocolError

JSON, DATA, END, ERROR = 1, 2, 3, 4
_KINDS = {JSON, DATA, END, ERROR}
MAX_FRAME = link.MAX_FRAME
PROTOCOL = "vzvnc-migrate"
VERSION = 1


Frame = link.Frame


def encode(kind: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_FRAME:
        raise ValueError("frame too large")
    return link.encode(kind, payload)


def encode_json(obj: dict[str, Any]) -> bytes:
    return encode(JSON, json.dumps(obj, separators=(",", ":")).encode())


def encode_error(message: str) -> bytes:
    return encode(ERROR, json.dumps({"message": message[:4000]}).encode())


def parse_json(frame: Frame) -> dict[str, Any]:
    try:
        obj = json.loads(frame.payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RemoteProtocolError("a JSON frame that is not JSON") from None
    if not isinstance(obj, dict):
        raise RemoteProtocolError("a JSON frame that is not an object")
    return obj


def error_message(frame: Frame) -> str:
    try:
        message = parse_json(frame).get("message")
    except RemoteProtocolError:
        message = None
    return str(message) if message else "the peer gave up without saying why"


class FrameDecoder(link.FrameDecoder):
    def __init__(self) -> None:
        super().__init__(_KINDS, "migration")


def _mac(secret: bytes | None, role: bytes, nonce_s: bytes, nonce_c: bytes) -> str:
    if secret is None:
        return ""
    return hmac.new(
        secret, PROTOCOL.encode() + b" " + role + nonce_s + nonce_c, hashlib.sha256
    ).hexdigest()


def _nonce(value: object) -> bytes:
    try:
        nonce = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        nonce = b""
    if len(nonce) != 32:
        raise RemoteProtocolError("handshake without a 32-byte nonce")
    return nonce


def server_hello(nonce: bytes, has_secret: bool) -> dict[str, Any]:
    return {"hello": PROTOCOL, "version": VERSION, "nonce": nonce.hex(), "secret": has_secret}


def client_answer(hello: dict[str, Any], secret: bytes | None, nonce: bytes) -> dict[str, Any]:
    """The client's reply to the server's hello; ``AuthenticationError`` when the two
    ends disagree on having a secret."""
    if hello.get("hello") != PROTOCOL or hello.get("version") != VERSION:
        raise RemoteProtocolError("the peer is not a vzvnc daemon speaking version 1")
    nonce_s = _nonce(hello.get("nonce"))
    if hello.get("secret") and secret is None:
        raise AuthenticationError("the destination requires a secret (--secret-file)")
    if not hello.get("secret") and secret is not None:
        raise AuthenticationError("the destination has no secret, but one was given")
    return {"nonce": nonce.hex(), "mac": _mac(secret, b"client", nonce_s, nonce)}


def server_check(
    answer: dict[str, Any], secret: bytes | None, nonce_s: bytes
) -> tuple[dict[str, Any], bytes]:
    """Check the client's answer; the server's proof to send back, and the client nonce."""
    nonce_c = _nonce(answer.get("nonce"))
    mac = answer.get("mac")
    expected = _mac(secret, b"client", nonce_s, nonce_c)
    if not isinstance(mac, str) or not hmac.compare_digest(mac, expected):
        raise AuthenticationError("refused: wrong secret")
    return {"mac": _mac(secret, b"server", nonce_s, nonce_c)}, nonce_c


def client_check(
    proof: dict[str, Any], secret: bytes | None, nonce_s: bytes, nonce_c: bytes
) -> None:
    mac = proof.get("mac")
    expected = _mac(secret, b"server", nonce_s, nonce_c)
    if not isinstance(mac, str) or not hmac.compare_digest(mac, expected):
        raise AuthenticationError("the destination could not prove it knows the secret")
