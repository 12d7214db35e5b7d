"""TigerVNC's vncviewer over VeNCrypt: X509Vnc with a certificate made by ``openssl``
(trusted through ``-X509CA``), and TLSVnc over anonymous TLS. What it shows must be
the server's framebuffer, and a viewer that insists on a subtype the server does
not offer gets nothing."""

from __future__ import annotations

from typing import Any

import pytest
from interop_helpers import XServer, wait_for_screen
from test_tigervnc import COLOUR_THEN_SHELL, NAME, PASSWORD, wait_for_prompt

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
