"""``vzvnc run``'s thin client: hand the console to the user's fork server and stand in for it.

A console is a Python process that imports numpy, asyncio, uvloop, pyte and the
console stack before it listens: about 0.2 s of CPU, which 50 consoles started at
once pay 50 times over on a couple of cores. The fork server (``run_server``)
pays it once and forks a console per request. ``vzvnc run`` then only connects
to it, sends what a console needs from the shell that started it, and waits:

- argv (the whole command line, parsed by the console exactly as an in-process
  ``vzvnc run`` would parse it), the environment, the umask;
- over SCM_RIGHTS: stdin, stdout and stderr (the console logs and reports errors
  where a directly run one would) and the working directory (an O_PATH fd, so a
  directory that was renamed or is no longer reachable by name still works).

The console is a process of its own in a session of its own with no controlling
terminal. This process waits for it and exits with its status (killing itself
with the same signal when a signal ended the console). Signals it receives are
passed on (``FORWARDED_SIGNALS``: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1/2,
and Ctrl+Z and ``fg`` stop and resume both), except those it was started
ignoring (SIGHUP under ``nohup``), which a directly run console would ignore
too.

This module imports only what the standard library has already loaded or is
cheap (no asyncio, numpy, pyte, argparse, json, subprocess): it is on the path
of every ``vzvnc run``. Whatever goes wrong before the console exists (no
usable directory, no server, a server from other code that cannot be replaced)
returns None and the caller runs the console in-process: the fork server makes
starting faster, it is never needed.

Where: ``$VZVNC_RUNTIME_DIR`` if set, else ``$XDG_RUNTIME_DIR/vzvnc``, else
``/run/user/UID/vzvnc`` when ``/run/user/UID`` exists, else ``/tmp/vzvnc-UID``.
The directory must be ours, a real directory (not a symlink) with no access for
group or others; it is created so, and refused otherwise. One server per
*context*: the vzvnc installation (interpreter, package directory) and what a
process inherits without asking (uid, gid, groups, namespaces, cgroup, limits,
capabilities: see ``context()``), so a console never runs with other
credentials or in other namespaces than its shell's. Its socket is
``run-CONTEXT.sock``. The *version*, a digest of the package's file names,
sizes and modification times, goes in every request; a server started from
other files answers ``stale`` and steps aside (it keeps only its running
consoles), and the client starts a fresh one.

Wire format (``run_server`` parses it strictly): ``MAGIC``, a 4-byte big-endian
body length (at most ``MAX_REQUEST``), and a body of NUL-separated fields:
``PROTOCOL, "run", version, context, umask (octal), argc, argv..., envc,
NAME=VALUE...`` with exactly four fds, or ``PROTOCOL, "stop"|"status",
version, context`` with none. Answers are lines: ``pid N``, then ``exit N``
(negative: killed by signal -N); or ``stale`` (the server was started from
other files and steps aside), ``retry`` (the files changed after the client
described them), ``stopping``, ``status PID VERSION``, ``refused REASON``.
After ``pid``, the client writes one byte per signal to pass on.

``VZVNC_NO_FORK_SERVER=1`` (or ``vzvnc run --no-fork-server``) runs in-process.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import stat
import struct
import sys
import time
import zlib

# The C module: socket.py adds 2 ms of imports (selectors, enum conversions) to
# every start, for conveniences this module does not need.
from _socket import AF_UNIX, SCM_RIGHTS, SOCK_CLOEXEC, SOCK_STREAM, SOL_SOCKET, socket

import vzvnc

DISABLE_ENV = "VZVNC_NO_FORK_SERVER"
RUNTIME_ENV = "VZVNC_RUNTIME_DIR"
NO_FORK_SERVER_OPTION = "--no-fork-server"
MAGIC = b"VZRN"
PROTOCOL = b"vzvnc-run/1"
MAX_REQUEST = 4 * 1024 * 1024  # a Linux argv + environment is at most 2 MiB
MAX_FIELDS = 65536
MAX_LINE = 256
# What the client passes on to its console. SIGTSTP (Ctrl+Z) stops the console
# with SIGSTOP (a console is alone in its process group, which no shell controls:
# the kernel would discard a SIGTSTP) and then the client itself; SIGCONT (fg)
# resumes both.
FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGTSTP,
    signal.SIGCONT,
)
# A console installs its own handlers for these, whatever it inherited.
ALWAYS_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGCONT)
STARTUP_TIMEOUT = 15.0
# Exit status when the console's end was not seen (the fork server went away).
UNKNOWN_EXIT = 70


def socket_path(directory: str, context: str) -> str:
    return os.path.join(directory, f"run-{context}.sock")


def lock_path(directory: str, context: str) -> str:
    return os.path.join(directory, f"run-{context}.lock")


def spawn_lock_path(directory: str, context: str) -> str:
    return os.path.join(directory, f"run-{context}.spawn")


def log_path(directory: str, context: str) -> str:
    return os.path.join(directory, f"run-{context}.log")


class UnsafeDirectory(Exception):
    """The runtime directory is not ours alone: the fork server is not used."""


def runtime_dir() -> str:
    """The per-user private directory of the fork server, created if missing.

    Raises UnsafeDirectory when it exists but is not a directory of ours that only
    we can enter (someone else may have made it, in /tmp for instance)."""
    uid = os.geteuid()
    chosen = os.environ.get(RUNTIME_ENV)
    if not chosen:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        if xdg and os.path.isabs(xdg):
            chosen = os.path.join(xdg, "vzvnc")
        elif os.path.isdir(f"/run/user/{uid}"):
            chosen = f"/run/user/{uid}/vzvnc"
        else:
            chosen = f"/tmp/vzvnc-{uid}"
    chosen = os.path.abspath(chosen)
    try:
        os.mkdir(chosen, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise UnsafeDirectory(f"{chosen}: {exc.strerror}") from exc
    check_private(chosen, uid)
    return chosen


def check_private(path: str, uid: int) -> None:
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise UnsafeDirectory(f"{path}: {exc.strerror}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectory(f"{path} is not a directory")
    if info.st_uid != uid:
        raise UnsafeDirectory(f"{path} belongs to uid {info.st_uid}, not {uid}")
    if info.st_mode & 0o077:
        raise UnsafeDirectory(f"{path} has mode {stat.S_IMODE(info.st_mode):o}, not 700")


def package_dir() -> str:
    return os.path.dirname(os.path.abspath(vzvnc.__file__ or ""))


NAMESPACES = ("mnt", "net", "pid", "uts", "ipc", "user", "cgroup", "time")
STATUS_KEYS = (b"CapInh", b"CapPrm", b"CapEff", b"CapBnd", b"CapAmb", b"NoNewPrivs", b"Seccomp")


def context() -> str:
    """Which installation this is, and everything a console would inherit from us that
    a request does not carry: the interpreter, its PYTHON* and LD_* settings, its
    locale and the package directory; uid, gid and groups; namespaces (a console
    listens in its network namespace and runs its program in its mount namespace);
    cgroup; resource limits; nice value; capabilities, no_new_privs, seccomp and
    security label. A fork server serves only clients of its own context, so what
    its consoles inherit from it is what they would have inherited from the shell."""
    parts = [
        os.fsencode(sys.executable),
        os.fsencode(package_dir()),
        sys.version.encode(),
        b"%d %d %r" % (os.geteuid(), os.getegid(), sorted(os.getgroups())),
        b"nice %d" % os.nice(0),
        # The interpreter's own settings, its locale and what the dynamic loader was
        # told: they shape the server's interpreter, which every console then shares.
        *sorted(
            key + b"=" + value
            for key, value in os.environb.items()
            if key.startswith((b"PYTHON", b"LD_", b"MALLOC_"))
            or key in (b"LC_ALL", b"LC_CTYPE", b"LANG")
        ),
    ]
    for name in NAMESPACES:
        try:
            parts.append(os.fsencode(os.readlink(f"/proc/self/ns/{name}")))
        except OSError:
            parts.append(b"-")
    for path in ("/proc/self/cgroup", "/proc/self/limits", "/proc/self/attr/current"):
        try:
            with open(path, "rb") as file:
                parts.append(file.read(65536))
        except OSError:
            parts.append(b"-")
    try:
        with open("/proc/self/status", "rb") as file:
            status = file.read(65536)
        parts += [line for line in status.splitlines() if line.split(b":")[0] in STATUS_KEYS]
    except OSError:
        parts.append(b"-")
    return _digest(b"\0".join(parts))


def version() -> str:
    """A digest of the package's files (names, sizes, modification times): any
    edit, install or upgrade of vzvnc changes it."""
    entries: list[bytes] = []
    todo = [package_dir()]
    while todo:
        directory = todo.pop()
        try:
            scan = list(os.scandir(directory))
        except OSError:
            continue
        for entry in sorted(scan, key=lambda e: e.name):
            if entry.name == "__pycache__":
                continue
            if entry.is_dir(follow_symlinks=False):
                todo.append(entry.path)
            else:
                try:
                    info = entry.stat()
                except OSError:
                    continue
                entries.append(
                    b"%s %d %d" % (os.fsencode(entry.path), info.st_size, info.st_mtime_ns)
                )
    return _digest(b"\n".join(entries))


def _digest(data: bytes) -> str:
    # Change detection, not a secret: two independent 32-bit checksums are enough
    # and cost no hashlib import (OpenSSL) on every start.
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


# -- the wire -------------------------------------------------------------------------------


def encode(fields: list[bytes]) -> bytes:
    for field in fields:
        if b"\0" in field:
            raise ValueError("a field holds a NUL byte")
    body = b"\0".join(fields)
    if len(body) > MAX_REQUEST or len(fields) > MAX_FIELDS:
        raise ValueError("request too large")
    return MAGIC + struct.pack(">I", len(body)) + body


def run_request(words: list[str], version_id: str, context_id: str) -> bytes:
    mask = os.umask(0o022)
    os.umask(mask)
    argv = [os.fsencode(word) for word in words]
    env = [key + b"=" + value for key, value in os.environb.items()]
    fields = [PROTOCOL, b"run", version_id.encode(), context_id.encode(), b"%o" % mask]
    fields += [b"%d" % len(argv), *argv, b"%d" % len(env), *env]
    return encode(fields)


def control_request(kind: str, version_id: str, context_id: str) -> bytes:
    return encode([PROTOCOL, kind.encode(), version_id.encode(), context_id.encode()])


def read_line(sock: socket) -> bytes:
    """One answer line without its newline; b"" when the server closed first."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            return b""
        line += chunk
        if len(line) > MAX_LINE:
            raise OSError("the fork server's answer is too long")
    return line[:-1]


