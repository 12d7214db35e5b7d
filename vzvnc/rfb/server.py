"""The asyncio shell around the sans-IO RFB core: listener and per-client sessions.

Each client gets one ``ClientSession`` owning two tasks: a reader that turns socket
bytes into events (``ServerConnection``) and acts on them, and a sender that
writes framebuffer updates when one is due (rfbproto "FramebufferUpdate"):

1. the client asked (its outstanding FramebufferUpdateRequest);
2. something it asked for changed (the console paces its frames, so an update
   goes out as soon as the frame that made it is drawn, never a frame later);
3. everything written before has left for the kernel, otherwise we wait for it
   to drain and look again, so stale pixels are never encoded into a full pipe.

An update is encoded from the current framebuffer with no ``await`` between
reading pixels and producing bytes. A slow client therefore gets fewer,
coalesced updates and holds at most one update's worth of buffered bytes (plus
its zlib streams: see ``encodings.common.ZLIB_MEM_LEVEL``); it
never slows the console or other clients. Any failure in a session ends that
session only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from vzvnc.errors import RemoteProtocolError
from vzvnc.fb.damage import Copy, Rect, Region
from vzvnc.fb.framebuffer import Framebuffer
from vzvnc.rfb import clipboard, encodings
from vzvnc.rfb.constants import Encoding, FenceFlag, VeNCryptSubtype
from vzvnc.rfb.encodings import copyrect
from vzvnc.rfb.first_update import FirstUpdate, FirstUpdateCache, FirstUpdateKey
from vzvnc.rfb.lockout import Lockout
from vzvnc.rfb.messages import (
    AuthenticationFailed,
    AuthenticationSucceeded,
    ClientCutText,
    ClientInit,
    ConnectionRefused,
    EnableContinuousUpdates,
    Event,
    ExtendedClipboard,
    Fence,
    FramebufferUpdateRequest,
    KeyEvent,
    PlainCredentials,
    PointerEvent,
    QemuExtendedKeyEvent,
    SetDesktopSize,
    SetEncodings,
    StartTls,
)
from vzvnc.rfb.pixelformat import SERVER_PIXEL_FORMAT
from vzvnc.rfb.protocol import ConnectionState, EncodedRect, ServerConnection
from vzvnc.rfb.updates import (
    REASON_SERVER,
    REASON_THIS_CLIENT,
    STATUS_OK,
    STATUS_PROHIBITED,
    ClientUpdateTracker,
    UpdatePlan,
)
from vzvnc.transport.streams import Reader, WebSocketWriter, open_transport, transport_name
from vzvnc.transport.tls import TlsContexts

log = logging.getLogger(__name__)

# A new update is encoded only once everything before it has left for the kernel:
# the kernel's socket buffer already keeps the pipe full, and a client that stops
# reading then holds at most one encoded update here, not a queue of them.
WRITE_HIGH_WATER = 0
# Most pixels of a Raw update encoded at once (64 KB at 32 bits per pixel); the
# rest of the update follows slice by slice as the socket drains.
RAW_UPDATE_PIXELS = 16 * 1024
# Replies queued to a client past which we read nothing more from it until it reads:
# a client that sends and never reads cannot make us hold its answers.
REPLY_BACKLOG = 64 * 1024
# What one client's input may take of one loop turn: about 128 key events, a
# millisecond or so. Then it yields, so a client flooding input cannot keep the loop
# from the others.
INPUT_SLICE = 1024


class Console(Protocol):
    """What a session needs from the console it serves."""

    @property
    def framebuffer(self) -> Framebuffer: ...
    @property
    def desktop_name(self) -> str: ...
    @property
    def cell_size(self) -> tuple[int, int]:
        """Width and height of a glyph cell in pixels (encoders align to it)."""
        ...

    @property
    def frame_interval(self) -> float: ...
    @property
    def framebuffer_version(self) -> int:
        """Changes whenever the framebuffer's pixels may have changed."""
        ...

    def client_initialised(self, session: ClientSession, shared: bool) -> None: ...
    def key(self, session: ClientSession, keysym: int, down: bool) -> None:
        """A key press or release (an X keysym) from a viewer allowed to type."""
        ...

    def paste(self, text: str) -> None: ...
    def request_resize(self, session: ClientSession, width: int, height: int) -> int: ...
    def pointer(
        self, session: ClientSession, previous_mask: int, mask: int, x: int, y: int
    ) -> None: ...
    def selection_text(self) -> str: ...
    async def input_room(self) -> None:
        """Wait while the program has not taken the input it was given."""
        ...


