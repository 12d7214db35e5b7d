"""The core stays sans-IO: protocol, terminal, framebuffer and state code import no I/O or clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "vzvnc"
SHELL_MODULES = {"rfb/server.py", "term/pty.py"}
FORBIDDEN = {"asyncio", "socket", "selectors", "time", "uvloop", "subprocess", "threading"}


def core_modules() -> list[Path]:
    found = []
    for sub in ("rfb", "term", "fb"):
        for path in sorted((PACKAGE / sub).rglob("*.py")):
            if str(path.relative_to(PACKAGE)) not in SHELL_MODULES:
                found.append(path)
    state = PACKAGE / "state.py"
    if state.exists():
        found.append(state)
    # The wires between a domain's processes and between hosts are sans-IO too.
    found += [PACKAGE / "domain" / name for name in ("link.py", "channel.py")]
    return found


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_core_is_not_empty() -> None:
    assert len(core_modules()) >= 15


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_module_imports_no_io_or_clock(path: Path) -> None:
    assert not imported_roots(path) & FORBIDDEN


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_module_does_not_import_the_shells(path: Path) -> None:
    source = path.read_text()
    assert "vzvnc.rfb.server" not in source and "vzvnc.term.pty" not in source
