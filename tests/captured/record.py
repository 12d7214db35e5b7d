#!/usr/bin/env python3
"""Record a terminal program's output and make tmux's reference screen for it.

Usage::

    python tests/captured/record.py NAME --size 80x25 [--script FILE | --keys KEYS]
        [--quit KEYS] [--file PATH ...] [--env K=V ...] [--version-cmd CMD] -- CMD ARGS...
    python tests/captured/record.py NAME --rereference
    python tests/captured/record.py NAME --timed DIR [options] -- CMD ARGS...

Recording runs CMD in a fresh pty of the given size with a fixed environment
(TERM=xterm-256color, LANG/LC_ALL=C.UTF-8, TZ=UTC, a fresh empty HOME that is
also the working directory; ``--file`` copies files into it first), plays the
key script, and saves every byte the program wrote to ``cases/NAME.bin``.
The script marks a *snapshot* offset: the reference screen is the screen after
the bytes up to that offset (so a full-screen program is captured before it
quits and leaves the alternate screen). After the script the program is
stopped: the ``--quit`` keys if given, then SIGHUP, then SIGKILL.

The reference is made by replaying ``bin[:snapshot]`` into a detached tmux
session of exactly that size on a private server, through a pty in raw mode
(the recorded bytes already hold the program's ``\\r\\n``), and saving
``capture-pane -p`` as ``NAME.txt``, ``capture-pane -p -e -N`` as ``NAME.ansi``
and the cursor (``#{cursor_x} #{cursor_y}``) plus metadata in ``NAME.json``.
``--rereference`` redoes only this step from an existing ``.bin`` and ``.json``.

``--timed DIR`` makes a benchmark recording instead of a test case: no tmux
reference, and every chunk the program wrote is kept with the time it arrived.
It writes ``DIR/NAME.bin`` (the bytes the program wrote while the script ran;
the ``--quit`` keys' output is left out, so a replay ends on the program's last
screen) and ``DIR/NAME.json``: the same metadata as a case plus ``"chunks"``,
a list of ``[seconds, length]`` pairs, one per read from the pty in order,
``seconds`` counted from the program's start (monotonic clock, 0.1 ms) and the
lengths adding up to the ``.bin``'s size.

Key script (``--script FILE``; one command a line, ``#`` comments)::

    sleep SECONDS          read output for that long
    wait [QUIET [MAX]]     read until no output for QUIET s (0.6), at most MAX s (15)
    keys STRING            send STRING; escapes: \\e \\r \\n \\t \\b \\\\ \\xHH \\uXXXX,
                           and ^X for a control character (^^ is a caret)
    text STRING            send STRING literally (UTF-8)
    repeat N SECONDS KEYS  N times: send KEYS (escapes as keys), then read output
                           for SECONDS (drives a timed recording key by key)
    snapshot [QUIET [MAX]] wait for quiescence (as wait), then mark the reference
                           offset; give a QUIET shorter than the refresh period of
                           a program that redraws on a timer
    resize COLSxROWS       not supported (the reference is one size); rejected

``--keys KEYS`` is short for the script ``wait / keys KEYS / snapshot``.
Without a script the program runs until it exits or goes quiet, and the
snapshot is taken at the end. A script without ``snapshot`` snapshots at its
end (after a final ``wait``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import select
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_QUIET = 0.6
DEFAULT_MAX_WAIT = 15.0
MAX_BYTES = 4 * 1024 * 1024

# Written into the tmux pane as its command. It waits for the "go" file (so the
# pane has its final size), puts its tty into raw mode (no \n -> \r\n), writes
# the bytes, then asks for a device status report: tmux answers only after it
# has parsed everything before the question, so the answer means "consumed".
REPLAYER = r"""
import os, re, select, sys, time, tty
data_path, go_path, done_path, probe_path = sys.argv[1:5]


def wait_for(path):
    while not os.path.exists(path):
        time.sleep(0.01)