class SessionLogger(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['peer'] if self.extra else '?'}] {msg}", kwargs


class ClientSession:
    def __init__(
        self,
        console: Console,
        reader: Reader,
        writer: Any,
        *,
        password: bytes | None,
        view_only_password: bytes | None,
        refuse: str | None = None,
        policy: ListenerPolicy | None = None,
        on_authentication: Callable[[bool], None] | None = None,
        vencrypt: Sequence[int] = (),
        legacy: bool = True,
        tls: TlsContexts | None = None,
        check_user: Callable[[str, str], tuple[bool, bool]] | None = None,
        first_updates: FirstUpdateCache | None = None,
    ) -> None:
        """``reader``/``writer``: the transport's streams (``vzvnc.transport``); the
        writer has ``asyncio.StreamWriter``'s interface. ``refuse``: turn the client
        away with this reason; ``on_authentication(ok)`` hears how authentication went."""
        self.console = console
        self.policy = policy if policy is not None else ListenerPolicy()
        self._on_authentication = on_authentication
        self._last_input = time.monotonic()
        self._reader = reader
        self._writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.log = SessionLogger(log, {"peer": self.peer})
        self.connection = ServerConnection(
            password=password,
            view_only_password=view_only_password,
            refuse=refuse,
            vencrypt=vencrypt,
            legacy=legacy,
        )
        self._tls = tls
        self._check_user = check_user
        self._first_updates = first_updates
        self._tls_due: bool | None = None
        """Set by StartTls: the transport is upgraded before anything more is read."""
        fb = console.framebuffer
        self.tracker = ClientUpdateTracker(fb.width, fb.height)
        # One selector per connection: each encoding's zlib streams live as long
        # as the connection, whatever SetEncodings messages come and go.
        self.encoders = encodings.EncoderSelector()
        self.encoder: encodings.PixelEncoder = encodings.RawEncoder()
        self.supports_last_rect = False
        self.view_only = False
        self.pointer_mask = 0
        self.extended_clipboard = False
        self.peer_clipboard_limit = 0
        self.qemu_keys = False
        self.continuous_updates = False
        self.fences = False
        self.initialised = False
        self._gave_input = False
        self._unsent: list[Rect] = []
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._stream_format = SERVER_PIXEL_FORMAT
        """Rectangles of the update being written that are not encoded yet."""
        self._wake = asyncio.Event()
        self._closed = False
        self.updates_sent = 0
        self.slices_streamed = 0
        """Raw rectangles written after waiting for the socket (``_stream_rest``)."""
        self.bytes_sent = 0
        self._limit_write_buffer()

    def _limit_write_buffer(self) -> None:
        self._writer.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=0)

    # -- called by the console ------------------------------------------------

    def framebuffer_changed(self, copy: Copy | None, changed: Region) -> None:
        if not self.initialised:
            return
        if self._unsent:
            # They will carry pixels newer than the tracker thinks the client has.
            self.tracker.add_changed(Region(self._unsent))
        if copy is not None:
            self.tracker.add_copy(copy)
        if changed:
            self.tracker.add_changed(changed)
        self._wake.set()

    def framebuffer_resized(self, width: int, height: int, reason: int) -> None:
        self.tracker.resize(width, height, reason)
        self._wake.set()

    def rename(self) -> None:
        self.tracker.rename()
        self._wake.set()

    def send_clipboard(self, text: str) -> None:
        """Offer selected text to the viewer: Extended Clipboard if it speaks it, else Latin-1."""
        if not self.initialised or self._closed:
            return
        if self.extended_clipboard:
            if len(text.encode("utf-8")) + 1 <= self.peer_clipboard_limit:
                self.connection.send_extended_clipboard(clipboard.provide(text))
            else:
                self.connection.send_extended_clipboard(clipboard.notify())
        else:
            self.connection.send_cut_text(text)
        self._flush()

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
        loop = asyncio.get_running_loop()
        self._handshake_timer = loop.call_later(
            self.policy.handshake_timeout, self._handshake_overdue
        )
        timers = [self._handshake_timer]
        if self.policy.idle_timeout > 0:
            timers.append(loop.call_later(self.policy.idle_timeout, self._idle_check))
        self._timers = timers
        try:
            self._flush()
            while not self._closed:
                if self._writer.transport.get_write_buffer_size() > REPLY_BACKLOG:
                    await self._writer.drain()
                data = await self._reader.read(INPUT_SLICE)
                if not data:
                    self.log.info("client disconnected")
                    break
                self._last_input = time.monotonic()
                self._handle_events(self.connection.receive_data(data))
                if self._tls_due is not None:
                    # The client starts TLS on our "accepted" byte: nothing it sends
                    # after that may land in the plaintext buffer.
                    self._writer.transport.pause_reading()
                self._flush()
                if self._tls_due is not None:
                    await self._start_tls(self._tls_due)
                if self._gave_input:
                    # Our input waits for the program: read no more of it until it
                    # is taken, so it cannot pile up ahead of other viewers' keys.
                    self._gave_input = False
                    await self.console.input_room()
                await asyncio.sleep(0)  # the next slice waits its turn
                if self.connection.state is ConnectionState.CLOSED:
                    break
        except RemoteProtocolError as exc:
            self.log.info("dropping client: %s", exc)
            with contextlib.suppress(Exception):
                self._flush()  # the reason the protocol gave the client, if any
        except (ConnectionError, TimeoutError, ssl.SSLError) as exc:
            self.log.info("connection lost: %s", exc)
        finally:
            for timer in self._timers:
                timer.cancel()
            self.close()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            self._release()

    def _release(self) -> None:
        """Let go of what an ended session holds. Its callbacks and tasks make
        reference cycles, which only the cyclic collector frees, in its own time; in a
        reconnect storm the zlib streams (150 KB each) would pile up until then."""
        self.encoders = encodings.EncoderSelector()
        self.encoder = encodings.RawEncoder()
        self._on_authentication = None
        self._check_user = None
        self._first_updates = None
        self._timers = []

    async def _start_tls(self, anonymous: bool) -> None:
        self._tls_due = None
        assert self._tls is not None
        context = self._tls.anonymous if anonymous else self._tls.x509
        assert context is not None
        await self._writer.drain()
        try:
            await self._writer.start_tls(context)
        except (ssl.SSLError, OSError) as exc:
            raise RemoteProtocolError(f"TLS handshake failed: {exc}") from exc
        self._limit_write_buffer()  # the TLS transport has limits of its own
        self.log.info("TLS established (%s)", "anonymous" if anonymous else "certificate")
        self._handle_events(self.connection.tls_established())
        self._flush()

    async def _check_credentials(self, user: str, password: str) -> None:
        assert self._check_user is not None
        ok, view_only = await asyncio.to_thread(self._check_user, user, password)
        if self._closed:
            return
        self._handle_events(self.connection.plain_checked(ok, view_only))
        self._flush()

    def _handshake_overdue(self) -> None:
        if not self.initialised and not self._closed:
            self.log.info(
                "dropping client: no handshake within %.0f s", self.policy.handshake_timeout
            )
            self.close()

    def _idle_check(self) -> None:
        if self._closed:
            return
        idle = time.monotonic() - self._last_input
        remaining = self.policy.idle_timeout - idle
        if remaining <= 0:
            self.log.info("dropping client: idle for %.0f s", idle)
            self.close()
            return
        # Input came meanwhile: look again when the quiet could first reach the limit.
        self._timers.append(asyncio.get_running_loop().call_later(remaining, self._idle_check))

    def _flush(self, *, streaming: bool = False) -> None:
        if self._unsent and not streaming:
            return  # inside an update that is still being written: after it
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
            elif isinstance(event, PointerEvent):
                if not self.view_only:
                    previous, self.pointer_mask = self.pointer_mask, event.button_mask
                    self._gave_input = True
                    self.console.pointer(self, previous, event.button_mask, event.x, event.y)
            elif isinstance(event, ClientCutText):
                if not self.view_only:
                    self._gave_input = True
                    self.console.paste(event.text.decode("latin-1"))
            elif isinstance(event, EnableContinuousUpdates):
                self._continuous_updates(event)
            elif isinstance(event, Fence):
                if event.flags & FenceFlag.REQUEST:
                    # We handle messages strictly in order, so every ordering a
                    # fence can ask for already holds: answer at once.
                    supported = FenceFlag.BLOCK_BEFORE | FenceFlag.BLOCK_AFTER | FenceFlag.SYNC_NEXT
                    self.connection.send_fence(event.flags & supported, event.payload)
            elif isinstance(event, ExtendedClipboard):
                self._extended_clipboard(event.message)
            elif isinstance(event, SetDesktopSize):
                if self.view_only:
                    status = STATUS_PROHIBITED
                else:
                    status = self.console.request_resize(self, event.width, event.height)
                if status != STATUS_OK:
                    self.tracker.announce_size(REASON_THIS_CLIENT, status)
                    self._wake.set()
            elif isinstance(event, AuthenticationSucceeded):
                self.view_only = event.view_only
                self.log.info(
                    "authenticated with %s%s",
                    self.connection.security,
                    " (view only)" if event.view_only else "",
                )
                if self._on_authentication is not None:
                    self._on_authentication(True)
            elif isinstance(event, AuthenticationFailed):
                self.log.info("authentication failed (%s)", self.connection.security)
                if self._on_authentication is not None:
                    self._on_authentication(False)
            elif isinstance(event, ConnectionRefused):
                self.log.info("refused: %s", event.reason)
            elif isinstance(event, StartTls):
                self._tls_due = event.anonymous
            elif isinstance(event, PlainCredentials):
                if self._check_user is None:
                    raise RemoteProtocolError("Plain credentials, and no users to check them")
                self._checking = asyncio.get_running_loop().create_task(
                    self._check_credentials(event.user, event.password)
                )
            elif isinstance(event, ClientInit):
                self.console.client_initialised(self, event.shared)
                fb = self.console.framebuffer
                self.tracker.resize(fb.width, fb.height)
                self.tracker.size_changed = False
                self.initialised = True
                # Done in time: an idle console must not wake up for it later.
                if self._handshake_timer is not None:
                    self._handshake_timer.cancel()
                self._handle_events(
                    self.connection.accept_client_init(
                        fb.width, fb.height, self.console.desktop_name
                    )
                )
            # SetPixelFormat is tracked by the connection itself.

    def _continuous_updates(self, event: EnableContinuousUpdates) -> None:
        if not self.continuous_updates:
            raise RemoteProtocolError("EnableContinuousUpdates without announcing support")
        if event.enable:
            area = Rect(event.x, event.y, event.width, event.height)
            self.tracker.continuous = area
            self.tracker.changed.add(area.intersect(self.tracker.bounds))
            self._wake.set()
        else:
            self.tracker.continuous = None
            self.connection.send_end_of_continuous_updates()

    def _extended_clipboard(self, message: clipboard.ClipboardMessage) -> None:
        action = message.action
        if action == clipboard.ACTION_CAPS:
            self.peer_clipboard_limit = clipboard.peer_text_limit(message)
        elif action == clipboard.ACTION_NOTIFY and message.formats & clipboard.FORMAT_TEXT:
            if not self.view_only:
                self.connection.send_extended_clipboard(clipboard.request())
        elif action == clipboard.ACTION_PROVIDE:
            text = clipboard.provided_text(message)
            if text is not None and not self.view_only:
                self._gave_input = True
                self.console.paste(text)
        elif action == clipboard.ACTION_REQUEST and message.formats & clipboard.FORMAT_TEXT:
            self.connection.send_extended_clipboard(
                clipboard.provide(self.console.selection_text())
            )
        elif action == clipboard.ACTION_PEEK and self.console.selection_text():
            self.connection.send_extended_clipboard(clipboard.notify())

    def _key(self, keysym: int, down: bool) -> None:
        if not self.view_only:
            self._gave_input = True
            self.console.key(self, keysym, down)

    def _set_encodings(self, client_encodings: tuple[int, ...]) -> None:
        chosen = set(client_encodings)
        tracker = self.tracker
        self.encoder = self.encoders.choose(client_encodings)
        tracker.supports_copy_rect = Encoding.COPY_RECT in chosen
        tracker.supports_desktop_size = Encoding.DESKTOP_SIZE in chosen
        tracker.supports_desktop_name = Encoding.DESKTOP_NAME in chosen
        self.supports_last_rect = Encoding.LAST_RECT in chosen
        extended_size = Encoding.EXTENDED_DESKTOP_SIZE in chosen
        if extended_size and not tracker.supports_extended_desktop_size:
            # rfbproto: the server confirms ExtendedDesktopSize with a rectangle.
            tracker.supports_extended_desktop_size = True
            tracker.announce_size(REASON_SERVER, STATUS_OK)
            self._wake.set()
        tracker.supports_extended_desktop_size = extended_size
        if Encoding.CONTINUOUS_UPDATES in chosen and not self.continuous_updates:
            self.continuous_updates = True
            self.connection.send_end_of_continuous_updates()
        if Encoding.FENCE in chosen and not self.fences:
            self.fences = True
            # rfbproto "Fence Pseudo-encoding": a fence tells the client we have them.
            self.connection.send_fence(FenceFlag.REQUEST, b"")
        qemu_confirmation = Encoding.QEMU_EXTENDED_KEY_EVENT
        if (
            qemu_confirmation in chosen
            and not self.qemu_keys
            and (qemu_confirmation not in tracker.confirmations)
        ):
            # rfbproto "QEMU Extended Key Event Pseudo-encoding": an empty rectangle
            # tells the client it may send QEMU key events.
            tracker.confirmations.append(qemu_confirmation)
            self._wake.set()
        self.qemu_keys = Encoding.QEMU_EXTENDED_KEY_EVENT in chosen
        extended_clipboard = Encoding.EXTENDED_CLIPBOARD in chosen
        if extended_clipboard and not self.extended_clipboard:
            self.connection.send_extended_clipboard(clipboard.caps())
        self.extended_clipboard = extended_clipboard

    async def _send_updates(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            if self._closed or not self.tracker.update_due():
                continue
            if self._writer.transport.get_write_buffer_size() > WRITE_HIGH_WATER:
                await self._writer.drain()
                # A resize or a newer screen may have come while we waited.
            if self._closed or not self.tracker.update_due():
                continue
            rest = self._send_update(self.tracker.take_update())
            if rest:
                await self._stream_rest(rest)

    def _send_update(self, plan: UpdatePlan) -> list[Rect]:
        """Encode ``plan`` from the current framebuffer and queue it (no awaits inside).

        With Raw, only the first ``RAW_UPDATE_PIXELS`` of the damage are encoded; the
        rest is returned, announced in the message and still owed (``_stream_rest``).
        """
        fb = self.console.framebuffer
        pixel_format = self.connection.pixel_format
        rects: list[EncodedRect] = []
        if plan.desktop_size is not None:
            width, height = plan.desktop_size
            rects.append(EncodedRect(0, 0, width, height, Encoding.DESKTOP_SIZE, b""))
        for reason, status in plan.extended_sizes:
            rects.append(
                EncodedRect(
                    reason,
                    status,
                    fb.width,
                    fb.height,
                    Encoding.EXTENDED_DESKTOP_SIZE,
                    _single_screen_layout(fb.width, fb.height),
                )
            )
        for encoding in plan.confirmations:
            rects.append(EncodedRect(0, 0, 0, 0, encoding, b""))
        if plan.desktop_name:
            name = self.console.desktop_name.encode("utf-8")
            payload = struct.pack(">I", len(name)) + name
            rects.append(EncodedRect(0, 0, 0, 0, Encoding.DESKTOP_NAME, payload))
        if plan.copy is not None:
            dest, source = plan.copy.dest, plan.copy.source
            payload = copyrect.encode(source.x, source.y)
            rects.append(
                EncodedRect(dest.x, dest.y, dest.width, dest.height, Encoding.COPY_RECT, payload)
            )
        damage = [r for r in (rect.intersect(fb.bounds) for rect in plan.rects) if not r.empty]
        within = None if plan.within is None else plan.within.intersect(fb.bounds)
        damage = encodings.arrange(self.encoder, damage, self.console.cell_size, within)
        rest: list[Rect] = []
        if self.encoder.encoding == Encoding.RAW:
            damage, rest = _within_budget(damage, RAW_UPDATE_PIXELS)
            rest = _slices(rest, RAW_UPDATE_PIXELS)
        encoding = self.encoder.encoding
        key = None
        if self._first_updates is not None and self.updates_sent == 0 and not rest:
            key = FirstUpdateKey(
                self.console.framebuffer_version,
                (fb.width, fb.height),
                pixel_format,
                encoding,
                self.encoder.compress_level,
                tuple(damage),
            )
            cached = self._first_updates.get(key, time.monotonic())
            if cached is not None:
                self.encoder.adopt_stream_state(cached.stream_state)
                damage = []
                rects.extend(cached.rects)
        pixel_rects: list[EncodedRect] = []
        for rect, parts in zip(
            damage,
            encodings.encode_damage(self.encoder, fb.pixels, damage, pixel_format, fb.cells),
            strict=True,
        ):
            for part in parts:
                pixel_rects.append(
                    EncodedRect(
                        rect.x + part.x,
                        rect.y + part.y,
                        part.width,
                        part.height,
                        encoding,
                        part.payload,
                    )
                )
        rects.extend(pixel_rects)
        if key is not None and damage:
            self._remember_first_update(key, pixel_rects)
        if rest:
            # The rest is in this format too, whatever SetPixelFormat comes meanwhile.
            self._stream_format = pixel_format
            self.connection.send_framebuffer_update_start(len(rects) + len(rest), rects)
        else:
            # LastRect costs a 12-byte rectangle: only for more rectangles than a count holds.
            self.connection.send_framebuffer_update(
                rects, last_rect=self.supports_last_rect and len(rects) >= 0xFFFF
            )
        self.updates_sent += 1
        self._flush()
        return rest

    def _remember_first_update(self, key: FirstUpdateKey, rects: list[EncodedRect]) -> None:
        cache = self._first_updates
        assert cache is not None
        was_empty = not cache
        cache.put(key, FirstUpdate(tuple(rects), self.encoder.stream_state()), time.monotonic())
        if was_empty:
            loop = asyncio.get_running_loop()

            def expire() -> None:
                left = cache.expires_in(time.monotonic())
                if left > 0:
                    loop.call_later(left, expire)

            loop.call_later(cache.keep, expire)

    async def _stream_rest(self, rest: list[Rect]) -> None:
        """The Raw rectangles an update announced, each encoded once the socket has
        taken the one before, so a client that stops reading holds one slice here.

        Nothing else may be written inside the message meanwhile (``_flush`` holds
        it back). Pixels that change meanwhile are newer in the client than its
        tracker assumes, so the rectangles not yet sent are counted as changed first
        (``framebuffer_changed``): a later CopyRect then repaints what it moved.
        """
        self._unsent = rest
        try:
            while self._unsent and not self._closed:
                if self._writer.transport.get_write_buffer_size() > WRITE_HIGH_WATER:
                    await self._writer.drain()
                if self._closed:
                    return
                rect = self._unsent.pop(0)
                self.slices_streamed += 1
                fb = self.console.framebuffer
                if fb.bounds.intersect(rect) == rect:
                    pixels = fb.region(rect)
                else:  # the framebuffer shrank: the client is told its new size next
                    pixels = np.zeros((rect.height, rect.width, 4), dtype=np.uint8)
                payload = self.encoder.encode_rects(pixels, self._stream_format)
                for part in payload:
                    self.connection.send_rectangle(
                        EncodedRect(
                            rect.x + part.x,
                            rect.y + part.y,
                            part.width,
                            part.height,
                            self.encoder.encoding,
                            part.payload,
                        )
                    )
                self._flush(streaming=True)
        finally:
            self._unsent = []
            self._flush()


def _within_budget(rects: list[Rect], budget: int) -> tuple[list[Rect], list[Rect]]:
    """The first rectangles, in whole rows, that hold at most ``budget`` pixels (at
    least one row), and the rest."""
    taken: list[Rect] = []
    rest: list[Rect] = []
    left = budget
    for rect in rects:
        if rest or (taken and left < rect.width):
            rest.append(rect)
            continue
        rows = min(rect.height, max(1, left // rect.width))
        taken.append(Rect(rect.x, rect.y, rect.width, rows))
        left -= rect.width * rows
        if rows < rect.height:
            rest.append(Rect(rect.x, rect.y + rows, rect.width, rect.height - rows))
    return taken, rest


def _slices(rects: list[Rect], budget: int) -> list[Rect]:
    """``rects`` cut into bands of whole rows of at most ``budget`` pixels each."""
    out: list[Rect] = []
    for rect in rects:
        rows = max(1, budget // rect.width)
        for y in range(rect.y, rect.y + rect.height, rows):
            out.append(Rect(rect.x, y, rect.width, min(rows, rect.y + rect.height - y)))
    return out


def _single_screen_layout(width: int, height: int) -> bytes:
    """rfbproto "ExtendedDesktopSize": one screen (id 0) covering the framebuffer."""
    return struct.pack(">BxxxIHHHHI", 1, 0, 0, 0, width, height, 0)


def vencrypt_subtypes(tls: TlsContexts | None, *, vnc: bool, plain: bool) -> list[int]:
    """The VeNCrypt subtypes a listener offers: certificate ones first, for each way
    of authenticating it has (none only when it has neither)."""
    if tls is None:
        return []
    kinds = [kind for kind, have in (("vnc", vnc), ("plain", plain)) if have] or ["none"]
    subtypes = []
    for context, prefix in ((tls.x509, "X509"), (tls.anonymous, "TLS")):
        if context is not None:
            subtypes += [VeNCryptSubtype[f"{prefix}_{kind.upper()}"] for kind in kinds]
    return [int(subtype) for subtype in subtypes]


@dataclass(frozen=True, slots=True)
class ListenerPolicy:
    """What one listener lets clients do before and besides RFB itself."""

    max_viewers: int = 0
    """Most connections at once (0: no limit); one more is refused with a reason."""
    lockout_threshold: int = 5
    """Failed authentications in a row after which an address is locked out (0: never)."""
    lockout_seconds: float = 10.0
    """The first lockout; each further failure doubles it, up to an hour."""
    handshake_timeout: float = 10.0
    """A client must have finished the RFB handshake within this many seconds."""
    idle_timeout: float = 0.0
    """A client that sends nothing for this long is dropped (0: never)."""


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
    sock: Any = None,
    websocket: bool = True,
    policy: ListenerPolicy | None = None,
    tls: TlsContexts | None = None,
    check_user: Callable[[str, str], tuple[bool, bool]] | None = None,
    legacy: bool = True,
) -> asyncio.Server:
    """Listen for viewers (on ``sock`` if given, already bound): RFB clients, and
    WebSocket clients too unless ``websocket`` is False; each connection runs as a
    session until it ends."""

    rules = policy if policy is not None else ListenerPolicy()
    subtypes = vencrypt_subtypes(tls, vnc=password is not None, plain=check_user is not None)
    lockout = Lockout(threshold=rules.lockout_threshold, initial=rules.lockout_seconds)
    first_updates = FirstUpdateCache()
    # Viewers that got through authentication: sockets still in the handshake do not
    # count, or anyone could keep the viewers out by opening sockets and waiting.
    viewers = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        await serve(reader, writer, address)

    def authenticated(address: str, ok: bool) -> None:
        if ok:
            lockout.succeeded(address)
            return
        locked = lockout.failed(address, time.monotonic())
        if locked:
            log.warning(
                "[%s] locked out for %.0f s after repeated authentication failures",
                address,
                locked,
            )

    async def serve(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str
    ) -> None:
        nonlocal viewers
        try:
            stream_in, stream_out = await open_transport(
                reader, writer, websocket=websocket, tls=tls.x509 if tls is not None else None
            )
        except (RemoteProtocolError, TimeoutError, ConnectionError) as exc:
            log.info("[%s] dropped before RFB: %s", address, exc or "timeout")
            writer.close()
            return
        refuse = None
        wait = lockout.blocked_for(address, time.monotonic())
        if wait > 0:
            refuse = f"Too many authentication failures: try again in {math.ceil(wait)} s"
        elif rules.max_viewers and viewers >= rules.max_viewers:
            refuse = f"Too many viewers (at most {rules.max_viewers})"
        over_websocket = isinstance(stream_out, WebSocketWriter)
        scheme = transport_name(stream_out)
        # Inside wss the connection is already encrypted with the console's
        # certificate, so VNC Authentication is as safe there as inside VeNCrypt
        # (which is not offered inside WebSocket); None is not, when only Plain
        # users may come in.
        vnc_auth_in_wss = scheme == "wss" and password is not None
        session = ClientSession(
            console,
            stream_in,
            stream_out,
            password=password,
            view_only_password=view_only_password,
            refuse=refuse,
            policy=rules,
            on_authentication=lambda ok: admit(session, ok),
            vencrypt=() if over_websocket else subtypes,
            legacy=legacy or (over_websocket and not subtypes) or vnc_auth_in_wss,
            tls=tls,
            check_user=check_user,
            first_updates=first_updates,
        )
        admitted = False

        def admit(session: ClientSession, ok: bool) -> None:
            nonlocal viewers, admitted
            authenticated(address, ok)
            if not ok:
                return
            if rules.max_viewers and viewers >= rules.max_viewers:
                # Others got through while this one authenticated.
                session.log.info(
                    "dropping client: too many viewers (at most %d)", rules.max_viewers
                )
                session.close()
                return
            viewers += 1
            admitted = True

        session.log.info("client connected (%s)", scheme)
        registry.add_session(session)
        try:
            await session.run()
        except Exception:
            session.log.exception("session failed")
        finally:
            registry.remove_session(session)
            if admitted:
                viewers -= 1

    if sock is not None:
        return await asyncio.start_server(handle, sock=sock)
    return await asyncio.start_server(handle, host, port, reuse_address=True)
