"""The core stays sans-IO: protocol, terminal, framebuffer and state code import no I/O or clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "vzvnc"
SHELL_MODULES = {"rfb/server.py", "term/pty.py", "transport/streams.py"}
FORBIDDEN = {"asyncio", "socket", "selectors", "time", "uvloop", "subprocess", "threading"}


def core_modules() -> list[Path]:
    found = []
    for sub in ("rfb", "term", "fb", "transport"):
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


# -- floors and circles -------------------------------------------------------------------

# Each floor may not import these (DESIGN: the RFB layer knows no terminal, pixels know no
# protocol, the terminal knows no pixels; none of them knows who composes them).
FORBIDDEN_FLOORS = {
    # Transports carry bytes: they know no RFB, no terminal, no pixels.
    "transport": ("vzvnc.rfb", "vzvnc.term", "vzvnc.fb", "vzvnc.console", "vzvnc.domain"),
    "rfb": ("vzvnc.term", "vzvnc.console", "vzvnc.domain", "vzvnc.cli"),
    "fb": ("vzvnc.rfb", "vzvnc.console", "vzvnc.domain", "vzvnc.cli"),
    "term": ("vzvnc.fb", "vzvnc.rfb", "vzvnc.console", "vzvnc.domain", "vzvnc.cli"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def vzvnc_imports(path: Path) -> set[str]:
    """Every vzvnc module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("vzvnc"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vzvnc"):
            assert node.module is not None and node.level == 0
            found.add(node.module)
            # ``from vzvnc.domain import link`` imports the module vzvnc.domain.link.
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists():
                    found.add(candidate)
    return found


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


@pytest.mark.parametrize("floor", sorted(FORBIDDEN_FLOORS))
def test_a_floor_never_reaches_up(floor: str) -> None:
    offending = []
    for path in sorted((PACKAGE / floor).rglob("*.py")):
        for imported in vzvnc_imports(path):
            if imported.startswith(FORBIDDEN_FLOORS[floor]):
                offending.append(f"{path.relative_to(PACKAGE)} imports {imported}")
    assert not offending


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        # A package's __init__ is not an edge target: importing a.b runs a's __init__,
        # which here only names things lazily.
        graph[name] = {m for m in vzvnc_imports(path) if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if colour.get(nxt) is None and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if colour.get(node) is None and (found := visit(node)) is not None:
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_module_imports_itself_back() -> None:
    graph = import_graph()
    graph.pop("vzvnc", None)
    for edges in graph.values():
        edges.discard("vzvnc")
    assert find_cycle(graph) is None
