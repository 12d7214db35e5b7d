"""Configuration of one console, validated in one place.

Every field is checked here and a bad value is refused with a ``ConfigError``
naming the field; constructors downstream trust what they are given.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from vzvnc.errors import ConfigError

MIN_COLUMNS, MAX_COLUMNS = 2, 1000
MIN_LINES, MAX_LINES = 1, 500
SHARING = ("request", "always", "refuse")


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    host: str = "127.0.0.1"
    """Address to listen on; loopback unless told otherwise."""
    port: int = 5900
    """TCP port; 0 picks a free one."""
    columns: int = 80
    """Terminal width in cells."""
    lines: int = 25
    """Terminal height in cells."""
    password: bytes | None = None
    """VNC password for full access (read from a file, never from argv)."""
    view_only_password: bytes | None = None
    """VNC password for viewing only; needs ``password`` too."""
    name: str = "vzvnc"
    """Desktop name shown by viewers."""
    max_fps: float = 60.0
    """Upper bound on framebuffer updates per second, per console and per client."""
    keep_open: bool = False
    """Keep serving the final screen after the program exits."""
    resizable: bool = True
    """Whether viewers may change the size (SetDesktopSize); False pins it."""
    history: int = 2000
    """Scrollback lines kept for viewers (Shift+Page Up/Down)."""
    font_scale: int = 1
    """Integer scale of the 8x16 font, for HiDPI viewers."""
    websocket: bool = True
    """Also accept WebSocket clients (noVNC, ``ws://HOST:PORT/``) on the RFB port."""
    max_viewers: int = 0
    """Most viewers connected at once (0: no limit); one more is refused with a reason."""
    sharing: str = "request"
    """What a viewer asking for exclusive access (ClientInit shared=0) gets: ``request``
    disconnects the others (TigerVNC's default), ``always`` treats every viewer as
    shared, ``refuse`` turns the newcomer away while others are connected."""
    lockout_threshold: int = 5
    """Failed authentications in a row after which an address is locked out (0: never)."""
    lockout_seconds: float = 10.0
    """The first lockout; each further failure doubles it, up to an hour."""
    handshake_timeout: float = 10.0
    """Seconds a client has to finish the RFB handshake (one that says nothing is dropped)."""
    idle_timeout: float = 0.0
    """Drop a viewer that sends nothing for this many seconds (0: never)."""
    tls_cert_file: str | None = None
    """PEM certificate (chain) for VeNCrypt's X509 subtypes; needs ``tls_key_file``."""
    tls_key_file: str | None = None
    """The certificate's PEM private key."""
    anonymous_tls: bool = False
    """Also offer VeNCrypt's TLS subtypes (anonymous TLS: no certificate, no protection
    against a man in the middle)."""
    users_file: str | None = None
    """Users for VeNCrypt Plain (``vzvnc passwd``); offered over TLS only."""
    insecure_vnc_auth: bool = False
    """Allow VNC Authentication without TLS off loopback (its DES challenge can be
    cracked offline by anyone who sees it)."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port: {self.port} is not a TCP port number")
        if not MIN_COLUMNS <= self.columns <= MAX_COLUMNS:
            raise ConfigError(f"columns: {self.columns} is outside {MIN_COLUMNS}..{MAX_COLUMNS}")
        if not MIN_LINES <= self.lines <= MAX_LINES:
            raise ConfigError(f"lines: {self.lines} is outside {MIN_LINES}..{MAX_LINES}")
        if not 1 <= self.max_fps <= 240:
            raise ConfigError(f"max_fps: {self.max_fps} is outside 1..240")
        if not 0 <= self.history <= 1_000_000:
            raise ConfigError(f"history: {self.history} is outside 0..1000000")
        if not 1 <= self.font_scale <= 8:
            raise ConfigError(f"font_scale: {self.font_scale} is outside 1..8")
        if not 0 <= self.max_viewers <= 10_000:
            raise ConfigError(f"max_viewers: {self.max_viewers} is outside 0..10000")
        if self.sharing not in SHARING:
            raise ConfigError(f"sharing: {self.sharing!r} is not one of {', '.join(SHARING)}")
        if not 0 <= self.lockout_threshold <= 1000:
            raise ConfigError(f"lockout_threshold: {self.lockout_threshold} is outside 0..1000")
        if not 0 < self.lockout_seconds <= 3600:
            raise ConfigError(f"lockout_seconds: {self.lockout_seconds} is outside 0..3600")
        if not 0 < self.handshake_timeout <= 3600:
            raise ConfigError(f"handshake_timeout: {self.handshake_timeout} is outside 0..3600")
        if not 0 <= self.idle_timeout <= 30 * 86400:
            raise ConfigError(f"idle_timeout: {self.idle_timeout} is outside 0..2592000")
        if self.view_only_password is not None and self.password is None:
            raise ConfigError("view_only_password: needs a full-access password as well")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigError("tls_cert_file: a certificate and its key go together")
        tls = self.tls_cert_file is not None or self.anonymous_tls
        if self.users_file is not None and not tls:
            raise ConfigError("users_file: Plain passwords are only taken over TLS")
        if not is_loopback(self.host):
            if self.password is None and self.users_file is None:
                raise ConfigError(
                    f"host: refusing to listen on {self.host}, which is not loopback, "
                    "without a password (give --password-file, or listen on 127.0.0.1)"
                )
            if self.password is not None and not tls and not self.insecure_vnc_auth:
                raise ConfigError(
                    f"host: VNC Authentication on {self.host} without TLS can be cracked "
                    "by anyone who sees it: give a TLS certificate (--tls-cert/--tls-key), "
                    "or say --insecure-vnc-auth"
                )

    @property
    def legacy_allowed(self) -> bool:
        """Whether VNC Authentication (or None) may also be offered outside TLS."""
        if self.password is None and self.users_file is not None:
            return False  # "None" would let anyone in
        tls = self.tls_cert_file is not None or self.anonymous_tls
        return not tls or self.insecure_vnc_auth or is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise ConfigError(f"host: cannot resolve {host!r}: {exc.strerror}") from exc
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos
    )


def parse_size(text: str) -> tuple[int, int]:
    """``COLSxROWS`` -> (columns, lines)."""
    cols, sep, rows = text.lower().partition("x")
    if not sep or not cols.isdigit() or not rows.isdigit():
        raise ConfigError(f"size: {text!r} is not COLSxROWS (e.g. 80x25)")
    return int(cols), int(rows)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (loopback)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"listen: {text!r} is not HOST:PORT")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)
