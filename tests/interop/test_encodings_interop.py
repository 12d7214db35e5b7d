"""Every encoding a real client decodes, over a colourful screen that then scrolls.

The console runs a small program that draws a colourful screen (the 16 ANSI
colours as foreground and background, bold, reverse, underline, 256-colour and
24-bit backgrounds, CJK wide characters), waits for a line on its stdin, and
then prints 60 more coloured lines a few milliseconds apart: the screen scrolls
over dozens of frames, so the server sends many updates, each a CopyRect (for a
client that lists it) plus the newly exposed lines in the chosen encoding, and
the zlib streams of ZRLE and Tight carry on from one update to the next.

- TigerVNC 1.12's vncviewer, under Xvfb, with ``-AutoSelect=0
  -PreferredEncoding=X`` for Raw, RRE, Hextile, ZRLE and Tight (its ``-help``
  names four, but it takes any encoding it decodes): the server must really use
  X, and the X screen must contain the server's framebuffer pixel for pixel,
  before and after the scroll. With ``-FullColor=0 -LowColorLevel=N`` the viewer
  asks for an 8-bit true-colour format (N = 0, 1, 2: 8, 64 and 256 colours),
  which the server must adopt; the screen must then show every channel at the
  level nearest the framebuffer's, and the 8-bit values the server's conversion
  gives (``PixelFormat.convert``, then ``to_native``): exactly where a level
  expands to a whole 8-bit value (1- and 2-bit channels), within 1 for the
  3-bit channels of the 256-colour format, which TigerVNC expands by truncation
  (level 2 of 7 shows as 72, ``to_native`` rounds to 73).
- vncdotool's API client with each encoding it decodes (Raw, RRE, Hextile,
  ZRLE; it has no Zlib or Tight decoder): after one full update it follows the
  scroll through incremental requests only, and its screen must then equal the
  server's framebuffer. vncdotool 1.4.2 counts CopyRect among its encodings but
  never draws one (its ``copyRectangle`` is a no-op), so it is offered only the
  pixel encoding, as vncdotool itself does; the server must then send no
  CopyRect.
- CopyRect on scroll: the server sends the viewer a CopyRect per update while
  the screen scrolls (a whole-width move up by whole lines, first in its
  update), in many updates the copy alone carries most of the screen, and the
  viewer's screen is still exact. (TigerVNC 1.12 logs no per-encoding
  statistics, so the rectangles are counted on the server's side.)

The server's rectangles are recorded by wrapping the session's
``send_framebuffer_update`` on the server's loop; the wrapper passes everything
through unchanged. Zlib (6) and TightPNG (-260) have no decoder in either
client, so they are not covered here; TightPNG is covered with noVNC in
``test_novnc.py``.
"""

from __future__ import annotations

import struct
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from interop_helpers import (
    ConsoleHarness,
    Viewer,
    XServer,
    describe_difference,
    find_subimage,
)
from PIL import Image

from vzvnc.rfb.constants import Encoding
from vzvnc.rfb.encodings import TIGHT_PNG
from vzvnc.rfb.pixelformat import SERVER_PIXEL_FORMAT, PixelFormat

pytestmark = pytest.mark.interop

T = TypeVar("T")

PASSWORD = b"vz-Pass1"
NAME = "vzvnc-encodings"
COLUMNS, LINES = 80, 25
CELL_W, CELL_H = 8, 16
SCROLL_LINES = 60
COPY_RECT = int(Encoding.COPY_RECT)

