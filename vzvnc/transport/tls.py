"""TLS for VeNCrypt (rfbproto "VeNCrypt"), from the standard library's ``ssl``.

X509 subtypes use the console's certificate and key (TLS 1.2, for the reason in
``certificate_context``); TLS subtypes use anonymous (EC)DH, which TLS 1.3 does not
have, so they run TLS 1.2 with the aNULL suites (as TigerVNC's GnuTLS does).
Anonymous TLS keeps eavesdroppers out but not a man in the middle: the X509
subtypes are the ones to expose.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from vzvnc.errors import ConfigError


@dataclass(frozen=True)
class TlsContexts:
    x509: ssl.SSLContext | None
    anonymous: ssl.SSLContext | None


def certificate_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # TLS 1.3 would send the first RFB bytes together with the client's Finished,
    # and asyncio's start_tls (CPython 3.11) can leave bytes that arrive with the
    # end of the handshake unread until more come: a viewer then waits for ever
    # (4 runs of 8 of the TigerVNC test, here). TLS 1.2 ends the handshake with the
    # server's Finished, so the order of the exchange avoids it.
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls_cert_file: cannot load {cert_file} with {key_file}: {exc}") from exc
    return context


def anonymous_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("aECDH:aNULL:!eNULL:@SECLEVEL=0")
    return context
