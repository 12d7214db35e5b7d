"""TigerVNC's vncviewer over VeNCrypt: X509Vnc with a certificate made by ``openssl``
(trusted through ``-X509CA``), X509Plain with a user from a ``vzvnc passwd`` file, and
TLSVnc over anonymous TLS. What it shows must be the server's framebuffer, and a
viewer that insists on a subtype the server does not offer gets nothing.

Refusals must say why, on both sides: a wrong password (the server's reason shows in
the viewer's log, the server logs the security type that failed), a certificate from a
CA the viewer does not trust (the viewer asks, is told no, and names the unknown
issuer; the server never sees an authentication), and a viewer that will only do VNC
Authentication without TLS against a console that must not offer it.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from interop_helpers import (
    ConsoleHarness,
    Viewer,
    XServer,
    find_subimage,
    require_binary,
    wait_for_screen,
    wait_until,
    xdotool,
)
from test_tigervnc import COLOUR_THEN_SHELL, NAME, PASSWORD, WRONG_PASSWORD, wait_for_prompt

from tests.tlscert import make_certificate

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_certificate(tmp_path_factory.mktemp("tls"), "127.0.0.1")


def test_x509vnc_with_a_trusted_certificate(
    xserver: XServer, start_console: Any, start_viewer: Any, certificate: tuple[str, str]
) -> None:
    cert, key = certificate
    harness = start_console(
        COLOUR_THEN_SHELL, password=PASSWORD, name=NAME, tls_cert_file=cert, tls_key_file=key
    )
    wait_for_prompt(harness, 1)
    viewer = start_viewer(harness, PASSWORD, "-SecurityTypes=X509Vnc", f"-X509CA={cert}")
    wait_for_screen(xserver, harness, viewer)
    assert "Choosing security type X509Vnc (261)" in viewer.log()


def test_tlsvnc_over_anonymous_tls(xserver: XServer, start_console: Any, start_viewer: Any) -> None:
    harness = start_console(COLOUR_THEN_SHELL, password=PASSWORD, name=NAME, anonymous_tls=True)
    wait_for_prompt(harness, 1)
    viewer = start_viewer(harness, PASSWORD, "-SecurityTypes=TLSVnc")
    wait_for_screen(xserver, harness, viewer)
    assert "Choosing security type TLSVnc (258)" in viewer.log()


def test_a_viewer_that_insists_on_tls_gets_nothing_from_a_server_without_it(
    xserver: XServer, start_console: Any, start_viewer: Any
) -> None:
    harness = start_console(COLOUR_THEN_SHELL, password=PASSWORD, name=NAME)
    wait_for_prompt(harness, 1)
    viewer = start_viewer(harness, PASSWORD, "-SecurityTypes=X509Vnc")
    viewer.process.wait(20)
    assert "No matching security types" in viewer.log()


USER, USER_PASSWORD = "alice", "alice-Pass1"
VIEWER, VIEWER_PASSWORD = "bob", "bob-Pass1"
# The title of the question TigerVNC 1.12 asks about a certificate it cannot verify.
UNKNOWN_ISSUER = "Unknown certificate issuer"


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A users file written by ``vzvnc passwd`` (the password on stdin): a full-access
    user and a view-only one."""
    path = tmp_path_factory.mktemp("users") / "users"
    for user, password, extra in (
        (USER, USER_PASSWORD, ()),
        (VIEWER, VIEWER_PASSWORD, ("--view-only",)),
    ):
        subprocess.run(
            [sys.executable, "-m", "vzvnc", "passwd", *extra, str(path), user],
            input=f"{password}\n",
            text=True,
            capture_output=True,
            timeout=30,
            check=True,
        )
    return str(path)


def plain_env(user: str, password: str) -> dict[str, str]:
    """What TigerVNC's UserDialog takes instead of asking for a user and password."""
    return {"VNC_USERNAME": user, "VNC_PASSWORD": password}


def wait_for_exit(viewer: Viewer, timeout: float = 15.0) -> int:
    try:
        return viewer.process.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"vncviewer did not give up within {timeout:.0f} s:\n{viewer.log()}")