# Draws the colourful screen, says "ready", waits for a line on stdin, prints
# SCROLL_LINES coloured lines argv[1] seconds apart (so the scroll spans many
# frames), says "done" and waits for its terminal to go away.
WORKLOAD = r"""
import sys, time

E = "\033["
R = E + "0m"

def show(text):
    sys.stdout.write(text)
    sys.stdout.flush()

show(E + "1mbold" + R + " " + E + "7mreverse" + R + " " + E + "4munderline" + R + " "
     + E + "1;7;33mbold reverse yellow" + R + " " + E + "1;4;35mbold underline" + R
     + " 中文 漢字 한국어 ｶﾀｶﾅ\n")
show("".join(E + "3%dmfg%d " % (i, i) for i in range(8))
     + "".join(E + "9%dmbr%d " % (i, i) for i in range(8)) + R + "\n")
show("".join(E + "4%d;3%dm bg%d " % (i, 7 - i, i) for i in range(8))
     + "".join(E + "10%d;3%dm b%d " % (i, i % 2, i) for i in range(8)) + R + "\n")
show("".join(E + "1;3%dmB%d" % (i, i) + E + "22;7;3%dmR%d" % (i, i) + R + " " for i in range(8))
     + "\n")
for start in (16, 95, 174):
    show("".join(E + "48;5;%dm%s" % (n, "x" if n % 5 else " ") for n in range(start, start + 79))
         + R + "\n")
show("".join(E + "48;5;%d;38;5;%dm%d" % (232 + i, 255 - i, i % 10) for i in range(24)) + R + "\n")
show("".join(E + "48;2;%d;%d;%dm" % (3 * x, 255 - 3 * x, (37 * x) % 256)
             + E + "38;2;%d;%d;%dm%s" % (255 - 3 * x, (11 * x) % 256, 3 * x, "#@%&*+=~"[x % 8])
             for x in range(79)) + R + "\n")
show(E + "32m中" + E + "31;1m文" + R + E + "44m字符" + R + " " + E + "7;36m反転表示" + R
     + " ┌─┬─┐ ▀▄█▌▐░▒▓ αβγ ωμέγα\n")
show("ready\n")
sys.stdin.readline()
for i in range(SCROLL_LINES):
    tail = "▒" * (i % 23) if i % 7 else ""
    show(E + "3%dmline %02d" % (i % 8, i) + R + " "
         + E + "1;4%d;37mbold on colour" % ((i + 3) % 8) + R + " "
         + E + "7mrev" + E + "27m 中文%d " % i
         + "".join(E + "48;2;%d;%d;%dm%s" % (4 * i, 17 * x, 255 - 4 * i - x, " ▄"[x % 2])
                   for x in range(10))
         + R + " " + E + "38;5;%dm%s" % (16 + 3 * i, tail) + R + "\n")
    time.sleep(float(sys.argv[1]))
show("done\n")
sys.stdin.read()
""".replace("SCROLL_LINES", str(SCROLL_LINES))


# -- the console --------------------------------------------------------------------


def start_workload(
    start_console: Any, password: bytes | None = PASSWORD, line_delay: float = 0.012
) -> ConsoleHarness:
    harness = start_console(
        [sys.executable, "-c", WORKLOAD, str(line_delay)],
        password=password,
        name=NAME,
        columns=COLUMNS,
        lines=LINES,
    )
    harness.wait_for_text(
        lambda lines: any(line.strip() == "ready" for line in lines), what="the colourful screen"
    )
    # The terminal holds the text before the next frame draws it: a viewer that
    # connects now must find the whole screen rendered, not part of it.
    harness.wait_quiescent()
    return harness


def start_scroll(harness: ConsoleHarness) -> None:
    """Let the program print its lines (Enter, as a viewer's key would send it)."""
    harness.call(lambda: harness.console.send_input(b"\r"))


def scrolled(lines: list[str]) -> bool:
    """Whether the program has printed its last line."""
    return any(line.strip() == "done" for line in lines)


def scroll(harness: ConsoleHarness) -> None:
    """Let the program print its lines; return once it has printed the last."""
    start_scroll(harness)
    lines = harness.wait_for_text(scrolled, what="the scroll to finish")
    assert lines[-3].startswith(f"line {SCROLL_LINES - 1:02d}"), lines


def only_session(harness: ConsoleHarness) -> Any:
    sessions = [s for s in harness.console.sessions if s.initialised]
    assert len(sessions) == 1, f"expected one initialised session, found {len(sessions)}"
    return sessions[0]


def negotiated(harness: ConsoleHarness) -> tuple[int, PixelFormat]:
    """The pixel encoding and pixel format the server uses for the console's one client."""

    def read() -> tuple[int, PixelFormat]:
        session = only_session(harness)
        return session.encoder.encoding, session.connection.pixel_format

    return harness.call(read)


