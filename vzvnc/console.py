"""Console: the composition root for one console, and the library's main class.

It wires a program endpoint (a pty, an fd pair, a domain's controller), a
Terminal (what the program drew), a Renderer (pixels) and the RFB listener
(viewers), translates viewers' keys and pointer events into what a terminal
program reads (the RFB layer knows no terminal), and owns the render clock:

- pty output is fed to the terminal as it arrives until ``FLOOD_BYTES`` have
  come in since the last frame; after that (a flood) it is collected and fed
  once per frame, so the terminal can skip the lines that would scroll away
  unseen (``vzvnc.term.flood``), and at most ``FEED_SLICE`` bytes are parsed per
  frame so keystrokes and viewers keep moving. Past ``BACKLOG_LIMIT`` the pty is
  not read until the next frame: the kernel's pty buffer is the only
  backpressure the program sees;
- a frame is rendered only when something changed, at most ``max_fps`` times a
  second; an idle console has no timer at all;
- each frame's damage goes to every session, which sends it when its client asks.

The public surface (``docs/library.md``): ``Console(endpoint, config)``,
``start(sock=...)``, ``run``, ``resize``, ``snapshot``/``restore``, ``rename``,
``stop``, ``close``, ``address``. Everything else here is for subclasses in this
package (a domain's console server) and may change.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from vzvnc import state, users
from vzvnc.config import MAX_COLUMNS, MAX_LINES, MIN_COLUMNS, MIN_LINES, ConsoleConfig
from vzvnc.errors import ConfigError
from vzvnc.fb.display import Display
from vzvnc.fb.font import default_atlas
from vzvnc.fb.framebuffer import Framebuffer
from vzvnc.fb.render import Renderer
from vzvnc.rfb.server import ClientSession, ListenerPolicy, start_listener
from vzvnc.rfb.updates import (
    REASON_OTHER_CLIENT,
    REASON_SERVER,
    REASON_THIS_CLIENT,
    STATUS_INVALID_LAYOUT,
    STATUS_OK,
    STATUS_PROHIBITED,
)
from vzvnc.term.keymap import ModifierState, key_to_bytes
from vzvnc.term.keymap import XK_Next as XK_PAGE_DOWN
from vzvnc.term.keymap import XK_Prior as XK_PAGE_UP
from vzvnc.term.mouse import MouseReporter
from vzvnc.term.selection import Selection
from vzvnc.term.terminal import Terminal
from vzvnc.transport.tls import TlsContexts, anonymous_context, certificate_context

log = logging.getLogger(__name__)

# Output since the last frame past which a console counts as flooded (batch per frame).
FLOOD_BYTES = 8 * 1024
# Most bytes parsed in one frame (after any fast-forward), so a frame stays short.
FEED_SLICE = 256 * 1024
# Most bytes collected before the pty is left unread until the next frame.
BACKLOG_LIMIT = 4 * 1024 * 1024
# Frames a flood may be left unparsed while more arrives: a larger batch lets the
# terminal skip more of it (the kernel's pty buffer alone holds too little).
MAX_POSTPONED_FRAMES = 4
# How long a program gets to exit after SIGHUP before it is killed.
HANGUP_GRACE = 2.0

# Input waiting for the program past which a viewer that typed is not read further
# until the program has taken it (down to INPUT_ROOM), so a flood of input waits in
# the flooder's own socket and another viewer's keystroke queues behind at most
# this much. A program that reads nothing holds a viewer for INPUT_WAIT_MAX at most.
INPUT_BACKLOG_HIGH = 4 * 1024
INPUT_ROOM = 1024
INPUT_WAIT_MAX = 0.1
INPUT_RECHECK = 0.002
# Input per frame up to which a viewer counts as typing, not pasting or flooding:
# its echo may be drawn half a frame early.
TYPING_BYTES = 64

BRACKETED_PASTE_START = b"\x1b[200~"
BRACKETED_PASTE_END = b"\x1b[201~"


class ProgramEndpoint(Protocol):
    """Where the console's bytes come from and go to: a local pty, an fd pair, or a
    domain's controller. ``vzvnc.endpoints`` has the ready-made ones."""

    @property
    def replaying(self) -> bool:
        """True while old output is being replayed: replies and bells then go nowhere."""
        ...

    def attach(
        self,
        loop: asyncio.AbstractEventLoop,
        on_output: Callable[[bytes], None],
        on_eof: Callable[[], None],
    ) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def write(self, data: bytes) -> None: ...
    def resize(self, columns: int, lines: int) -> None: ...
    async def wait(self) -> int: ...
    def hang_up(self) -> None: ...
    def kill(self) -> None: ...
    def drain_output(self) -> bytes: ...
    def close(self) -> None: ...