def assert_never_shown(xserver: XServer, harness: ConsoleHarness) -> None:
    """No session got past authentication, and the framebuffer is nowhere on the screen."""
    assert not any(session.initialised for session in harness.sessions())
    assert find_subimage(xserver.screenshot(), harness.wait_quiescent()) is None


def server_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def assert_no_password_logged(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        text = record.getMessage() + repr(record.args)
        for secret in (PASSWORD.decode(), WRONG_PASSWORD.decode(), USER_PASSWORD):
            assert secret not in text, f"a password was logged: {text}"


def plain_viewer(
    start_console: Any,
    start_viewer: Any,
    certificate: tuple[str, str],
    users_file: str,
    caplog: pytest.LogCaptureFixture,
    user: str,
    password: str,
) -> tuple[Any, Any]:
    """A console with only users (Plain) and the certificate, and a viewer logging in
    as ``user``. Its -passwd file holds a wrong VNC password: Plain must take the
    environment's."""
    caplog.set_level(logging.INFO, logger="vzvnc")
    cert, key = certificate
    harness = start_console(
        COLOUR_THEN_SHELL, name=NAME, users_file=users_file, tls_cert_file=cert, tls_key_file=key
    )
    wait_for_prompt(harness, 1)
    viewer = start_viewer(
        harness,
        WRONG_PASSWORD,
        "-SecurityTypes=X509Plain",
        f"-X509CA={cert}",
        env=plain_env(user, password),
    )
    return harness, viewer


def test_x509plain_with_a_user_from_the_users_file(
    xserver: XServer,
    start_console: Any,
    start_viewer: Any,
    certificate: tuple[str, str],
    users_file: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    harness, viewer = plain_viewer(
        start_console, start_viewer, certificate, users_file, caplog, USER, USER_PASSWORD
    )
    wait_for_screen(xserver, harness, viewer)
    assert "Choosing security type X509Plain (262)" in viewer.log()
    messages = server_messages(caplog)
    assert any(m.endswith("authenticated with VENCRYPT X509_PLAIN") for m in messages), messages
    assert_no_password_logged(caplog)


def test_a_view_only_user_sees_the_screen_and_its_keys_go_nowhere(
    xserver: XServer,
    start_console: Any,
    start_viewer: Any,
    certificate: tuple[str, str],
    users_file: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    harness, viewer = plain_viewer(
        start_console, start_viewer, certificate, users_file, caplog, VIEWER, VIEWER_PASSWORD
    )
    wait_for_screen(xserver, harness, viewer)
    messages = server_messages(caplog)
    assert any(m.endswith("authenticated with VENCRYPT X509_PLAIN (view only)") for m in messages)
    assert [session.view_only for session in harness.sessions()] == [True]
    before = harness.text_lines()

    window = xdotool(xserver, "search", "--sync", "--onlyvisible", "--name", NAME).split()[0]
    xdotool(xserver, "windowfocus", "--sync", window)
    xdotool(xserver, "type", "--delay", "20", "echo tiger")
    xdotool(xserver, "key", "Return")
    # The keys left the viewer (it is still connected); given time, nothing reached the shell.
    time.sleep(1.0)
    harness.wait_quiescent()
    assert viewer.process.poll() is None, viewer.log()
    assert harness.text_lines() == before


@pytest.mark.parametrize(
    ("security_type", "logged"), [("X509Vnc", "X509_VNC"), ("X509Plain", "X509_PLAIN")]
)
def test_a_wrong_password_over_tls_is_refused_with_the_servers_reason(
    xserver: XServer,
    start_console: Any,
    start_viewer: Any,
    certificate: tuple[str, str],
    users_file: str,
    caplog: pytest.LogCaptureFixture,
    security_type: str,
    logged: str,
) -> None:
    caplog.set_level(logging.INFO, logger="vzvnc")
    cert, key = certificate
    harness = start_console(
        COLOUR_THEN_SHELL,
        password=PASSWORD,
        name=NAME,
        users_file=users_file,
        tls_cert_file=cert,
        tls_key_file=key,
    )
    wait_for_prompt(harness, 1)
    viewer = start_viewer(
        harness,
        WRONG_PASSWORD,
        f"-SecurityTypes={security_type}",
        f"-X509CA={cert}",
        env=plain_env(USER, WRONG_PASSWORD.decode()),
    )
    wait_for_exit(viewer)
    log = viewer.log()
    assert f"Choosing security type {security_type}" in log, log
    # rfbproto SecurityResult carries the reason; TigerVNC 1.12 prints it.
    assert "Authentication failure: Authentication failed" in log, log
    assert_never_shown(xserver, harness)
    messages = server_messages(caplog)
    assert any(m.endswith(f"authentication failed (VENCRYPT {logged})") for m in messages), messages
    assert_no_password_logged(caplog)


def find_window(xserver: XServer, name: str) -> list[str]:
    """The ids of visible windows called exactly ``name`` (none yet: an empty list)."""
    result = subprocess.run(
        [require_binary("xdotool", "xdotool"), "search", "--onlyvisible", "--name", f"^{name}$"],
        env=xserver.env(Path("/tmp")),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return result.stdout.split()


def test_a_certificate_from_an_unknown_ca_is_refused_by_the_viewer(
    xserver: XServer,
    start_console: Any,
    start_viewer: Any,
    certificate: tuple[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="vzvnc")
    cert, key = certificate
    other_ca, _ = make_certificate(tmp_path, "127.0.0.1")
    harness = start_console(
        COLOUR_THEN_SHELL, password=PASSWORD, name=NAME, tls_cert_file=cert, tls_key_file=key
    )
    wait_for_prompt(harness, 1)
    viewer = start_viewer(harness, PASSWORD, "-SecurityTypes=X509Vnc", f"-X509CA={other_ca}")

    # TigerVNC 1.12 verifies the certificate after the TLS handshake and, when it
    # cannot, asks whether to make an exception (a fresh $HOME: no known hosts).
    # Answer no (Escape), as a careful person would.
    def question() -> list[str]:
        if viewer.process.poll() is not None:
            pytest.fail(f"vncviewer exited without asking:\n{viewer.log()}")
        return find_window(xserver, UNKNOWN_ISSUER)

    window = wait_until(question, 10, what=f"the viewer's {UNKNOWN_ISSUER!r} question")[0]
    xdotool(xserver, "windowfocus", "--sync", window)
    xdotool(xserver, "key", "Escape")
    wait_for_exit(viewer)

    log = viewer.log()
    assert f"Authentication failure: {UNKNOWN_ISSUER}" in log, log
    assert_never_shown(xserver, harness)
    # The server completed its side of TLS and saw the viewer hang up before any
    # authentication: it has nothing to refuse.
    messages = server_messages(caplog)
    assert any(m.endswith("TLS established (certificate)") for m in messages), messages
    assert not any("authenticat" in m for m in messages), messages


def test_a_plaintext_viewer_is_refused_where_only_tls_is_offered(
    xserver: XServer,
    start_console: Any,
    start_viewer: Any,
    certificate: tuple[str, str],
    users_file: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Users (Plain) are only ever checked inside TLS: a console with a users file and
    no VNC password offers nothing but VeNCrypt, so a viewer that will authenticate
    only in the clear finds nothing it accepts. (The same holds off loopback with a
    VNC password, which tests/integration/test_vencrypt.py checks without a viewer:
    the tests listen on loopback only.)"""
    caplog.set_level(logging.INFO, logger="vzvnc")
    cert, key = certificate
    harness = start_console(
        COLOUR_THEN_SHELL, name=NAME, users_file=users_file, tls_cert_file=cert, tls_key_file=key
    )
    wait_for_prompt(harness, 1)
    viewer = start_viewer(harness, PASSWORD, "-SecurityTypes=VncAuth,None")
    wait_for_exit(viewer)
    log = viewer.log()
    assert "No matching security types" in log, log
    assert "Choosing security type" not in log, log
    assert_never_shown(xserver, harness)
    assert not any("authenticat" in m for m in server_messages(caplog))
