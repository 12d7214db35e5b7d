"""A domain's definition: what ``domain.toml`` may say, validated in one place.

    name = "web1"                      # [a-z0-9][a-z0-9_.-]{0,62}
    rootfs = "/srv/web1"               # an absolute directory
    init = ["/bin/sh"]                 # argv inside the container
    hostname = "web1"                  # default: the name
    isolated_network = false           # a network namespace of its own (loopback only)
    stop_timeout = 10                  # seconds a clean stop may take before a kill

    [limits]
    memory = "256M"                    # bytes, or with K/M/G suffix
    pids = 128

    [console]
    size = "80x25"
    font_scale = 1
    history = 2000
    state_path = "/.vzvnc/console.state"   # where suspend, save and migrate leave the
                                           # console state, inside the root filesystem

    [vnc]
    listen = "127.0.0.1:auto"          # HOST:PORT; "auto" takes the first free port from 5900
    password_file = "/etc/vzvnc/web1.pass"
    view_only_password_file = "..."

Unknown tables or keys are errors, and every error names the field.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vzvnc.config import SHARING, is_loopback, parse_size
from vzvnc.errors import ConfigError

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
AUTO_PORT_BASE = 5900
DEFAULT_STATE_PATH = "/.vzvnc/console.state"
_MAX_STATE_PATH_PARTS = 16
_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


@dataclass(frozen=True, slots=True)
class DomainConfig:
    name: str
    """Domain name: lower-case letters, digits, '_', '.', '-'."""
    rootfs: str
    """Absolute path of the root filesystem."""
    init: tuple[str, ...] = ("/bin/sh",)
    """The container's init, as argv."""
    hostname: str = ""
    """Host name inside the container (default: the domain name)."""
    isolated_network: bool = False
    """Give the container a network namespace of its own."""
    stop_timeout: float = 10.0
    """Seconds a clean stop may take before everything is killed."""
    memory_limit: int | None = None
    """Memory limit in bytes."""
    pids_limit: int | None = None
    """Maximum number of processes."""
    columns: int = 80
    lines: int = 25
    font_scale: int = 1
    history: int = 2000
    state_path: str = DEFAULT_STATE_PATH
    """Where, inside the root filesystem, suspend, save and migrate write the console state."""
    listen_host: str = "127.0.0.1"
    listen_port: int | None = None
    """None means the first free port from 5900."""
    password_file: str | None = None
    view_only_password_file: str | None = None
    tls_cert_file: str | None = None
    """VeNCrypt X509 certificate (PEM); with ``tls_key_file``."""
    tls_key_file: str | None = None
    insecure_vnc_auth: bool = False
    """Allow VNC Authentication without TLS off loopback."""
    max_viewers: int = 0
    """Most viewers at once (0: no limit)."""
    sharing: str = "request"
    """A viewer asking for exclusive access: ``request``, ``always`` or ``refuse``
    (as ``vzvnc run --sharing``)."""
    idle_timeout: float = 0.0
    """Drop a viewer that sends nothing this many seconds (0: never)."""
    handshake_timeout: float = 10.0
    """Drop a client that has not finished the handshake this many seconds after connecting."""
    websocket: bool = True
    """Also serve WebSocket clients (noVNC) on the VNC port."""
    token: str = ""
    """The domain's WebSocket gateway token (websockify ``TokenFile``): random, given
    at first definition, kept across redefinitions and migrations."""

    def __post_init__(self) -> None:
        if not NAME_RE.fullmatch(self.name):
            raise ConfigError(f"name: {self.name!r} is not a valid domain name")
        if not self.rootfs.startswith("/"):
            raise ConfigError(f"rootfs: {self.rootfs!r} is not an absolute path")
        if os.path.normpath(self.rootfs) == "/":
            raise ConfigError("rootfs: the host's / cannot be a domain's root filesystem")
        if not self.init or not all(isinstance(arg, str) for arg in self.init):
            raise ConfigError("init: must be a non-empty list of strings")
        if self.password_file is None and not is_loopback(self.listen_host):
            raise ConfigError(
                f"vnc.listen: {self.listen_host} is not loopback; a vnc.password_file is required"
            )
        if self.view_only_password_file is not None and self.password_file is None:
            raise ConfigError("vnc.view_only_password_file: needs vnc.password_file as well")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigError("vnc.tls_cert_file: a certificate and its key go together")
        if (
            not is_loopback(self.listen_host)
            and self.tls_cert_file is None
            and not self.insecure_vnc_auth
        ):
            raise ConfigError(
                f"vnc.listen: VNC Authentication on {self.listen_host} without TLS can be "
                "cracked by anyone who sees it: set vnc.tls_cert_file and vnc.tls_key_file, "
                "or vnc.insecure_vnc_auth = true"
            )
        check_state_path(self.state_path)
        if not 0 <= self.max_viewers <= 10_000:
            raise ConfigError(f"vnc.max_viewers: {self.max_viewers} is outside 0..10000")
        if self.sharing not in SHARING:
            raise ConfigError(f"vnc.sharing: {self.sharing!r} is not one of {', '.join(SHARING)}")
        if not 0 <= self.idle_timeout <= 30 * 86400:
            raise ConfigError(f"vnc.idle_timeout: {self.idle_timeout} is outside 0..2592000")
        if not 0 < self.handshake_timeout <= 3600:
            raise ConfigError(f"vnc.handshake_timeout: {self.handshake_timeout} is outside 0..3600")
        if self.token and not TOKEN_RE.fullmatch(self.token):
            raise ConfigError("vnc.token: must be 16 to 64 letters, digits, '-' or '_'")

    @property
    def effective_hostname(self) -> str:
        return self.hostname or self.name

    def to_toml(self) -> str:
        lines = [
            f"name = {_q(self.name)}",
            f"rootfs = {_q(self.rootfs)}",
            "init = [" + ", ".join(_q(arg) for arg in self.init) + "]",
            f"hostname = {_q(self.hostname)}",
            f"isolated_network = {str(self.isolated_network).lower()}",
            f"stop_timeout = {self.stop_timeout}",
            "",
            "[limits]",
        ]
        if self.memory_limit is not None:
            lines.append(f"memory = {self.memory_limit}")
        if self.pids_limit is not None:
            lines.append(f"pids = {self.pids_limit}")
        lines += [
            "",
            "[console]",
            f'size = "{self.columns}x{self.lines}"',
            f"font_scale = {self.font_scale}",
            f"history = {self.history}",
            f"state_path = {_q(self.state_path)}",
            "",
            "[vnc]",
            "listen = "
            + _q(f"{self.listen_host}:{self.listen_port if self.listen_port else 'auto'}"),
        ]
        if self.password_file:
            lines.append(f"password_file = {_q(self.password_file)}")
        if self.view_only_password_file:
            lines.append(f"view_only_password_file = {_q(self.view_only_password_file)}")
        if self.tls_cert_file and self.tls_key_file:
            lines.append(f"tls_cert_file = {_q(self.tls_cert_file)}")
            lines.append(f"tls_key_file = {_q(self.tls_key_file)}")
        if self.insecure_vnc_auth:
            lines.append("insecure_vnc_auth = true")
        if self.max_viewers:
            lines.append(f"max_viewers = {self.max_viewers}")
        if self.sharing != "request":
            lines.append(f"sharing = {_q(self.sharing)}")
        if self.idle_timeout:
            lines.append(f"idle_timeout = {self.idle_timeout}")
        if self.handshake_timeout != 10.0:
            lines.append(f"handshake_timeout = {self.handshake_timeout}")
        if not self.websocket:
            lines.append("websocket = false")
        if self.token:
            lines.append(f"token = {_q(self.token)}")
        return "\n".join(lines) + "\n"


