"""Signal state for programs we start: what a child must not inherit from us.

Ignored signals survive ``exec``, and so does the signal mask. Python ignores
SIGPIPE and SIGXFSZ, and a vzvnc started under ``nohup`` (or by a service
manager that ignores SIGHUP) ignores SIGHUP: a console's program or a
container's init that inherited that could never be hung up, and a POSIX shell
cannot even trap a signal that was ignored when it started. Every program gets
the default disposition of every signal and an empty mask, as a login on a
real terminal would.
"""

from __future__ import annotations

import contextlib
import signal


def reset_for_exec() -> None:
    """Default dispositions and no blocked signals; call in the child, just before exec."""
    for signum in signal.valid_signals():
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        with contextlib.suppress(OSError, ValueError):  # e.g. real-time signals glibc keeps
            signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