@dataclass(frozen=True)
class SentRect:
    """One rectangle of a FramebufferUpdate; ``source`` is a CopyRect's source corner."""

    update: int
    encoding: int
    x: int
    y: int
    width: int
    height: int
    source: tuple[int, int] | None


class SentUpdates:
    """The updates the server sends one client, recorded on the server's loop."""

    def __init__(self, harness: ConsoleHarness) -> None:
        self.harness = harness
        self._updates = 0
        self._rects: list[SentRect] = []

    def install(self) -> None:
        """Wrap the client's ``send_framebuffer_update`` (on the loop), recording its calls."""
        connection = only_session(self.harness).connection
        send = connection.send_framebuffer_update

        def recording(rects: Any, *, last_rect: bool) -> None:
            self._updates += 1
            for rect in rects:
                source = None
                if rect.encoding == COPY_RECT:
                    source = struct.unpack(">HH", rect.payload)
                self._rects.append(
                    SentRect(
                        self._updates,
                        rect.encoding,
                        rect.x,
                        rect.y,
                        rect.width,
                        rect.height,
                        source,
                    )
                )
            send(rects, last_rect=last_rect)

        connection.send_framebuffer_update = recording

    def snapshot(self) -> tuple[int, list[SentRect]]:
        """(updates sent, their rectangles) so far."""
        return self.harness.call(lambda: (self._updates, list(self._rects)))


def record_updates(harness: ConsoleHarness) -> SentUpdates:
    """From now on, record the updates the server sends the console's one client."""
    recorder = SentUpdates(harness)
    harness.call(recorder.install)
    return recorder


def assert_sent(recorder: SentUpdates, encoding: int, copy_rect: bool) -> list[SentRect]:
    """The scroll took many updates, all pixels in ``encoding``, CopyRect iff listed."""
    updates, rects = recorder.snapshot()
    counts = Counter(rect.encoding for rect in rects)
    # TightPNG (-260) is the one pixel encoding with a negative number.
    pixel_encodings = {e for e in counts if (e >= 0 or e == TIGHT_PNG) and e != COPY_RECT}
    assert pixel_encodings == {encoding}, f"rectangles sent per encoding: {dict(counts)}"
    # 60 lines 12 ms apart take dozens of frames at 60 a second; a busy machine
    # coalesces more of them, but the scroll still spans several updates.
    assert updates >= 5, f"only {updates} updates during the scroll: {dict(counts)}"
    if copy_rect:
        assert counts[COPY_RECT] >= 1, f"no CopyRect on scroll: {dict(counts)}"
    else:
        assert counts[COPY_RECT] == 0, f"CopyRect sent to a client without it: {dict(counts)}"
    return rects


# -- what a client in a given pixel format must show ----------------------------------


def native(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3) RGB as the framebuffer's own (h, w, 4) B, G, R, X layout."""
    out = np.zeros((*rgb.shape[:2], 4), dtype=np.uint8)
    out[..., :3] = rgb[..., ::-1]
    return out


def through_format(rgb: np.ndarray, pixel_format: PixelFormat) -> np.ndarray:
    """The RGB image a client in ``pixel_format`` gets for the framebuffer ``rgb``.

    Each pixel converted as the server converts it for the wire, then expanded
    back to 8 bits a channel by the rounding rule ``PixelFormat.to_native`` uses.
    """
    height, width = rgb.shape[:2]
    wire = pixel_format.convert(native(rgb))
    return pixel_format.to_native(wire, width, height)[..., 2::-1].copy()