@runtime_checkable
class InputBacklog(Protocol):
    """An endpoint that can tell how much input it holds that the program has not taken."""

    @property
    def input_backlog(self) -> int: ...


class SessionInput:
    """One viewer's keyboard and mouse as a terminal sees them: held modifiers, and
    the button state mouse reports are computed from."""

    __slots__ = ("modifiers", "mouse", "sent", "sent_before")

    def __init__(self) -> None:
        self.modifiers = ModifierState()
        self.mouse = MouseReporter()
        self.sent = 0
        """Input bytes since the last frame."""
        self.sent_before = 0
        """Input bytes in the frame before."""


class Console:
    """One console: a program's terminal served to VNC viewers.

    ``endpoint`` is where the program's bytes come from and go to (any object with
    the ``ProgramEndpoint`` shape); ``config`` sets size, listen address, passwords
    (the auth policy) and limits. Build it inside a running event loop's thread,
    then ``await start()`` and ``await run()`` (or ``stop()`` and ``close()``).
    """

    def __init__(self, endpoint: ProgramEndpoint, config: ConsoleConfig | None = None) -> None:
        config = config if config is not None else ConsoleConfig()
        self.config = config
        self.endpoint = endpoint
        self.name = config.name
        self.terminal = Terminal(config.columns, config.lines, history=config.history)
        self.display = Display(self.terminal)
        self.renderer = Renderer(
            default_atlas(), config.columns, config.lines, scale=config.font_scale
        )
        self._selecting = False
        self.sessions: set[ClientSession] = set()
        self._inputs: dict[ClientSession, SessionInput] = {}
        self.server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._render_handle: asyncio.TimerHandle | None = None
        self._last_render = 0.0
        self._fed_since_render = 0
        self._typed_at = -1.0
        self._output_since = 0.0
        self._render_due = 0.0
        self._backlog = bytearray()
        self._postponed = 0
        self._eof = False
        self._stopping = asyncio.Event()
        self.frames_rendered = 0
        self._framebuffer_version = 0

    @property
    def pty(self) -> ProgramEndpoint:
        """The endpoint (its older name)."""
        return self.endpoint

    # -- the library's controls ----------------------------------------------------

    def resize(self, columns: int, lines: int) -> None:
        """A new cell grid: the program is told (TIOCSWINSZ or its equivalent) and
        every viewer gets the new desktop size."""
        if not (MIN_COLUMNS <= columns <= MAX_COLUMNS and MIN_LINES <= lines <= MAX_LINES):
            raise ConfigError(
                f"size: {columns}x{lines} is outside {MIN_COLUMNS}x{MIN_LINES}.."
                f"{MAX_COLUMNS}x{MAX_LINES}"
            )
        self._resize(columns, lines, None)

    def snapshot(self, offset: int = 0) -> state.Snapshot | None:
        """The terminal as it is now (screen, history, modes) with everything received
        so far fed in, for ``vzvnc.state``; ``offset`` is the caller's position in
        the output stream. None if the screen is too large to serialise."""
        self.catch_up()
        return state.capture(self.terminal, offset)

    def restore(self, snapshot: state.Snapshot) -> None:
        """Show the terminal a snapshot holds instead of the current one."""
        terminal = state.restore(snapshot)
        size_changed = (terminal.columns, terminal.lines) != (
            self.terminal.columns,
            self.terminal.lines,
        )
        self.terminal = terminal
        self.display.terminal = terminal
        self.display.selection = None
        self.display.offset = 0
        if size_changed:
            self.endpoint.resize(terminal.columns, terminal.lines)
            self.renderer.resize(terminal.columns, terminal.lines)
            self._framebuffer_version += 1
            self._announce_size(None)
        for session in list(self.sessions):
            session.rename()
        self._schedule_render()

    def rename(self, name: str) -> None:
        """The desktop name viewers show (a title the program sets still wins)."""
        self.name = name
        for session in list(self.sessions):
            session.rename()

    def stop(self) -> None:
        """Ask ``run`` to end: the program is hung up and the console closes."""
        self._stopping.set()

    def catch_up(self) -> None:
        """Feed output collected during a flood into the terminal now."""
        rest = self.terminal.fast_forward(bytes(self._backlog))
        self._backlog.clear()
        self._postponed = 0
        if rest:
            self._feed(rest)

    @property
    def has_pending_output(self) -> bool:
        """True while output has been received but not yet fed to the terminal."""
        return bool(self._backlog)

    # -- what sessions see (rfb.server.Console) -------------------------------

    @property
    def framebuffer(self) -> Framebuffer:
        return self.renderer.framebuffer

    @property
    def desktop_name(self) -> str:
        return self.terminal.title or self.name

    @property
    def framebuffer_version(self) -> int:
        """Changes with every frame drawn and every resize (first updates are cached by it)."""
        return self._framebuffer_version

    @property
    def cell_size(self) -> tuple[int, int]:
        return (self.renderer.cell_width, self.renderer.cell_height)

    @property
    def frame_interval(self) -> float:
        return 1.0 / self.config.max_fps

    def client_initialised(self, session: ClientSession, shared: bool) -> None:
        others = [other for other in self.sessions if other is not session and other.initialised]
        if shared or self.config.sharing == "always" or not others:
            return
        if self.config.sharing == "refuse":
            session.log.info("refused: it asked for exclusive access while others are connected")
            session.close()
            return
        # A client that asks for exclusive access disconnects the others (as
        # TigerVNC does by default): the newest viewer is the one a person is using.
        for other in others:
            other.log.info("disconnected: a non-shared client connected")
            other.close()

    def key(self, session: ClientSession, keysym: int, down: bool) -> None:
        keys = self._input(session)
        if keys.modifiers.update(keysym, down) or not down:
            return
        if keys.modifiers.shift and keysym in (XK_PAGE_UP, XK_PAGE_DOWN):
            # xterm's scrollback keys: they move the view and never reach the program.
            page = max(1, self.terminal.lines // 2)
            self.scroll_view(page if keysym == XK_PAGE_UP else -page)
            return
        self.return_to_live()
        data = key_to_bytes(
            keysym,
            keys.modifiers,
            application_cursor=self.terminal.application_cursor_keys,
            application_keypad=self.terminal.application_keypad,
        )
        if data:
            self._typed(keys, len(data))
            self.send_input(data)

    def _input(self, session: ClientSession) -> SessionInput:
        keys = self._inputs.get(session)
        if keys is None:
            keys = self._inputs[session] = SessionInput()
        return keys

    def send_input(self, data: bytes) -> None:
        self.endpoint.write(data)

    def _typed(self, keys: SessionInput, count: int) -> None:
        keys.sent += count
        if keys.sent + keys.sent_before <= TYPING_BYTES:
            self._typed_at = time.monotonic()

    def _input_backlog(self) -> int:
        endpoint = self.endpoint
        return endpoint.input_backlog if isinstance(endpoint, InputBacklog) else 0

    async def input_room(self) -> None:
        """Return once the program has taken most of the input waiting for it (or after
        ``INPUT_WAIT_MAX``): a session calls this after a slice of its input."""
        if self._input_backlog() <= INPUT_BACKLOG_HIGH:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + INPUT_WAIT_MAX
        while self._input_backlog() > INPUT_ROOM and loop.time() < deadline:
            await asyncio.sleep(INPUT_RECHECK)

    def paste(self, text: str) -> None:
        # Like xterm, a pasted newline is a carriage return (what Enter sends).
        data = text.replace("\r\n", "\r").replace("\n", "\r").encode("utf-8", "replace")
        if self.terminal.bracketed_paste:
            # Strip the end marker so a paste cannot escape bracketed mode.
            data = data.replace(BRACKETED_PASTE_END, b"")
            data = BRACKETED_PASTE_START + data + BRACKETED_PASTE_END
        self.send_input(data)

    def request_resize(self, session: ClientSession, width: int, height: int) -> int:
        """A viewer's SetDesktopSize: a new cell grid, TIOCSWINSZ, and news for every viewer."""
        if not self.config.resizable:
            return STATUS_PROHIBITED
        columns = width // self.renderer.cell_width
        lines = height // self.renderer.cell_height
        if not (MIN_COLUMNS <= columns <= MAX_COLUMNS and MIN_LINES <= lines <= MAX_LINES):
            return STATUS_INVALID_LAYOUT
        if (columns, lines) != (self.terminal.columns, self.terminal.lines):
            log.info("resizing to %dx%d at a viewer's request", columns, lines)
        self._resize(columns, lines, session)
        return STATUS_OK

    def _resize(self, columns: int, lines: int, session: ClientSession | None) -> None:
        if (columns, lines) != (self.terminal.columns, self.terminal.lines):
            self.terminal.resize(columns, lines)
            self.endpoint.resize(columns, lines)
            self.renderer.resize(columns, lines)
            self._framebuffer_version += 1
            self.display.selection = None
            self.display.scroll(0)
        self._announce_size(session)
        self._schedule_render()

    def _announce_size(self, session: ClientSession | None) -> None:
        fb = self.framebuffer
        for other in list(self.sessions):
            if session is None:
                reason = REASON_SERVER
            else:
                reason = REASON_THIS_CLIENT if other is session else REASON_OTHER_CLIENT
            other.framebuffer_resized(fb.width, fb.height, reason)

    def pointer(
        self, session: ClientSession, previous_mask: int, mask: int, x: int, y: int
    ) -> None:
        """Mouse reports while the program asked for them; otherwise selection and wheel."""
        column = min(max(x // self.renderer.cell_width, 0), self.terminal.columns - 1)
        row = min(max(y // self.renderer.cell_height, 0), self.terminal.lines - 1)
        terminal = self.terminal
        keys = self._input(session)
        if terminal.mouse_mode and self.display.offset == 0:
            mods = keys.modifiers
            report = keys.mouse.event(
                mask,
                column,
                row,
                mode=terminal.mouse_mode,
                sgr=terminal.mouse_sgr,
                shift=mods.shift,
                meta=mods.alt or mods.meta,
                ctrl=mods.ctrl,
            )
            self._typed(keys, len(report))
            self.send_input(report)
            return
        keys.mouse.mask, keys.mouse.cell = mask, (column, row)
        pressed = mask & ~previous_mask
        if pressed & (1 << 3):
            self.scroll_view(3)
        if pressed & (1 << 4):
            self.scroll_view(-3)
        if pressed & 1:
            self._selecting = True
            self.display.selection = Selection((row, column), (row, column))
            self._schedule_render()
        elif mask & 1 and self._selecting and self.display.selection is not None:
            self.display.selection = Selection(self.display.selection.anchor, (row, column))
            self._schedule_render()
        elif previous_mask & 1 and not mask & 1 and self._selecting:
            self._selecting = False
            # Viewers rate-limit motion but send button changes at once, so the
            # release may be the first event at the drag's end: it moves the head too.
            if self.display.selection is not None:
                self.display.selection = Selection(self.display.selection.anchor, (row, column))
                self._schedule_render()
            selection = self.display.selection
            if selection is not None and selection.anchor == selection.head:
                self.display.selection = None  # a click, not a drag
                self._schedule_render()
            elif selection is not None:
                text = self.display.selected_text()
                for other in list(self.sessions):
                    other.send_clipboard(text)

    def selection_text(self) -> str:
        return self.display.selected_text()

    def scroll_view(self, lines: int) -> None:
        if self.display.scroll(lines):
            self._schedule_render()

    def return_to_live(self) -> None:
        if self.display.offset:
            self.display.offset = 0
            self._schedule_render()

    def add_session(self, session: ClientSession) -> None:
        self.sessions.add(session)

    def remove_session(self, session: ClientSession) -> None:
        self.sessions.discard(session)
        self._inputs.pop(session, None)

    # -- program output --------------------------------------------------------

    def _on_output(self, data: bytes) -> None:
        if not self._fed_since_render:
            self._output_since = time.monotonic()
        self._fed_since_render += len(data)
        if self.endpoint.replaying or (not self._backlog and self._fed_since_render < FLOOD_BYTES):
            # Replayed output is fed at once: whether it is a replay is known now.
            self._feed(data)
        else:
            self._backlog += data
            if len(self._backlog) >= BACKLOG_LIMIT:
                self.endpoint.pause_reading()
        self._schedule_render()

    def _feed_backlog(self, still_arriving: bool) -> None:
        """Feed one frame's worth of collected output, skipping what cannot be seen."""
        if not self._backlog:
            return
        data = self.terminal.fast_forward(bytes(self._backlog))
        if (
            len(data) == len(self._backlog)
            and still_arriving
            and len(self._backlog) < BACKLOG_LIMIT
            and self._postponed < MAX_POSTPONED_FRAMES
        ):
            self._postponed += 1
            return
        self._postponed = 0
        self._backlog = bytearray(data[FEED_SLICE:])
        self._feed(data[:FEED_SLICE])

    def _feed(self, data: bytes) -> None:
        self.terminal.feed(data)
        # New output brings the view back to the live screen, as in xterm.
        self.display.offset = 0
        if self.terminal.take_title_changed():
            for session in list(self.sessions):
                session.rename()
        replies = self.terminal.take_replies()
        bells = self.terminal.take_bells()
        if self.endpoint.replaying:
            return  # answered (or rung) the first time these bytes were shown
        if replies:
            self.endpoint.write(replies)
        if bells:
            for session in list(self.sessions):
                session.bell()

    def _on_eof(self) -> None:
        self._eof = True

    def _schedule_render(self) -> None:
        if self._loop is None:
            return
        interval = self.frame_interval
        now = time.monotonic()
        if now - self._typed_at < interval:
            # A viewer typed: the output that follows is likely its echo, and may be
            # drawn three quarters of an interval early, so a keystroke does not wait a
            # frame behind a busy screen (a flood of input gets no such favour).
            due = self._last_render + interval / 4
        else:
            # Output nobody typed for (a top refresh, a log line) waits one interval
            # for the rest of its burst: the pty hands a program's one write over in
            # pieces milliseconds apart, and each extra frame is a render and an
            # update for every viewer.
            due = self._last_render + interval
            if self._fed_since_render:
                due = max(due, self._output_since + interval)
        if self._render_handle is not None:
            if self._render_due <= due:
                return
            self._render_handle.cancel()
        self._render_due = due
        delay = max(0.0, due - now)
        self._render_handle = self._loop.call_later(delay, self._render)

    def _render(self) -> None:
        self._render_handle = None
        for keys in self._inputs.values():
            keys.sent_before, keys.sent = keys.sent, 0
        started = time.monotonic()
        still_arriving = self._fed_since_render > 0 and not self._eof
        self._fed_since_render = 0
        self._feed_backlog(still_arriving)
        self.render_now()
        # The next frame is due one interval after this one started, so a busy screen
        # still changes at the full rate (and a keystroke's echo waits at most one
        # interval); but never sooner than half an interval after this one ended,
        # which leaves a slow frame's successor time to collect the pty's output.
        self._last_render = max(started, time.monotonic() - self.frame_interval / 2)
        if self._backlog:
            self._schedule_render()
        if not self._eof and len(self._backlog) < BACKLOG_LIMIT:
            self.endpoint.resume_reading()

    def render_now(self) -> None:
        result = self.renderer.render(self.display)
        self.frames_rendered += 1
        self._framebuffer_version += 1
        if result:
            for session in list(self.sessions):
                session.framebuffer_changed(result.copy, result.changed)

    # -- lifetime ----------------------------------------------------------------

    def request_stop(self, signum: int | None = None) -> None:
        if signum is not None:
            log.info("received %s, shutting down", signal.Signals(signum).name)
        self.stop()

    async def listen(self, port: int, *, sock: socket.socket | None = None) -> None:
        """Open the RFB listener on ``port``, or on ``sock`` (bound already; it is
        listened on and then owned by the console). OSError if it cannot be had."""
        if sock is not None:
            sock.setblocking(False)
        self.server = await start_listener(
            self,
            self,
            self.config.host,
            port,
            password=self.config.password,
            view_only_password=self.config.view_only_password,
            sock=sock,
            websocket=self.config.websocket,
            tls=self._tls_contexts(),
            check_user=self._user_checker(),
            legacy=self.config.legacy_allowed,
            policy=ListenerPolicy(
                max_viewers=self.config.max_viewers,
                lockout_threshold=self.config.lockout_threshold,
                lockout_seconds=self.config.lockout_seconds,
                handshake_timeout=self.config.handshake_timeout,
                idle_timeout=self.config.idle_timeout,
            ),
        )

    def _tls_contexts(self) -> TlsContexts | None:
        config = self.config
        if config.tls_cert_file is None and not config.anonymous_tls:
            return None
        x509 = None
        if config.tls_cert_file is not None and config.tls_key_file is not None:
            x509 = certificate_context(config.tls_cert_file, config.tls_key_file)
        return TlsContexts(x509, anonymous_context() if config.anonymous_tls else None)

    def _user_checker(self) -> Callable[[str, str], tuple[bool, bool]] | None:
        if self.config.users_file is None:
            return None
        known = users.load(self.config.users_file)

        def check(name: str, password: str) -> tuple[bool, bool]:
            user = users.check(known, name, password)
            return (user is not None, user is not None and user.view_only)

        return check

    async def start(self, *, listen: bool = True, sock: socket.socket | None = None) -> None:
        """Attach the endpoint and (unless told not to) listen on the configured
        address or on ``sock``; viewers can then connect."""
        self._loop = asyncio.get_running_loop()
        self.endpoint.attach(self._loop, self._on_output, self._on_eof)
        self.render_now()
        if listen:
            await self.listen(self.config.port, sock=sock)

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None
        sockname = self.server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    async def run(self) -> int:
        """Serve until the program exits (or a stop is requested); the exit code."""
        if self.server is None:
            await self.start()
        exited = asyncio.create_task(self.endpoint.wait(), name="program-exit")
        stopping = asyncio.create_task(self._stopping.wait(), name="stop-request")
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        program_ended_first = exited.done()
        if program_ended_first:
            self._show_final_output()
            log.info("program exited with status %d", exited.result())
            if self.config.keep_open and not stopping.done():
                await stopping
        else:
            self.endpoint.hang_up()
            try:
                await asyncio.wait_for(asyncio.shield(exited), HANGUP_GRACE)
            except TimeoutError:
                log.warning("program ignored SIGHUP; killing it")
                self.endpoint.kill()
                await exited
        stopping.cancel()
        await self.close()
        # A stop we were asked for is a clean shutdown, whatever the hangup did to
        # the program; when the program ended on its own, its status is ours.
        return exited.result() if program_ended_first else 0

    def _show_final_output(self) -> None:
        rest = self.terminal.fast_forward(bytes(self._backlog) + self.endpoint.drain_output())
        self._backlog.clear()
        if rest:
            self._feed(rest)
        if self._render_handle is not None:
            self._render_handle.cancel()
            self._render_handle = None
        self.render_now()

    async def close(self) -> None:
        if self._render_handle is not None:
            self._render_handle.cancel()
            self._render_handle = None
        if self.server is not None:
            self.server.close()
        for session in list(self.sessions):
            session.close()
        if self.server is not None:
            await self.server.wait_closed()
        self.endpoint.close()
