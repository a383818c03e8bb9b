"""Reading request bodies into a store: blocks, limits, checksums."""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
from typing import IO

from werkzeug.exceptions import ClientDisconnected, HTTPException

from ..errors import (
    BadRequest,
    InsufficientStorage,
    PayloadTooLarge,
    RequestTimeout,
    StorageFailed,
    StreamingError,
)
from .segments import BLOCK_SIZE
from .storage import Staging

#: Checksum algorithms a client may name (``<algorithm>=<base64 digest>``).
CHECKSUM_ALGORITHMS = ("sha256", "sha1", "md5")


def parse_checksum(value: str) -> tuple[str, bytes]:
    """Parse ``sha256=<base64>`` (``sha256 <base64>`` and a hex digest are
    accepted too) into ``(algorithm, digest)``.

    :raises BadRequest: unknown algorithm or malformed digest.
    """
    algorithm, sep, encoded = value.strip().replace(" ", "=", 1).partition("=")
    algorithm = algorithm.lower()
    if not sep or algorithm not in CHECKSUM_ALGORITHMS:
        raise BadRequest(
            "checksum must be '<algorithm>=<base64 digest>' with algorithm one of "
            + ", ".join(CHECKSUM_ALGORITHMS),
            code="bad_checksum",
        )
    size = hashlib.new(algorithm).digest_size
    encoded = encoded.strip()
    try:
        if len(encoded) == 2 * size and all(c in "0123456789abcdefABCDEF" for c in encoded):
            digest = bytes.fromhex(encoded)
        else:
            digest = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != size:
        raise BadRequest(f"malformed {algorithm} digest", code="bad_checksum")
    return algorithm, digest


#: errno values that mean "no room": ENOSPC, EDQUOT, EFBIG (a file size
#: limit, ``RLIMIT_FSIZE``).
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def storage_error(exc: OSError) -> StreamingError:
    """The client-facing error for a failed write to the store: 507 when the
    store is out of space, else 500 ``storage_error`` (nothing accepted)."""
    if exc.errno in NO_SPACE_ERRNOS:
        return InsufficientStorage("the server is out of storage space; retry later")
    return StorageFailed("the server could not store the data; send again")


def read_block(body: IO[bytes], size: int) -> bytes:
    """Read up to *size* bytes of a request body; a body that stalls past
    ``STREAMING_BODY_TIMEOUT`` (a socket timeout, which Werkzeug reports as
    a disconnect) raises :class:`~flask_streaming.errors.RequestTimeout`."""
    try:
        return body.read(size)
    except ClientDisconnected as exc:
        if isinstance(exc.__context__, TimeoutError):
            raise RequestTimeout("the request body stalled; the connection is closed") from exc
        raise
    except TimeoutError as exc:
        raise RequestTimeout("the request body stalled; the connection is closed") from exc
    except (HTTPException, StreamingError):
        raise
    except Exception as exc:  # the server's parser: bad chunk framing and the like
        raise BadRequest("the request body is malformed", code="bad_body") from exc


def read_body(
    body: IO[bytes],
    staging: Staging,
    content_length: int | None,
    limit: int,
    algorithm: str | None,
) -> bytes | None:
    """Copy *body* into *staging* in :data:`BLOCK_SIZE` reads (never the
    whole body in memory); return the *algorithm* digest when asked.

    :raises PayloadTooLarge: more than *limit* bytes arrive.
    :raises InsufficientStorage: the disk is full.
    :raises StorageFailed: another write error.
    :raises RequestTimeout: the body stalled past ``STREAMING_BODY_TIMEOUT``.
    """
    hasher = hashlib.new(algorithm) if algorithm else None
    remaining = content_length
    while remaining is None or remaining > 0:
        want = BLOCK_SIZE if remaining is None else min(BLOCK_SIZE, remaining)
        block = read_block(body, want)
        if not block:
            break
        if staging.size + len(block) > limit:
            raise PayloadTooLarge(
                "the segment is larger than allowed", code="segment_too_large", limit=limit
            )
        if hasher is not None:
            hasher.update(block)
        try:
            staging.write(block)
        except OSError as exc:
            raise storage_error(exc) from exc
        if remaining is not None:
            remaining -= len(block)
    if remaining:
        raise BadRequest("the body ended before Content-Length", code="incomplete_body")
    return None if hasher is None else hasher.digest()


def same_bytes(a: IO[bytes], b: IO[bytes]) -> bool:
    with a, b:
        while True:
            x, y = a.read(BLOCK_SIZE), b.read(BLOCK_SIZE)
            if x != y:
                return False
            if not x:
                return True
