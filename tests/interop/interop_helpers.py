"""Shared machinery for the interop tests: a real console server on a background
loop, an X server for graphical viewers, and image helpers.

Nothing here is mocked: the console is ``vzvnc.console.Console`` with a real
pty and a real program, built as ``vzvnc.cli.run_console`` builds it, and the
viewers are third-party programs speaking RFB over TCP.

The server runs on its own asyncio loop in a thread, so a test can drive a
blocking client (vncdotool's threaded API, a subprocess) from the test thread.
Everything the test reads from the server (framebuffer, terminal text, sessions)
is read on the loop thread through ``ConsoleHarness.call``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

T = TypeVar("T")

# The environment of the program under test: no rc files, a fixed prompt.
SHELL_ENV = {"PS1": "$ ", "PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}

# How long one read of server state may take before the test gives up.
CALL_TIMEOUT = 10.0


def require_binary(name: str, package: str) -> str:
    """The path of ``name``; fails the test (never skips) naming the Debian package."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name!r} is not installed: install the Debian package {package!r} "
            f"(apt-get install {package}); the interop tests need it",
            pytrace=False,
        )
    return path


def wait_until(
    predicate: Callable[[], T], timeout: float, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what or predicate!r}")
        time.sleep(interval)


def console_fds() -> set[tuple[int, str]]:
    """Open descriptors of the kinds a console owns: pty masters, pidfds, event loops.

    (Sockets are left out: vncdotool's reactor thread opens its own.)
    """
    kinds = ("/dev/ptmx", "/dev/pts/", "anon_inode:[pidfd]", "anon_inode:[eventpoll]")
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith(kinds):
            found.add((int(name), target))
    return found


class ConsoleHarness:
    """One ``Console`` running ``argv`` in a pty, served on 127.0.0.1:<free port>."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        password: bytes | None = None,
        columns: int = 80,
        lines: int = 25,
        name: str = "vzvnc-interop",
        env: dict[str, str] | None = None,
        resizable: bool = True,
        **settings: Any,
    ) -> None:
        """``settings``: more ``ConsoleConfig`` fields (TLS, say)."""
        self.settings = settings
        self.argv = list(argv)
        self.resizable = resizable
        self.password = password
        self.columns = columns
        self.lines = lines
        self.name = name
        self.env = dict(SHELL_ENV if env is None else env)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.console: Any = None
        self.port = 0
        self.exit_code: int | None = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._fds_before: set[tuple[int, str]] = set()
        self._thread = threading.Thread(target=self._thread_main, name="vzvnc-console")

    # -- lifetime -------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> ConsoleHarness:
        self._fds_before = console_fds()
        self._thread.start()
        if not self._ready.wait(timeout):
            pytest.fail(f"the console server did not start within {timeout} s")
        if self._error is not None:
            self._thread.join(timeout)
            raise RuntimeError("the console server failed to start") from self._error
        return self

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        from vzvnc.config import ConsoleConfig
        from vzvnc.console import Console
        from vzvnc.endpoints import PtyProgram

        config = ConsoleConfig(
            host="127.0.0.1",
            port=0,
            columns=self.columns,
            lines=self.lines,
            password=self.password,
            name=self.name,
            resizable=self.resizable,
            **self.settings,
        )
        pty = PtyProgram.start(self.argv, columns=config.columns, lines=config.lines, env=self.env)
        console = Console(pty, config)
        try:
            await console.start()
        except BaseException:
            pty.kill()
            await pty.wait()
            pty.close()
            raise
        self.console = console
        self.loop = asyncio.get_running_loop()
        self.port = console.address[1]
        self._ready.set()
        self.exit_code = await console.run()

    def stop(self, timeout: float = 15.0) -> None:
        """Ask the console to stop, wait for its loop to finish; re-raise its failure."""
        if self._thread.ident is None:
            return
        if self._thread.is_alive() and self.loop is not None and self.console is not None:
            # RuntimeError: the loop already finished (the program exited).
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.console.request_stop)
        self._thread.join(timeout)
        if self._thread.is_alive():
            pytest.fail(f"the console server did not stop within {timeout} s")
        if self._error is not None:
            raise RuntimeError("the console server failed") from self._error
        if self.console is not None:
            pty = self.console.pty
            assert pty.master_fd < 0, "the console left its pty open"
            assert pty.process.returncode is not None, "the console left its program unreaped"
        leaked = console_fds() - self._fds_before
        assert not leaked, f"the console left file descriptors open: {sorted(leaked)}"

    @property
    def server(self) -> str:
        """The address in vncdotool's ``host::port`` form."""
        return f"127.0.0.1::{self.port}"

    # -- reading the server's state on its own thread --------------------------------

    def call(self, fn: Callable[[], T], timeout: float = CALL_TIMEOUT) -> T:
        """Run ``fn()`` on the server's loop thread and return its result."""
        assert self.loop is not None, "the server is not running"
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout)

    def rgb(self) -> np.ndarray:
        """The server's framebuffer as an (h, w, 3) RGB copy."""
        return self.call(lambda: self.console.framebuffer.rgb_image().copy())

    def text_lines(self) -> list[str]:
        return self.call(lambda: list(self.console.terminal.text_lines()))

    def frame_state(self) -> tuple[int, np.ndarray]:
        return self.call(
            lambda: (
                self.console.frames_rendered,
                self.console.framebuffer.rgb_image().copy(),
            )
        )

    def sessions(self) -> list[Any]:
        return self.call(lambda: list(self.console.sessions))

    def wait_quiescent(self, interval: float = 0.2, timeout: float = 15.0) -> np.ndarray:
        """Wait until two reads ``interval`` s apart show the same frame; return it."""
        deadline = time.monotonic() + timeout
        frames, pixels = self.frame_state()
        while True:
            time.sleep(interval)
            frames2, pixels2 = self.frame_state()
            if frames2 == frames and np.array_equal(pixels, pixels2):
                return pixels2
            if time.monotonic() > deadline:
                pytest.fail(f"the console did not settle within {timeout} s")
            frames, pixels = frames2, pixels2

    def wait_for_text(
        self, predicate: Callable[[list[str]], bool], timeout: float = 15.0, what: str = ""
    ) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            lines = self.text_lines()
            if predicate(lines):
                return lines
            if time.monotonic() > deadline:
                shown = "\n".join(line for line in lines if line.strip())
                pytest.fail(
                    f"timed out after {timeout:.0f} s waiting for {what or 'text'}; "
                    f"the terminal shows:\n{shown}"
                )
            time.sleep(0.05)


