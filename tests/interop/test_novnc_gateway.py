"""noVNC through a WebSocket gateway with the token plugin, before and after its
domain moves to another host.

Two hosts as in ``tests/integration/test_migration.py`` (network namespaces joined
by a veth, a ``vzvnc daemon`` each), each with a host name of its own (a UTS
namespace per command) and both with ``$VZVNC_HOME/tokens`` on one shared directory,
as the README's gateway section has it. The domain listens on ``0.0.0.0:auto``,
which its token entry names by the host's name. Debian's websockify, the gateway,
runs in host A's network namespace with ``--token-plugin TokenFile --token-source``
the shared directory; its resolver knows both host names (a private ``/etc/hosts``
in a mount namespace of its own). Beside it an HTTP server serves noVNC's core and
the test page (``novnc/viewer.html``), and Debian's Chromium, driven by Playwright,
runs in the same network namespace; noVNC opens one fixed gateway URL that carries
only the domain's token.

Before the move the canvas must equal the console's framebuffer at host A, and
typing in the browser must reach the domain; after a live migration to host B,
the same URL must reach the domain at B: the canvas equals B's console, the
screen from A is still there, and typing works. A token entry left pointing at A
(or removed by A's teardown) makes the second connection fail.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import test_novnc as novnc
from interop_helpers import describe_difference, require_binary, stop_process
from test_encodings_interop import PASSWORD
from test_novnc import NOVNC_DIR, PAGE, canvas_rgb

from tests.integration import test_migration as migration
from tests.integration.test_migration import (
    Host,
    Hosts,
    in_netns,
    migrate,
    start,
    tls_args,
    vnc_port,
)
from tests.rfbclient import RAW, RfbClient
from vzvnc.supervisor import Supervisor

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and domains need root"),
]

# Fixtures of other modules, used here as well.
hosts = migration.hosts
playwright_driver = novnc.playwright_driver

# Inside host A's network namespace, where nothing else listens.
GATEWAY_PORT = 6080
WEB_PORT = 8080


@dataclasses.dataclass
class NamedHost(Host):
    """A host whose commands and daemon run under its own host name (a UTS namespace
    per command), so each host's token entries name that host."""

    hostname: str = ""

    def command(self, *args: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", "unshare", "--uts", "sh", "-c",
                'hostname "$0" && exec "$@"', self.hostname,
                sys.executable, "-m", "vzvnc", *args]  # fmt: skip


@pytest.fixture
def named_hosts(hosts: Hosts) -> Hosts:
    """The two hosts, named after their network namespaces, with one token directory
    (the gateway's) behind both homes' ``tokens``."""
    shared = hosts.tmp / "gateway-tokens"
    shared.mkdir()
    named = []
    for host in (hosts.a, hosts.b):
        (host.home / "tokens").symlink_to(shared)
        # The same list of daemons: the hosts fixture stops whatever is started here.
        named.append(NamedHost(host.netns, host.address, host.home, host.daemons, host.netns))
    return dataclasses.replace(hosts, a=named[0], b=named[1])


