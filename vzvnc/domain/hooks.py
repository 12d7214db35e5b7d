"""Hook scripts run at each step of a domain's life, in libvirt's convention.

vzvnc runs ``$VZVNC_HOME/hooks/domain`` and then ``/etc/vzvnc/hooks/domain``
(each only if it exists) as ``HOOK NAME OPERATION SUB-OPERATION EXTRA``, with
the domain's definition as JSON on stdin and ``VZVNC_HOME``, ``VZVNC_DOMAIN``
and ``VZVNC_OPERATION`` in the environment. EXTRA is ``-`` unless said below.

    operation   sub-op  when                                             aborts?
    prepare     begin   before anything of a start is made               yes
    start       begin   the console pty and cgroups exist, init not yet  yes
    restore     begin   as start, when a checkpoint is restored          yes
    started     begin   the domain runs and its console serves           no
    suspend     begin   before the domain is frozen                      no
    resumed     end     the domain runs again                            no
    save        begin   before a checkpoint is taken                     no
    migrate     begin   at the destination, before anything runs there   yes
    stopped     end     init is gone (EXTRA: saved, migrated or -)       no
    release     end     everything of the domain is removed              no
    reconnect   begin   ``vzvnc daemon`` started and found it running    no

For the operations that abort, a hook that exits non-zero, cannot be run, or
runs past ``HOOK_TIMEOUT`` seconds (its whole process group is then killed)
makes the operation fail with ``HookError`` quoting the end of its stderr.
For the others a failure is logged and ignored. A hook's stdout is discarded;
a hook that leaves a background child holding its stderr does not hold us up
(we stop reading when the hook itself has exited). A hook file that is not
executable is skipped with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import select
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vzvnc.errors import VzvncError

log = logging.getLogger(__name__)

SYSTEM_HOOKS_DIR = Path("/etc/vzvnc/hooks")
HOOK_TIMEOUT = 30.0
STDERR_LIMIT = 64 * 1024
OPERATIONS = frozenset(
    {
        "prepare",
        "start",
        "started",
        "stopped",
        "release",
        "suspend",
        "resumed",
        "save",
        "restore",
        "migrate",
        "reconnect",
    }
)
ABORTING = frozenset({"prepare", "start", "restore", "migrate"})


class HookError(VzvncError):
    """A hook refused an operation (or failed to say yes in time)."""

    exit_code = os.EX_CONFIG


def definition_json(domain: Any) -> dict[str, Any]:
    """A domain definition as the JSON document hooks read on stdin."""
    data = dataclasses.asdict(domain)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def hooks_exist(home: Path, system_dir: Path | None = SYSTEM_HOOKS_DIR) -> bool:
    """Whether there is any hook file to run (a caller can then skip even starting
    a thread for ``run_hooks``)."""
    return any(
        directory is not None and os.path.lexists(directory / "domain")
        for directory in (home / "hooks", system_dir)
    )


def run_hooks(
    home: Path,
    name: str,
    operation: str,
    sub_operation: str,
    extra: str = "-",
    *,
    definition: Mapping[str, object] | None,
    timeout: float = HOOK_TIMEOUT,
    system_dir: Path | None = SYSTEM_HOOKS_DIR,
) -> None:
    """Run the home's hook, then the system's; ``HookError`` if one refuses an
    operation that a hook may abort."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown hook operation {operation!r}")
    document = json.dumps(definition or {}).encode()
    for directory in (home / "hooks", system_dir):
        if directory is None:
            continue
        path = directory / "domain"
        if not path.exists():
            continue
        if not path.is_file() or not os.access(path, os.X_OK):
            log.warning("hook %s is not an executable file; skipped", path)
            continue
        argv = [str(path), name, operation, sub_operation, extra or "-"]
        env = {
            **os.environ,
            "VZVNC_HOME": str(home),
            "VZVNC_DOMAIN": name,
            "VZVNC_OPERATION": operation,
        }
        problem = _run(argv, env, document, timeout)
        if problem is None:
            continue
        message = f"hook {path} {operation} {sub_operation} for {name}: {problem}"
        if operation in ABORTING:
            raise HookError(message)
        log.warning("%s (ignored)", message)


def _run(argv: list[str], env: dict[str, str], stdin: bytes, timeout: float) -> str | None:
    """Run one hook; None if it succeeded, else what went wrong."""
    read_fd, write_fd = os.pipe()
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=write_fd,
            env=env,
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        return f"cannot run it: {exc.strerror}"
    os.close(write_fd)
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        process.stdin.write(stdin)
    with contextlib.suppress(BrokenPipeError):
        process.stdin.close()
    stderr = bytearray()
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while process.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([read_fd], [], [], min(left, 0.05))
            if ready:
                chunk = os.read(read_fd, 65536)
                if chunk:
                    stderr += chunk
                    del stderr[:-STDERR_LIMIT]
        # Whatever is already in the pipe; a background child may hold it open for ever.
        while select.select([read_fd], [], [], 0)[0]:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            stderr += chunk
            del stderr[:-STDERR_LIMIT]
    finally:
        os.close(read_fd)
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    tail = stderr.decode(errors="replace").strip()[-2000:]
    if timed_out:
        return f"killed after {timeout:g} s" + (f": {tail}" if tail else "")
    if process.returncode != 0:
        return f"exit status {process.returncode}" + (f": {tail}" if tail else "")
    return None
