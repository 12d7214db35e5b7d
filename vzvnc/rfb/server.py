"""The asyncio shell around the sans-IO RFB core: listener and per-client sessions.

Each client gets one ``ClientSession`` owning two tasks: a reader that turns socket
bytes into events (``ServerConnection``) and acts on them, and a sender that
writes framebuffer updates when one is due (rfbproto "FramebufferUpdate"):

1. the client asked (its outstanding FramebufferUpdateRequest);
2. something it asked for changed;
3. the frame interval has passed since its last update;
4. its socket's write buffer is below the high mark, otherwise we wait for it to
   drain and look again, so stale pixels are never encoded into a full pipe.

An update is encoded from the current framebuffer with no ``await`` between
reading pixels and producing bytes. A slow client therefore gets fewer,
coalesced updates and holds at most one update's worth of buffered bytes; it
never slows the console or other clients. Any failure in a session ends that
session only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from vzvnc.errors import RemoteProtocolError
from vzvnc.fb.damage import Rect
from vzvnc.fb.framebuffer import Framebuffer
from vzvnc.rfb import encodings
from vzvnc.rfb.constants import Encoding
from vzvnc.rfb.encodings import copyrect
from vzvnc.rfb.messages import (
    AuthenticationFailed,
    AuthenticationSucceeded,
    ClientCutText,
    ClientInit,
    Event,
    FramebufferUpdateRequest,
    KeyEvent,
    QemuExtendedKeyEvent,
    SetEncodings,
)
from vzvnc.rfb.protocol import ConnectionState, EncodedRect, ServerConnection
from vzvnc.rfb.updates import ClientUpdateTracker, UpdatePlan
from vzvnc.term.keymap import ModifierState, key_to_bytes

log = logging.getLogger(__name__)

# Past this many bytes queued in the socket, no new update is encoded until it drains.
WRITE_HIGH_WATER = 256 * 1024
WRITE_LOW_WATER = 64 * 1024
READ_CHUNK = 64 * 1024


class Console(Protocol):
    """What a session needs from the console it serves."""

    @property
    def framebuffer(self) -> Framebuffer: ...
    @property
    def desktop_name(self) -> str: ...
    @property
    def frame_interval(self) -> float: ...
    @property
    def application_cursor_keys(self) -> bool: ...
    @property
    def application_keypad(self) -> bool: ...

    def client_initialised(self, session: ClientSession, shared: bool) -> None: ...
    def send_input(self, data: bytes) -> None: ...
    def paste(self, text: str) -> None: ...


class SessionLogger(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['peer'] if self.extra else '?'}] {msg}", kwargs


class ClientSession:
    def __init__(
        self,
        console: Console,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        password: bytes | None,
        view_only_password: bytes | None,
    ) -> None:
        self.console = console
        self._reader = reader
        self._writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.log = SessionLogger(log, {"peer": self.peer})
        self.connection = ServerConnection(password=password, view_only_password=view_only_password)
        fb = console.framebuffer
        self.tracker = ClientUpdateTracker(fb.width, fb.height)
        self.encoder: encodings.PixelEncoder = encodings.RawEncoder()
        self.supports_last_rect = False
        self.view_only = False
        self.modifiers = ModifierState()
        self.initialised = False
        self._wake = asyncio.Event()
        self._closed = False
        self._last_update = 0.0
        self.updates_sent = 0
        self.bytes_sent = 0
        transport = writer.transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)

    # -- called by the console ------------------------------------------------

    def framebuffer_changed(self, copy: Any, changed: Any) -> None:
        if not self.initialised:
            return
        if copy is not None:
            self.tracker.add_copy(copy)
        if changed:
            self.tracker.add_changed(changed)
        self._wake.set()

    def framebuffer_resized(self, width: int, height: int) -> None:
        self.tracker.resize(width, height)
        self._wake.set()

    def bell(self) -> None:
        if self.initialised and not self._closed:
            self.connection.send_bell()
            self._flush()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._wake.set()
            self._writer.close()

    # -- the session's life -----------------------------------------------------

    async def run(self) -> None:
        sender = asyncio.create_task(self._send_updates(), name=f"rfb-sender {self.peer}")
        try:
            self._flush()
            while not self._closed:
                data = await self._reader.read(READ_CHUNK)
                if not data:
                    self.log.info("client disconnected")
                    break
                self._handle_events(self.connection.receive_data(data))
                self._flush()
                if self.connection.state is ConnectionState.CLOSED:
                    break
        except RemoteProtocolError as exc:
            self.log.info("dropping client: %s", exc)
        except (ConnectionError, TimeoutError) as exc:
            self.log.info("connection lost: %s", exc)
        finally:
            self.close()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()

    def _flush(self) -> None:
        data = self.connection.data_to_send()
        if data and not self._writer.is_closing():
            self.bytes_sent += len(data)
            self._writer.write(data)

    def _handle_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, FramebufferUpdateRequest):
                self.tracker.request(
                    event.incremental, Rect(event.x, event.y, event.width, event.height)
                )
                self._wake.set()
            elif isinstance(event, KeyEvent | QemuExtendedKeyEvent):
                self._key(event.keysym, event.down)
            elif isinstance(event, SetEncodings):
                self._set_encodings(event.encodings)
            elif isinstance(event, ClientCutText):
                if not self.view_only:
                    self.console.paste(event.text.decode("latin-1"))
            elif isinstance(event, AuthenticationSucceeded):
                self.view_only = event.view_only
                self.log.info("authenticated%s", " (view only)" if event.view_only else "")
            elif isinstance(event, AuthenticationFailed):
                self.log.info("authentication failed")
            elif isinstance(event, ClientInit):
                self.console.client_initialised(self, event.shared)
                fb = self.console.framebuffer
                self.tracker.resize(fb.width, fb.height)
                self.tracker.size_changed = False
                self.initialised = True
                self._handle_events(
                    self.connection.accept_client_init(
                        fb.width, fb.height, self.console.desktop_name
                    )
                )
            # PointerEvent, SetPixelFormat (tracked by the connection), Fence,
            # EnableContinuousUpdates and SetDesktopSize need no action here yet.

    def _key(self, keysym: int, down: bool) -> None:
        if self.view_only:
            return
        if self.modifiers.update(keysym, down) or not down:
            return
        data = key_to_bytes(
            keysym,
            self.modifiers,
            application_cursor=self.console.application_cursor_keys,
            application_keypad=self.console.application_keypad,
        )
        if data:
            self.console.send_input(data)

    def _set_encodings(self, client_encodings: tuple[int, ...]) -> None:
        chosen = set(client_encodings)
        self.encoder = encodings.choose(client_encodings)
        self.tracker.supports_copy_rect = Encoding.COPY_RECT in chosen
        self.tracker.supports_desktop_size = Encoding.DESKTOP_SIZE in chosen
        self.supports_last_rect = Encoding.LAST_RECT in chosen

    async def _send_updates(self) -> None:
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            if self._closed or not self.tracker.update_due():
                continue
            delay = self._last_update + self.console.frame_interval - time.monotonic()
            if delay > 0:
                await sleep(delay)
            if self._writer.transport.get_write_buffer_size() > WRITE_HIGH_WATER:
                await self._writer.drain()
            if self._closed or not self.tracker.update_due():
                continue
            self._send_update(self.tracker.take_update())
            self._last_update = time.monotonic()

    def _send_update(self, plan: UpdatePlan) -> None:
        """Encode ``plan`` from the current framebuffer and queue it (no awaits inside)."""
        fb = self.console.framebuffer
        pixel_format = self.connection.pixel_format
        rects: list[EncodedRect] = []
        if plan.desktop_size is not None:
            width, height = plan.desktop_size
            rects.append(EncodedRect(0, 0, width, height, Encoding.DESKTOP_SIZE, b""))
        if plan.copy is not None:
            dest, source = plan.copy.dest, plan.copy.source
            payload = copyrect.encode(source.x, source.y)
            rects.append(
                EncodedRect(dest.x, dest.y, dest.width, dest.height, Encoding.COPY_RECT, payload)
            )
        for rect in plan.rects:
            rect = rect.intersect(fb.bounds)
            if rect.empty:
                continue
            payload = self.encoder.encode(fb.region(rect), pixel_format)
            rects.append(
                EncodedRect(rect.x, rect.y, rect.width, rect.height, self.encoder.encoding, payload)
            )
        self.connection.send_framebuffer_update(rects, last_rect=self.supports_last_rect)
        self.updates_sent += 1
        self._flush()


class SessionRegistry(Protocol):
    def add_session(self, session: ClientSession) -> None: ...
    def remove_session(self, session: ClientSession) -> None: ...


async def start_listener(
    console: Console,
    registry: SessionRegistry,
    host: str,
    port: int,
    *,
    password: bytes | None,
    view_only_password: bytes | None,
) -> asyncio.Server:
    """Listen for viewers; each connection runs as a session until it ends."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = ClientSession(
            console,
            reader,
            writer,
            password=password,
            view_only_password=view_only_password,
        )
        session.log.info("client connected")
        registry.add_session(session)
        try:
            await session.run()
        except Exception:
            session.log.exception("session failed")
        finally:
            registry.remove_session(session)

    return await asyncio.start_server(handle, host, port, reuse_address=True)