# -- finding or starting the server --------------------------------------------------------


def connect(path: str) -> socket | None:
    sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC)
    try:
        sock.connect(path)
        return sock
    except OSError:
        # Missing, refused (a dead server's socket file), or the backlog is full
        # (EAGAIN: a Unix socket does not wait): the caller tries again.
        sock.close()
        return None


def connect_or_start(directory: str, context_id: str, *, start: bool = True) -> socket | None:
    """A connection to the fork server, starting it when nobody is running one.

    Of many clients starting at once, the one holding the spawn lock starts the
    server; the others wait for its socket."""
    path = socket_path(directory, context_id)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    spawn_lock = -1
    try:
        while True:
            sock = connect(path)
            if sock is not None:
                return sock
            if not start or time.monotonic() > deadline:
                return None
            if spawn_lock < 0:
                spawn_lock = _try_lock(spawn_lock_path(directory, context_id))
                if spawn_lock >= 0:
                    sock = connect(path)  # it may have come up while we took the lock
                    if sock is not None:
                        return sock
                    if not spawn_server(directory, context_id):
                        return None
                    continue
            time.sleep(0.01)
    finally:
        if spawn_lock >= 0:
            os.close(spawn_lock)


def _try_lock(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return -1
    return fd


def spawn_server(directory: str, context_id: str) -> bool:
    """Start a fork server (nobody's child, in a session of its own) and wait until it
    listens; False if it did not (then the caller runs the console itself)."""
    ready_read, ready_write = os.pipe2(os.O_CLOEXEC)
    argv = [sys.executable, "-m", "vzvnc.run_server", "serve", "--dir", directory]
    argv += ["--context", context_id, "--ready-fd", str(ready_write)]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child execs or exits
        try:
            os.setsid()
            if os.fork() > 0:
                os._exit(0)
            null = os.open(os.devnull, os.O_RDWR)
            logged = os.open(
                log_path(directory, context_id),
                os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW,
                0o600,
            )
            os.dup2(null, 0)
            os.dup2(logged, 1)
            os.dup2(logged, 2)
            os.dup2(ready_write, 3)
            os.set_inheritable(3, True)  # dup2 onto itself would keep close-on-exec
            # Nothing our caller handed us (a test's pipe, a terminal) may be held
            # open by a server that outlives us.
            os.closerange(4, 1 << 20)
            argv[-1] = "3"
            # ``-m`` puts the working directory first on sys.path: the server imports
            # the vzvnc we are (whatever ours was: a checkout, PYTHONPATH, a venv).
            os.chdir(os.path.dirname(package_dir()))
            os.execv(sys.executable, argv)
        finally:
            os._exit(127)
    os.close(ready_write)
    try:
        os.waitpid(pid, 0)
        answer = b""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not answer.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([ready_read], [], [], deadline - time.monotonic())
            chunk = os.read(ready_read, 64) if ready else b""
            if not chunk:
                break
            answer += chunk
        # "ready": ours listens; "running": another one holds the lock (it listens,
        # or is about to); anything else: it failed (see the log).
        return answer in (b"ready\n", b"running\n")
    finally:
        os.close(ready_read)


# -- running a console through it ---------------------------------------------------------


def command_index(words: list[str]) -> int:
    """Where the command (``run``, ``domain``...) is in ``words``, the command line after
    ``vzvnc``: after the -v/--verbose options (len(words) if there is none)."""
    index = 0
    while index < len(words) and (
        words[index] == "--verbose" or (len(words[index]) > 1 and words[index].strip("v") == "-")
    ):
        index += 1
    return index


def run_words(words: list[str]) -> bool:
    """Whether ``words`` (the command line after ``vzvnc``) is a ``vzvnc run`` that may
    go through the fork server."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return False
    index = command_index(words)
    if words[index : index + 1] != ["run"]:
        return False
    rest = words[index + 1 :]
    options = rest[: rest.index("--")] if "--" in rest else rest
    return NO_FORK_SERVER_OPTION not in options


def run(words: list[str]) -> int | None:
    """Run ``vzvnc WORDS`` (a ``run``) as a console forked by the fork server and return
    its exit status; None when that cannot be done and nothing was started."""
    if not run_words(words):
        return None
    try:  # only the main thread can take signals to pass on
        signal.signal(signal.SIGCONT, signal.getsignal(signal.SIGCONT) or signal.SIG_DFL)
    except ValueError:
        return None
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            # Closed: /dev/null takes its place, or our socket would, and be passed
            # to the console as its stdout, say.
            os.open(os.devnull, os.O_RDWR)
    try:
        directory = runtime_dir()
    except UnsafeDirectory as exc:
        sys.stderr.write(f"vzvnc: not using the fork server: {exc}\n")
        return None
    context_id = context()
    for _ in range(3):
        # The files may change while we start (an edit, an upgrade): each round
        # describes them afresh.
        try:
            request = run_request(words, version(), context_id)
        except ValueError:
            return None
        sock = connect_or_start(directory, context_id)
        if sock is None:
            return None
        try:
            answer = _send_run(sock, request)
        except OSError:
            sock.close()
            return None
        if answer.startswith(b"pid "):
            return _follow(sock, int(answer[4:]))
        sock.close()
        # "stale": the server was started from other files and has stepped aside, the
        # next round starts a fresh one; "retry": our view of the files is older
        # than the server's.
        if answer not in (b"stale", b"retry"):
            return None
    return None


def _send_run(sock: socket, request: bytes) -> bytes:
    fds: list[int] = []
    opened: list[int] = []
    try:
        for fd in (0, 1, 2):
            try:
                os.fstat(fd)
                fds.append(fd)
            except OSError:  # closed: the console gets /dev/null there
                null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                opened.append(null)
                fds.append(null)
        here = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        opened.append(here)
        fds.append(here)
        sock.settimeout(STARTUP_TIMEOUT)
        sent = sock.sendmsg(
            [request], [(SOL_SOCKET, SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
        )
        if sent < len(request):
            sock.sendall(request[sent:])
        answer = read_line(sock)
        sock.settimeout(None)
        return answer
    finally:
        for fd in opened:
            os.close(fd)


def _follow(sock: socket, pid: int) -> int:
    """Stand in for console ``pid`` until it ends: pass signals on, return its status."""

    orphan = -1  # a pidfd on the console once the server is gone

    def forward(signum: int, frame: object) -> None:
        try:
            sock.send(bytes([signum]))
        except OSError:  # the server is gone: straight to the console
            pidfd = orphan if orphan >= 0 else _pidfd_of_console(pid)
            if pidfd >= 0:
                sent = signal.SIGSTOP if signum == signal.SIGTSTP else signum
                try:  # noqa: SIM105 - contextlib is one import more on every start
                    signal.pidfd_send_signal(pidfd, sent)
                except OSError:
                    pass
                if pidfd != orphan:
                    os.close(pidfd)
        if signum == signal.SIGTSTP:  # stop here too, until SIGCONT
            os.kill(os.getpid(), signal.SIGSTOP)

    previous = {}
    for signum in FORWARDED_SIGNALS:
        if signum not in ALWAYS_FORWARDED and signal.getsignal(signum) == signal.SIG_IGN:
            continue  # e.g. SIGHUP under nohup: a directly run console would ignore it too
        previous[signum] = signal.signal(signum, forward)
    try:
        try:
            answer = read_line(sock)
        except OSError:
            answer = b""
        if not answer.startswith(b"exit "):
            # The server died (killed, say): the console lives on, reparented. Follow
            # it ourselves; its status is lost with the server.
            orphan = _pidfd_of_console(pid)
            if orphan >= 0:
                select.select([orphan], [], [])
                os.close(orphan)
            sys.stderr.write(f"vzvnc: lost the fork server; console {pid}'s status is unknown\n")
            return UNKNOWN_EXIT
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sock.close()
    code = int(answer[5:])
    if code >= 0:
        return code
    killer = signal.Signals(-code)
    # Die the way the console died, so our parent (a shell) sees the same status.
    sys.stdout.flush()
    sys.stderr.flush()
    if killer not in (signal.SIGKILL, signal.SIGSTOP):  # those cannot be caught anyway
        signal.signal(killer, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {killer})
    os.kill(os.getpid(), killer)
    return 128 + killer


def _pidfd_of_console(pid: int) -> int:
    """A pidfd on console ``pid`` if it still runs, else -1. Its pid may have been
    reused since its parent died: a console is its own session's leader and named
    vzvnc, and the pidfd is taken before checking, so it stays that process."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return -1
    try:
        with open(f"/proc/{pid}/comm", "rb") as comm:
            if os.getsid(pid) == pid and comm.read().strip() == b"vzvnc":
                return pidfd
    except OSError:
        pass
    os.close(pidfd)
    return -1


def control(kind: str, *, start: bool = False) -> bytes:
    """Send a ``stop`` or ``status`` request to this installation's fork server (started
    first when ``start``); its answer line, or b"" when none is running."""
    directory = runtime_dir()
    context_id = context()
    sock = connect_or_start(directory, context_id, start=start)
    if sock is None:
        return b""
    try:
        sock.settimeout(STARTUP_TIMEOUT)
        sock.sendall(control_request(kind, version(), context_id))
        return read_line(sock)
    except OSError as exc:
        if exc.errno == errno.ECONNRESET:
            return b""
        raise
    finally:
        sock.close()