def check_state_path(path: str) -> None:
    """A path inside the root filesystem, named plainly: absolute, with no '.', '..' or
    empty components, and short, since it is resolved one component at a time."""
    where = "console.state_path"
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigError(f"{where}: {path!r} is not an absolute path inside the rootfs")
    parts = path[1:].split("/")
    if "\0" in path or any(part in ("", ".", "..") for part in parts):
        raise ConfigError(f"{where}: {path!r} must name a file plainly (no '.', '..', '//')")
    if len(parts) > _MAX_STATE_PATH_PARTS or any(len(part.encode()) > 200 for part in parts):
        raise ConfigError(f"{where}: {path!r} is too long")


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _take(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = table.pop(key, None)
    if value is not None and not isinstance(value, kind):
        raise ConfigError(f"{where}{key}: expected {_kind_name(kind)}, got {value!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def parse_bytes(value: int | str, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", str(value), re.IGNORECASE)
        if match is None:
            raise ConfigError(f"{where}: {value!r} is not a size (e.g. 256M)")
        number = int(match.group(1)) * _SUFFIXES[match.group(2).upper()]
    if number <= 0:
        raise ConfigError(f"{where}: must be positive")
    return number


def parse_listen(value: str) -> tuple[str, int | None]:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"vnc.listen: {value!r} is not HOST:PORT or HOST:auto")
    host = host.strip("[]")
    if port == "auto":
        return host, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"vnc.listen: {port!r} is not a port number or 'auto'")
    return host, int(port)


