"""Small apps that live tests serve under gunicorn."""

from __future__ import annotations

import hashlib
from typing import Any


def sha256_of(session: Any) -> str:
    """The hex sha256 of an upload session's assembled file (final hooks
    return it, so tests can check the upload byte for byte)."""
    h = hashlib.sha256()
    with session.open() as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
