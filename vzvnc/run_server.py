"""The user's fork server for ``vzvnc run``: consoles that start without importing anything.

One per user and vzvnc installation (see ``run_client`` for where it lives, the
wire format and how a client finds, starts or replaces it). It imports
everything a console needs (uvloop, numpy, pyte, the console stack, the font),
takes the result out of the garbage collector's reach (``gc.freeze``: a
collection would touch, and so copy, every page) and then, for each request,
forks a child that becomes exactly what ``vzvnc run`` run in the client's place
would have been:

- a process of its own in a session of its own with no controlling terminal;
- the client's stdin, stdout and stderr (passed as fds), working directory (an
  fd: ``fchdir``), umask and environment (``os.environ`` replaced, so the
  program on the pty sees the shell's);
- the same code: ``vzvnc.cli.main`` with the client's words and no fork server,
  so option errors, a busy port and the exit status are what they always were.

The server answers ``pid N``, keeps the connection and writes ``exit N`` when
that console ends (it is the console's parent and reaps it). A byte the client
writes is a signal to pass on (only those of ``run_client.FORWARDED_SIGNALS``,
and only to that console, which cannot have been reaped yet); a client that goes away takes its
console with it (SIGTERM, the console's clean shutdown).

Only a peer of our own uid (SO_PEERCRED) is served, on a socket of mode 0600 in
a directory of mode 0700; requests are parsed strictly with size limits. The
server never runs a thread or an event loop, so forking it is safe. It holds
``run-CONTEXT.lock`` for its life (a second server exits at once) and exits
when it has had no console and no request for ``--idle-exit`` seconds (600, or
``$VZVNC_FORK_SERVER_IDLE`` of the client that started it), on
SIGTERM or a ``stop`` request once its consoles have ended, and steps aside
(stops listening, drops the lock) when a request comes from other vzvnc files
(``stale``), so a fresh server can take over while the old consoles run on.

    python -m vzvnc.run_server start     # start it now (vzvnc run would, the first time)
    python -m vzvnc.run_server status    # its pid and version, or "not running"
    python -m vzvnc.run_server stop      # no new consoles; exit when the last one ends
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import io
import logging
import os
import selectors
import signal
import socket
import stat
import struct
import sys
import time
import traceback
from dataclasses import dataclass
from typing import NoReturn

from vzvnc import run_client
from vzvnc.run_client import MAGIC, MAX_FIELDS, MAX_REQUEST, PROTOCOL

log = logging.getLogger("vzvnc.run_server")

IDLE_EXIT = 600.0
REQUEST_TIMEOUT = 2.0
RUN_FDS = 4  # stdin, stdout, stderr, working directory
MAX_ARGS = 4096


@dataclass(frozen=True)
class Request:
    kind: str  # "run", "stop" or "status"
    version: str
    context: str
    umask: int = 0o022
    argv: tuple[str, ...] = ()
    env: tuple[tuple[bytes, bytes], ...] = ()


class BadRequest(Exception):
    pass


def _count(field: bytes, limit: int) -> int:
    if not field.isdigit() or len(field) > 6:
        raise BadRequest("a count is not a small number")
    number = int(field)
    if number > limit:
        raise BadRequest("too many fields")
    return number


def parse(body: bytes, fds: int) -> Request:
    """The request in ``body`` (without MAGIC and length), which came with ``fds`` fds."""
    fields = body.split(b"\0")
    if len(fields) > MAX_FIELDS or len(fields) < 4 or fields[0] != PROTOCOL:
        raise BadRequest("not a vzvnc run request")
    kind, version, context = (text.decode("ascii", "replace") for text in fields[1:4])
    for name, value in (("version", version), ("context", context)):
        if len(value) != 16 or any(c not in "0123456789abcdef" for c in value):
            raise BadRequest(f"malformed {name}")
    if kind in ("stop", "status"):
        if len(fields) != 4 or fds:
            raise BadRequest(f"a {kind} request has four fields and no fds")
        return Request(kind, version, context)
    if kind != "run":
        raise BadRequest("unknown request")
    if fds != RUN_FDS:
        raise BadRequest(f"a run request carries {RUN_FDS} fds, not {fds}")
    if len(fields) < 7:
        raise BadRequest("a run request is too short")
    mask = fields[4]
    if not mask or len(mask) > 4 or any(c not in b"01234567" for c in mask):
        raise BadRequest("malformed umask")
    argc = _count(fields[5], MAX_ARGS)
    argv_end = 6 + argc
    if argv_end >= len(fields):
        raise BadRequest("the argv count runs past the request")
    envc = _count(fields[argv_end], MAX_FIELDS)
    if argv_end + 1 + envc != len(fields):
        raise BadRequest("the field counts do not add up")
    argv = tuple(os.fsdecode(arg) for arg in fields[6:argv_end])
    env = []
    for entry in fields[argv_end + 1 :]:
        key, sep, setting = entry.partition(b"=")
        if not sep or not key:
            raise BadRequest("an environment entry is not NAME=VALUE")
        env.append((key, setting))
    return Request("run", version, context, int(mask, 8), argv, tuple(env))


def receive(conn: socket.socket) -> tuple[bytes, list[int]]:
    """One request's body and the fds that came with it (all closed on error)."""
    fds: list[int] = []
    data = b""
    try:
        while len(data) < 8 or len(data) < 8 + struct.unpack(">I", data[4:8])[0]:
            if len(data) >= 8:
                if data[:4] != MAGIC:
                    raise BadRequest("bad magic")
                if struct.unpack(">I", data[4:8])[0] > MAX_REQUEST:
                    raise BadRequest("request too large")
            want = (
                8 - len(data)
                if len(data) < 8
                else 8 + struct.unpack(">I", data[4:8])[0] - len(data)
            )
            chunk, more, flags, _ = socket.recv_fds(conn, min(want, 1 << 20), RUN_FDS + 1)
            fds += more
            if flags & socket.MSG_CTRUNC or len(fds) > RUN_FDS:
                raise BadRequest("too many fds")
            if not chunk:
                raise BadRequest("the request ended early")
            data += chunk
        if data[:4] != MAGIC:
            raise BadRequest("bad magic")
        return data[8:], fds
    except BaseException:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        raise


