"""Shared parts of the benchmarks: the servers, their processes, and an RFB viewer.

Used by ``spine.py`` (process handling) and ``compare.py`` (all of it). Nothing
here imports vzvnc: the viewer is written from rfbproto so that both servers are
measured by the same, independent client.

- ``Processes``: every process a server needs, each the leader of its own session,
  stopped (SIGTERM, then SIGKILL, descendants included) on the way out.
- ``spawn_vzvnc`` / ``spawn_reference``: vzvnc (``python -m vzvnc run``) and the
  reference (TigerVNC ``Xvnc`` with one ``xterm -fn 8x16`` and no window
  manager), both 80x25 cells of 8x16 pixels, 640x400, running a given command.
- ``Viewer``: RFB 3.8, security None, 32 bpp true colour (little-endian, shifts
  16/8/0, so pixels are B, G, R, X in memory), with decoders for Raw, CopyRect,
  Tight (fill, mono, palette, copy filters; no JPEG, no gradient) and ZRLE, plus
  LastRect, DesktopSize and Cursor pseudo-rectangles. Decoding is vectorised with
  numpy where the encoding allows; ZRLE's run-length tiles are a Python loop.
  Right after SetEncodings it sends one PointerEvent (no buttons) at the centre,
  where Xvnc starts its pointer: with Cursor listed and the viewer's pointer
  where the server's is, Xvnc stops drawing the pointer into the framebuffer. A
  viewer made with ``decode=False`` parses every message but inflates and draws
  nothing (a cheap "connected client" for a console we do not watch).
- ``python benchmarks/rfbbench.py drain PORT ENCODING SECONDS``: such a
  non-decoding viewer that keeps an incremental request outstanding until the
  server closes or SECONDS pass.
"""

from __future__ import annotations

import argparse
import os
import platform
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
COLUMNS, LINES = 80, 25
CELL_W, CELL_H = 8, 16
WIDTH, HEIGHT = COLUMNS * CELL_W, LINES * CELL_H
XVNC_ARGS = (
    f"-geometry {WIDTH}x{HEIGHT} -depth 24 -SecurityTypes None -localhost -retro -nolisten tcp"
).split()
XTERM_ARGS = f"-geometry {COLUMNS}x{LINES}+0+0 -fn {CELL_W}x{CELL_H} -b 0 -bw 0".split()
XTERM_ARGS += ["-bg", "black", "-fg", "grey90"]
STARTUP_TIMEOUT = 30.0
MISSING_HELP = (
    "the benchmarks need TigerVNC's Xvnc, xterm and the X 8x16 font for their reference.\n"
    "On Debian/Ubuntu, as root:\n"
    "    apt-get install -y -o DPkg::Lock::Timeout=900 "
    "tigervnc-standalone-server xterm xfonts-base"
)

# Encodings (rfbproto "Encodings").
RAW, COPY_RECT, TIGHT, ZRLE = 0, 1, 7, 16
CURSOR, DESKTOP_SIZE, LAST_RECT = -239, -223, -224
ENCODING_NAMES = {"tight": TIGHT, "zrle": ZRLE, "raw": RAW}
XK_CONTROL_L = 0xFFE3
XK_RETURN = 0xFF0D

Pixels = npt.NDArray[np.uint8]


class BenchmarkError(Exception):
    """The benchmark cannot go on (a server misbehaved or did not start)."""


