"""The token directory a WebSocket gateway reads: websockify's ``TokenFile`` format.

``<home>/tokens/<name>`` holds one line, ``TOKEN: HOST:PORT``, while the domain's
console listens; it is written atomically when the console server listens and
removed when the domain ends, so a gateway that reads the directory
(``websockify --token-plugin TokenFile --token-source DIR``) always points at
where each domain is now, on this host or, after a migration, on another.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

WILDCARDS = ("", "0.0.0.0", "::")


def token_dir(home: Path) -> Path:
    return home / "tokens"


def token_line(token: str, host: str, port: int) -> str:
    if host in WILDCARDS:
        host = socket.getfqdn()  # a gateway elsewhere needs a name it can reach
    if ":" in host:
        host = f"[{host}]"
    return f"{token}: {host}:{port}\n"


def write_token(home: Path, name: str, token: str, host: str, port: int) -> None:
    directory = token_dir(home)
    directory.mkdir(mode=0o750, exist_ok=True)
    path = directory / name
    temporary = directory / f".{name}.{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640)
    with os.fdopen(fd, "w") as f:
        f.write(token_line(token, host, port))
    os.replace(temporary, path)


def remove_token(home: Path, name: str, *, only_if: str | None = None) -> None:
    """Remove ``name``'s entry; with ``only_if``, only while it still says that line.

    Hosts that share one token directory (the gateway's) hand a migrated domain's
    entry over: the destination writes its address before the source tears down,
    and the source must not take the new entry away with it.
    """
    path = token_dir(home) / name
    if only_if is not None:
        try:
            if path.read_text() != only_if:
                return
        except (FileNotFoundError, UnicodeDecodeError):
            return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def console_token_line(run_dir: Path, token: str) -> str | None:
    """The line the domain's console server wrote (from its ``console.json``), if any."""
    try:
        status = json.loads((run_dir / "console.json").read_text())
        return token_line(token, str(status["host"]), int(status["port"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
