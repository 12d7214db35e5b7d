"""``vzvnc daemon``: what a host runs at boot, and the receiving end of migrations.

It serves one vzvnc home (``$VZVNC_HOME``). At start it removes what migrations
cut short left in ``<home>/incoming``, restores every domain with a managed
save, starts the domains marked for autostart, and runs the ``reconnect`` hook
for the domains already running (their controllers outlive any daemon). Then,
until SIGTERM or SIGINT, it accepts migrations on ``--listen`` over the
authenticated channel of ``domain/channel_io.py``.

Listening off loopback needs TLS and a shared secret (or client certificates);
the channel refuses anything less. Domains are never stopped by the daemon
stopping: a restart of the daemon is invisible to them (``KillMode=process`` in
the systemd unit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

from vzvnc.domain import hooks, migrate
from vzvnc.errors import VzvncError

log = logging.getLogger(__name__)


def boot(supervisor: Any) -> list[str]:
    """Bring the home's domains up as a host boot should; returns what was started."""
    started = []
    from vzvnc.domain.tokens import remove_token, token_dir

    # Entries left by a host that went down with its domains point nowhere.
    directory = token_dir(supervisor.home)
    if directory.is_dir():
        for entry in directory.iterdir():
            if not entry.name.startswith(".") and not supervisor.is_running(entry.name):
                remove_token(supervisor.home, entry.name)
    for name in supervisor.names():
        try:
            state = supervisor.status(name).state
            if state in ("running", "paused"):
                domain = supervisor.load(name)
                hooks.run_hooks(
                    supervisor.home,
                    name,
                    "reconnect",
                    "begin",
                    definition=hooks.definition_json(domain),
                )
                continue
            if state == "saved" or supervisor.autostart(name):
                supervisor.start(name)
                started.append(name)
                log.info("%s %s", "restored" if state == "saved" else "autostarted", name)
        except VzvncError as exc:
            log.error("domain %s not started: %s", name, exc)
    return started


async def serve(
    supervisor: Any,
    host: str,
    port: int,
    *,
    secret: bytes | None,
    tls: Any,
    storage_dir: Path,
    ready: asyncio.Event | None = None,
) -> None:
    from vzvnc.domain import channel_io

    # Handlers first: a stop asked for while domains are still being brought up
    # must end the daemon cleanly once that is done, not kill it half-way.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    migrate.clean_incoming(supervisor.home, storage_dir)
    await asyncio.to_thread(boot, supervisor)
    busy: set[str] = set()

    async def handler(channel: channel_io.Channel) -> None:
        await migrate.receive(supervisor, channel, storage_dir, busy=busy)

    server = await channel_io.serve(host, port, handler, secret=secret, tls=tls)
    sockname = server.sockets[0].getsockname()
    log.info("vzvnc daemon for %s listening on %s:%d", supervisor.home, sockname[0], sockname[1])
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
    log.info("vzvnc daemon stopped (domains keep running)")


def main(args: Any) -> int:
    from vzvnc.config import parse_listen
    from vzvnc.domain import channel_io
    from vzvnc.supervisor import Supervisor

    supervisor = Supervisor()
    host, port = parse_listen(args.listen)
    secret = channel_io.read_secret(Path(args.secret_file)) if args.secret_file else None
    tls = channel_io.server_tls(args.tls_cert, args.tls_key, args.tls_ca) if args.tls_cert else None
    storage = Path(args.storage_dir) if args.storage_dir else supervisor.home / "storage"
    os.umask(0o077)
    import uvloop

    uvloop.run(
        serve(supervisor, host, port, secret=secret, tls=tls, storage_dir=storage.absolute())
    )
    return 0
