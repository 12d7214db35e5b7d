"""The host's fork server: controllers and console servers that share one interpreter's pages.

Every domain runs two Python processes, its controller and its console server,
and each imported the same modules (asyncio, uvloop, numpy, pyte, vzvnc) and,
for the console server, built the same glyph index: about 20 MiB that a fresh
interpreter makes privately, again for every domain. The fork server does that
once, takes the result out of the garbage collector's reach (``gc.freeze``, or
collections would touch and so copy every page), and forks the process asked
for. Each is still a process of its own, with its own life: a console server
is restarted by its controller when it dies, a controller outlives the fork
server; only the copy-on-write pages are shared.

One fork server per vzvnc home, started by the first ``domain start`` or
controller that wants it (``spawn``) and holding ``<home>/run/forkserver.lock``
for its life so a second one exits at once. It exits by itself when it has had
no child and no request for ``IDLE_EXIT`` seconds. It never runs a thread or an
event loop, so forking it is safe.

Protocol, on the Unix socket ``<home>/run/forkserver.sock`` (mode 0600): one
JSON request ``{"program", "args", "log"}``, ``program`` being ``controller``
or ``console-server`` (which also carries its end of the controller link,
SCM_RIGHTS). The fork server answers ``<pid>\n``, keeps the connection, and
when that process exits writes ``<exit code>\n`` and closes it.
``forkclient.spawn`` is the client side; it returns None whenever anything
fails, and the caller then starts the process afresh: the fork server saves
memory, it is never needed to run. ``VZVNC_FORKSERVER=0`` turns it off.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import json
import logging
import os
import resource
import selectors
import signal
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from vzvnc.domain.config import DomainConfig
from vzvnc.domain.forkclient import (
    IDLE_EXIT,
    LOCK_NAME,
    MAX_REQUEST,
    PROGRAMS,
    SOCKET_NAME,
)
from vzvnc.errors import VzvncError

log = logging.getLogger(__name__)

# -- the fork server ---------------------------------------------------------------------


MAX_ARGS = 16
MAX_NOFILE = 1 << 20


@dataclass(frozen=True)
class Request:
    program: str
    args: tuple[str, ...]
    log: str


def _parse(data: bytes, fds: int) -> Request:
    document = json.loads(data)
    if not isinstance(document, dict) or set(document) != {"program", "args", "log"}:
        raise ValueError("a request names program, args and log, nothing else")
    program, args, log_path = document["program"], document["args"], document["log"]
    if program not in PROGRAMS:
        raise ValueError(f"no program {program!r}")
    if not isinstance(args, list) or len(args) > MAX_ARGS:
        raise ValueError(f"args must be a list of at most {MAX_ARGS} strings")
    if not all(isinstance(arg, str) and not arg.startswith("--fd") for arg in args):
        raise ValueError("args must be strings, and the link is passed, not named")
    if not isinstance(log_path, str) or not log_path.startswith("/"):
        raise ValueError("log must be an absolute path")
    wanted = 1 if program == "console-server" else 0
    if fds != wanted:
        raise ValueError(f"a {program} request carries {wanted} socket(s), not {fds}")
    return Request(program, tuple(args), log_path)


# The fd limit the fork server was started with, which its children get back.
_CHILD_NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)


def _raise_fd_limit() -> None:
    """Hold a connection per child (two per domain) past a service's usual 1024."""
    global _CHILD_NOFILE
    _CHILD_NOFILE = soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_NOFILE if hard == resource.RLIM_INFINITY else min(hard, MAX_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _program_arguments(request: Request, link_fd: int) -> argparse.Namespace:
    """The program's own command line, parsed here, before the fork: argparse run in
    each child would copy about a quarter of a megabyte of our pages into it."""
    from vzvnc.domain import console_server, controller

    try:
        if request.program == "console-server":
            return console_server.parse_args(["--fd", str(link_fd), *request.args])
        return controller.parse_args(list(request.args))
    except SystemExit:  # argparse said why on our stderr
        raise ValueError(f"bad arguments for the {request.program}") from None


def _program_domain(request: Request, arguments: argparse.Namespace) -> DomainConfig | None:
    """The program's domain definition, loaded here for the same reason; None when it
    cannot be, and the program then loads it itself and says what is wrong."""
    from vzvnc.domain import console_server, controller
    from vzvnc.domain.config import load_domain_file

    program = console_server if request.program == "console-server" else controller
    try:
        return load_domain_file(program.domain_file(arguments))
    except VzvncError:
        return None


def _preload() -> None:
    """Everything a console server imports and builds before it serves."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy must start no threads
    import uvloop  # noqa: F401
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES  # noqa: F401
    from cryptography.hazmat.primitives.ciphers import Cipher  # noqa: F401

    import vzvnc.domain.console_server
    import vzvnc.domain.controller
    import vzvnc.domain.launcher  # noqa: F401
    from vzvnc.fb.font import default_atlas

    default_atlas()
    gc.collect()
    _fill_pool_holes()
    gc.freeze()


# Objects that fill the holes of our allocator's pools; kept for the fork server's life.
_HOLE_FILLERS: list[bytes] = []


def _fill_pool_holes() -> None:
    """Fill every free block of pymalloc's partly used pools with a bytes object.

    A child allocates from those pools first: each of its new objects would land
    in a hole on one of our pages and copy it, scattering its objects over a page
    apiece. With the holes filled they start new pools of their own, packed
    together (measured: a quarter of a megabyte less per controller and per
    console server, of about six and ten). The counts come from
    ``sys._debugmallocstats``; if its report cannot be read, nothing is filled."""
    with tempfile.TemporaryFile() as report:
        saved = os.dup(2)
        try:
            os.dup2(report.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        report.seek(0)
        lines = report.read().decode(errors="replace").splitlines()
    # The table's rows: class, size, pools, blocks in use, free blocks.
    bytes_overhead = sys.getsizeof(b"")  # a bytes of length n takes this + n bytes
    for line in lines:
        fields = line.split()
        if len(fields) != 5 or not all(field.isdigit() for field in fields):
            continue
        size, free = int(fields[1]), int(fields[4])
        if size > bytes_overhead:  # smaller classes hold no bytes object
            _HOLE_FILLERS.extend(bytes(size - bytes_overhead) for _ in range(free))


class ForkServer:
    def __init__(self, run_root: Path, lock_fd: int) -> None:
        self.run_root = run_root
        self.lock_fd = lock_fd
        self.children: dict[int, socket.socket] = {}
        self.selector = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.wake_read, self.wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.idle_since = time.monotonic()

    def listen(self) -> None:
        path = self.run_root / SOCKET_NAME
        temporary = self.run_root / f".{SOCKET_NAME}.{os.getpid()}"
        temporary.unlink(missing_ok=True)
        old = os.umask(0o177)
        try:
            self.listener.bind(str(temporary))
        finally:
            os.umask(old)
        self.listener.listen(1024)
        os.replace(temporary, path)  # appears only once it accepts
        signal.set_wakeup_fd(self.wake_write)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.selector.register(self.wake_read, selectors.EVENT_READ)

    def run(self) -> int:
        while True:
            if not self.children and time.monotonic() - self.idle_since > IDLE_EXIT:
                log.info("idle for %.0f s with no child: exiting", IDLE_EXIT)
                (self.run_root / SOCKET_NAME).unlink(missing_ok=True)
                return 0
            for key, _ in self.selector.select(timeout=IDLE_EXIT / 2):
                if key.fileobj is self.listener:
                    self.accept()
                else:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_read, 4096)
            self.reap()

    def accept(self) -> None:
        conn, _ = self.listener.accept()
        self.idle_since = time.monotonic()
        fds: list[int] = []
        try:
            conn.settimeout(5.0)
            data, fds, _, _ = socket.recv_fds(conn, MAX_REQUEST, 1)
            if not data and not fds:  # a client checking that we listen
                conn.close()
                return
            request = _parse(data, len(fds))
            arguments = _program_arguments(request, fds[0] if fds else -1)
            domain = _program_domain(request, arguments)
        except (OSError, ValueError) as exc:
            log.warning("refused a request: %s", exc)
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        pid = os.fork()
        if pid == 0:
            self._child(request, arguments, domain, conn)
        for fd in fds:
            os.close(fd)
        log.info("%s %d: %s", request.program, pid, " ".join(request.args))
        # If the controller went away, the console server notices on its link.
        with contextlib.suppress(OSError):
            conn.sendall(b"%d\n" % pid)
        self.children[pid] = conn

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.sendall(b"%d\n" % os.waitstatus_to_exitcode(status))
                conn.close()
            if not self.children:
                self.idle_since = time.monotonic()

    def _child(
        self,
        request: Request,
        arguments: argparse.Namespace,
        domain: DomainConfig | None,
        conn: socket.socket,
    ) -> NoReturn:
        code = 70  # EX_SOFTWARE, should anything below fail
        try:
            signal.set_wakeup_fd(-1)
            self.selector.close()
            self.listener.close()
            conn.close()
            for other in self.children.values():
                other.close()
            os.close(self.wake_read)
            os.close(self.wake_write)
            os.close(self.lock_fd)  # the lock is the fork server's alone
            os.setsid()
            # What the fork server was started with, not what it raised for itself.
            resource.setrlimit(resource.RLIMIT_NOFILE, _CHILD_NOFILE)
            # Forked, it keeps the fork server's command line; the name at least says
            # what it is (ps -o comm, top).
            with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
                comm.write(f"vzvnc-{request.program}"[:15])
            # Not a fresh exec: keep Python's own dispositions (SIGPIPE ignored) and
            # drop only what the fork server set.
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
            out = os.open(
                request.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600
            )
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.close(out)
            logging.root.handlers.clear()  # the program configures its own
            if request.program == "console-server":
                from vzvnc.domain import console_server

                code = console_server.run(arguments, domain)
            else:
                from vzvnc.domain import controller

                code = controller.run_args(arguments, domain)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vzvnc-forkserver")
    parser.add_argument("--run-root", required=True)
    parser.add_argument("--background", action="store_true", help="fork and return at once")
    args = parser.parse_args(argv)
    if args.background and os.fork() > 0:
        return 0
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s forkserver %(levelname)s %(name)s: %(message)s"
    )
    run_root = Path(args.run_root).absolute()
    # A daemon must not keep its starter's directory busy (an unmount would fail).
    os.chdir("/")
    lock = os.open(run_root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another fork server holds this home
    _raise_fd_limit()
    _preload()
    # Most of what a child copies of our pages it copies unchanged or nearly (a
    # reference counted up and down again, the same count in every child): pages
    # KSM can merge back, where the host runs it. Children inherit this.
    from vzvnc.domain.kernel import set_memory_merge

    set_memory_merge(True)
    server = ForkServer(run_root, lock)
    server.listen()
    log.info("fork server %d ready", os.getpid())
    return server.run()


if __name__ == "__main__":
    sys.exit(main())
