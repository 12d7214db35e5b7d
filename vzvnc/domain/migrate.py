"""Moving a domain to another host's ``vzvnc daemon``: live (CRIU) or cold.

This module owns both ends of a migration: ``migrate`` runs at the source (the
``vzvnc domain migrate`` command), ``receive`` at the destination (inside
``vzvnc daemon``). They talk over the authenticated channel of ``channel_io``.

One order, so no console byte is lost and the domain runs at exactly one place
(the design's section 7a):

1. begin        the destination checks the definition, that the name is free
                and that it can restore, and runs its ``migrate`` hook;
2. freeze       the source pauses the domain: frozen cgroup, pty drained, the
                console state written into the root filesystem;
3. checkpoint   CRIU dumps the frozen processes (``--leave-running``: they stay,
                frozen, until the very end);
4. storage      the destination looks for the same console state at the same
                rootfs path: found, the storage is shared; otherwise (or with
                ``--copy-storage``) the source streams the rootfs as a tar;
5. images       the checkpoint's files;
6. restore      the destination defines the domain and starts it from the
                images on a new pty (its console server starts from the state
                file), thaws it, and answers with its VNC address;
7. release      only now the source ends its frozen copy and forgets the domain.

A failure before 7 resumes the source (if it was running) and the destination
removes everything it made; the error names the step. Cold migration (a domain
that is stopped or saved) skips 2 and 3 and leaves the domain stopped (or
saved) at the destination.

The destination places a copied rootfs under its storage directory
(``<home>/storage/NAME`` unless the daemon says otherwise). Until step 6 it is
staged in ``<storage>/.incoming-*`` (the same filesystem, so the final rename
cannot fail across filesystems) and the images in ``<home>/incoming``: what a
transfer cut short leaves there, the daemon removes at its next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from vzvnc.domain import criu, forkclient, hooks
from vzvnc.domain.channel_io import Channel
from vzvnc.domain.config import DomainConfig, load_domain
from vzvnc.errors import DomainStateError, VzvncError

log = logging.getLogger(__name__)

DEFAULT_DAEMON_PORT = 16510
MAX_IMAGE_FILES = 10_000
MAX_IMAGE_BYTES = 64 << 30
MAX_ROOTFS_BYTES = 1 << 40
TAR_CHUNK = 256 * 1024
STAGING_PREFIX = ".incoming-"
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")

Report = Callable[[dict[str, Any]], None]


class MigrationError(VzvncError):
    """A migration failed; the domain still runs at the source (the message says
    which step failed and why)."""

    exit_code = os.EX_TEMPFAIL

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"migration failed at {step}: {message}")
        self.step = step
        self.reason = message


def state_digest(domain: DomainConfig) -> str | None:
    """sha256 of the console state file in the domain's rootfs (None if none). Read,
    never parsed nor moved: the destination runs this on a path its peer named."""
    from vzvnc.domain.rootfs_state import peek_console_state

    data = peek_console_state(domain.rootfs, domain.state_path)
    return hashlib.sha256(data).hexdigest() if data is not None else None


async def _tar_chunks(rootfs: str) -> AsyncIterator[bytes]:
    process = await asyncio.create_subprocess_exec(
        "tar",
        "-C",
        rootfs,
        "--numeric-owner",
        "-cpf",
        "-",
        ".",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        while chunk := await process.stdout.read(TAR_CHUNK):
            yield chunk
        stderr = await process.stderr.read()
        if await process.wait() != 0:
            raise MigrationError("storage", f"tar of {rootfs} failed: {stderr.decode().strip()}")
    finally:
        if process.returncode is None:
            process.kill()
            # Reading the pipes to their end is what lets asyncio see the process finish.
            await process.communicate()


# -- the source ----------------------------------------------------------------------------


class _Clock:
    """Phase events for the progress line, with bytes and rates."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.started = time.monotonic()
        self.phase_started = self.started
        self.current = "connect"

    def phase(self, phase: str) -> None:
        self.current = phase
        self.phase_started = time.monotonic()
        self.report({"event": "phase", "phase": phase, "elapsed": self.elapsed()})

    def progress(self, phase: str, sent: int) -> None:
        seconds = max(time.monotonic() - self.phase_started, 1e-6)
        self.report({"event": "progress", "phase": phase, "bytes": sent, "rate": sent / seconds})

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 4)


