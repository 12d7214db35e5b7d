"""A domain's console server process: a Console whose program is the controller.

The controller starts it with one end of a socketpair (``--fd``). It asks for the
journal from where its snapshot left off (or from the oldest byte kept), feeds
that backlog into a fresh terminal with replies and bells muted, and then serves
live output. If it crashes, the controller starts a new one that does the same,
so viewers reconnect to the same screen and the container never notices.

It writes ``console.json`` (VNC address, viewers) in the run directory and a
snapshot of the terminal there from time to time (see ``vzvnc.state``).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from vzvnc import state
from vzvnc.config import ConsoleConfig
from vzvnc.console import Console
from vzvnc.domain import link
from vzvnc.domain.config import AUTO_PORT_BASE, DomainConfig, load_domain_file
from vzvnc.domain.files import write_json_atomic
from vzvnc.domain.kernel import release_free_heap
from vzvnc.domain.tokens import write_token
from vzvnc.errors import ListenError, RemoteProtocolError, VzvncError
from vzvnc.rfb.auth import read_password_file
from vzvnc.rfb.server import ClientSession

log = logging.getLogger(__name__)

LINK_HIGH_WATER = 1 << 20


class ControllerLink:
    """The ProgramEndpoint of a domain console: frames over a Unix socket to the controller."""

    def __init__(self, sock: socket.socket, start_offset: int) -> None:
        self.sock = sock
        sock.setblocking(False)
        self.offset = start_offset
        self.replaying = True
        self.lost_bytes = 0
        self.exit_code: int | None = None
        self._decoder = link.FrameDecoder()
        self._pending = bytearray(link.hello(start_offset))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_output: Callable[[bytes], None] | None = None
        self._on_eof: Callable[[], None] | None = None
        self.on_pause: Callable[[int, bool], None] | None = None
        self.on_resume: Callable[[], None] | None = None
        self._reading = False
        self._writing = False
        self._exited = asyncio.Event()

    @property
    def attached(self) -> bool:
        return self._loop is not None

    def attach(
        self,
        loop: asyncio.AbstractEventLoop,
        on_output: Callable[[bytes], None],
        on_eof: Callable[[], None],
    ) -> None:
        self._loop, self._on_output, self._on_eof = loop, on_output, on_eof
        self.resume_reading()
        self._flush()

    def pause_reading(self) -> None:
        if self._reading and self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._reading = False

    def resume_reading(self) -> None:
        if not self._reading and self._loop is not None and self.sock.fileno() >= 0:
            self._loop.add_reader(self.sock.fileno(), self._readable)
            self._reading = True

    def _readable(self) -> None:
        try:
            data = self.sock.recv(256 * 1024)
        except BlockingIOError:
            return
        except OSError as exc:
            log.warning("link to the controller failed: %s", exc)
            data = b""
        if not data:
            self._gone(status=None)
            return
        try:
            frames = self._decoder.feed(data)
        except RemoteProtocolError as exc:
            log.error("controller sent a bad frame: %s", exc)
            self._gone(status=None)
            return
        for frame in frames:
            self._frame(frame)

    def _frame(self, frame: link.Frame) -> None:
        assert self._on_output is not None
        if frame.kind == link.OUTPUT:
            offset, data = link.parse_offset(frame)
            if offset > self.offset:
                # The journal no longer holds what our snapshot lacked: say so once.
                self.lost_bytes += offset - self.offset
                log.warning("%d bytes of console output were not kept", offset - self.offset)
            elif offset < self.offset:
                data = data[self.offset - offset :]
            self.offset = max(self.offset, offset) + len(data)
            if data:
                self._on_output(data)
        elif frame.kind == link.LIVE:
            self.replaying = False
        elif frame.kind == link.STOPPED:
            self._gone(status=link.parse_status(frame))
        elif frame.kind == link.PAUSE:
            offset, write_state = link.parse_pause(frame)
            if self.on_pause is not None:
                self.on_pause(offset, write_state)
        elif frame.kind == link.RESUME and self.on_resume is not None:
            self.on_resume()

    def send_saved(self, offset: int, ok: bool, message: str) -> None:
        self._pending += link.saved(offset, ok, message)
        self._flush()

    def _gone(self, status: int | None) -> None:
        self.pause_reading()
        if self.exit_code is None:
            self.exit_code = status if status is not None else 0
            self._exited.set()
        if self._on_eof is not None:
            self._on_eof()

    @property
    def input_backlog(self) -> int:
        """Link bytes (mostly input) the controller has not read yet."""
        return len(self._pending)

    def write(self, data: bytes) -> None:
        if not data or self.exit_code is not None:
            return
        if len(self._pending) > LINK_HIGH_WATER:
            log.warning("controller is not reading; dropped %d bytes of input", len(data))
            return
        self._pending += link.encode(link.INPUT, data)
        self._flush()

    def resize(self, columns: int, lines: int) -> None:
        self._pending += link.resize(columns, lines)
        self._flush()

    def _flush(self) -> None:
        while self._pending:
            try:
                sent = self.sock.send(self._pending)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                    log.warning("writing to the controller failed: %s", exc)
                self._pending.clear()
                break
            del self._pending[:sent]
        if self._loop is None:
            return
        if self._pending and not self._writing:
            self._loop.add_writer(self.sock.fileno(), self._flush)
            self._writing = True
        elif not self._pending and self._writing:
            self._loop.remove_writer(self.sock.fileno())
            self._writing = False

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.exit_code is not None
        return self.exit_code

    def hang_up(self) -> None:
        # The console server leaving is not the domain stopping: just let go.
        if self.exit_code is None:
            self.exit_code = 0
            self._exited.set()

    def kill(self) -> None:
        self.hang_up()

    def drain_output(self) -> bytes:
        return b""

    def close(self) -> None:
        if self._loop is not None:
            self.pause_reading()
            if self._writing:
                self._loop.remove_writer(self.sock.fileno())
                self._writing = False
        self.sock.close()


# A snapshot is written at most this often while output keeps coming.
SNAPSHOT_INTERVAL = 2.0


class DomainConsole(Console):
    """A Console that reports its address and viewers in the run directory,
    and keeps a snapshot of its terminal there so a successor starts from it."""

    def __init__(self, config: ConsoleConfig, endpoint: ControllerLink, run_dir: Path) -> None:
        super().__init__(endpoint, config)
        self.run_dir = run_dir
        self.link = endpoint
        self._snapshot_offset = endpoint.offset
        self._snapshot_due: asyncio.TimerHandle | None = None
        self.domain: DomainConfig | None = None
        self.paused = False
        self._token_at: tuple[str, int] | None = None
        endpoint.on_pause = self.domain_paused
        endpoint.on_resume = self.domain_resumed

    # -- a suspended domain: its screen stays, its input is refused ------------------------

    @property
    def desktop_name(self) -> str:
        name = super().desktop_name
        return f"{name} (paused)" if self.paused else name

    def send_input(self, data: bytes) -> None:
        if not self.paused:
            super().send_input(data)

    def paste(self, text: str) -> None:
        if not self.paused:
            super().paste(text)

    def pointer(
        self, session: ClientSession, previous_mask: int, mask: int, x: int, y: int
    ) -> None:
        if self.paused and self.terminal.mouse_mode:
            return  # a mouse report is input too; selection and scrolling still work
        super().pointer(session, previous_mask, mask, x, y)

    def _set_paused(self, paused: bool) -> None:
        if paused != self.paused:
            self.paused = paused
            for session in list(self.sessions):
                session.rename()

    def domain_paused(self, offset: int, write_state: bool) -> None:
        """The domain is frozen and all its output up to ``offset`` has reached us."""
        self._set_paused(True)
        if not write_state:
            return
        # Everything collected goes into the terminal now: the state must hold every byte.
        self.catch_up()
        self.render_now()
        if self.link.offset != offset:
            message = f"console output reached offset {self.link.offset}, expected {offset}"
            self.link.send_saved(self.link.offset, False, message)
            return
        ok, message = self.write_rootfs_state()
        self.link.send_saved(offset, ok, message)

    def domain_resumed(self) -> None:
        self._set_paused(False)

    def write_rootfs_state(self) -> tuple[bool, str]:
        """The terminal as it is now, into the domain's root filesystem (and the run dir)."""
        from vzvnc.domain.rootfs_state import write_console_state

        assert self.domain is not None
        snapshot = state.capture(self.terminal, self.link.offset)
        if snapshot is None:
            return False, "the screen is too large for a console state file"
        try:
            write_console_state(self.domain.rootfs, self.domain.state_path, snapshot)
        except VzvncError as exc:
            log.error("cannot write the console state into the rootfs: %s", exc)
            return False, str(exc)
        self.write_snapshot()
        return True, ""

    def render_now(self) -> None:
        super().render_now()
        if self._snapshot_due is None and self.link.attached and not self.link.replaying:
            loop = asyncio.get_running_loop()
            self._snapshot_due = loop.call_later(SNAPSHOT_INTERVAL, self.write_snapshot)

    def write_snapshot(self) -> None:
        """Save the terminal with the journal offset of the last byte it was fed."""
        self._snapshot_due = None
        if self.has_pending_output or self.link.offset == self._snapshot_offset:
            if self.has_pending_output:  # collected output is not in the terminal yet: later
                loop = asyncio.get_running_loop()
                self._snapshot_due = loop.call_later(SNAPSHOT_INTERVAL, self.write_snapshot)
            return
        snapshot = state.capture(self.terminal, self.link.offset)
        if snapshot is None:
            return
        try:
            state.write_snapshot(self.run_dir, snapshot)
        except state.SnapshotError as exc:
            log.warning("cannot save the console snapshot: %s", exc)
            return
        self._snapshot_offset = self.link.offset
        # The screen just settled (a snapshot follows the last output by 2 s): what
        # starting, a viewer's first update or the output before freed goes back.
        release_free_heap()

    def write_status(self) -> None:
        host, port = self.address
        write_json_atomic(
            self.run_dir / "console.json",
            {"pid": os.getpid(), "host": host, "port": port, "viewers": len(self.sessions)},
        )
        if self.domain is not None and self.domain.token and self._token_at != (host, port):
            # run_dir is <home>/run/<name>; the gateway's entry follows the console.
            write_token(self.run_dir.parent.parent, self.domain.name, self.domain.token, host, port)
            self._token_at = (host, port)

    def add_session(self, session: ClientSession) -> None:
        super().add_session(session)
        self.write_status()

    def remove_session(self, session: ClientSession) -> None:
        super().remove_session(session)
        self.write_status()