def load_domain(text: str, source: str = "domain definition") -> DomainConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    limits = data.pop("limits", {})
    console = data.pop("console", {})
    vnc = data.pop("vnc", {})
    for table, name in ((limits, "limits"), (console, "console"), (vnc, "vnc")):
        if not isinstance(table, dict):
            raise ConfigError(f"{name}: must be a table")
    name = _take(data, "name", str, "")
    rootfs = _take(data, "rootfs", str, "")
    if name is None:
        raise ConfigError("name: missing")
    if rootfs is None:
        raise ConfigError("rootfs: missing")
    init = _take(data, "init", list, "")
    hostname = _take(data, "hostname", str, "") or ""
    isolated = _take(data, "isolated_network", bool, "") or False
    stop_timeout = _take(data, "stop_timeout", (int, float), "")
    memory = _take(limits, "memory", (int, str), "limits.")
    pids = _take(limits, "pids", int, "limits.")
    size = _take(console, "size", str, "console.")
    font_scale = _take(console, "font_scale", int, "console.")
    history = _take(console, "history", int, "console.")
    state_path = _take(console, "state_path", str, "console.")
    listen = _take(vnc, "listen", str, "vnc.")
    password_file = _take(vnc, "password_file", str, "vnc.")
    view_only = _take(vnc, "view_only_password_file", str, "vnc.")
    tls_cert = _take(vnc, "tls_cert_file", str, "vnc.")
    tls_key = _take(vnc, "tls_key_file", str, "vnc.")
    insecure = _take(vnc, "insecure_vnc_auth", bool, "vnc.") or False
    token = _take(vnc, "token", str, "vnc.") or ""
    max_viewers = _take(vnc, "max_viewers", int, "vnc.") or 0
    sharing = _take(vnc, "sharing", str, "vnc.") or "request"
    idle_timeout = _take(vnc, "idle_timeout", (int, float), "vnc.") or 0.0
    handshake_timeout = _take(vnc, "handshake_timeout", (int, float), "vnc.")
    websocket = _take(vnc, "websocket", bool, "vnc.")
    for table, prefix in ((data, ""), (limits, "limits."), (console, "console."), (vnc, "vnc.")):
        if table:
            raise ConfigError(f"{prefix}{next(iter(table))}: unknown setting")
    columns, lines = parse_size(size) if size else (80, 25)
    host, port = parse_listen(listen) if listen else ("127.0.0.1", None)
    if pids is not None and pids <= 0:
        raise ConfigError("limits.pids: must be positive")
    if stop_timeout is not None and not 0 < stop_timeout <= 3600:
        raise ConfigError("stop_timeout: must be between 0 and 3600 seconds")
    if font_scale is not None and not 1 <= font_scale <= 8:
        raise ConfigError("console.font_scale: must be 1..8")
    if history is not None and not 0 <= history <= 1_000_000:
        raise ConfigError("console.history: must be 0..1000000")
    if not 2 <= columns <= 1000 or not 1 <= lines <= 500:
        raise ConfigError(f"console.size: {size!r} is out of range")
    return DomainConfig(
        name=name,
        rootfs=rootfs,
        init=tuple(init) if init is not None else ("/bin/sh",),
        hostname=hostname,
        isolated_network=isolated,
        stop_timeout=float(stop_timeout) if stop_timeout is not None else 10.0,
        memory_limit=parse_bytes(memory, "limits.memory") if memory is not None else None,
        pids_limit=pids,
        columns=columns,
        lines=lines,
        font_scale=font_scale or 1,
        history=history if history is not None else 2000,
        state_path=state_path if state_path is not None else DEFAULT_STATE_PATH,
        listen_host=host,
        listen_port=port,
        password_file=password_file,
        view_only_password_file=view_only,
        tls_cert_file=tls_cert,
        tls_key_file=tls_key,
        insecure_vnc_auth=insecure,
        token=token,
        max_viewers=max_viewers,
        sharing=sharing,
        idle_timeout=float(idle_timeout),
        handshake_timeout=float(handshake_timeout) if handshake_timeout is not None else 10.0,
        websocket=websocket if websocket is not None else True,
    )


def load_domain_file(path: Path) -> DomainConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    return load_domain(text, str(path))