# -- processes ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def descendants(pids: list[int]) -> list[int]:
    """Every live process below ``pids`` (from /proc), so we can end them by id."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Processes:
    """The processes one server needs; each is a session (and group) leader."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, argv: list[str], env: dict[str, str], **kwargs: object) -> int:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            **kwargs,  # type: ignore[call-overload]
        )
        self.procs.append(proc)
        return int(proc.pid)

    def check_alive(self, what: str) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise BenchmarkError(f"{what}: {proc.args[0]} exited with {proc.returncode}")

    def stop(self) -> None:
        """SIGTERM each group, then SIGKILL whatever (group or descendant) is left."""
        stray = descendants([p.pid for p in self.procs if p.poll() is None])
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        for proc in reversed(self.procs):
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for pid in stray:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.procs.clear()


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pids: list[int]) -> int:
    """user + sys clock ticks of ``pids`` (``/proc/PID/stat`` fields 14 and 15)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of ``pids`` (all their threads) in seconds, to the nanosecond.

    ``/proc/PID/task/TID/schedstat`` counts run time in nanoseconds, where the
    ``stat`` ticks are 10 ms: an idle server's 0.1 % of 10 s is one tick.
    """
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            with suppress(OSError):
                total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    return total / 1e9


def memory_kib(pids: list[int]) -> dict[str, dict[str, int]]:
    """Pss, Pss_Anon and Pss_File in KiB (smaps_rollup) by process, as ``comm[pid]``."""
    found = {}
    for pid in pids:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
        rollup = {}
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("Pss", "Pss_Anon", "Pss_File"):
                rollup[key] = int(value.split()[0])
        found[f"{name}[{pid}]"] = rollup
    return found


def clean_env(home: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "PS1": "$ "}


def spawn_vzvnc(
    procs: Processes, home: str, command: list[str], *, extra: tuple[str, ...] = ()
) -> tuple[int, list[int]]:
    """vzvnc running ``command`` at 80x25: (port, [the vzvnc process])."""
    port = free_port()
    env = clean_env(home)
    env["PYTHONPATH"] = str(REPO)
    # The console in this very process: its CPU and memory are what gets measured
    # (through the fork server, this process would be only its thin client).
    env["VZVNC_NO_FORK_SERVER"] = "1"
    argv = [sys.executable, *extra, "-m", "vzvnc", "run", "--listen", f"127.0.0.1:{port}"]
    argv += ["--size", f"{COLUMNS}x{LINES}", "--", *command]
    return port, [procs.spawn(argv, env, cwd=home)]


