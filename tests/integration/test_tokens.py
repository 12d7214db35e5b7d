"""The token directory for a WebSocket gateway: a real websockify with its
``TokenFile`` plugin reaches each domain's console by its token alone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_websocket_transport import WsRfb, closed
from vzvnc.domain.rootfs import make_busybox_rootfs
from vzvnc.supervisor import Supervisor

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="domains need root")


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    sup = Supervisor(tmp_path / "home")
    yield sup
    for name in sup.names():
        sup.stop(name, timeout=1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_gateway_reaches_each_domain_by_its_token(supervisor: Supervisor, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    make_busybox_rootfs(str(rootfs))
    for name in ("tok-a", "tok-b"):
        file = tmp_path / f"{name}.toml"
        file.write_text(f'name = "{name}"\nrootfs = "{rootfs}"\nstop_timeout = 1\n')
        supervisor.define_file(file)
    tokens = {name: supervisor.status(name).token for name in ("tok-a", "tok-b")}
    assert len(set(tokens.values())) == 2 and all(len(t) >= 32 for t in tokens.values())
    # Redefining keeps the token; the CLI shows it.
    supervisor.define_file(tmp_path / "tok-a.toml")
    assert supervisor.status("tok-a").token == tokens["tok-a"]
    env = {**os.environ, "VZVNC_HOME": str(supervisor.home)}
    shown = subprocess.run(
        [sys.executable, "-m", "vzvnc", "domain", "status", "tok-a", "--json"],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    assert json.loads(shown.stdout)["token"] == tokens["tok-a"]

    for name in tokens:
        supervisor.start(name)
    token_dir = supervisor.home / "tokens"
    for name, token in tokens.items():
        address = supervisor.status(name).vnc
        assert (token_dir / name).read_text() == f"{token}: {address}\n"

    websockify = shutil.which("websockify")
    assert websockify is not None, "websockify is not installed"
    port = free_port()
    gateway = subprocess.Popen(
        [websockify, "--token-plugin", "TokenFile", "--token-source", str(token_dir),
         f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline, "websockify did not listen"
            time.sleep(0.05)

        async def through_gateway(token: str) -> str:
            ws = await WsRfb.connect(port, ["binary"], target=f"/?token={token}")
            _, _, name = await ws.handshake()
            await closed(ws.writer)
            return name

        for name, token in tokens.items():
            assert asyncio.run(through_gateway(token)) == name
    finally:
        gateway.terminate()
        gateway.wait(10)

    supervisor.stop("tok-a")
    assert not (token_dir / "tok-a").exists()
    assert (token_dir / "tok-b").exists()