def levels(rgb: np.ndarray, pixel_format: PixelFormat) -> np.ndarray:
    """Each channel of ``rgb`` as the nearest level of ``pixel_format`` (0 .. max)."""
    maxima = np.array(
        [pixel_format.red_max, pixel_format.green_max, pixel_format.blue_max], dtype=np.uint32
    )
    return ((rgb.astype(np.uint32) * maxima + 127) // 255).astype(np.uint16)


def expands_exactly(pixel_format: PixelFormat) -> bool:
    """Whether every level of every channel is a whole multiple of 255 / max.

    Then any client's expansion of a level to 8 bits agrees with ``to_native``'s
    rounding. TigerVNC expands by truncation (``level * 255 / max`` in its
    PixelFormat up-conversion tables), so for 3-bit channels (max 7) its level 2
    is 72 where ``to_native`` rounds to 73: such formats are compared level for
    level, and the 8-bit values within 1.
    """
    maxima = (pixel_format.red_max, pixel_format.green_max, pixel_format.blue_max)
    return all(255 % m == 0 for m in maxima)


# -- TigerVNC -------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """Where the viewer shows the framebuffer, what it shows there, what it should show."""

    origin: tuple[int, int]
    shown: np.ndarray
    expected: np.ndarray


def wait_for_view(
    xserver: XServer,
    harness: ConsoleHarness,
    viewer: Viewer,
    pixel_format: PixelFormat,
    last: View | None = None,
    timeout: float = 20.0,
) -> View:
    """Wait until the X screen shows the framebuffer as it is in ``pixel_format``.

    In the server's own format the screen must hold the framebuffer exactly. In
    another, it must hold every channel at the level nearest the framebuffer's
    (computed here, not by the server's conversion); ``assert_view_matches``
    then compares the 8-bit values with the server's conversion. On failure the
    message compares the screen with the framebuffer where ``last`` found it.
    """
    full_colour = pixel_format == SERVER_PIXEL_FORMAT
    deadline = time.monotonic() + timeout
    while True:
        fb = harness.wait_quiescent()
        shot = xserver.screenshot()
        if full_colour:
            where = find_subimage(shot, fb)
        else:
            where = find_subimage(levels(shot, pixel_format), levels(fb, pixel_format))
        expected = fb if full_colour else through_format(fb, pixel_format)
        if where is not None and np.array_equal(harness.rgb(), fb):
            x, y = where
            return View(where, shot[y : y + fb.shape[0], x : x + fb.shape[1]], expected)
        if viewer.process.poll() is not None:
            pytest.fail(f"vncviewer exited ({viewer.process.returncode}):\n{viewer.log()}")
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    path = viewer.log_path.with_suffix(".png")
    Image.fromarray(shot).save(path)
    difference = "never found it"
    if last is not None:
        x, y = last.origin
        shown = shot[y : y + fb.shape[0], x : x + fb.shape[1]]
        difference = f"where it was, at {last.origin}: {describe_difference(shown, expected)}"
    pytest.fail(
        f"the viewer never showed the framebuffer within {timeout:.0f} s; {difference} "
        f"(screenshot: {path}); viewer log:\n{viewer.log()}"
    )


def assert_view_matches(view: View, pixel_format: PixelFormat) -> None:
    shown, expected = view.shown, view.expected
    if expands_exactly(pixel_format):
        assert np.array_equal(shown, expected), describe_difference(shown, expected)
    else:
        difference = np.abs(shown.astype(np.int16) - expected.astype(np.int16))
        assert difference.max() <= 1, describe_difference(shown, expected)


# TigerVNC 1.12's 8-bit formats (vncviewer/CConn.cxx): LowColorLevel 0, 1, 2.
VERY_LOW_COLOUR = PixelFormat(8, 3, False, True, 1, 1, 1, 2, 1, 0)
LOW_COLOUR = PixelFormat(8, 6, False, True, 3, 3, 3, 4, 2, 0)
MEDIUM_COLOUR = PixelFormat(8, 8, False, True, 7, 7, 3, 5, 2, 0)


@dataclass(frozen=True)
class ViewerCase:
    name: str  # vncviewer's -PreferredEncoding value
    encoding: int
    colour_level: int | None = None  # None: -FullColor=1

    @property
    def pixel_format(self) -> PixelFormat:
        if self.colour_level is None:
            return SERVER_PIXEL_FORMAT
        return (VERY_LOW_COLOUR, LOW_COLOUR, MEDIUM_COLOUR)[self.colour_level]

    @property
    def options(self) -> tuple[str, ...]:
        if self.colour_level is None:
            colour: tuple[str, ...] = ("-FullColor=1",)
        else:
            colour = ("-FullColor=0", f"-LowColorLevel={self.colour_level}")
        return ("-AutoSelect=0", f"-PreferredEncoding={self.name}", *colour)

    def __str__(self) -> str:
        colours = "full" if self.colour_level is None else ("8", "64", "256")[self.colour_level]
        return f"{self.name}-{colours}-colour"


VIEWER_CASES = [
    ViewerCase("raw", int(Encoding.RAW)),
    ViewerCase("rre", int(Encoding.RRE)),
    ViewerCase("hextile", int(Encoding.HEXTILE)),
    ViewerCase("zrle", int(Encoding.ZRLE)),
    ViewerCase("tight", int(Encoding.TIGHT)),
    ViewerCase("tight", int(Encoding.TIGHT), colour_level=1),
    ViewerCase("zrle", int(Encoding.ZRLE), colour_level=1),
    ViewerCase("hextile", int(Encoding.HEXTILE), colour_level=2),
    ViewerCase("tight", int(Encoding.TIGHT), colour_level=0),
]


@pytest.mark.parametrize("case", VIEWER_CASES, ids=str)
def test_tigervnc_shows_every_encoding_exactly(
    xserver: XServer, start_console: Any, start_viewer: Any, case: ViewerCase
) -> None:
    harness = start_workload(start_console)
    viewer = start_viewer(harness, PASSWORD, *case.options)
    first = wait_for_view(xserver, harness, viewer, case.pixel_format)
    assert_view_matches(first, case.pixel_format)
    assert negotiated(harness) == (case.encoding, case.pixel_format)

    recorder = record_updates(harness)
    scroll(harness)
    view = wait_for_view(xserver, harness, viewer, case.pixel_format, last=first)
    assert_view_matches(view, case.pixel_format)
    # TigerVNC always lists CopyRect.
    assert_sent(recorder, case.encoding, copy_rect=True)
    # The premise: the screen is colourful, even in the client's format.
    assert len(np.unique(view.expected.reshape(-1, 3), axis=0)) >= 8, "the screen is not colourful"


def test_scrolling_sends_copyrect_and_the_viewer_stays_exact(
    xserver: XServer, start_console: Any, start_viewer: Any
) -> None:
    # Lines 30 ms apart: about one scroll per frame, so that few scrolls meet in
    # one update even on a busy machine (of two scrolls between updates, the
    # server sends the second as pixels).
    harness = start_workload(start_console, line_delay=0.03)
    viewer = start_viewer(harness, PASSWORD, "-AutoSelect=0", "-PreferredEncoding=hextile")
    first = wait_for_view(xserver, harness, viewer, SERVER_PIXEL_FORMAT)
    before_text = harness.text_lines()

    recorder = record_updates(harness)
    scroll(harness)
    view = wait_for_view(xserver, harness, viewer, SERVER_PIXEL_FORMAT, last=first)
    assert np.array_equal(view.shown, view.expected), describe_difference(view.shown, view.expected)

    rects = assert_sent(recorder, int(Encoding.HEXTILE), copy_rect=True)
    height, width = view.expected.shape[:2]
    copies = [rect for rect in rects if rect.encoding == COPY_RECT]
    assert len(copies) >= 10, f"only {len(copies)} CopyRects for {SCROLL_LINES} lines"
    for copy in copies:
        # A scroll up by whole lines of the whole width: the source lies below.
        assert copy.source is not None
        source_x, source_y = copy.source
        assert (copy.x, source_x, copy.width) == (0, 0, width), copy
        assert source_y > copy.y and (source_y - copy.y) % CELL_H == 0, copy
        assert source_y + copy.height <= height, copy
    # CopyRects come first in their update (the client copies before it paints).
    for update in {rect.update for rect in copies}:
        kinds = [rect.encoding for rect in rects if rect.update == update and rect.encoding >= 0]
        assert kinds.index(COPY_RECT) == 0 and kinds.count(COPY_RECT) == 1, kinds

    # CopyRect carried the scroll: in update after update, most of the screen
    # came only from the copy (the rest of the update painted little of its
    # destination), and the viewer, executing the copies, stays exact. (When the
    # screen scrolls twice between two updates, the second scroll is sent as
    # pixels, so not every update counts.)
    carried = 0
    for copy in copies:
        painted = np.zeros((height, width), dtype=bool)
        for rect in rects:
            if rect.update == copy.update and rect.encoding == int(Encoding.HEXTILE):
                painted[rect.y : rect.y + rect.height, rect.x : rect.x + rect.width] = True
        copy_only = copy.width * copy.height - int(painted[copy.y : copy.y + copy.height].sum())
        carried += copy_only * 2 > width * height
    assert carried >= 10, f"CopyRect carried the screen in only {carried} of {len(copies)} updates"
    assert harness.text_lines()[0] != before_text[0], "the screen did not scroll"


# -- vncdotool ------------------------------------------------------------------------

VNCDOTOOL_ENCODINGS = {
    "raw": int(Encoding.RAW),
    "rre": int(Encoding.RRE),
    "hextile": int(Encoding.HEXTILE),
    "zrle": int(Encoding.ZRLE),
}


def vncdotool_factory(encoding: int) -> Any:
    """A vncdotool factory whose client offers ``encoding`` (and its pseudo-encodings)."""
    from vncdotool import rfb
    from vncdotool.client import VNCDoToolClient, VNCDoToolFactory

    client = type("EncodingClient", (VNCDoToolClient,), {"encoding": rfb.Encoding(encoding)})
    return type("EncodingFactory", (VNCDoToolFactory,), {"protocol": client})


def on_reactor(fn: Callable[[], T]) -> T:
    """Run ``fn()`` on vncdotool's reactor thread and return its result.

    (Not through the API proxy: it chains each call onto the previous call's
    result, and a method that returns None would leave the next call no client.)
    """
    from twisted.internet import reactor, threads

    result: T = threads.blockingCallFromThread(reactor, fn)
    return result


def vncdotool_screen(client: Any) -> np.ndarray | None:
    """The client's current picture of the screen."""

    def read() -> np.ndarray | None:
        screen = client.protocol.screen
        return None if screen is None else np.asarray(screen.convert("RGB")).copy()

    return on_reactor(read)


def follow_incrementally(harness: ConsoleHarness, client: Any, timeout: float = 15.0) -> np.ndarray:
    """Ask for incremental updates until the client shows the framebuffer after the scroll.

    Requests go out every 20 ms, whether or not the last one was answered, as
    a viewer polling for updates would; the server answers each when something
    it covers has changed.
    """
    deadline = time.monotonic() + timeout
    difference = "no screen yet"
    while time.monotonic() < deadline:
        on_reactor(lambda: client.protocol.framebufferUpdateRequest(incremental=True))
        time.sleep(0.02)
        if not scrolled(harness.text_lines()):
            continue
        frames, fb = harness.frame_state()
        got = vncdotool_screen(client)
        if got is not None and np.array_equal(got, fb) and harness.frame_state()[0] == frames:
            return got
        difference = "no screen yet" if got is None else describe_difference(got, fb)
    pytest.fail(f"vncdotool's screen never caught up with the framebuffer: {difference}")


def capture(client: Any, path: Path) -> np.ndarray:
    """A full (non-incremental) capture through vncdotool, as (h, w, 3) RGB."""
    client.captureScreen(str(path))
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).copy()


