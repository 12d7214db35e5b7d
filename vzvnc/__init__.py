"""vzvnc: a VNC console server for containers, and a library to host one.

A program's terminal output is parsed by an xterm-grade emulator (``term/``),
rendered into a numpy framebuffer (``fb/``) and served to VNC viewers over RFB
(``rfb/``); keys and pointer events from viewers go back to the program.

The public API is what ``__all__`` names (see ``docs/library.md``); it follows
semantic versioning from 0.2.0. Names are imported on first use, so
``import vzvnc`` stays cheap for the command line.
"""

from __future__ import annotations

import importlib

# Not typing's: importing typing costs every `vzvnc run` client 2 ms (type checkers
# know this constant by its name).
TYPE_CHECKING = False

__version__ = "0.2.0"

_EXPORTS = {
    "Console": "vzvnc.console",
    "ProgramEndpoint": "vzvnc.console",
    "ConsoleConfig": "vzvnc.config",
    "FdEndpoint": "vzvnc.endpoints",
    "PtyEndpoint": "vzvnc.endpoints",
    "PtyProgram": "vzvnc.endpoints",
    "Snapshot": "vzvnc.state",
    "SnapshotError": "vzvnc.state",
    "VzvncError": "vzvnc.errors",
    "ConfigError": "vzvnc.errors",
    "ListenError": "vzvnc.errors",
}

__all__ = [
    "ConfigError",
    "Console",
    "ConsoleConfig",
    "FdEndpoint",
    "ListenError",
    "ProgramEndpoint",
    "PtyEndpoint",
    "PtyProgram",
    "Snapshot",
    "SnapshotError",
    "VzvncError",
    "__version__",
]

if TYPE_CHECKING:
    from typing import Any

    from vzvnc.config import ConsoleConfig
    from vzvnc.console import Console, ProgramEndpoint
    from vzvnc.endpoints import FdEndpoint, PtyEndpoint, PtyProgram
    from vzvnc.errors import ConfigError, ListenError, VzvncError
    from vzvnc.state import Snapshot, SnapshotError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vzvnc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
