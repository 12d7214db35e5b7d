"""Run one fuzz target under atheris (libFuzzer): ``python fuzz/run.py TARGET [libFuzzer args]``.

TARGET is one of fuzz/targets.py's TARGETS (rfb, vencrypt, websocket, clipboard,
terminal). vzvnc and the parsers it stands on (wsproto, h11, pyte) are
instrumented for coverage. Everything after TARGET goes to libFuzzer, for
example a corpus directory and ``-max_total_time=720``; see fuzz/README.md.
"""

from __future__ import annotations

import os
import sys

import atheris

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

with atheris.instrument_imports(include=["vzvnc", "wsproto", "h11", "pyte", "fuzz"]):
    from fuzz import targets


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in targets.TARGETS:
        names = ", ".join(targets.TARGETS)
        sys.exit(f"usage: {sys.argv[0]} TARGET [libFuzzer args]; TARGET is one of {names}")
    target = targets.TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
