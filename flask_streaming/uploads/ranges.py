"""Appending offset ranges (what tus ``PATCH`` does) through the service.

Bytes are written through to their final place in blocks, so an interrupted
body keeps every byte that arrived, unless the client sent a checksum: then
the range counts only when it verifies. Only one request appends to a session
at a time; another is refused at once with 423 (``Locked``), across workers.
"""

from __future__ import annotations

import time
from typing import IO, TYPE_CHECKING, Any

from ..errors import BadRequest, Conflict, Forbidden, Locked, PayloadTooLarge
from ..signals import segment_received, upload_completed
from .bodies import parse_checksum, read_body
from .results import CompletionResult, SegmentResult
from .segments import Segment
from .sessions import COMPLETED, OPEN
from .storage import Staging

if TYPE_CHECKING:
    from .service import UploadService


def append_range(
    service: UploadService,
    session_id: str,
    offset: int,
    body: IO[bytes],
    *,
    content_length: int | None = None,
    checksum: str | None = None,
) -> SegmentResult:
    """Append bytes at *offset* (which must be the session's size) from
    *body*, written through to storage: bytes that arrived before an
    interrupted body are kept, unless a *checksum* was given (then the
    range counts only when it verifies). Sends ``segment-received``
    (``index`` counts the ranges) and, when the announced length is
    reached, ``upload-completed``.

    :raises Locked: another request is appending to this session.
    :raises Conflict: *offset* is not the current size.
    """
    s = service.settings
    session = service.get(session_id)
    service.authorize("append", session)
    if session.state != OPEN:
        raise Forbidden("the upload is complete", code="upload_completed")
    if offset != session.size:
        raise Conflict(
            "offset does not match the upload's size",
            code="offset_mismatch",
            offset=session.size,
        )
    limit = s.max_upload_size if session.length is None else session.length
    limit = (1 << 62) if limit is None else limit
    if content_length is not None and offset + content_length > limit:
        raise PayloadTooLarge("the upload is larger than allowed", limit=limit)
    algorithm, expected = parse_checksum(checksum) if checksum else (None, None)
    staging = service.storage.stage(session_id, offset)
    try:
        if not staging.in_place:
            raise Locked("another request is writing this upload", code="upload_locked")
        error: BaseException | None = None
        try:
            digest = read_body(body, staging, content_length, limit - offset, algorithm)
        except Exception as exc:  # keep what arrived, unless checksummed
            if expected is not None:
                raise
            error, digest = exc, None
        staging.close()
        if expected is not None and digest != expected:
            raise BadRequest(
                f"the range's {algorithm} does not match; it was discarded",
                code="checksum_mismatch",
            )
        result = _commit_range(service, session_id, offset, staging, checksum)
        if error is not None:
            raise error
        return result
    finally:
        staging.release()


def _commit_range(
    service: UploadService,
    session_id: str,
    offset: int,
    staging: Staging,
    checksum: str | None,
) -> SegmentResult:
    lock = service._locked(session_id)
    try:
        session = service._reload(session_id)
        if session.size != offset:
            raise Conflict("the upload changed meanwhile", code="offset_mismatch")
        index = int(session.extra.get("ranges", 0))
        segment = Segment(
            session_id=session_id,
            index=index,
            offset=offset,
            size=staging.size,
            checksum=checksum,
            opener=lambda: service.storage.open_data(session_id, offset, staging.size),
        )
        results: dict[str, Any] = {}
        if staging.size:
            results = service._send(
                segment_received, "segment-received", session=session, segment=segment
            )
            session.size += staging.size
            session.received += 1
            session.extra["ranges"] = index + 1
        session.updated_at = time.time()
        completion = None
        if session.length is not None and session.size == session.length:
            service.storage.assemble(session_id, (), session.size)
            done = service._send(upload_completed, "upload-completed", session=session)
            session.state, session.results = COMPLETED, done
            session.completed_at = time.time()
            completion = CompletionResult(session, done)
        service.storage.save(session)
        return SegmentResult(session, segment, results, completion=completion)
    finally:
        lock.release()
