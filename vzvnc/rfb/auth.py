"""VNC Authentication (rfbproto "Security Types" > "VNC Authentication").

This module owns the cryptographic half of security type 2 and the loading of
the password it checks against:

- the 16-byte challenge the server sends;
- the response a client computes: DES-ECB of the challenge, keyed with the
  password (first 8 bytes, NUL padded) after reversing the bit order of every
  key byte.  The bit reversal is not in rfbproto's text but every VNC
  implementation does it (the original d3des code numbered key bits from the
  other end), so a server without it rejects every real viewer;
- the constant-time check of that response;
- reading the password from a file (secrets come from files, never argv).

It is sans-IO apart from ``read_password_file`` and the randomness in
``make_challenge``: the protocol state machine feeds it bytes and decides what
to send.  The password is never logged.

Single DES is weak; RFB specifies it and every viewer speaks it, so it is
offered for compatibility only.  It is computed as three-key TripleDES with the
same key three times (EDE with K1 = K2 = K3 collapses to one DES encryption),
from ``cryptography``'s "decrepit" module, which is where that algorithm lives
without deprecation warnings since cryptography 43.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat

from vzvnc.errors import ConfigError

__all__ = [
    "CHALLENGE_SIZE",
    "MAX_PASSWORD_FILE_SIZE",
    "VNC_PASSWORD_LENGTH",
    "check_vnc_auth",
    "make_challenge",
    "read_password_file",
    "vnc_auth_response",
    "vnc_des_key",
]

log = logging.getLogger(__name__)

CHALLENGE_SIZE = 16
"""Length of the challenge and of the response, in bytes (rfbproto)."""

VNC_PASSWORD_LENGTH = 8
"""VNC Authentication keys DES with at most this many password bytes."""

MAX_PASSWORD_FILE_SIZE = 4096
"""A password file larger than this is refused: it is not a password file."""

# Byte -> the same byte with its bit order reversed (bit 0 <-> bit 7, ...).
_REVERSE_BITS = bytes(int(f"{value:08b}"[::-1], 2) for value in range(256))

# Permission bits that let someone other than the owner read or replace the file.
_SHARED_MODE_BITS = stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH


def make_challenge() -> bytes:
    """Return a fresh random challenge of ``CHALLENGE_SIZE`` bytes."""
    return secrets.token_bytes(CHALLENGE_SIZE)


def vnc_des_key(password: bytes) -> bytes:
    """Return the 8-byte DES key VNC Authentication derives from ``password``.

    The password is cut to 8 bytes or padded with NULs to 8, then the bits of
    each byte are reversed (the VNC quirk described in the module docstring).
    """
    key = password[:VNC_PASSWORD_LENGTH].ljust(VNC_PASSWORD_LENGTH, b"\0")
    return key.translate(_REVERSE_BITS)


def vnc_auth_response(password: bytes, challenge: bytes) -> bytes:
    """Return the 16-byte response a client holding ``password`` sends for ``challenge``.

    Raises ``ValueError`` if ``challenge`` is not ``CHALLENGE_SIZE`` bytes: the
    challenge is always ours (server) or already length-checked (client), so a
    wrong length is a bug.
    """
    if len(challenge) != CHALLENGE_SIZE:
        raise ValueError(
            f"VNC Authentication challenge must be {CHALLENGE_SIZE} bytes, got {len(challenge)}"
        )
    # Imported here, not at the top: a console without a password never loads
    # cryptography, which is 1.5 MB of private memory in every such process.
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    key = vnc_des_key(password)
    # Each 8-byte half is encrypted on its own: that is ECB, which is what RFB uses.
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()


def check_vnc_auth(password: bytes, challenge: bytes, response: bytes) -> bool:
    """Whether ``response`` is the right answer to ``challenge`` for ``password``.

    A response or challenge of the wrong length is simply wrong (False).  The
    comparison takes the same time wherever the first differing byte is, so
    timing tells an attacker nothing about how close a guess was.
    """
    if len(challenge) != CHALLENGE_SIZE or len(response) != CHALLENGE_SIZE:
        return False
    expected = vnc_auth_response(password, challenge)
    return hmac.compare_digest(expected, response)


def read_password_file(path: str | os.PathLike[str]) -> bytes:
    """Read the VNC password: the first line of the file at ``path``, as bytes.

    The line ends at the first LF; a CR before it is dropped too, so files
    written on Windows work.  Raises ``ConfigError`` naming the file (never its
    content) if the file is missing, unreadable, not a regular file, larger
    than ``MAX_PASSWORD_FILE_SIZE`` bytes, has an empty first line, or the
    password contains a NUL byte (no viewer can type one, and C servers would
    end the password there).

    Logs a warning if group or others may read or write the file, and if the
    password is longer than the 8 bytes VNC Authentication uses.
    """
    name = os.fsdecode(path)
    try:
        # O_NONBLOCK: opening a FIFO someone put there must not hang start-up;
        # it is refused below as not a regular file.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ConfigError(f"password file {name!r} does not exist") from None
    except PermissionError:
        raise ConfigError(f"password file {name!r} is not readable (permission denied)") from None
    except OSError as exc:
        raise ConfigError(f"password file {name!r} cannot be opened: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"password file {name!r} is not a regular file")
        if info.st_size > MAX_PASSWORD_FILE_SIZE:
            raise ConfigError(
                f"password file {name!r} is larger than {MAX_PASSWORD_FILE_SIZE} bytes"
            )
        # Read one byte past the limit: st_size can be stale or zero for odd
        # filesystems, and the length read is what counts.
        data = _read_up_to(fd, MAX_PASSWORD_FILE_SIZE + 1)
    except OSError as exc:
        raise ConfigError(f"password file {name!r} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)

    if len(data) > MAX_PASSWORD_FILE_SIZE:
        raise ConfigError(f"password file {name!r} is larger than {MAX_PASSWORD_FILE_SIZE} bytes")
    if info.st_mode & _SHARED_MODE_BITS:
        log.warning(
            "password file %r is accessible by group or others (mode %04o); chmod 600 it",
            name,
            stat.S_IMODE(info.st_mode),
        )

    password = data.split(b"\n", 1)[0].removesuffix(b"\r")
    if not password:
        raise ConfigError(f"password file {name!r} is empty (the password is its first line)")
    if b"\0" in password:
        raise ConfigError(f"password file {name!r}: the password contains a NUL byte")
    if len(password) > VNC_PASSWORD_LENGTH:
        log.warning(
            "password in %r is %d bytes long; VNC Authentication uses only the first %d",
            name,
            len(password),
            VNC_PASSWORD_LENGTH,
        )
    return password


def _read_up_to(fd: int, limit: int) -> bytes:
    """Read from ``fd`` until end of file or ``limit`` bytes, whichever is first."""
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