def serve_in_netns(netns: str, argv: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` (in a session of its own) and wait until ``port`` listens in ``netns``."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{netns}", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 10
    while True:
        try:
            in_netns(netns, lambda: socket.create_connection(("127.0.0.1", port), 1)).close()
            return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_session(process)
                pytest.fail(f"{argv[0]} never listened on {port}:\n{log.read_text()}")
            time.sleep(0.05)


def stop_session(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process`` and whatever it forked (websockify serves each connection in a
    child of its own)."""
    stop_process(process)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def gateway(named_hosts: Hosts) -> Iterator[str]:
    """In host A's network namespace: websockify with the token plugin reading the shared
    token directory, and an HTTP server with noVNC and the test page. Returns the page's
    URL without its query."""
    websockify = require_binary("websockify", "websockify")
    if not (NOVNC_DIR / "core" / "rfb.js").is_file():
        pytest.fail("noVNC is not installed: apt-get install novnc", pytrace=False)
    a, b = named_hosts.a, named_hosts.b
    assert isinstance(a, NamedHost) and isinstance(b, NamedHost)
    web = named_hosts.tmp / "web"
    web.mkdir()
    (web / "core").symlink_to(NOVNC_DIR / "core")
    (web / "vendor").symlink_to(NOVNC_DIR / "vendor")
    (web / "viewer.html").write_text(PAGE.read_text())
    # The gateway's resolver knows the hosts by name (its own /etc/hosts, in a mount
    # namespace of its own), as a gateway's DNS would.
    names = named_hosts.tmp / "gateway-hosts"
    names.write_text(f"127.0.0.1 localhost\n{a.address} {a.hostname}\n{b.address} {b.hostname}\n")
    proxy = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             'mount --bind "$0" /etc/hosts && exec "$@"', str(names),
             websockify, "--verbose", "--token-plugin", "TokenFile",
             "--token-source", str(a.home / "tokens"), f"127.0.0.1:{GATEWAY_PORT}"]  # fmt: skip
    pages = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
             "--directory", str(web), str(WEB_PORT)]  # fmt: skip
    started: list[subprocess.Popen[bytes]] = []
    try:
        log = named_hosts.tmp / "websockify.log"
        started.append(serve_in_netns(a.netns, proxy, GATEWAY_PORT, log))
        started.append(serve_in_netns(a.netns, pages, WEB_PORT, named_hosts.tmp / "http.log"))
        yield f"http://127.0.0.1:{WEB_PORT}/viewer.html"
    finally:
        for process in started:
            stop_session(process)


@pytest.fixture
def browser(playwright_driver: Any, named_hosts: Hosts) -> Iterator[Any]:
    """Debian's Chromium, headless, in host A's network namespace (beside the gateway)."""
    chromium = require_binary("chromium", "chromium")
    # Chromium aborts its requests (ERR_NETWORK_CHANGED) when an address changes in its
    # network namespace: let the veth's IPv6 duplicate address detection finish first.
    deadline = time.monotonic() + 10
    while subprocess.run(
        ["ip", "-n", named_hosts.a.netns, "-6", "addr", "show", "tentative"],
        capture_output=True, text=True, check=True,
    ).stdout.strip():  # fmt: skip
        assert time.monotonic() < deadline, "IPv6 duplicate address detection never ended"
        time.sleep(0.1)
    wrapper = named_hosts.tmp / "chromium-in-host-a"
    wrapper.write_text(
        f'#!/bin/sh\nexec nsenter --net=/run/netns/{named_hosts.a.netns} {chromium} "$@"\n'
    )
    wrapper.chmod(0o755)
    browser = playwright_driver.chromium.launch(
        executable_path=str(wrapper),
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run"],
    )  # fmt: skip
    try:
        yield browser
    finally:
        browser.close()


def define_listening_everywhere(host: Host, rootfs: Path, password: Path) -> None:
    file = host.home / "mover.toml"
    file.write_text(
        f'name = "mover"\nrootfs = "{rootfs}"\ninit = ["/bin/sh"]\nstop_timeout = 1\n'
        f'[vnc]\nlisten = "0.0.0.0:auto"\npassword_file = "{password}"\n'
        "insecure_vnc_auth = true\n"
    )
    result = host.vzvnc("domain", "define", str(file))
    assert result.returncode == 0, result.stderr


def console_frame(host: Host, port: int) -> np.ndarray:
    """The domain console's framebuffer as RGB, read over RFB at its host."""

    async def read() -> np.ndarray:
        async with await RfbClient.connect(
            port, password=PASSWORD, encodings=(RAW,), sock=host.connect(port)
        ) as client:
            await client.update(incremental=False)
            await client.drain_updates(quiet=0.3)
            return np.ascontiguousarray(client.pixels[:, :, 2::-1])

    # Playwright's synchronous API keeps an event loop on this thread: use another.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result()


def open_viewer(browser: Any, url: str) -> tuple[Any, dict[str, Any]]:
    from playwright.sync_api import TimeoutError as PageTimeout

    page = browser.new_page(viewport={"width": 800, "height": 600})
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(f"{request.url}: {request.failure}"))
    page.on("console", lambda message: failed.append(f"console: {message.text}"))
    page.goto(url)
    try:
        page.wait_for_function(
            "window.vzvnc && (window.vzvnc.connected || window.vzvnc.disconnected)", timeout=15000
        )
    except PageTimeout:
        pytest.fail(f"the page never settled: {failed}")
    return page, page.evaluate("window.vzvnc")


def wait_for_console(page: Any, host: Host, port: int, timeout: float = 20.0) -> None:
    """Wait until the canvas equals the console's framebuffer at ``host``."""
    deadline = time.monotonic() + timeout
    while True:
        expected = console_frame(host, port)
        shown = canvas_rgb(page)
        if shown.shape == expected.shape and np.array_equal(shown, expected):
            return
        if time.monotonic() > deadline:
            pytest.fail(
                f"noVNC's canvas never matched the console at {host.netns}: "
                + describe_difference(shown, expected)
            )
        time.sleep(0.1)


def wait_for_screen_text(supervisor: Supervisor, text: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        lines = supervisor.screen("mover").text_lines()
        if any(text in line for line in lines):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{text!r} never appeared:\n" + "\n".join(lines))
        time.sleep(0.05)


def type_in(page: Any, text: str) -> None:
    page.click("#screen canvas")
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_novnc_reaches_a_migrated_domain_through_the_same_gateway_url(
    named_hosts: Hosts, gateway: str, browser: Any
) -> None:
    a, b = named_hosts.a, named_hosts.b
    assert isinstance(a, NamedHost) and isinstance(b, NamedHost)
    password = named_hosts.tmp / "vnc.pass"
    password.write_bytes(PASSWORD + b"\n")
    password.chmod(0o600)
    b.start_daemon(*tls_args(named_hosts))
    a.start_daemon(*tls_args(named_hosts))
    define_listening_everywhere(a, named_hosts.rootfs, password)
    source_port = start(a)
    token = a.supervisor.status("mover").token
    entry = a.home / "tokens" / "mover"
    assert entry.read_text() == f"{token}: {a.hostname}:{source_port}\n"
    wait_for_screen_text(a.supervisor, "#")

    # One URL for the domain wherever it runs: the gateway's, with the token.
    path = urllib.parse.quote(f"websockify?token={token}", safe="")
    url = f"{gateway}?port={GATEWAY_PORT}&encoding=tight&password={PASSWORD.decode()}&path={path}"
    before, state = open_viewer(browser, url)
    assert state["connected"], f"noVNC did not connect through the gateway: {state}"
    assert "mover" in state["name"], state
    wait_for_console(before, a, source_port)
    type_in(before, "echo before-$((6*7))")
    wait_for_screen_text(a.supervisor, "before-42")
    wait_for_console(before, a, source_port)

    events = migrate(named_hosts, "--shared-storage")
    assert events[-1]["returncode"] == 0, events[-1]
    assert "mover" not in a.supervisor.names()
    # The source's session ends with it; the entry now names the destination.
    before.wait_for_function("window.vzvnc.disconnected !== null")
    dest_port = vnc_port(b)
    assert entry.read_text() == f"{token}: {b.hostname}:{dest_port}\n"

    after, state = open_viewer(browser, url)
    assert state["connected"], f"noVNC did not reach the moved domain: {state}"
    wait_for_console(after, b, dest_port)
    assert any("before-42" in line for line in b.supervisor.screen("mover").text_lines())
    type_in(after, "echo after-$((6*7))")
    wait_for_screen_text(b.supervisor, "after-42")
    wait_for_console(after, b, dest_port)
