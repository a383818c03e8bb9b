"""tus 1.0.0 request headers, parsed strictly, and the server's constants.

Every parser raises :class:`~flask_streaming.errors.BadRequest` with a
machine code on malformed input, so a bad header is a 400, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import urlsplit

from ..errors import BadRequest, StreamingError
from ..tus_version import TUS_VERSION
from .bodies import CHECKSUM_ALGORITHMS

#: ``Tus-Extension``: every extension implemented.
TUS_EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "expiration",
    "checksum",
    "termination",
    "concatenation",
    "concatenation-unfinished",
)
#: The ``Content-Type`` of ``PATCH`` bodies (and of creation-with-upload).
OFFSET_OCTET_STREAM = "application/offset+octet-stream"
#: Methods ``X-HTTP-Method-Override`` may name on an upload's URL.
OVERRIDABLE = frozenset({"PATCH", "DELETE", "HEAD", "OPTIONS"})
#: Metadata pairs a client may send (each key at most once).
MAX_METADATA_PAIRS = 64

_INT_RE = re.compile(r"[0-9]{1,19}")
_KEY_RE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # visible ASCII but the comma


def checksum_algorithms() -> str:
    """``Tus-Checksum-Algorithm``: what :func:`~.bodies.parse_checksum` knows."""
    return ",".join(CHECKSUM_ALGORITHMS)


class PreconditionFailed(StreamingError):
    """412: the client speaks a tus version this server does not."""

    status, code = 412, "unsupported_tus_version"


def check_version(value: str | None) -> None:
    """``Tus-Resumable`` must name :data:`TUS_VERSION`.

    :raises PreconditionFailed: missing or another version (with
        ``Tus-Version``).
    """
    if (value or "").strip() != TUS_VERSION:
        raise PreconditionFailed(
            f"this server speaks tus {TUS_VERSION} (Tus-Resumable: {TUS_VERSION})",
            headers={"Tus-Version": TUS_VERSION},
            supported=[TUS_VERSION],
        )


def parse_int(name: str, value: str | None, *, required: bool = False) -> int | None:
    """A non-negative decimal header (``Upload-Offset``, ``Upload-Length``)."""
    if value is None:
        if required:
            raise BadRequest(f"{name} is missing", code=f"missing_{_code(name)}")
        return None
    value = value.strip()
    if not _INT_RE.fullmatch(value):
        raise BadRequest(f"{name} must be a non-negative integer", code=f"bad_{_code(name)}")
    return int(value)


def _code(name: str) -> str:
    return name.lower().replace("-", "_")


def parse_defer_length(value: str | None) -> bool:
    """``Upload-Defer-Length``: absent, or exactly ``1``."""
    if value is None:
        return False
    if value.strip() != "1":
        raise BadRequest("Upload-Defer-Length must be 1", code="bad_upload_defer_length")
    return True


def parse_metadata(value: str | None) -> dict[str, str | None]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs (the
    value may be left out). Values are decoded as UTF-8 (undecodable bytes
    replaced); the header itself is kept as sent, for ``HEAD``.

    :raises BadRequest: a key with a space or comma, a repeated key, a value
        that is not base64, or too many pairs.
    """
    if value is None or not value.strip():
        return {}
    pairs = value.split(",")
    if len(pairs) > MAX_METADATA_PAIRS:
        raise BadRequest(f"at most {MAX_METADATA_PAIRS} metadata pairs", code="bad_metadata")
    out: dict[str, str | None] = {}
    for pair in pairs:
        parts = pair.strip().split(" ")
        key = parts[0]
        if not key or len(parts) > 2 or not _KEY_RE.fullmatch(key):
            raise BadRequest(
                "Upload-Metadata must be comma-separated 'key base64value' pairs",
                code="bad_metadata",
            )
        if key in out:
            raise BadRequest(f"metadata key {key!r} is repeated", code="bad_metadata")
        if len(parts) == 1 or parts[1] == "":
            out[key] = None
            continue
        try:
            raw = base64.b64decode(parts[1], validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(
                f"the value of metadata key {key!r} is not base64", code="bad_metadata"
            ) from None
        out[key] = raw.decode("utf-8", "replace")
    return out


def parse_concat(value: str | None) -> tuple[str | None, list[str]]:
    """``Upload-Concat``: ``(None, [])``, ``("partial", [])`` or
    ``("final", [url, ...])``."""
    if value is None:
        return None, []
    value = value.strip()
    if value == "partial":
        return "partial", []
    kind, sep, rest = value.partition(";")
    urls = rest.split()
    if kind.strip() != "final" or not sep or not urls:
        raise BadRequest(
            "Upload-Concat must be 'partial' or 'final;<url> <url> ...'", code="bad_concat"
        )
    if len(urls) > 1000:
        raise BadRequest("at most 1000 partial uploads", code="bad_concat")
    return "final", urls


def upload_id_from_url(url: str, base: str) -> str:
    """The upload id in a partial upload's URL, absolute or relative, whose
    path must be *base* (the tus endpoint's path, ending in ``/``) plus an
    id. Only the path counts; the id is checked by the store."""
    try:
        path = urlsplit(url).path
    except ValueError:  # e.g. an unclosed IPv6 literal: "http://[::1/x"
        raise BadRequest(f"not a URL: {url!r}", code="bad_concat") from None
    if not path.startswith(base) or "/" in path[len(base) :] or len(path) == len(base):
        raise BadRequest(f"not an upload URL of this server: {url!r}", code="bad_concat")
    return path[len(base) :]