async def migrate(
    supervisor: Any,
    name: str,
    channel: Channel,
    *,
    storage: str = "auto",
    cold: bool = False,
    report: Report = lambda event: None,
) -> dict[str, Any]:
    """Move domain ``name`` over ``channel`` (connected and authenticated); returns a
    summary (downtime, total time, bytes). ``MigrationError`` when it fails, with the
    domain still at the source."""
    if storage not in ("auto", "shared", "copy"):
        raise ValueError(storage)
    clock = _Clock(report)
    domain: DomainConfig = supervisor.load(name)
    state = supervisor.status(name).state
    images = supervisor.saved_images(name)
    if cold:
        if state in ("running", "paused"):
            raise DomainStateError(
                f"domain {name!r} is {state}: cold migration moves a stopped or saved domain "
                "(stop or save it first, or migrate it live)"
            )
    else:
        if state not in ("running", "paused"):
            raise DomainStateError(
                f"domain {name!r} is {state}: live migration moves a running domain "
                "(use --cold for a stopped or saved one)"
            )
        criu.find_criu()
    definition = supervisor.definition_path(name).read_text()
    mode = "cold" if cold else "live"
    clock.phase("begin")
    await _ask(
        channel,
        "begin",
        {
            "op": "begin",
            "name": name,
            "definition": definition,
            "mode": mode,
            "storage": storage,
            "images": images is not None or not cold,
        },
    )
    was_paused = state == "paused"
    frozen_at: float | None = None
    checkpoint_dir: Path | None = None
    sent_bytes = 0
    try:
        if not cold:
            clock.phase("freeze")
            frozen_at = time.monotonic()
            if not was_paused:
                await asyncio.to_thread(supervisor.suspend, name)
            clock.phase("checkpoint")
            checkpoint_dir = supervisor.home / "migrate" / name
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
            checkpoint_dir.mkdir(parents=True, mode=0o700)
            await asyncio.to_thread(
                supervisor.control,
                name,
                {"op": "checkpoint", "images": str(checkpoint_dir), "paused": was_paused},
                criu.DUMP_TIMEOUT + 30,
            )
            images = checkpoint_dir
        clock.phase("storage")
        digest = await asyncio.to_thread(state_digest, domain)
        answer = await _ask(channel, "storage", {"op": "storage", "digest": digest})
        shared = bool(answer.get("shared"))
        if storage == "shared" and not shared:
            raise MigrationError(
                "storage",
                f"--shared-storage, but the destination does not see {domain.rootfs} with "
                "this domain's console state in it",
            )
        if storage == "copy" or not shared:
            await channel.send_json({"op": "rootfs"})

            def rootfs_progress(n: int) -> None:
                clock.progress("storage", n)

            sent_bytes += await channel.send_stream(_tar_chunks(domain.rootfs), rootfs_progress)
            await _expect_ok(channel, "storage")
        if images is not None:
            clock.phase("images")
            files = sorted(p for p in images.iterdir() if p.is_file())
            image_bytes = 0
            for path in files:
                size = path.stat().st_size
                await channel.send_json({"op": "file", "name": path.name, "size": size})
                await channel.send_file(path)
                image_bytes += size
                clock.progress("images", image_bytes)
            sent_bytes += image_bytes
            await _ask(channel, "images", {"op": "images-done"})
        clock.phase("restore")
        asked = time.monotonic()
        restored = await _ask(channel, "restore", {"op": "restore"})
        thawed_after = restored.get("thawed_after")
        answered_at = time.monotonic()
        thawed_at = (
            asked + float(thawed_after)
            if isinstance(thawed_after, int | float) and 0 <= thawed_after <= answered_at - asked
            else answered_at
        )
    except BaseException as exc:
        if checkpoint_dir is not None:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
        if not cold and frozen_at is not None and not was_paused:
            with contextlib.suppress(VzvncError):
                await asyncio.to_thread(supervisor.resume, name)
        with contextlib.suppress(Exception):
            await channel.send_error(str(exc))
        if isinstance(exc, MigrationError | DomainStateError):
            raise
        if isinstance(exc, VzvncError | OSError | ConnectionError | asyncio.TimeoutError):
            raise MigrationError(clock.current, str(exc) or type(exc).__name__) from exc
        raise
    clock.phase("release")
    if not cold:
        pid = supervisor.controller_pid(name)
        await asyncio.to_thread(supervisor.control, name, {"op": "end", "state": "migrated"})
        if pid is not None:
            await asyncio.to_thread(supervisor.wait_gone, pid, 30)
    if checkpoint_dir is not None:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    await asyncio.to_thread(supervisor.forget, name)
    with contextlib.suppress(Exception):
        await channel.send_json({"op": "commit"})
    summary = {
        "event": "done",
        "name": name,
        "mode": mode,
        "shared_storage": shared and storage != "copy",
        "bytes": sent_bytes,
        "seconds": clock.elapsed(),
        "downtime": round(thawed_at - frozen_at, 4) if frozen_at is not None else None,
        "console_back": round(answered_at - frozen_at, 4) if frozen_at is not None else None,
        "vnc": restored.get("vnc"),
    }
    report(summary)
    return summary


