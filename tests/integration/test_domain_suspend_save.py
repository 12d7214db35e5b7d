"""Suspend, resume, save and restore of real domains, watched through a real RFB client.

Each test compares what a viewer sees with a reference terminal fed the exact
bytes the console produced (the controller's journal), pixel for pixel.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.rfbclient import DESKTOP_NAME, RAW, RfbClient
from vzvnc import state
from vzvnc.domain import criu
from vzvnc.domain.cgroups import Cgroups, home_group
from vzvnc.domain.journal import read_journal
from vzvnc.domain.rootfs import make_busybox_rootfs
from vzvnc.domain.rootfs_state import read_console_state
from vzvnc.errors import DomainStateError
from vzvnc.fb.snapshot import render_rgb
from vzvnc.supervisor import Supervisor
from vzvnc.term.terminal import Terminal

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="domains need root")


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    path = tmp_path / "rootfs"
    make_busybox_rootfs(str(path))
    return path


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    sup = Supervisor(tmp_path / "home")
    yield sup
    for name in sup.names():
        sup.stop(name, timeout=1)
        sup.remove_save(name)


def define(sup: Supervisor, name: str, rootfs: Path, extra: str = "") -> None:
    file = sup.home / f"{name}.toml"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(
        f'name = "{name}"\nrootfs = "{rootfs}"\nstop_timeout = 1\ninit = ["/bin/sh"]\n{extra}'
    )
    sup.define_file(file)


def vnc_port(sup: Supervisor, name: str) -> int:
    status = sup.status(name)
    assert status.vnc is not None
    return int(status.vnc.rsplit(":", 1)[1])


def reference_pixels(sup: Supervisor, name: str, upto: int | None = None) -> np.ndarray:
    """The screen a terminal shows after every byte of the journal (up to ``upto``)."""
    begin, data = read_journal(sup.run_dir(name), 0)
    assert begin == 0
    terminal = Terminal(80, 25)
    terminal.feed(data if upto is None else data[:upto])
    return render_rgb(terminal)


def seen(client: RfbClient) -> np.ndarray:
    return np.ascontiguousarray(client.pixels[:, :, 2::-1])


async def wait_for_text(sup: Supervisor, name: str, text: str) -> None:
    for _ in range(200):
        if any(text in line for line in sup.screen(name).text_lines()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared:\n" + "\n".join(sup.screen(name).text_lines()))


async def fresh_view(port: int) -> np.ndarray:
    async with await RfbClient.connect(port, encodings=(RAW,)) as client:
        await client.update(incremental=False)
        await client.drain_updates(quiet=0.4)
        return seen(client)


def test_suspend_keeps_every_byte_refuses_input_and_resume_goes_on(
    supervisor: Supervisor, rootfs: Path
) -> None:
    define(supervisor, "nap", rootfs)
    supervisor.start("nap")
    port = vnc_port(supervisor, "nap")

    async def scenario() -> None:
        async with await RfbClient.connect(port, encodings=(RAW, DESKTOP_NAME)) as client:
            assert "(paused)" not in client.name
            # Output right up to the freeze: a loop writing as fast as the pty takes it.
            client.type("i=0; while :; do echo tick $i; i=$((i+1)); done\n")
            for _ in range(200):
                if len(read_journal(supervisor.run_dir("nap"), 0)[1]) > 100_000:
                    break
                await asyncio.sleep(0.05)
            reply = await asyncio.to_thread(supervisor.suspend, "nap")
            assert reply["state_written"] is True
            offset = reply["offset"]
            assert supervisor.status("nap").state == "paused"
            # Every byte written before the freeze is on the viewer's screen.
            await client.update(incremental=False)
            await client.drain_updates(quiet=0.5)
            assert "(paused)" in client.name
            assert np.array_equal(seen(client), reference_pixels(supervisor, "nap", offset))
            # The state left in the rootfs is that same screen.
            domain = supervisor.load("nap")
            snapshot = read_console_state(domain.rootfs, domain.state_path)
            assert snapshot is not None and snapshot.offset == offset
            assert np.array_equal(
                render_rgb(state.restore(snapshot)), reference_pixels(supervisor, "nap", offset)
            )
            # Nothing moves while paused, and typing is refused, not queued.
            client.ctrl("c")
            client.type("echo typed-while-paused\n")
            await asyncio.sleep(0.5)
            assert read_journal(supervisor.run_dir("nap"), 0)[1][offset:] == b""
            with pytest.raises(DomainStateError, match="already paused"):
                supervisor.suspend("nap")
            await asyncio.to_thread(supervisor.resume, "nap")
            assert supervisor.status("nap").state == "running"
            # It goes on from where it stood: the loop still runs, input works again.
            for _ in range(100):
                if len(read_journal(supervisor.run_dir("nap"), 0)[1]) > offset + 1000:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the domain did not run on after resume")
            await client.read_message(timeout=2)
            assert "(paused)" not in client.name
            client.ctrl("c")
            client.type("echo back-$((6*7))\n")
            await wait_for_text(supervisor, "nap", "back-42")
            journal = read_journal(supervisor.run_dir("nap"), 0)[1]
            assert b"typed-while-paused" not in journal

        # A quiet screen: suspend and resume change not one pixel.
        await asyncio.sleep(0.3)
        before = await fresh_view(port)
        await asyncio.to_thread(supervisor.suspend, "nap")
        await asyncio.to_thread(supervisor.resume, "nap")
        after = await fresh_view(port)
        assert np.array_equal(before, after)
        assert np.array_equal(after, reference_pixels(supervisor, "nap"))

    asyncio.run(scenario())


def test_cli_suspend_resume_json_and_list(supervisor: Supervisor, rootfs: Path) -> None:
    define(supervisor, "cli", rootfs)
    supervisor.start("cli")
    env = {**os.environ, "VZVNC_HOME": str(supervisor.home)}

    def vzvnc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vzvnc", *args], env=env, capture_output=True, text=True
        )

    out = vzvnc("domain", "suspend", "cli", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["state_written"] is True
    listing = vzvnc("domain", "list", "--json")
    assert [d["state"] for d in json.loads(listing.stdout)] == ["paused"]
    again = vzvnc("domain", "suspend", "cli")
    assert again.returncode == os.EX_UNAVAILABLE and "already paused" in again.stderr
    assert vzvnc("domain", "resume", "cli").returncode == 0
    assert json.loads(vzvnc("domain", "status", "cli", "--json").stdout)["state"] == "running"
    # A paused domain still stops when asked.
    assert vzvnc("domain", "suspend", "cli").returncode == 0
    assert vzvnc("domain", "stop", "cli").returncode == 0
    assert supervisor.status("cli").state == "defined"
    assert "cli" not in Cgroups.stale(group=home_group(supervisor.home))


def test_save_then_start_restores_processes_and_screen(
    supervisor: Supervisor, rootfs: Path
) -> None:
    criu.find_criu()  # CI installs CRIU 4.1 (tools/build-criu): this test must run there
    define(supervisor, "keep", rootfs, 'hostname = "keeper"\n')
    first = supervisor.start("keep")
    port = vnc_port(supervisor, "keep")

    async def before_save() -> tuple[np.ndarray, int]:
        async with await RfbClient.connect(port, encodings=(RAW,)) as client:
            client.type("X=42; (while :; do date +%s > /tmp/beat; sleep 0.2; done) &\n")
            client.type("printf '\\033[1;33mcoloured\\033[0m\\n'; echo ready-$((40+2))\n")
            await wait_for_text(supervisor, "keep", "ready-42")
            await asyncio.sleep(0.5)
            await client.update(incremental=False)
            await client.drain_updates(quiet=0.5)
            return seen(client), len(read_journal(supervisor.run_dir("keep"), 0)[1])

    pixels, _ = asyncio.run(before_save())
    result = supervisor.save("keep")
    assert result["image_bytes"] > 0
    assert supervisor.status("keep").state == "saved"
    assert "keep" not in Cgroups.stale(group=home_group(supervisor.home))

    restored = supervisor.start("keep")
    assert restored.init_pid != first.init_pid  # new host pid, same pid 1 inside
    assert supervisor.saved_images("keep") is None  # used up
    port = vnc_port(supervisor, "keep")

    async def after_restore() -> None:
        async with await RfbClient.connect(port, encodings=(RAW,)) as client:
            await client.update(incremental=False)
            await client.drain_updates(quiet=0.5)
            assert np.array_equal(seen(client), pixels)  # the same screen, pixel for pixel
            client.type(
                "echo X=$X host=$(hostname) pid=$$; jobs > /tmp/j; echo jobs=$(wc -l </tmp/j)\n"
            )
            await wait_for_text(supervisor, "keep", "X=42 host=keeper pid=1")
            await wait_for_text(supervisor, "keep", "jobs=1")
            # The background loop is alive: its heartbeat file keeps changing.
            client.type("a=$(cat /tmp/beat); sleep 1; b=$(cat /tmp/beat); echo beat-$((b>a))\n")
            await wait_for_text(supervisor, "keep", "beat-1")

    asyncio.run(after_restore())


def logging_hook(home: Path, log: Path, fail_prepare: bool = False) -> None:
    hooks = home / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    refuse = 'if [ "$2" = prepare ]; then echo "no capacity for $1" >&2; exit 1; fi\n'
    (hooks / "domain").write_text(
        "#!/bin/sh\n"
        f'echo "$1 $2 $3 $4 $(head -c 200 | tr -d "\\n" | cut -c1-16)" >> {log}\n'
        + (refuse if fail_prepare else "")
    )
    (hooks / "domain").chmod(0o755)


def test_hooks_see_every_operation_in_order(supervisor: Supervisor, rootfs: Path) -> None:
    criu.find_criu()
    log = supervisor.home.parent / "hooks.log"
    logging_hook(supervisor.home, log)
    define(supervisor, "hooked", rootfs)
    supervisor.start("hooked")
    supervisor.suspend("hooked")
    supervisor.resume("hooked")
    supervisor.save("hooked")
    supervisor.start("hooked")
    supervisor.stop("hooked")
    seen_ops = [line.split()[:4] for line in log.read_text().splitlines()]
    started = ["hooked", "started", "begin", "-"]
    # "started" runs in the background: it may come before or after the next request.
    assert seen_ops.count(started) == 2
    others = [op for op in seen_ops if op != started]
    assert [" ".join(op[1:]) for op in others] == [
        "prepare begin -",
        "start begin -",
        "suspend begin -",
        "resumed end -",
        "suspend begin -",
        "save begin -",
        "stopped end saved",
        "release end saved",
        "prepare begin -",
        "restore begin -",
        "stopped end -",
        "release end -",
    ]
    assert all(line.split()[4].startswith('{"name":') for line in log.read_text().splitlines())


def test_a_refusing_prepare_hook_stops_the_start_cleanly(
    supervisor: Supervisor, rootfs: Path
) -> None:
    logging_hook(supervisor.home, supervisor.home.parent / "hooks.log", fail_prepare=True)
    define(supervisor, "refused", rootfs)
    with pytest.raises(DomainStateError, match="no capacity for refused"):
        supervisor.start("refused")
    assert supervisor.status("refused").state == "defined"
    assert "refused" not in Cgroups.stale(group=home_group(supervisor.home))
    assert not supervisor.run_dir("refused").exists()


def test_a_save_that_fails_leaves_the_domain_running(
    supervisor: Supervisor, rootfs: Path, tmp_path: Path
) -> None:
    criu.find_criu()
    define(supervisor, "stays", rootfs)
    supervisor.start("stays")
    # The save directory is a 64 KiB tmpfs: CRIU's images cannot fit (a real failure).
    save = supervisor.home / "save"
    save.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(save)], check=True)
    try:
        with pytest.raises(DomainStateError, match=r"criu dump failed.*No space left"):
            supervisor.save("stays")
        assert list(save.iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(save)], check=True)
    assert supervisor.status("stays").state == "running"

    async def still_answers() -> None:
        async with await RfbClient.connect(vnc_port(supervisor, "stays")) as client:
            client.type("echo alive-$((40+2))\n")
            await wait_for_text(supervisor, "stays", "alive-42")

    asyncio.run(still_answers())


def test_a_corrupt_state_planted_before_restore_is_refused_and_the_console_works(
    supervisor: Supervisor, rootfs: Path
) -> None:
    criu.find_criu()
    define(supervisor, "planted", rootfs)
    supervisor.start("planted")
    supervisor.save("planted")
    domain = supervisor.load("planted")
    state_file = rootfs / ".vzvnc" / "console.state"
    assert state_file.is_file()
    garbage = os.urandom(3000)
    state_file.write_bytes(garbage)
    supervisor.start("planted")
    assert (rootfs / ".vzvnc" / "console.state.corrupt-1").read_bytes() == garbage
    log = (supervisor.run_dir("planted") / "controller.log").read_text()
    assert log.count("console state not used") == 1
    assert read_console_state(domain.rootfs, domain.state_path) is None

    async def works() -> None:
        async with await RfbClient.connect(vnc_port(supervisor, "planted")) as client:
            client.type("echo pid=$$\n")
            await wait_for_text(supervisor, "planted", "pid=1")

    asyncio.run(works())


def test_a_domain_saved_while_paused_comes_back_paused(
    supervisor: Supervisor, rootfs: Path
) -> None:
    criu.find_criu()
    define(supervisor, "sleepy", rootfs)
    supervisor.start("sleepy")
    supervisor.suspend("sleepy")
    supervisor.save("sleepy")
    supervisor.start("sleepy")
    assert supervisor.status("sleepy").state == "paused"

    async def frozen_then_thawed() -> None:
        async with await RfbClient.connect(
            vnc_port(supervisor, "sleepy"), encodings=(RAW, DESKTOP_NAME)
        ) as client:
            assert client.name.endswith("(paused)")  # a viewer connecting now is told
            client.type("echo refused\n")
            await asyncio.sleep(0.3)
            assert b"refused" not in read_journal(supervisor.run_dir("sleepy"), 0)[1]
            await asyncio.to_thread(supervisor.resume, "sleepy")
            client.type("echo thawed-$((40+2))\n")
            await wait_for_text(supervisor, "sleepy", "thawed-42")

    asyncio.run(frozen_then_thawed())


def test_a_planted_state_directory_link_cannot_stop_a_save_or_reach_the_host(
    supervisor: Supervisor, rootfs: Path, tmp_path: Path
) -> None:
    criu.find_criu()
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    define(supervisor, "sneaky", rootfs)
    supervisor.start("sneaky")

    async def plant() -> None:
        async with await RfbClient.connect(vnc_port(supervisor, "sneaky")) as client:
            # The container's root points /.vzvnc at a host directory (as seen from the
            # host: the rootfs is a plain directory there).
            client.type(f"ln -s {host_dir} /.vzvnc; echo planted-$((40+2))\n")
            await wait_for_text(supervisor, "sneaky", "planted-42")

    asyncio.run(plant())
    reply = supervisor.suspend("sneaky")
    assert reply["state_written"] is False and "symbolic link" in reply["why"]
    supervisor.resume("sneaky")
    supervisor.save("sneaky")  # saved all the same
    assert list(host_dir.iterdir()) == []
    supervisor.start("sneaky")
    assert list(host_dir.iterdir()) == []
    log = (supervisor.run_dir("sneaky") / "controller.log").read_text()
    assert log.count("console state not used") == 1

    async def works() -> None:
        async with await RfbClient.connect(vnc_port(supervisor, "sneaky")) as client:
            client.type("echo back-$((40+2))\n")
            await wait_for_text(supervisor, "sneaky", "back-42")

    asyncio.run(works())