# -- X server -------------------------------------------------------------------------


class XServer:
    """Xvfb on a display number it picks itself (``-displayfd``)."""

    def __init__(self, workdir: Path, width: int = 1024, height: int = 768) -> None:
        self.workdir = workdir
        self.size = (width, height)
        self.display = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self, timeout: float = 15.0) -> XServer:
        xvfb = require_binary("Xvfb", "xvfb")
        read_fd, write_fd = os.pipe()
        self._log = open(self.workdir / "xvfb.log", "wb")  # noqa: SIM115 - closed in stop()
        try:
            width, height = self.size
            self.process = subprocess.Popen(
                [
                    xvfb,
                    "-displayfd",
                    str(write_fd),
                    "-screen",
                    "0",
                    f"{width}x{height}x24",
                    "-nolisten",
                    "tcp",
                    "-noreset",
                ],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
                pass_fds=(write_fd,),
            )
        finally:
            os.close(write_fd)
        try:
            number = self._read_display_number(read_fd, timeout)
        finally:
            os.close(read_fd)
        self.display = f":{number}"
        socket_path = Path(f"/tmp/.X11-unix/X{number}")
        wait_until(socket_path.exists, timeout, what=f"the X socket {socket_path}")
        return self

    def _read_display_number(self, fd: int, timeout: float) -> int:
        data = b""
        deadline = time.monotonic() + timeout
        os.set_blocking(fd, False)
        while not data.endswith(b"\n"):
            try:
                chunk = os.read(fd, 64)
            except BlockingIOError:
                chunk = None
            if chunk == b"":
                break
            if chunk:
                data += chunk
                continue
            assert self.process is not None
            if self.process.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if not data.strip().isdigit():
            self.stop()
            log = (self.workdir / "xvfb.log").read_text(errors="replace")
            pytest.fail(f"Xvfb did not start (no display number); its log:\n{log}")
        return int(data)

    def env(self, home: Path) -> dict[str, str]:
        return {
            "DISPLAY": self.display,
            "HOME": str(home),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
        }

    def screenshot(self) -> np.ndarray:
        """The whole screen as an (h, w, 3) RGB array."""
        from PIL import ImageGrab

        image = ImageGrab.grab(xdisplay=self.display)
        try:
            return np.asarray(image.convert("RGB")).copy()
        finally:
            image.close()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


