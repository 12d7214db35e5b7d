"""The console-holding side of the link to a console server (``link.py`` frames): the
journal's backlog and live output go out, typed input, resizes and saved-state
answers come back. A domain's controller and a hosted console's keeper both own one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path
from typing import Protocol

from vzvnc.domain import link
from vzvnc.domain.journal import Journal, read_journal
from vzvnc.errors import RemoteProtocolError

log = logging.getLogger(__name__)


class LinkOwner(Protocol):
    """What the link needs from the process holding the console."""

    run_dir: Path
    journal: Journal
    paused: bool
    loop: asyncio.AbstractEventLoop

    def write_console(self, data: bytes) -> None: ...
    def resize_console(self, columns: int, lines: int) -> None: ...
    def state_saved(self, offset: int, ok: bool, message: str) -> None: ...
    def link_closed(self, server_link: ConsoleServerLink) -> None: ...
    def link_drained(self) -> None: ...
    def resume_reading(self) -> None: ...


class ConsoleServerLink:
    """The controller's end of one console server's socket."""

    def __init__(self, controller: LinkOwner, sock: socket.socket) -> None:
        self.controller = controller
        self.sock = sock
        sock.setblocking(False)
        self.decoder = link.FrameDecoder()
        self.pending = bytearray()
        self.live = False
        self.writing = False

    def readable(self) -> None:
        try:
            data = self.sock.recv(256 * 1024)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.controller.link_closed(self)
            return
        try:
            frames = self.decoder.feed(data)
        except RemoteProtocolError as exc:
            log.error("console server sent a bad frame: %s", exc)
            self.controller.link_closed(self)
            return
        for frame in frames:
            if frame.kind == link.HELLO:
                (offset, _) = link.parse_offset(frame)
                begin, backlog = read_journal(self.controller.run_dir, offset)
                for chunk in link.output(begin, backlog):
                    self.send(chunk)
                self.send(link.encode(link.LIVE))
                self.live = True
                if self.controller.paused:
                    self.send(link.pause(self.controller.journal.end, False))
            elif frame.kind == link.INPUT:
                self.controller.write_console(frame.payload)
            elif frame.kind == link.SAVED:
                self.controller.state_saved(*link.parse_saved(frame))
            elif frame.kind == link.RESIZE:
                columns, lines = link.parse_resize(frame)
                if 2 <= columns <= 1000 and 1 <= lines <= 500:
                    self.controller.resize_console(columns, lines)

    def send(self, data: bytes) -> None:
        self.pending += data
        self.flush()

    def flush(self) -> None:
        while self.pending:
            try:
                sent = self.sock.send(self.pending)
            except BlockingIOError:
                break
            except OSError:
                self.pending.clear()
                break
            del self.pending[:sent]
        loop = self.controller.loop
        if self.pending and not self.writing:
            loop.add_writer(self.sock.fileno(), self.flush)
            self.writing = True
        elif not self.pending and self.writing:
            loop.remove_writer(self.sock.fileno())
            self.writing = False
            self.controller.link_drained()

    def close(self) -> None:
        loop = self.controller.loop
        with contextlib.suppress(Exception):
            loop.remove_reader(self.sock.fileno())
        if self.writing:
            with contextlib.suppress(Exception):
                loop.remove_writer(self.sock.fileno())
        self.sock.close()
