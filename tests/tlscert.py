"""A self-signed certificate for localhost and 127.0.0.1, made by ``openssl`` as the
README shows, for the TLS tests."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_certificate(where: Path, common_name: str = "localhost") -> tuple[str, str]:
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", f"/CN={common_name}", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)