def stop_process(process: subprocess.Popen[Any], timeout: float = 5.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; always reaps."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


# -- TigerVNC's vncviewer ---------------------------------------------------------------

# Windowed at the screen's origin, raw pixels (so the screen holds the framebuffer
# exactly), no dialogs that would wait for a person, no menu key (whose "Press F8"
# hint would cover the middle of the framebuffer for seconds after the window
# shows or changes size), and a log to read on failure.
VIEWER_OPTIONS = (
    "-MenuKey=",
    "-FullScreen=0",
    "-Shared=1",
    "-AutoSelect=0",
    "-PreferredEncoding=raw",
    "-ReconnectOnError=0",
    "-AlertOnFatalError=0",
    "-geometry",
    "+0+0",
    "-Log",
    "*:stderr:30",
)


class Viewer:
    """A running ``vncviewer`` process and the file its output goes to."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def xdotool(xserver: XServer, *args: str) -> str:
    """Run ``xdotool args`` on the X server; its stdout. Fails the test if it fails."""
    tool = require_binary("xdotool", "xdotool")
    result = subprocess.run(
        [tool, *args],
        env=xserver.env(Path("/tmp")),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert result.returncode == 0, f"xdotool {args} failed: {result.stderr.strip()}"
    return result.stdout


def wait_for_screen(
    xserver: XServer, harness: ConsoleHarness, viewer: Viewer, timeout: float = 20.0
) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Wait until the X screen contains the server's framebuffer exactly.

    Returns (x, y) of the framebuffer on the screen, the screenshot and the
    framebuffer. The viewer's own overlays (the "Press F8" hint) fade out after a
    few seconds, so this polls.
    """
    deadline = time.monotonic() + timeout
    while True:
        expected = harness.wait_quiescent()
        shot = xserver.screenshot()
        where = find_subimage(shot, expected)
        if where is not None and np.array_equal(harness.rgb(), expected):
            return where[0], where[1], shot, expected
        if viewer.process.poll() is not None:
            pytest.fail(f"vncviewer exited ({viewer.process.returncode}):\n{viewer.log()}")
        if time.monotonic() > deadline:
            path = viewer.log_path.with_suffix(".png")
            from PIL import Image

            Image.fromarray(shot).save(path)
            pytest.fail(
                f"the viewer's screen never showed the server framebuffer within {timeout} s "
                f"(screenshot: {path}); viewer log:\n{viewer.log()}"
            )
        time.sleep(0.25)


# -- images -----------------------------------------------------------------------------


def find_subimage(haystack: np.ndarray, needle: np.ndarray) -> tuple[int, int] | None:
    """The (x, y) where ``needle`` occurs exactly in ``haystack`` (both (h, w, 3)), or None.

    Anchored on the needle's rarest colour, so the candidate positions are few.
    """
    big_h, big_w = haystack.shape[:2]
    h, w = needle.shape[:2]
    if h > big_h or w > big_w:
        return None
    flat = needle.reshape(-1, 3)
    _, first, counts = np.unique(flat, axis=0, return_index=True, return_counts=True)
    anchor = int(first[int(np.argmin(counts))])
    ay, ax = divmod(anchor, w)
    colour = flat[anchor]
    hits = np.argwhere(np.all(haystack == colour, axis=2))
    for y, x in hits:
        oy, ox = int(y) - ay, int(x) - ax
        inside = 0 <= oy <= big_h - h and 0 <= ox <= big_w - w
        if inside and np.array_equal(haystack[oy : oy + h, ox : ox + w], needle):
            return ox, oy
    return None


def colour_mask(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return np.all(image == np.array(colour, dtype=image.dtype), axis=2)


def describe_difference(a: np.ndarray, b: np.ndarray) -> str:
    """A short account of where two equal-sized RGB images differ."""
    if a.shape != b.shape:
        return f"shapes differ: {a.shape} != {b.shape}"
    diff = np.any(a != b, axis=2)
    count = int(diff.sum())
    if not count:
        return "identical"
    ys, xs = np.nonzero(diff)
    y, x = int(ys[0]), int(xs[0])
    return (
        f"{count} pixels differ, within x {xs.min()}..{xs.max()}, y {ys.min()}..{ys.max()}; "
        f"first at ({x}, {y}): {tuple(a[y, x])} != {tuple(b[y, x])}"
    )


# -- VNC password files -----------------------------------------------------------------

# The fixed DES key every VNC implementation uses to scramble stored passwords
# (TigerVNC ``vncpasswd``, ~/.vnc/passwd): this is obfuscation, not encryption.
VNC_OBFUSCATION_KEY = bytes([23, 82, 107, 6, 35, 78, 88, 7])


def _reverse_bits(byte: int) -> int:
    result = 0
    for bit in range(8):
        if byte & (1 << bit):
            result |= 1 << (7 - bit)
    return result


def vnc_obfuscate(password: bytes) -> bytes:
    """The 8 bytes TigerVNC's ``-passwd`` file holds for ``password``.

    DES-ECB of the password (cut or NUL-padded to 8 bytes) under the fixed key;
    the key's bits are reversed within each byte first, as the d3des code VNC
    software inherited numbers key bits from the other end.
    """
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    key = bytes(_reverse_bits(b) for b in VNC_OBFUSCATION_KEY)
    block = password[:8].ljust(8, b"\0")
    # TripleDES with one key repeated three times is single DES.
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def write_secret(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path
