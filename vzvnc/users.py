"""Users for VeNCrypt Plain: a file of ``user:scrypt$N$r$p$SALT$HASH[:view]`` lines.

Passwords are stored as salted scrypt hashes (slow on purpose); ``:view`` marks a
user whose viewers may look but not type. ``vzvnc passwd FILE USER`` writes an entry.
Checking a user that does not exist costs the same as checking one that does.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from vzvnc.errors import ConfigError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1
MAX_FILE = 1024 * 1024


@dataclass(frozen=True)
class User:
    name: str
    digest: str
    view_only: bool = False


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    encode = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encode(salt).decode()}${encode(key).decode()}"


def verify(digest: str, password: str) -> bool:
    try:
        scheme, n, r, p, salt, key = digest.split("$")
        if scheme != "scrypt" or int(n) > 1 << 20:
            return False
        expected = base64.b64decode(key, validate=True)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


@functools.cache
def _dummy() -> str:
    """Checked for unknown users, so that they take as long as known ones (made on
    first use: an scrypt at import would cost every console 35 ms at start)."""
    return hash_password("", salt=b"vzvnc-no-such-user")


def parse(text: str, source: str = "users file") -> dict[str, User]:
    users: dict[str, User] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) not in (2, 3) or not parts[0] or (len(parts) == 3 and parts[2] != "view"):
            raise ConfigError(f"{source}: line {number} is not user:hash[:view]")
        if not parts[1].startswith("scrypt$") or parts[1].count("$") != 5:
            raise ConfigError(f"{source}: line {number} has no scrypt hash")
        users[parts[0]] = User(parts[0], parts[1], len(parts) == 3)
    return users


def load(path: str) -> dict[str, User]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"users_file: cannot read {path}: {exc.strerror}") from exc
    if len(text) > MAX_FILE:
        raise ConfigError(f"users_file: {path} is larger than {MAX_FILE} bytes")
    return parse(text, f"users_file {path}")


def check(users: dict[str, User], name: str, password: str) -> User | None:
    """The user, if the password is theirs (slow: run it off the event loop)."""
    user = users.get(name)
    ok = verify(user.digest if user is not None else _dummy(), password)
    return user if ok and user is not None else None


def set_user(path: Path, name: str, password: str, view_only: bool) -> None:
    """Add or replace ``name`` in the file, atomically, mode 0600."""
    if not name or ":" in name or "\n" in name:
        raise ConfigError(f"user: {name!r} may not be empty or hold ':' or a newline")
    users = load(str(path)) if path.exists() else {}
    users[name] = User(name, hash_password(password), view_only)
    lines = [f"{u.name}:{u.digest}{':view' if u.view_only else ''}\n" for u in users.values()]
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(lines)
    os.replace(temporary, path)