def bound_socket(host: str, port: int) -> socket.socket | None:
    """A socket bound to ``host`` (an IP address) and ``port``, or None for a host
    name, which the event loop resolves (and may bind more than once).

    Binding it here spares the loop its resolver: uvloop asks libuv's thread pool
    even for an address, and those four threads would stay for the process's life.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def listen_somewhere(console: DomainConsole, domain: DomainConfig, port: int | None) -> None:
    """The configured port, or with 'auto' the first port from 5900 that we can bind.

    Binding is the only race-free test: domains starting together each take the
    next port that is really free.
    """
    candidates = [port] if port is not None else range(AUTO_PORT_BASE, AUTO_PORT_BASE + 1000)
    error: OSError | None = None
    for candidate in candidates:
        try:
            await console.listen(candidate, sock=bound_socket(domain.listen_host, candidate))
            return
        except OSError as exc:
            error = exc
            if port is not None or exc.errno != errno.EADDRINUSE:
                break
    console.endpoint.close()
    where = f"{domain.listen_host}:{port if port is not None else 'auto'}"
    reason = error.strerror if error is not None else "no free port"
    raise ListenError(f"vnc.listen: cannot listen on {where}: {reason}")


def console_config(domain: DomainConfig, port: int) -> ConsoleConfig:
    password = read_password_file(domain.password_file) if domain.password_file else None
    view_only = (
        read_password_file(domain.view_only_password_file)
        if domain.view_only_password_file
        else None
    )
    return ConsoleConfig(
        host=domain.listen_host,
        port=port,
        columns=domain.columns,
        lines=domain.lines,
        password=password,
        view_only_password=view_only,
        name=domain.name,
        history=domain.history,
        font_scale=domain.font_scale,
        tls_cert_file=domain.tls_cert_file,
        tls_key_file=domain.tls_key_file,
        insecure_vnc_auth=domain.insecure_vnc_auth,
        max_viewers=domain.max_viewers,
        sharing=domain.sharing,
        idle_timeout=domain.idle_timeout,
        handshake_timeout=domain.handshake_timeout,
        websocket=domain.websocket,
    )


async def serve(domain: DomainConfig, sock: socket.socket, run_dir: Path, port: int | None) -> int:
    restored: state.Snapshot | None = None
    try:
        restored = state.read_snapshot(run_dir)
    except state.SnapshotError as exc:
        log.error("console snapshot not used: %s; rebuilding from the journal", exc)
    endpoint = ControllerLink(sock, restored.offset if restored is not None else 0)
    console = DomainConsole(console_config(domain, port or 0), endpoint, run_dir)
    console.domain = domain
    if restored is not None:
        console.restore(restored)
        log.info("screen restored from the snapshot at console offset %d", restored.offset)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, console.request_stop, signum)
    await console.start(listen=False)
    await listen_somewhere(console, domain, port)
    console.write_status()
    log.info("console of %s on %s:%d", domain.name, *console.address)
    code = await console.run()
    console.write_snapshot()
    return code


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vzvnc-console-server")
    parser.add_argument("--fd", type=int, required=True, help="socket to the controller")
    parser.add_argument("--domain-file", required=True)
    parser.add_argument("--run-dir", required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


def domain_file(args: argparse.Namespace) -> Path:
    return Path(args.domain_file)


def run(args: argparse.Namespace, domain: DomainConfig | None = None) -> int:
    """``main`` once its arguments are parsed, and maybe its domain file loaded (the
    fork server does both before it forks: in each child, argparse and tomllib would
    copy more of the fork server's pages)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s console-server %(levelname)s %(name)s: %(message)s"
    )
    try:
        if domain is None:
            domain = load_domain_file(domain_file(args))
        port = domain.listen_port
        sock = socket.socket(fileno=args.fd)
        import uvloop

        return int(uvloop.run(serve(domain, sock, Path(args.run_dir), port)))
    except VzvncError as exc:
        print(f"vzvnc console server: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