def read_until(pattern, count, seconds):
    got = b""
    deadline = time.monotonic() + seconds
    while len(re.findall(pattern, got)) < count and time.monotonic() < deadline:
        if select.select([0], [], [], 0.1)[0]:
            got += os.read(0, 4096)
    return got


def publish(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


wait_for(go_path)
tty.setraw(0)
with open(data_path, "rb") as f:
    data = f.read()
expected = data.count(b"\x1b[5n") + 1
view = memoryview(data)
while view:
    view = view[os.write(1, view):]
os.write(1, b"\x1b[5n")
answers = read_until(rb"\x1b\[0n", expected, 20)
publish(done_path, "ok" if answers.count(b"\x1b[0n") >= expected else "timeout")
# Width probe, after the capture: the advance of "a" + each code point.
wait_for(probe_path)
with open(probe_path, encoding="utf-8") as f:
    chars = f.read()
widths = []
os.write(1, b"\x1bc")
for char in chars:
    os.write(1, b"\x1b[H\x1b[2Ka" + char.encode() + b"\x1b[6n")
    reply = read_until(rb"\x1b\[\d+;\d+R", 1, 5)
    match = re.search(rb"\x1b\[\d+;(\d+)R", reply)
    widths.append(str(int(match.group(1)) - 2) if match else "?")
publish(probe_path + ".out", " ".join(widths))
while True:
    time.sleep(3600)
"""


# The only questions the recorder answers (programs like vttest wait for DA1).
QUERY_REPLIES = {b"\x1b[c": b"\x1b[?1;2c", b"\x1b[0c": b"\x1b[?1;2c", b"\x1b[5n": b"\x1b[0n"}
QUERY_RE = re.compile(b"|".join(re.escape(q) for q in QUERY_REPLIES))


class RecordError(Exception):
    """A recording or reference could not be made."""


# -- the key script ------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    op: str
    arg: str = ""


def decode_keys(spec: str) -> bytes:
    """Turn a ``keys`` argument into bytes (see the module docstring)."""
    out = bytearray()
    i = 0
    simple = {"e": b"\x1b", "r": b"\r", "n": b"\n", "t": b"\t", "b": b"\x08", "\\": b"\\"}
    simple |= {"a": b"\x07", "0": b"\x00", "s": b" "}
    while i < len(spec):
        ch = spec[i]
        if ch == "\\" and i + 1 < len(spec):
            nxt = spec[i + 1]
            if nxt in simple:
                out += simple[nxt]
                i += 2
            elif nxt == "x":
                out.append(int(spec[i + 2 : i + 4], 16))
                i += 4
            elif nxt == "u":
                out += chr(int(spec[i + 2 : i + 6], 16)).encode()
                i += 6
            else:
                raise RecordError(f"unknown escape \\{nxt} in {spec!r}")
        elif ch == "^" and i + 1 < len(spec):
            nxt = spec[i + 1]
            out += b"^" if nxt == "^" else bytes([ord(nxt.upper()) ^ 0x40])
            i += 2
        else:
            out += ch.encode()
            i += 1
    return bytes(out)


def parse_repeat(arg: str) -> tuple[int, float, bytes]:
    """``N SECONDS KEYS`` of a ``repeat`` line: (count, seconds after each, keys)."""
    parts = arg.split(None, 2)
    if len(parts) != 3:
        raise ValueError("repeat wants N SECONDS KEYS")
    count, seconds = int(parts[0]), float(parts[1])
    if count < 1 or seconds < 0:
        raise ValueError("repeat wants N >= 1 and SECONDS >= 0")
    return count, seconds, decode_keys(parts[2])


def parse_script(text: str) -> list[Step]:
    steps = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.lstrip()
        if not line.strip() or line.startswith("#"):
            continue
        op, _, arg = line.partition(" ")
        op = op.strip()
        if op not in {"sleep", "wait", "keys", "text", "snapshot", "repeat"}:
            raise RecordError(f"script line {number}: unknown command {op!r}")
        if op != "text":
            arg = arg.strip()  # text keeps its spaces, even trailing ones
        try:
            if op == "sleep":
                float(arg)
            elif op in ("wait", "snapshot"):
                [float(x) for x in arg.split()]
            elif op == "keys":
                decode_keys(arg)
            elif op == "repeat":
                parse_repeat(arg)
        except ValueError as exc:
            raise RecordError(f"script line {number}: {exc}") from exc
        steps.append(Step(op, arg))
    return steps


# -- running the program in a pty ----------------------------------------------


def fixed_environment(home: str, extra: Sequence[str]) -> dict[str, str]:
    env = {
        "PATH": PATH,
        "HOME": home,
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "SHELL": "/bin/bash",
        "USER": "root",
        "LOGNAME": "root",
        "PAGER": "less",
        "EDITOR": "vi",
        "LESSHISTFILE": "-",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep:
            raise RecordError(f"--env wants KEY=VALUE, got {item!r}")
        env[key] = value
    return env


def set_winsize(fd: int, columns: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def _make_controlling_tty() -> None:
    # Runs in the child after setsid(): stdin is the pty slave.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@dataclass
class Session:
    """A program in a pty and everything it has written so far."""

    proc: subprocess.Popen[bytes]
    master: int
    answer: bool = True
    output: bytearray = field(default_factory=bytearray)
    eof: bool = False
    scanned: int = 0
    started: float = field(default_factory=time.monotonic)
    # (seconds since ``started``, length) of every read, for timed recordings.
    chunks: list[tuple[float, int]] = field(default_factory=list)

    def pump(self, timeout: float) -> bool:
        """Read what is available within ``timeout``; True if anything arrived."""
        if self.eof:
            time.sleep(timeout)
            return False
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every slave fd is closed
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.chunks.append((time.monotonic() - self.started, len(chunk)))
        self.output += chunk
        if len(self.output) > MAX_BYTES:
            raise RecordError(f"more than {MAX_BYTES} bytes of output; trim the case")
        if self.answer:
            self._answer_queries()
        return True

    def _answer_queries(self) -> None:
        """Answer DA1 and DSR 5 as tmux would, so programs that wait for them go on."""
        end = self.scanned
        for match in QUERY_RE.finditer(self.output, self.scanned):
            reply = QUERY_REPLIES[match.group()]
            with contextlib.suppress(BlockingIOError):
                os.write(self.master, reply)
            end = match.end()
        self.scanned = max(end, len(self.output) - 8)

    def read_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.pump(min(left, 0.05))

    def wait_quiet(self, quiet: float = DEFAULT_QUIET, limit: float = DEFAULT_MAX_WAIT) -> None:
        start = last = time.monotonic()
        while True:
            now = time.monotonic()
            if now - last >= quiet or now - start >= limit:
                return
            if self.eof and self.proc.poll() is not None:
                return
            if self.pump(0.05):
                last = time.monotonic()

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            self.pump(0)  # keep the program's output flowing so it never blocks
            try:
                view = view[os.write(self.master, view) :]
            except BlockingIOError:
                time.sleep(0.01)

    def stop(self, quit_keys: bytes) -> None:
        if quit_keys and self.proc.poll() is None:
            self.send(quit_keys)
            deadline = time.monotonic() + 3
            while self.proc.poll() is None and time.monotonic() < deadline:
                self.pump(0.05)
        for sig, grace in ((signal.SIGHUP, 2.0), (signal.SIGKILL, 2.0)):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            deadline = time.monotonic() + grace
            while self.proc.poll() is None and time.monotonic() < deadline:
                self.pump(0.05)
        # Drain what is left (a process that kept the slave open may never say EOF).
        deadline = time.monotonic() + 1
        while not self.eof and time.monotonic() < deadline:
            self.pump(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        os.close(self.master)


def start(
    command: Sequence[str], columns: int, rows: int, env: dict[str, str], answer: bool
) -> Session:
    master, slave = os.openpty()
    set_winsize(slave, columns, rows)
    proc = subprocess.Popen(
        list(command),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=env["HOME"],
        env=env,
        start_new_session=True,
        preexec_fn=_make_controlling_tty,
        close_fds=True,
    )
    os.close(slave)
    os.set_blocking(master, False)
    return Session(proc, master, answer)


def run_script(session: Session, steps: Sequence[Step]) -> int | None:
    """Play the script; return the snapshot offset if the script set one."""
    snapshot = None
    for step in steps:
        if step.op == "sleep":
            session.read_for(float(step.arg))
        elif step.op == "wait":
            numbers = [float(x) for x in step.arg.split()]
            session.wait_quiet(*numbers)
        elif step.op == "keys":
            session.send(decode_keys(step.arg))
        elif step.op == "text":
            session.send(step.arg.encode())
        elif step.op == "repeat":
            count, seconds, keys = parse_repeat(step.arg)
            for _ in range(count):
                session.send(keys)
                session.read_for(seconds)
        elif step.op == "snapshot":
            session.wait_quiet(*[float(x) for x in step.arg.split()])
            snapshot = len(session.output)
    return snapshot


def program_version(command: Sequence[str], version_cmd: str | None) -> str | None:
    argv = shlex.split(version_cmd) if version_cmd else [command[0], "--version"]
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=5,
            check=False,
            env={"PATH": PATH, "LANG": "C.UTF-8", "TERM": "dumb"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in (result.stdout + result.stderr).decode(errors="replace").splitlines():
        if line.strip():
            return line.strip()
    return None


# -- the tmux reference --------------------------------------------------------


def _tmux_base() -> list[str]:
    return ["tmux", "-u", "-L", f"vzvnc-ref-{os.getpid()}", "-f", "/dev/null"]


def _tmux_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX")}
    env.update(LANG="C.UTF-8", LC_ALL="C.UTF-8", TERM="xterm-256color")
    return env


def _tmux(*args: str) -> str:
    result = subprocess.run(
        [*_tmux_base(), *args],
        capture_output=True,
        env=_tmux_env(),
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise RecordError(f"tmux {' '.join(args)}: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode("utf-8", errors="surrogateescape")


def tmux_version() -> str:
    out = subprocess.run(["tmux", "-V"], capture_output=True, check=True, timeout=10)
    return out.stdout.decode().strip()


def make_reference(data: bytes, columns: int, rows: int) -> dict[str, object]:
    """Replay ``data`` into tmux at ``columns`` x ``rows``; return text, ansi and cursor."""
    with tempfile.TemporaryDirectory(prefix="vzvnc-ref-") as tmp:
        data_path = os.path.join(tmp, "data.bin")
        go_path = os.path.join(tmp, "go")
        done_path = os.path.join(tmp, "done")
        probe_path = os.path.join(tmp, "probe")
        replayer = os.path.join(tmp, "replay.py")
        Path(data_path).write_bytes(data)
        Path(replayer).write_text(REPLAYER)
        pane_cmd = shlex.join([sys.executable, replayer, data_path, go_path, done_path, probe_path])
        target = "ref:0.0"
        try:
            _tmux(
                "start-server",
                ";",
                "set-option",
                "-g",
                "status",
                "off",
                ";",
                "new-session",
                "-d",
                "-s",
                "ref",
                "-x",
                str(columns),
                "-y",
                str(rows),
                pane_cmd,
            )
            size = _tmux("display-message", "-p", "-t", target, "#{pane_width}x#{pane_height}")
            if size.strip() != f"{columns}x{rows}":
                raise RecordError(f"tmux pane is {size.strip()}, wanted {columns}x{rows}")
            Path(go_path).touch()
            if _wait_text(done_path, 30) != "ok":
                raise RecordError(
                    "tmux never answered the final status request: the bytes up to the "
                    "snapshot probably end inside an unterminated escape string"
                )
            text = _tmux("capture-pane", "-p", "-t", target)
            ansi = _tmux("capture-pane", "-p", "-e", "-N", "-t", target)
            fmt = "#{cursor_x} #{cursor_y} #{cursor_flag} #{alternate_on} #{pane_width}"
            cursor = _tmux("display-message", "-p", "-t", target, fmt).split()
            probe = sorted({c for c in ansi if ord(c) > 0x7E})
            Path(probe_path).write_text("".join(probe), encoding="utf-8", errors="surrogateescape")
            widths = _wait_text(probe_path + ".out", 60).split()
        finally:
            with contextlib.suppress(RecordError, subprocess.TimeoutExpired):
                _tmux("kill-server")
    x, y, visible, alternate, width = (int(v) for v in cursor)
    if width != columns:
        raise RecordError("tmux pane changed size during the replay")
    return {
        "text": text,
        "ansi": ansi,
        "cursor": [x, y],
        "cursor_visible": bool(visible),
        "alternate_screen": bool(alternate),
        "widths": {f"U+{ord(c):04X}": _int_or_none(w) for c, w in zip(probe, widths, strict=True)},
    }


def _int_or_none(text: str) -> int | None:
    return int(text) if text.lstrip("-").isdigit() else None


def _wait_text(path: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise RecordError("the tmux replay did not finish")
        time.sleep(0.02)
    return Path(path).read_text()


def write_reference(name: str, meta: dict[str, object], data: bytes) -> None:
    columns, rows = (int(v) for v in str(meta["size"]).split("x"))
    snapshot = int(str(meta["snapshot"]))
    ref = make_reference(data[:snapshot], columns, rows)
    (CASES / f"{name}.txt").write_text(str(ref.pop("text")), encoding="utf-8", newline="\n")
    (CASES / f"{name}.ansi").write_text(str(ref.pop("ansi")), encoding="utf-8", newline="\n")
    meta["reference"] = {
        "emulator": tmux_version(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **ref,
    }
    (CASES / f"{name}.json").write_text(
        json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


# -- command line --------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"size must be COLSxROWS, got {text!r}")
    columns, rows = int(match[1]), int(match[2])
    if not (2 <= columns <= 500 and 2 <= rows <= 200):
        raise argparse.ArgumentTypeError(f"unreasonable size {text!r}")
    return columns, rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], usage="%(prog)s NAME [options] -- CMD [ARGS...]"
    )
    parser.add_argument("name", help="case name (lower case, digits, - _ .)")
    parser.add_argument("--size", type=parse_size, default=(80, 25), help="COLSxROWS")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--script", type=Path, help="key script file")
    group.add_argument("--keys", help="shorthand for: wait / keys KEYS / snapshot")
    parser.add_argument("--quit", default="", help="keys that make the program exit")
    parser.add_argument("--file", action="append", default=[], help="copy into HOME first")
    parser.add_argument("--env", action="append", default=[], help="extra KEY=VALUE")
    parser.add_argument("--version-cmd", help="command printing the program's version")
    parser.add_argument(
        "--no-answers", action="store_true", help="do not answer DA1 / DSR 5 queries"
    )
    parser.add_argument("--note", default="", help="what the case shows, for the json")
    parser.add_argument("--rereference", action="store_true", help="only remake the tmux reference")
    parser.add_argument(
        "--timed",
        type=Path,
        metavar="DIR",
        help="write a timed benchmark recording into DIR (no tmux reference)",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    args = parser.parse_args(argv)
    args.command = command

    name: str = args.name
    if not NAME_RE.match(name):
        parser.error(f"bad case name {name!r}")
    CASES.mkdir(parents=True, exist_ok=True)
    try:
        if args.rereference:
            meta = json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))
            write_reference(name, meta, (CASES / f"{name}.bin").read_bytes())
            print(f"{name}: reference remade")
            return 0
        if not args.command:
            parser.error("give the command after --")
        if args.timed is not None:
            return record_timed(name, args)
        return record(name, args)
    except RecordError as exc:
        print(f"record.py: {name}: {exc}", file=sys.stderr)
        return 1


def script_of(args: argparse.Namespace) -> str:
    if args.script:
        return str(args.script.read_text(encoding="utf-8"))
    if args.keys is not None:
        return f"wait\nkeys {args.keys}\nsnapshot\n"
    return "wait 1.0 30\n"


def record_timed(name: str, args: argparse.Namespace) -> int:
    """Run the script and save the output with each chunk's time (see the docstring)."""
    columns, rows = args.size
    script_text = script_of(args)
    steps = parse_script(script_text)
    with tempfile.TemporaryDirectory(prefix="vzvnc-rec-") as home:
        for item in args.file:
            shutil.copy(item, home)
        env = fixed_environment(home, args.env)
        started = dt.datetime.now(dt.UTC)
        session = start(args.command, columns, rows, env, not args.no_answers)
        try:
            run_script(session, steps)
            kept = len(session.chunks)
            data = bytes(session.output)
        finally:
            session.stop(decode_keys(args.quit))
    chunks = [[round(seconds, 4), length] for seconds, length in session.chunks[:kept]]
    args.timed.mkdir(parents=True, exist_ok=True)
    (args.timed / f"{name}.bin").write_bytes(data)
    meta: dict[str, object] = {
        "name": name,
        "note": args.note,
        "command": list(args.command),
        "size": f"{columns}x{rows}",
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "program_version": program_version(args.command, args.version_cmd),
        "environment": {k: v for k, v in env.items() if k != "HOME"},
        "files": [os.path.basename(f) for f in args.file],
        "script": script_text.splitlines(),
        "answered_queries": not args.no_answers,
        "bytes": len(data),
        "seconds": chunks[-1][0] if chunks else 0.0,
    }
    # One chunk a line keeps the file small and its diffs readable.
    head = json.dumps(meta, indent=1, ensure_ascii=False).removesuffix("\n}")
    rows = ",\n".join(json.dumps(chunk) for chunk in chunks)
    text = f'{head},\n "chunks": [\n{rows}\n ]\n}}\n'
    (args.timed / f"{name}.json").write_text(text, encoding="utf-8")
    print(f"{name}: {len(data)} bytes in {len(chunks)} chunks over {meta['seconds']} s")
    return 0


def record(name: str, args: argparse.Namespace) -> int:
    columns, rows = args.size
    script_text = script_of(args)
    steps = parse_script(script_text)
    quit_keys = decode_keys(args.quit)
    with tempfile.TemporaryDirectory(prefix="vzvnc-rec-") as home:
        for item in args.file:
            shutil.copy(item, home)
        env = fixed_environment(home, args.env)
        started = dt.datetime.now(dt.UTC)
        session = start(args.command, columns, rows, env, not args.no_answers)
        try:
            snapshot = run_script(session, steps)
            if snapshot is None:
                session.wait_quiet()
                snapshot = len(session.output)
        finally:
            session.stop(quit_keys)
    data = bytes(session.output)
    (CASES / f"{name}.bin").write_bytes(data)
    meta: dict[str, object] = {
        "name": name,
        "note": args.note,
        "command": list(args.command),
        "size": f"{columns}x{rows}",
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "program_version": program_version(args.command, args.version_cmd),
        "environment": {k: v for k, v in env.items() if k != "HOME"},
        "files": [os.path.basename(f) for f in args.file],
        "script": script_text.splitlines(),
        "quit": args.quit,
        "answered_queries": not args.no_answers,
        "exit_status": session.proc.returncode,
        "bytes": len(data),
        "snapshot": snapshot,
    }
    write_reference(name, meta, data)
    print(f"{name}: {len(data)} bytes, snapshot at {snapshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
