"""VeNCrypt (security type 19) through real TLS: a certificate made by ``openssl``,
the standard library's TLS on both ends, every subtype, and the rules that keep
VNC Authentication off the network without TLS."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import running_console, wait_for_text
from tests.rfbclient import AuthFailed, RfbClient
from tests.tlscert import make_certificate
from vzvnc.config import ConsoleConfig
from vzvnc.errors import ConfigError

X509_NONE, X509_VNC, X509_PLAIN = 260, 261, 262
TLS_NONE, TLS_VNC, TLS_PLAIN = 257, 258, 259


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for localhost and 127.0.0.1, as the README makes one."""
    return make_certificate(tmp_path_factory.mktemp("tls"), "localhost")


def trusting(cert: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cert)
    return context


def anonymous_client() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("aECDH:aNULL:!eNULL:@SECLEVEL=0")
    return context


def users_file(tmp_path: Path) -> str:
    path = tmp_path / "users"
    vzvnc = [sys.executable, "-m", "vzvnc", "passwd", str(path)]
    subprocess.run([*vzvnc, "alice"], input="alice-secret\n", text=True, check=True)
    subprocess.run([*vzvnc, "bob", "--view-only"], input="bob-secret\n", text=True, check=True)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert "alice-secret" not in path.read_text()
    return str(path)


def test_x509_vnc_and_x509_plain_with_full_and_view_only_users(
    certificate: tuple[str, str], tmp_path: Path
) -> None:
    cert, key = certificate
    users = users_file(tmp_path)

    async def scenario() -> None:
        async with running_console(
            password=b"vnc-pw", tls_cert_file=cert, tls_key_file=key, users_file=users
        ) as console:
            port = console.address[1]
            client = await RfbClient.connect_vencrypt(
                port, X509_VNC, trusting(cert), password=b"vnc-pw"
            )
            assert client.offered_subtypes == (X509_VNC, X509_PLAIN)
            await client.update(incremental=False)
            client.type("echo through-$((2*3))-tls\n")
            await wait_for_text(console, "through-6-tls")
            await client.close()
            with pytest.raises(AuthFailed):
                await RfbClient.connect_vencrypt(port, X509_VNC, trusting(cert), password=b"wrong")
            alice = await RfbClient.connect_vencrypt(
                port, X509_PLAIN, trusting(cert), user="alice", password=b"alice-secret"
            )
            alice.type("echo alice-types\n")
            await wait_for_text(console, "alice-types")
            await alice.close()
            bob = await RfbClient.connect_vencrypt(
                port, X509_PLAIN, trusting(cert), user="bob", password=b"bob-secret"
            )
            bob.type("echo bob-types\n")
            await bob.update(incremental=False)
            await asyncio.sleep(0.3)
            assert not any("bob-types" in line for line in console.terminal.text_lines())
            await bob.close()
            for user, secret in (("alice", b"bob-secret"), ("nobody", b"alice-secret")):
                with pytest.raises(AuthFailed):
                    await RfbClient.connect_vencrypt(
                        port, X509_PLAIN, trusting(cert), user=user, password=secret
                    )
            # Loopback: the plain types are still offered beside VeNCrypt.
            legacy = await RfbClient.connect(port, password=b"vnc-pw")
            await legacy.close()

    asyncio.run(scenario())


def test_a_client_that_does_not_trust_the_certificate_gets_nothing(
    certificate: tuple[str, str],
) -> None:
    cert, key = certificate

    async def scenario() -> None:
        async with running_console(password=b"pw", tls_cert_file=cert, tls_key_file=key) as console:
            with pytest.raises(ssl.SSLError):
                await RfbClient.connect_vencrypt(
                    console.address[1], X509_VNC, ssl.create_default_context(), password=b"pw"
                )

    asyncio.run(scenario())


def test_anonymous_tls_subtypes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_console(password=b"pw", anonymous_tls=True) as console:
            port = console.address[1]
            client = await RfbClient.connect_vencrypt(
                port, TLS_VNC, anonymous_client(), password=b"pw"
            )
            assert client.offered_subtypes == (TLS_VNC,)
            await client.update(incremental=False)
            await client.close()
        async with running_console(anonymous_tls=True) as console:
            client = await RfbClient.connect_vencrypt(
                console.address[1], TLS_NONE, anonymous_client()
            )
            assert client.offered_subtypes == (TLS_NONE,)
            await client.close()

    asyncio.run(scenario())


def test_x509_none_when_there_is_no_password(certificate: tuple[str, str]) -> None:
    cert, key = certificate

    async def scenario() -> None:
        async with running_console(tls_cert_file=cert, tls_key_file=key) as console:
            client = await RfbClient.connect_vencrypt(console.address[1], X509_NONE, trusting(cert))
            assert client.offered_subtypes == (X509_NONE,)
            await client.close()

    asyncio.run(scenario())


def test_off_loopback_vnc_authentication_needs_tls_or_an_insecure_flag() -> None:
    with pytest.raises(ConfigError, match="without TLS can be cracked"):
        ConsoleConfig(host="0.0.0.0", password=b"pw")
    ConsoleConfig(host="0.0.0.0", password=b"pw", insecure_vnc_auth=True)
    with pytest.raises(ConfigError, match="users_file: Plain passwords are only taken over TLS"):
        ConsoleConfig(users_file="/nonexistent")
    with pytest.raises(ConfigError, match="a certificate and its key go together"):
        ConsoleConfig(tls_cert_file="/x.pem")


def test_off_loopback_with_tls_the_plain_types_are_not_offered(
    certificate: tuple[str, str],
) -> None:
    cert, key = certificate
    config = ConsoleConfig(host="0.0.0.0", password=b"pw", tls_cert_file=cert, tls_key_file=key)
    assert not config.legacy_allowed
    assert ConsoleConfig(password=b"pw", tls_cert_file=cert, tls_key_file=key).legacy_allowed


def test_bytes_sent_before_the_tls_handshake_are_refused(certificate: tuple[str, str]) -> None:
    cert, key = certificate

    async def scenario() -> None:
        async with running_console(password=b"pw", tls_cert_file=cert, tls_key_file=key) as console:
            reader, writer = await asyncio.open_connection("127.0.0.1", console.address[1])
            await reader.readexactly(12)
            writer.write(b"RFB 003.008\n")
            (count,) = await reader.readexactly(1)
            await reader.readexactly(count)
            # Subtype choice and a forged "plaintext" message in one write.
            writer.write(b"\x13\x00\x02" + (X509_VNC).to_bytes(4, "big") + b"\x01injected")
            data = await asyncio.wait_for(reader.read(), 5)
            # Dropped at once (read gave end of file) and never told "accepted".
            assert not data.endswith(b"\x01"), data
            writer.close()

    asyncio.run(scenario())