async def _ask(channel: Channel, step: str, request: dict[str, Any]) -> dict[str, Any]:
    await channel.send_json(request)
    return await _expect_ok(channel, step)


async def _expect_ok(channel: Channel, step: str) -> dict[str, Any]:
    try:
        answer = await channel.recv_json()
    except VzvncError as exc:
        raise MigrationError(step, f"the destination says: {exc}") from None
    if answer.get("error"):
        raise MigrationError(step, f"the destination says: {answer['error']}")
    return answer


# -- the destination -----------------------------------------------------------------------


@dataclasses.dataclass
class _Incoming:
    """What one migration has made at the destination so far (to undo on failure)."""

    staging: Path
    rootfs: Path | None = None
    defined: bool = False
    started: bool = False
    images: Path | None = None
    committed: bool = False
    extra: list[Path] = dataclasses.field(default_factory=list)


def clean_incoming(home: Path, storage_dir: Path) -> None:
    """Remove what migrations cut short (a daemon killed mid-transfer) left behind."""
    shutil.rmtree(home / "incoming", ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        for entry in storage_dir.iterdir():
            if entry.name.startswith(STAGING_PREFIX):
                shutil.rmtree(entry, ignore_errors=True)


async def receive(
    supervisor: Any,
    channel: Channel,
    storage_dir: Path,
    *,
    busy: set[str] | None = None,
    hook_timeout: float | None = None,
) -> None:
    """Serve one incoming migration on ``channel``; ``busy`` holds the names of the
    migrations under way, so two sources cannot bring the same domain at once."""
    request = await channel.recv_json()
    if request.get("op") != "begin":
        await channel.send_error("expected a migration to begin")
        return
    try:
        domain = load_domain(str(request.get("definition", "")), "migrated definition")
        if domain.name != request.get("name"):
            raise MigrationError("begin", "the definition names another domain")
    except VzvncError as exc:
        await channel.send_error(f"bad definition: {exc}")
        return
    name = domain.name
    busy = busy if busy is not None else set()
    if name in busy or name in supervisor.names() or supervisor.is_running(name):
        await channel.send_error(f"a domain named {name!r} already exists at the destination")
        return
    busy.add(name)
    try:
        await _receive(supervisor, channel, domain, request, storage_dir, hook_timeout)
    finally:
        busy.discard(name)


async def _receive(
    supervisor: Any,
    channel: Channel,
    domain: DomainConfig,
    request: dict[str, Any],
    storage_dir: Path,
    hook_timeout: float | None,
) -> None:
    name = domain.name
    live = request.get("mode") == "live"
    try:
        await asyncio.to_thread(
            functools.partial(
                hooks.run_hooks,
                supervisor.home,
                name,
                "migrate",
                "begin",
                "-",
                definition=hooks.definition_json(domain),
                timeout=hook_timeout or hooks.HOOK_TIMEOUT,
            )
        )
        if live or request.get("images"):
            criu.find_criu()
        if live:
            # Before the source freezes: the restore must not wait for a fork server.
            await asyncio.to_thread(forkclient.warm, supervisor.run_root)
    except VzvncError as exc:
        await channel.send_error(str(exc))
        return
    staging = supervisor.home / "incoming" / f"{name}.{os.urandom(6).hex()}"
    staging.mkdir(parents=True, mode=0o700)
    incoming = _Incoming(staging)
    try:
        await channel.send_json({"ok": True})
        await _receive_steps(supervisor, channel, domain, storage_dir, incoming, live)
    except BaseException as exc:
        log.warning("incoming migration of %s failed: %s", name, exc)
        await asyncio.to_thread(_undo, supervisor, name, incoming)
        with contextlib.suppress(Exception):
            await channel.send_error(exc.reason if isinstance(exc, MigrationError) else str(exc))
        if not isinstance(exc, Exception):
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


async def _receive_steps(
    supervisor: Any,
    channel: Channel,
    domain: DomainConfig,
    storage_dir: Path,
    incoming: _Incoming,
    live: bool,
) -> None:
    name = domain.name
    request = await channel.recv_json()
    if request.get("op") != "storage":
        raise MigrationError("storage", "protocol: expected the storage step")
    digest = request.get("digest")
    shared = isinstance(digest, str) and await asyncio.to_thread(state_digest, domain) == digest
    await channel.send_json({"ok": True, "shared": shared})
    rootfs = domain.rootfs
    image_count = image_bytes = 0
    while True:
        request = await channel.recv_json()
        op = request.get("op")
        if op == "rootfs":
            target = storage_dir / name
            if target.exists():
                raise MigrationError("storage", f"{target} already exists at the destination")
            # Staged on the storage's own filesystem: the final rename cannot cross one.
            storage_dir.mkdir(parents=True, exist_ok=True)
            staged = storage_dir / f"{STAGING_PREFIX}{incoming.staging.name}"
            incoming.extra.append(staged)
            incoming.rootfs = await _receive_rootfs(channel, staged)
            await channel.send_json({"ok": True})
            rootfs = str(target)
        elif op == "file":
            file_name, size = request.get("name"), request.get("size")
            if not isinstance(file_name, str) or not _FILE_NAME.fullmatch(file_name):
                raise MigrationError("images", f"bad image file name {file_name!r}")
            if type(size) is not int or size < 0:
                raise MigrationError("images", "bad image file size")
            image_count += 1
            image_bytes += size
            if image_count > MAX_IMAGE_FILES or image_bytes > MAX_IMAGE_BYTES:
                raise MigrationError("images", "the checkpoint is too large")
            directory = incoming.staging / "images"
            directory.mkdir(exist_ok=True, mode=0o700)
            await channel.recv_file(directory / file_name, limit=size)
            if image_count == 1:
                incoming.images = directory
        elif op == "images-done":
            await channel.send_json({"ok": True})
        elif op == "restore":
            break
        else:
            raise MigrationError("transfer", f"protocol: unexpected {op!r}")
    asked = time.monotonic()
    vnc = await asyncio.to_thread(_settle, supervisor, domain, rootfs, storage_dir, incoming, live)
    thawed = supervisor.thawed_at(name) if live else None
    # Seconds from the restore request to the domain running again: the source adds
    # its own side without the two hosts' clocks ever being compared.
    await channel.send_json(
        {"ok": True, "vnc": vnc, "thawed_after": thawed - asked if thawed else None}
    )
    with contextlib.suppress(Exception):
        await channel.recv_json()  # commit, or the source hanging up: we are done either way
    incoming.committed = True


async def _receive_rootfs(channel: Channel, target: Path) -> Path:
    target.mkdir(mode=0o755)
    process = await asyncio.create_subprocess_exec(
        "tar",
        "-C",
        str(target),
        "--numeric-owner",
        "-xpf",
        "-",
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stderr is not None
    stdin = process.stdin
    broken: list[BaseException] = []

    def sink(data: bytes) -> None:
        if not broken:
            try:
                stdin.write(data)
            except (BrokenPipeError, ConnectionResetError) as exc:
                broken.append(exc)

    try:
        await channel.recv_stream(sink, limit=MAX_ROOTFS_BYTES, drain=stdin.drain)
    finally:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stdin.close()
        stderr = (await process.stderr.read()).decode(errors="replace").strip()
        code = await process.wait()
    if code != 0 or broken:
        info = os.statvfs(target)
        free = info.f_bavail * info.f_frsize
        full = (
            f"no space left on the destination's storage ({free} bytes free); "
            if free < (1 << 20)
            else ""
        )
        raise MigrationError("storage", f"{full}unpacking the root filesystem failed: {stderr}")
    return target


def _settle(
    supervisor: Any,
    domain: DomainConfig,
    rootfs: str,
    storage_dir: Path,
    incoming: _Incoming,
    live: bool,
) -> str | None:
    """Put what arrived in place and start the domain from its checkpoint."""
    name = domain.name
    if incoming.rootfs is not None:
        storage_dir.mkdir(parents=True, exist_ok=True)
        os.rename(incoming.rootfs, rootfs)
        incoming.rootfs = Path(rootfs)
        incoming.extra.append(Path(rootfs))
    settled = dataclasses.replace(domain, rootfs=rootfs)
    supervisor.define(settled)
    incoming.defined = True
    if incoming.images is None:
        return None  # cold: stopped it was, stopped it stays
    save = supervisor.save_dir(name)
    save.mkdir(parents=True, exist_ok=True)
    os.rename(incoming.images, save / "images")
    incoming.images = save / "images"
    if not live:
        return None  # a saved domain stays saved: the next start restores it
    status = supervisor.start(name)
    incoming.started = True
    return status.vnc  # type: ignore[no-any-return]


def _undo(supervisor: Any, name: str, incoming: _Incoming) -> None:
    if incoming.committed:
        return
    with contextlib.suppress(Exception):
        if incoming.started or supervisor.is_running(name):
            supervisor.stop(name, timeout=1)
    with contextlib.suppress(Exception):
        supervisor.remove_save(name)
    if incoming.defined:
        with contextlib.suppress(Exception):
            supervisor.definition_path(name).unlink(missing_ok=True)
    for path in incoming.extra:
        shutil.rmtree(path, ignore_errors=True)
