"""noVNC, the browser client, in headless Chromium: every encoding it decodes, exactly.

noVNC speaks RFB over WebSocket, which vzvnc serves on its RFB port: the page
connects to ``ws://127.0.0.1:PORT/`` with nothing in between (and, in one test,
through Debian's websockify, as a gateway in front of many hosts would). The page
is ``novnc/viewer.html``: Debian's noVNC core (``/usr/share/novnc/core``) with no
user interface, which offers one pixel encoding chosen by the test (noVNC itself
always prefers Tight), and exposes its canvas as a PNG. Chromium is driven by
Playwright with Debian's binary.

For Tight, TightPNG (the encoding that exists for noVNC: fills and PNG
images), Hextile, RRE and Raw, the canvas must equal the server's
framebuffer pixel for pixel: on connecting, and after the screen scrolls
(CopyRect plus new lines). Typing through the browser's keyboard must reach
the program.

Over ``wss://`` (TLS on the same port, with the console's certificate) the same
holds in a browser whose profile trusts the test CA: its private HOME holds an NSS
database with the certificate, as a user would import a CA with ``certutil``; the
ordinary browser, which does not trust it, must not connect.
"""

from __future__ import annotations

import base64
import functools
import http.server
import io
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from interop_helpers import ConsoleHarness, describe_difference, require_binary, stop_process
from PIL import Image
from test_encodings_interop import (
    PASSWORD,
    assert_sent,
    negotiated,
    record_updates,
    scroll,
    start_workload,
)

from tests.tlscert import make_certificate
from vzvnc.rfb.constants import Encoding
from vzvnc.rfb.encodings import TIGHT_PNG

pytestmark = pytest.mark.interop

NOVNC_DIR = Path("/usr/share/novnc")
PAGE = Path(__file__).with_name("novnc") / "viewer.html"
ENCODINGS = {
    "tight": int(Encoding.TIGHT),
    "tightpng": TIGHT_PNG,
    "hextile": int(Encoding.HEXTILE),
    "rre": int(Encoding.RRE),
    "raw": int(Encoding.RAW),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def web_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An HTTP server on loopback with the test page beside Debian's noVNC core."""
    if not (NOVNC_DIR / "core" / "rfb.js").is_file():
        pytest.fail("noVNC is not installed: apt-get install novnc", pytrace=False)
    root = tmp_path_factory.mktemp("novnc-web")
    (root / "core").symlink_to(NOVNC_DIR / "core")
    (root / "vendor").symlink_to(NOVNC_DIR / "vendor")
    (root / "viewer.html").write_text(PAGE.read_text())
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="novnc-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]'", pytrace=False)
    with sync_playwright() as playwright:
        yield playwright


def launch_chromium(playwright: Any, home: Path | None = None) -> Any:
    """Debian's Chromium, headless; ``home``: the HOME its profile (and NSS database) lives in."""
    chromium = require_binary("chromium", "chromium")
    env = None if home is None else {**os.environ, "HOME": str(home)}
    return playwright.chromium.launch(
        executable_path=chromium,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
        env=env,
    )


@pytest.fixture(scope="module")
def browser(playwright_driver: Any) -> Iterator[Any]:
    browser = launch_chromium(playwright_driver)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The console's certificate for ``wss://127.0.0.1``, self-signed (it is its own CA)."""
    return make_certificate(tmp_path_factory.mktemp("wss-tls"), "127.0.0.1")