@pytest.mark.parametrize("name", list(VNCDOTOOL_ENCODINGS))
def test_vncdotool_follows_the_scroll_in_every_encoding(
    vnc_api: Any, start_console: Any, tmp_path: Path, name: str
) -> None:
    encoding = VNCDOTOOL_ENCODINGS[name]
    # No password: vncdotool 1.4.2's VNC Authentication warns with cryptography >= 43.
    harness = start_workload(start_console, password=None)
    client = vnc_api.connect(
        harness.server,
        factory_class=vncdotool_factory(encoding),
        timeout=15.0,
    )
    try:
        # One full, non-incremental update in the encoding ...
        first = capture(client, tmp_path / "first.png")
        assert np.array_equal(first, harness.wait_quiescent()), describe_difference(
            first, harness.rgb()
        )
        assert negotiated(harness) == (encoding, SERVER_PIXEL_FORMAT)

        # ... then the scroll, followed through incremental updates only.
        recorder = record_updates(harness)
        start_scroll(harness)
        got = follow_incrementally(harness, client)
    finally:
        client.disconnect()

    assert got.shape == (LINES * CELL_H, COLUMNS * CELL_W, 3)
    assert_sent(recorder, encoding, copy_rect=False)
    assert len(np.unique(got.reshape(-1, 3), axis=0)) > 100, "the screen is not colourful"