def spawn_reference(
    procs: Processes, home: str, command: list[str], *, port: int = 0, utf8: bool = False
) -> tuple[int, list[int]]:
    """Xvnc (its own free display) with one xterm running ``command``: (port, [Xvnc, xterm]).

    ``port``: where Xvnc listens (default: a free one), for callers that start many at
    once and must not be handed the same free port twice. ``utf8``: xterm decodes
    UTF-8 (``-u8``, C.UTF-8 locale), as vzvnc always does; without it xterm runs in
    the C locale and shows each byte of a UTF-8 character as a Latin-1 one. The
    font stays 8x16 (ISO 8859-1): xterm draws box-drawing characters itself and
    leaves other characters the font lacks blank."""
    port = port or free_port()
    env = clean_env(home)
    if utf8:
        env |= {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    read_fd, write_fd = os.pipe()
    try:
        xvnc = procs.spawn(
            ["Xvnc", "-displayfd", str(write_fd), "-rfbport", str(port), *XVNC_ARGS],
            env,
            pass_fds=(write_fd,),
            cwd=home,
        )
        os.close(write_fd)
        write_fd = -1
        display = b""
        while not display.endswith(b"\n"):
            ready, _, _ = select.select([read_fd], [], [], STARTUP_TIMEOUT)
            chunk = os.read(read_fd, 16) if ready else b""
            if not chunk:
                procs.check_alive("Xvnc")
                raise BenchmarkError("Xvnc never reported its display number")
            display += chunk
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    env["DISPLAY"] = f":{int(display)}"
    utf8_args = ["-u8"] if utf8 else []
    xterm = procs.spawn(["xterm", *XTERM_ARGS, *utf8_args, "-e", *command], env, cwd=home)
    return port, [xvnc, xterm]


# -- the run's surroundings --------------------------------------------------------------


def machine() -> str:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    xvnc = subprocess.run(["Xvnc", "-version"], capture_output=True, text=True, check=False)
    xvnc_version = next((x for x in xvnc.stderr.splitlines() if "TigerVNC" in x), "?").strip()
    load = Path("/proc/loadavg").read_text().split()[:3]
    return (
        f"machine: {os.cpu_count()} CPUs, {model}; Linux {platform.release()}; "
        f"Python {platform.python_version()}; {xvnc_version}; load average {' '.join(load)}"
    )


def missing_prerequisites() -> list[str]:
    missing = [tool for tool in ("Xvnc", "xterm") if shutil.which(tool) is None]
    fonts = Path("/usr/share/fonts/X11/misc")
    if not any(fonts.glob("8x16*")) and not any(fonts.glob("*8x16*")):
        missing.append("the 8x16 font (xfonts-base)")
    return missing


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """SIGTERM/SIGHUP/SIGINT unwind through the ``finally`` blocks that stop the servers."""

    def handler(signum: int, frame: object) -> None:
        for other in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(other, signal.SIG_IGN)  # let the cleanup finish
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signums = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


# -- the viewer ---------------------------------------------------------------------------


@dataclass
class Message:
    kind: int  # 0 FramebufferUpdate, 2 Bell, 3 ServerCutText
    size: int  # bytes on the wire, header included
    changed: bool  # an update whose pixels differ from what the viewer had
    done: float  # time.monotonic() when the whole message had been read


def encodings_for(preferred: str) -> list[int]:
    """SetEncodings for a viewer that prefers ``preferred`` and decodes nothing else.

    Only one compressing encoding is listed: TigerVNC sends solid areas as Tight
    whenever the client lists Tight, even with ZRLE first. No Compression Level
    and no JPEG Quality pseudo-encodings: each server uses its own default level,
    and without a quality level TigerVNC never sends JPEG. Cursor keeps Xvnc from
    drawing the X pointer into the framebuffer.
    """
    first = ENCODING_NAMES[preferred]
    rest = [e for e in (COPY_RECT, RAW) if e != first]
    return [first, *rest, LAST_RECT, DESKTOP_SIZE, CURSOR]


class Viewer:
    """A blocking RFB 3.8 viewer that keeps the framebuffer as B, G, R, X pixels."""

    def __init__(self, sock: socket.socket, *, decode: bool = True) -> None:
        self.sock = sock
        self.decode = decode
        self.buffer = bytearray()
        self.bytes_received = 0
        self.pixels: Pixels = np.zeros((0, 0, 4), np.uint8)
        self.zrle_stream = zlib.decompressobj()
        self.tight_streams = [zlib.decompressobj() for _ in range(4)]
        self.rects_by_encoding: dict[int, int] = {}

    @classmethod
    def connect(
        cls, port: int, encodings: list[int], deadline: float, *, decode: bool = True
    ) -> Viewer:
        """Connect as soon as ``port`` accepts (polling), then do the handshake."""
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"nothing accepts on 127.0.0.1:{port}") from None
                time.sleep(0.005)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        viewer = cls(sock, decode=decode)
        try:
            viewer.handshake(encodings, deadline)
        except BaseException:
            sock.close()
            raise
        return viewer

    @property
    def consumed(self) -> int:
        """Bytes read from the server and already parsed."""
        return self.bytes_received - len(self.buffer)

    def close(self) -> None:
        self.sock.close()

    def _fill(self, n: int, deadline: float) -> None:
        while len(self.buffer) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            readable, _, _ = select.select([self.sock], [], [], remaining)
            if not readable:
                raise TimeoutError
            data = self.sock.recv(1 << 20)
            if not data:
                raise BenchmarkError("the server closed the connection")
            self.buffer += data
            self.bytes_received += len(data)

    def _take(self, n: int, deadline: float) -> bytes:
        self._fill(n, deadline)
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def handshake(self, encodings: list[int], deadline: float) -> None:
        version = self._take(12, deadline)
        if not version.startswith(b"RFB 003.00"):
            raise BenchmarkError(f"not an RFB server: {version!r}")
        self.sock.sendall(b"RFB 003.008\n")
        (count,) = self._take(1, deadline)
        if count == 0:
            (length,) = struct.unpack(">I", self._take(4, deadline))
            raise BenchmarkError(f"refused: {self._take(length, deadline)!r}")
        if 1 not in self._take(count, deadline):
            raise BenchmarkError("the server does not offer security type None")
        self.sock.sendall(b"\x01")
        (result,) = struct.unpack(">I", self._take(4, deadline))
        if result != 0:
            raise BenchmarkError("security handshake failed")
        self.sock.sendall(b"\x01")  # shared
        width, height = struct.unpack(">HH", self._take(4, deadline))
        self._take(16, deadline)  # the server's pixel format: we set our own
        (name_length,) = struct.unpack(">I", self._take(4, deadline))
        self._take(name_length, deadline)
        self.pixels = np.zeros((height, width, 4), np.uint8)
        # 32 bpp, depth 24, little-endian, true colour, 255/255/255, shifts 16/8/0.
        pixel_format = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
        message = struct.pack(">B3x", 0) + pixel_format
        message += struct.pack(">BxH", 2, len(encodings))
        message += b"".join(struct.pack(">i", e) for e in encodings)
        # The pointer where Xvnc starts it (the centre), without buttons: with the
        # Cursor pseudo-encoding and the viewer's pointer where the server's is,
        # Xvnc stops drawing the pointer into the framebuffer. vzvnc ignores it.
        message += struct.pack(">BBHH", 5, 0, width // 2, height // 2)
        self.sock.sendall(message)

    def request(self, incremental: bool = True) -> None:
        height, width = self.pixels.shape[:2]
        self.sock.sendall(struct.pack(">BBHHHH", 3, int(incremental), 0, 0, width, height))

    def keys(self, keysyms: list[int], *, ctrl: bool = False) -> None:
        """Press and release each key in turn, in one write."""
        events = [(d, k) for k in keysyms for d in (1, 0)]
        if ctrl:
            events = [(1, XK_CONTROL_L), *events, (0, XK_CONTROL_L)]
        self.sock.sendall(b"".join(struct.pack(">BBxxI", 4, d, k) for d, k in events))

    def type_line(self, text: str) -> None:
        """Type ``text`` (ASCII) and Return."""
        self.keys([ord(c) for c in text] + [XK_RETURN])

    def read_message(self, timeout: float) -> Message | None:
        """One server message, or None if none starts within ``timeout`` seconds."""
        try:
            self._fill(1, time.monotonic() + timeout)
        except TimeoutError:
            return None
        before = self.consumed
        deadline = time.monotonic() + 30.0  # once a message starts, read it whole
        kind = self._take(1, deadline)[0]
        changed = False
        if kind == 0:
            changed = self._read_update(deadline)
        elif kind == 3:
            (length,) = struct.unpack(">3xI", self._take(7, deadline))
            self._take(length, deadline)
        elif kind != 2:
            raise BenchmarkError(f"unexpected server message type {kind}")
        return Message(kind, self.consumed - before, changed, time.monotonic())

    def _read_update(self, deadline: float) -> bool:
        (count,) = struct.unpack(">xH", self._take(3, deadline))
        changed = False
        index = 0
        while count == 0xFFFF or index < count:
            index += 1
            x, y, w, h, encoding = struct.unpack(">HHHHi", self._take(12, deadline))
            self.rects_by_encoding[encoding] = self.rects_by_encoding.get(encoding, 0) + 1
            if encoding == LAST_RECT:
                break
            if encoding == CURSOR:
                self._take(w * h * 4 + (w + 7) // 8 * h, deadline)
                continue
            if encoding == DESKTOP_SIZE:
                self.pixels = np.zeros((h, w, 4), np.uint8)
                changed = True
                continue
            if x + w > self.pixels.shape[1] or y + h > self.pixels.shape[0]:
                raise BenchmarkError(f"rectangle {w}x{h}+{x}+{y} outside the framebuffer")
            if encoding == RAW:
                data = self._take(w * h * 4, deadline)
                new = np.frombuffer(data, np.uint8).reshape(h, w, 4) if self.decode else None
            elif encoding == COPY_RECT:
                sx, sy = struct.unpack(">HH", self._take(4, deadline))
                new = self.pixels[sy : sy + h, sx : sx + w].copy() if self.decode else None
            elif encoding == TIGHT:
                new = self._tight(w, h, deadline)
            elif encoding == ZRLE:
                (length,) = struct.unpack(">I", self._take(4, deadline))
                data = self._take(length, deadline)
                new = self._zrle(w, h, data) if self.decode else None
            else:
                raise BenchmarkError(f"unexpected encoding {encoding}")
            if new is not None:
                target = self.pixels[y : y + h, x : x + w]
                if not np.array_equal(target[..., :3], new[..., :3]):
                    changed = True
                    target[...] = new
                    target[..., 3] = 0
        return changed

    # -- Tight (rfbproto "Tight Encoding"), lossless subset ------------------------

    def _compact(self, deadline: float) -> int:
        value = 0
        for shift in (0, 7, 14):
            (byte,) = self._take(1, deadline)
            if shift == 14:
                return value | byte << 14
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        return value

    def _tight(self, w: int, h: int, deadline: float) -> Pixels | None:
        (control,) = self._take(1, deadline)
        for stream in range(4):
            if control & (1 << stream):
                self.tight_streams[stream] = zlib.decompressobj()
        kind = control >> 4
        if kind == 8:  # fill
            rgb = self._take(3, deadline)
            if not self.decode:
                return None
            out = np.empty((h, w, 4), np.uint8)
            out[...] = (rgb[2], rgb[1], rgb[0], 0)
            return out
        if kind > 7:
            raise BenchmarkError(f"Tight compression control {control:#x} (JPEG/PNG?)")
        filter_id = self._take(1, deadline)[0] if kind & 4 else 0
        palette: Pixels | None = None
        if filter_id == 1:
            colours = self._take(1, deadline)[0] + 1
            palette = _rgb_to_native(self._take(colours * 3, deadline), colours)
            row_bytes = (w + 7) // 8 if colours == 2 else w
        elif filter_id == 0:
            row_bytes = w * 3
        else:
            raise BenchmarkError(f"Tight filter {filter_id} (gradient?) not decoded here")
        size = row_bytes * h
        if size < 12:
            data = self._take(size, deadline)
        else:
            compressed = self._take(self._compact(deadline), deadline)
            if not self.decode:
                return None
            data = self.tight_streams[kind & 3].decompress(compressed)
            if len(data) != size:
                raise BenchmarkError(f"Tight data inflated to {len(data)}, expected {size}")
        if not self.decode:
            return None
        raw = np.frombuffer(data, np.uint8).reshape(h, row_bytes)
        if palette is None:
            return _rgb_to_native(data, w * h).reshape(h, w, 4)
        indices = np.unpackbits(raw, axis=1)[:, :w] if len(palette) == 2 else raw
        return palette[indices]

    # -- ZRLE (rfbproto "ZRLE Encoding") --------------------------------------------

    def _zrle(self, w: int, h: int, compressed: bytes) -> Pixels:
        data = self.zrle_stream.decompress(compressed)
        out = np.empty((h, w, 4), np.uint8)
        pos = 0
        for ty in range(0, h, 64):
            th = min(64, h - ty)
            for tx in range(0, w, 64):
                tw = min(64, w - tx)
                pos = _zrle_tile(data, pos, out[ty : ty + th, tx : tx + tw])
        if pos != len(data):
            raise BenchmarkError(f"ZRLE: {len(data) - pos} bytes left over")
        return out


def _rgb_to_native(data: bytes, count: int) -> Pixels:
    """``count`` Tight TPIXELs (R, G, B) as B, G, R, 0 pixels."""
    rgb = np.frombuffer(data, np.uint8, count * 3).reshape(count, 3)
    out = np.zeros((count, 4), np.uint8)
    out[:, 0], out[:, 1], out[:, 2] = rgb[:, 2], rgb[:, 1], rgb[:, 0]
    return out


def _cpixels(data: bytes, pos: int, count: int) -> Pixels:
    """``count`` ZRLE CPIXELs (B, G, R for our format) as B, G, R, 0 pixels."""
    out = np.zeros((count, 4), np.uint8)
    out[:, :3] = np.frombuffer(data, np.uint8, count * 3, pos).reshape(count, 3)
    return out


def _zrle_tile(data: bytes, pos: int, tile: Pixels) -> int:
    th, tw = tile.shape[:2]
    area = th * tw
    sub = data[pos]
    pos += 1
    if sub == 0:
        tile[...] = _cpixels(data, pos, area).reshape(th, tw, 4)
        return pos + area * 3
    if sub == 1:
        tile[...] = _cpixels(data, pos, 1)[0]
        return pos + 3
    if 2 <= sub <= 16:
        palette = _cpixels(data, pos, sub)
        pos += sub * 3
        bits = 1 if sub == 2 else 2 if sub <= 4 else 4
        row_bytes = (tw * bits + 7) // 8
        packed = np.frombuffer(data, np.uint8, row_bytes * th, pos).reshape(th, row_bytes)
        unpacked = np.unpackbits(packed, axis=1)
        if bits > 1:
            groups = unpacked.reshape(th, -1, bits)
            weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.uint8)
            unpacked = (groups * weights).sum(axis=2, dtype=np.uint8)
        tile[...] = palette[unpacked[:, :tw]]
        return pos + row_bytes * th
    if sub == 128:  # plain RLE: (CPIXEL, run length) pairs
        starts: list[int] = []
        lengths: list[int] = []
        done = 0
        while done < area:
            starts.append(pos)
            pos += 3
            run = 1
            while True:
                byte = data[pos]
                pos += 1
                run += byte
                if byte != 255:
                    break
            lengths.append(run)
            done += run
        colours = np.frombuffer(data, np.uint8)[np.array(starts)[:, None] + np.arange(3)]
        native = np.zeros((len(starts), 4), np.uint8)
        native[:, :3] = colours
        tile[...] = np.repeat(native, lengths, axis=0)[:area].reshape(th, tw, 4)
        return pos
    if sub >= 130:  # palette RLE
        size = sub - 128
        palette = _cpixels(data, pos, size)
        pos += size * 3
        indices: list[int] = []
        lengths = []
        done = 0
        while done < area:
            index = data[pos]
            pos += 1
            if index & 128:
                run = 1
                while True:
                    byte = data[pos]
                    pos += 1
                    run += byte
                    if byte != 255:
                        break
                indices.append(index & 127)
                lengths.append(run)
                done += run
            else:
                indices.append(index)
                lengths.append(1)
                done += 1
        tile[...] = np.repeat(palette[indices], lengths, axis=0)[:area].reshape(th, tw, 4)
        return pos
    raise BenchmarkError(f"ZRLE subencoding {sub} is unused")


def drain(port: int, encoding: str, seconds: float) -> int:
    """A connected viewer that parses but does not decode, until closed or ``seconds``."""
    end = time.monotonic() + seconds
    viewer = Viewer.connect(
        port, encodings_for(encoding), time.monotonic() + STARTUP_TIMEOUT, decode=False
    )
    try:
        viewer.request(incremental=False)
        while time.monotonic() < end:
            message = viewer.read_message(min(1.0, end - time.monotonic()))
            if message is not None and message.kind == 0:
                viewer.request()
    except (BenchmarkError, OSError):
        return 0  # the server went away: our job is done
    finally:
        viewer.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="helpers for the benchmarks")
    commands = parser.add_subparsers(dest="command", required=True)
    drainer = commands.add_parser("drain", help="a connected viewer that decodes nothing")
    drainer.add_argument("port", type=int)
    drainer.add_argument("encoding", choices=sorted(ENCODING_NAMES))
    drainer.add_argument("seconds", type=float)
    args = parser.parse_args()
    return drain(args.port, args.encoding, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