def preload() -> None:
    """Everything a console imports and builds on its way to serving a viewer."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy must start no threads
    import encodings.idna  # noqa: F401 - asyncio's getaddrinfo on a host name
    import importlib.resources.readers  # noqa: F401
    import zipfile  # noqa: F401

    import numpy  # noqa: F401
    import pyte  # noqa: F401
    import uvloop  # noqa: F401
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES  # noqa: F401
    from cryptography.hazmat.primitives.ciphers import Cipher  # noqa: F401

    import vzvnc.cli
    import vzvnc.console
    import vzvnc.endpoints
    import vzvnc.rfb.auth
    import vzvnc.rfb.encodings
    import vzvnc.rfb.server
    import vzvnc.transport.websocket  # a console's first browser imports it: shared here
    from vzvnc.fb.font import default_atlas

    default_atlas()
    vzvnc.cli.parser_for(["run"])
    gc.collect()
    gc.freeze()


class RunServer:
    def __init__(self, directory: str, context: str, version: str, lock_fd: int) -> None:
        self.directory = directory
        self.context = context
        self.version = version
        self.lock_fd = lock_fd
        self.idle_exit = IDLE_EXIT
        self.path = run_client.socket_path(directory, context)
        self.listener: socket.socket | None = None
        self.listener_inode = 0
        self.selector = selectors.DefaultSelector()
        self.wake_read, self.wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # pid -> the client's connection (None once the client has gone)
        self.children: dict[int, socket.socket | None] = {}
        self.idle_since = time.monotonic()
        self.stopping = False

    def listen(self) -> None:
        temporary = os.path.join(self.directory, f".run-{self.context}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            listener.bind(temporary)
        finally:
            os.umask(old)
        listener.listen(1024)
        self.listener_inode = os.stat(temporary).st_ino
        os.replace(temporary, self.path)  # it appears only once it accepts
        self.listener = listener
        signal.set_wakeup_fd(self.wake_write)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        self.selector.register(listener, selectors.EVENT_READ, "listener")
        self.selector.register(self.wake_read, selectors.EVENT_READ, "wake")

    def _on_signal(self, signum: int, frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self.stopping = True

    def run(self) -> int:
        while True:
            if self.stopping and self.listener is not None:
                log.info("asked to stop: no new consoles")
                self.step_aside()
            if not self.children:
                if self.listener is None:
                    return 0
                if time.monotonic() - self.idle_since > self.idle_exit:
                    log.info("idle for %.0f s with no console: exiting", self.idle_exit)
                    self.step_aside()
                    return 0
            for key, _ in self.selector.select(timeout=min(60.0, self.idle_exit / 2)):
                if key.data == "listener":
                    self.accept()
                elif key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_read, 4096)
                else:
                    self.from_client(key.data)
            self.reap()

    def step_aside(self) -> None:
        """Stop listening and let the next server take the lock; running consoles go on."""
        if self.listener is None:
            return
        self.selector.unregister(self.listener)
        self.listener.close()
        self.listener = None
        # Another server may already have put its own socket there.
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self.listener_inode:
                os.unlink(self.path)
        os.close(self.lock_fd)
        self.lock_fd = -1

    def accept(self) -> None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        self.idle_since = time.monotonic()
        fds: list[int] = []
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            peer_pid, peer_uid, peer_gid = struct.unpack("3i", creds)
            if peer_uid != os.geteuid() or peer_gid != os.getegid():
                log.warning(
                    "refused pid %d: uid %d gid %d are not ours", peer_pid, peer_uid, peer_gid
                )
                self._answer(conn, b"refused uid\n")
                return
            conn.settimeout(REQUEST_TIMEOUT)
            body, fds = receive(conn)
            request = parse(body, len(fds))
        except (OSError, BadRequest, ValueError) as exc:
            log.warning("refused a request: %s", exc)
            for fd in fds:
                os.close(fd)
            self._answer(conn, b"refused request\n")
            return
        if request.kind == "status":
            self._answer(conn, b"status %d %s\n" % (os.getpid(), self.version.encode()))
        elif request.kind == "stop":
            self.stopping = True
            self._answer(conn, b"stopping\n")
        elif request.context != self.context or request.version != self.version:
            for fd in fds:
                os.close(fd)
            if request.context == self.context and run_client.version() == self.version:
                # The files are still ours: the client looked before they changed
                # back or while they were being changed. It looks again.
                self._answer(conn, b"retry\n")
                return
            log.info("a client from other vzvnc files (%s): stepping aside", request.version)
            self.step_aside()
            self._answer(conn, b"stale\n")
        else:
            self.fork_console(request, fds, conn)

    @staticmethod
    def _answer(conn: socket.socket, line: bytes) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(line)
        conn.close()

    def fork_console(self, request: Request, fds: list[int], conn: socket.socket) -> None:
        with contextlib.suppress(ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._become_console(request, fds, conn)
        for fd in fds:
            os.close(fd)
        log.info("console %d: %s", pid, " ".join(request.argv))
        try:
            conn.sendall(b"pid %d\n" % pid)
        except OSError:
            # Asked, then gone: its console must not outlive it.
            self.children[pid] = None
            conn.close()
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            return
        conn.setblocking(False)
        self.children[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ, pid)

    def from_client(self, pid: int) -> None:
        conn = self.children.get(pid)
        if conn is None:
            return
        try:
            data = conn.recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            log.info("console %d: its client went away: SIGTERM", pid)
            self.selector.unregister(conn)
            conn.close()
            self.children[pid] = None
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            return
        for signum in data:
            if signum in run_client.FORWARDED_SIGNALS:
                if signum == signal.SIGTSTP:
                    signum = signal.SIGSTOP  # see FORWARDED_SIGNALS
                # Still our unreaped child (reap() pops it first): never another process.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)

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
                self.selector.unregister(conn)
                conn.setblocking(True)
                conn.settimeout(REQUEST_TIMEOUT)
                self._answer(conn, b"exit %d\n" % os.waitstatus_to_exitcode(status))
            if not self.children:
                self.idle_since = time.monotonic()

    def _become_console(self, request: Request, fds: list[int], conn: socket.socket) -> NoReturn:
        code = 70  # EX_SOFTWARE, should anything below fail
        try:
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.selector.close()
            if self.listener is not None:
                self.listener.close()
            conn.close()
            for other in self.children.values():
                if other is not None:
                    other.close()
            os.close(self.wake_read)
            os.close(self.wake_write)
            if self.lock_fd >= 0:
                os.close(self.lock_fd)
            os.setsid()
            for target, fd in enumerate(fds[:3]):
                os.dup2(fd, target)
            os.fchdir(fds[3])
            for fd in fds:
                os.close(fd)
            os.umask(request.umask)
            os.environ.clear()
            for key, value in request.env:
                os.environb[key] = value
            time.tzset()  # the client's TZ, for the console's log lines
            # What a fresh interpreter would have made of these fds in this environment.
            unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
            sys.stdin = open(0, closefd=False)  # noqa: SIM115 - it lives as long as we do
            sys.stdout = io.TextIOWrapper(
                io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
                line_buffering=os.isatty(1),
                write_through=unbuffered,
            )
            sys.stderr = io.TextIOWrapper(
                io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
                errors="backslashreplace",
                line_buffering=True,
                write_through=unbuffered,
            )
            sys.argv = ["vzvnc", *request.argv]
            with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
                comm.write("vzvnc")
            logging.root.handlers.clear()  # the console configures its own
            logging.root.setLevel(logging.WARNING)
            from vzvnc import cli

            code = cli.main(list(request.argv), fork_server=False)
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except KeyboardInterrupt:
            traceback.print_exc()
            with contextlib.suppress(BaseException):
                sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
            code = 130
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code & 0xFF)


def serve(directory: str, context: str, ready_fd: int, idle_exit: float) -> int:
    """The server's life; ``ready_fd`` (if >= 0) gets ``ready``, ``running`` (another
    server holds the lock) or nothing (it failed) once it is decided."""

    def tell(word: bytes) -> None:
        nonlocal ready_fd
        if ready_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(ready_fd, word + b"\n")
            os.close(ready_fd)
            ready_fd = -1

    try:
        os.chdir("/")  # keep no directory busy (an unmount would fail)
        run_client.check_private(directory, os.geteuid())
        if context != run_client.context():
            raise run_client.UnsafeDirectory("started for another installation")
        lock = os.open(
            run_client.lock_path(directory, context),
            os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
            0o600,
        )
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            tell(b"running")
            return 0
        if not stat.S_ISREG(os.fstat(lock).st_mode):
            raise run_client.UnsafeDirectory("the lock is not a file")
        # Computed before the imports: should a file change in between, the next
        # client's version differs and replaces us.
        version = run_client.version()
        os.ftruncate(lock, 0)
        os.write(lock, b"%d\n" % os.getpid())
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s run_server[%(process)d] %(levelname)s: %(message)s",
        )
        preload()
        server = RunServer(directory, context, version, lock)
        server.idle_exit = idle_exit
        server.listen()
        log.info("fork server ready on %s (version %s)", server.path, version)
        tell(b"ready")
    finally:
        tell(b"failed")
    return server.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vzvnc.run_server", description="vzvnc run's fork server."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("start", help="start it (if it is not running) and print its status")
    commands.add_parser("status", help="print its pid and version, or 'not running'")
    commands.add_parser("stop", help="no new consoles; it exits when its last console ends")
    inner = commands.add_parser("serve", help="be the server (what vzvnc run starts)")
    inner.add_argument("--dir", required=True)
    inner.add_argument("--context", required=True)
    inner.add_argument("--ready-fd", type=int, default=-1)
    inner.add_argument(
        "--idle-exit",
        type=float,
        default=float(os.environ.get("VZVNC_FORK_SERVER_IDLE", IDLE_EXIT)),
        help=f"seconds with no console before it exits (default {IDLE_EXIT:.0f})",
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.dir, args.context, args.ready_fd, args.idle_exit)
    try:
        directory = run_client.runtime_dir()
    except run_client.UnsafeDirectory as exc:
        print(f"vzvnc: {exc}", file=sys.stderr)
        return os.EX_CONFIG
    answer = run_client.control(
        "stop" if args.command == "stop" else "status", start=args.command == "start"
    )
    if not answer:
        print("not running")
        return 1 if args.command == "start" else 0
    words = answer.decode("ascii", "replace").split()
    if words[0] == "status":
        current = run_client.version()
        state = "current" if words[2] == current else "stale"
        socket_file = run_client.socket_path(directory, run_client.context())
        print(f"running: pid {words[1]}, version {words[2]} ({state}), socket {socket_file}")
    else:
        print(" ".join(words))
    return 0


if __name__ == "__main__":
    sys.exit(main())