@pytest.fixture(scope="module")
def trusting_browser(
    playwright_driver: Any, certificate: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """A Chromium whose profile trusts the test certificate: it is in the NSS database of
    the browser's own HOME (Chromium on Linux takes locally added roots from there),
    trusted for TLS servers only. Nothing but this one certificate is trusted extra."""
    certutil = require_binary("certutil", "libnss3-tools")
    home = tmp_path_factory.mktemp("chromium-home")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    db = f"sql:{nssdb}"
    subprocess.run([certutil, "-N", "-d", db, "--empty-password"], check=True, capture_output=True)
    subprocess.run(
        [certutil, "-A", "-d", db, "-t", "C,,", "-n", "vzvnc-test", "-i", certificate[0]],
        check=True,
        capture_output=True,
    )
    browser = launch_chromium(playwright_driver, home)
    try:
        yield browser
    finally:
        browser.close()


def load_viewer(
    browser: Any,
    web_root: str,
    port: int,
    encoding: str,
    password: bytes = PASSWORD,
    path: str = "",
    scheme: str = "ws",
) -> tuple[Any, dict[str, Any]]:
    """The test page connecting to ``scheme://127.0.0.1:port/path``; returns it with its
    state once noVNC has connected or given up."""
    page = browser.new_page(viewport={"width": 800, "height": 600})
    page.goto(
        f"{web_root}/viewer.html?port={port}&encoding={encoding}"
        f"&password={password.decode()}&path={path}&scheme={scheme}"
    )
    page.wait_for_function("window.vzvnc && (window.vzvnc.connected || window.vzvnc.disconnected)")
    return page, page.evaluate("window.vzvnc")


@pytest.fixture
def open_novnc(
    web_root: str, browser: Any, tmp_path: Path
) -> Iterator[Callable[[ConsoleHarness, str], Any]]:
    """``open_novnc(harness, encoding, via_websockify=False, path="", scheme="ws",
    in_browser=None)``: a page connected to the console's own WebSocket (or through
    websockify), in the ordinary browser unless ``in_browser`` is given."""
    proxies: list[subprocess.Popen[bytes]] = []
    pages: list[Any] = []

    def start(
        harness: ConsoleHarness,
        encoding: str,
        via_websockify: bool = False,
        path: str = "",
        scheme: str = "ws",
        in_browser: Any = None,
    ) -> Any:
        port = harness.port
        if via_websockify:
            websockify = require_binary("websockify", "websockify")
            port = free_port()
            log = open(tmp_path / f"websockify-{len(proxies)}.log", "wb")  # noqa: SIM115
            proxy = subprocess.Popen(
                [websockify, f"127.0.0.1:{port}", f"127.0.0.1:{harness.port}"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            proxies.append(proxy)
            wait_listening(port)
        page, state = load_viewer(
            in_browser or browser, web_root, port, encoding, path=path, scheme=scheme
        )
        pages.append(page)
        assert state["connected"], f"noVNC did not connect: {state}"
        return page

    yield start
    for page in pages:
        page.close()
    for proxy in proxies:
        stop_process(proxy)


def test_novnc_through_websockify_as_a_gateway(
    start_console: Any, open_novnc: Callable[..., Any]
) -> None:
    harness = start_workload(start_console)
    page = open_novnc(harness, "tight", via_websockify=True)
    wait_for_canvas(page, harness)


def test_novnc_on_any_path_of_the_console_port(
    start_console: Any, open_novnc: Callable[..., Any]
) -> None:
    harness = start_workload(start_console)
    page = open_novnc(harness, "hextile", path="websockify")  # noVNC's own default path
    wait_for_canvas(page, harness)


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"websockify never listened on {port}")
            time.sleep(0.05)


def canvas_rgb(page: Any) -> np.ndarray:
    url: str = page.evaluate("window.vzvncCanvas()")
    data = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def wait_for_canvas(page: Any, harness: ConsoleHarness, timeout: float = 20.0) -> np.ndarray:
    """Wait until the canvas holds the server's (settled) framebuffer; return it."""
    expected = harness.wait_quiescent()
    deadline = time.monotonic() + timeout
    while True:
        shown = canvas_rgb(page)
        if shown.shape == expected.shape and np.array_equal(shown, expected):
            return shown
        if time.monotonic() > deadline:
            detail = (
                f"shape {shown.shape} against {expected.shape}"
                if shown.shape != expected.shape
                else describe_difference(shown, expected)
            )
            pytest.fail(f"noVNC's canvas never matched the framebuffer: {detail}")
        time.sleep(0.1)
        expected = harness.wait_quiescent()


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_novnc_shows_every_encoding_exactly(
    start_console: Any, open_novnc: Callable[[ConsoleHarness, str], Any], encoding: str
) -> None:
    harness = start_workload(start_console)
    page = open_novnc(harness, encoding)
    first = wait_for_canvas(page, harness)
    assert negotiated(harness)[0] == ENCODINGS[encoding]
    assert len(np.unique(first.reshape(-1, 3), axis=0)) >= 8, "the screen is not colourful"

    recorder = record_updates(harness)
    scroll(harness)
    wait_for_canvas(page, harness)
    assert_sent(recorder, ENCODINGS[encoding], copy_rect=True)
    assert page.evaluate("window.vzvnc.name") == harness.name


def test_typing_in_the_browser_reaches_the_program(
    start_console: Any, open_novnc: Callable[[ConsoleHarness, str], Any]
) -> None:
    harness = start_console(["/bin/sh"], password=PASSWORD, name="novnc-typing")
    harness.wait_for_text(lambda lines: any("$" in line for line in lines), what="the prompt")
    page = open_novnc(harness, "tightpng")
    wait_for_canvas(page, harness)
    page.click("#screen canvas")
    page.keyboard.type("echo typed-$((6*7))")
    page.keyboard.press("Enter")
    harness.wait_for_text(
        lambda lines: any(line.strip() == "typed-42" for line in lines), what="the echo"
    )
    wait_for_canvas(page, harness)


def test_novnc_over_wss_with_the_certificate_trusted(
    start_console: Any,
    open_novnc: Callable[..., Any],
    trusting_browser: Any,
    certificate: tuple[str, str],
) -> None:
    """wss:// to the console's own port: TLS with its certificate, then WebSocket and
    RFB inside; the screen exactly, and typing reaching the program."""
    cert, key = certificate
    harness = start_console(
        ["/bin/sh"], password=PASSWORD, name="novnc-wss", tls_cert_file=cert, tls_key_file=key
    )
    harness.wait_for_text(lambda lines: any("$" in line for line in lines), what="the prompt")
    page = open_novnc(harness, "tight", scheme="wss", in_browser=trusting_browser)
    wait_for_canvas(page, harness)
    page.click("#screen canvas")
    page.keyboard.type("echo wss-$((6*7))")
    page.keyboard.press("Enter")
    harness.wait_for_text(
        lambda lines: any(line.strip() == "wss-42" for line in lines), what="the echo"
    )
    wait_for_canvas(page, harness)
    # The browser's own record of the connection: noVNC was on a wss:// URL.
    assert page.evaluate("window.rfb._url").startswith("wss://127.0.0.1:")


def test_novnc_over_wss_needs_the_certificate_trusted(
    start_console: Any, web_root: str, browser: Any, certificate: tuple[str, str]
) -> None:
    """The same console, from a browser that does not trust the certificate: no
    connection (and ws:// on the same port still works from that browser)."""
    cert, key = certificate
    harness = start_console(
        ["/bin/sh"], password=PASSWORD, name="novnc-untrusted", tls_cert_file=cert, tls_key_file=key
    )
    page, state = load_viewer(browser, web_root, harness.port, "tight", scheme="wss")
    try:
        assert not state["connected"] and state["disconnected"] is not None, state
    finally:
        page.close()
    page, state = load_viewer(browser, web_root, harness.port, "tight", scheme="ws")
    try:
        assert state["connected"], state
    finally:
        page.close()
