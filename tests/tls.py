"""A throwaway self-signed certificate for the TLS tests (gunicorn
``--certfile``/``--keyfile``, the shipped nginx config)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed_certificate(openssl: str, folder: Path, common_name: str) -> tuple[Path, Path]:
    """Write a one-day RSA 2048 certificate and its key into *folder* with
    the *openssl* binary; return ``(cert, key)`` paths."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={common_name}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key
