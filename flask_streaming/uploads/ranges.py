"""Appending offset ranges (what tus ``PATCH`` does) through the service.

Bytes without a checksum are written through to their final place in blocks,
so an interrupted body keeps every byte that arrived. A range with a checksum
is staged in a temporary file first and copied into place only when it
verifies: a mismatching (or interrupted) one leaves no trace. Only one request
appends to a session at a time; another is refused at once with 423
(``Locked``), across workers.

Every function here that changes a session does so under the session's lock
(the service's ``_locked``), so the session record is the one truth for all
workers.
"""

from __future__ import annotations

import time
from typing import IO, TYPE_CHECKING, Any

from ..errors import (
    BadRequest,
    Conflict,
    Locked,
    NotFound,
    PayloadTooLarge,
)
from ..signals import segment_received, upload_completed
from . import delivery
from .bodies import parse_checksum, read_body, storage_error
from .delivery import Pending
from .results import CompletionResult, SegmentResult
from .segments import BLOCK_SIZE, Segment
from .sessions import COMPLETED, OPEN, UploadSession
from .storage import Staging

if TYPE_CHECKING:
    from .service import UploadService

#: ``session.extra["concat"]`` of a partial upload: it completes without
#: ``upload-completed`` (only the upload assembled from it is announced).
PARTIAL = "partial"


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
    *body*. Bytes that arrived before an interrupted body are kept, unless a
    *checksum* was given (then the range counts only when it verifies).
    Sends ``segment-received`` (``index`` counts the ranges) and, when the
    announced length is reached, ``upload-completed`` (not for a partial
    upload). An empty body at the end of a complete upload is a no-op.

    :raises Conflict: *offset* is not the current size (nothing changes).
    :raises Locked: another request is appending to this session.
    :raises PayloadTooLarge: the range goes past the upload's length (or
        the upload limit while the length is deferred); a checksummed range
        also past ``max_segment_size``.
    :raises BadRequest: ``checksum_mismatch`` (the range was discarded),
        ``bad_checksum`` (unknown algorithm or malformed digest).
    """
    s = service.settings
    algorithm, expected = parse_checksum(checksum) if checksum else (None, None)
    session = service.authorized(session_id, "append")
    if offset != session.size:
        raise Conflict(
            "offset does not match the upload's size",
            code="offset_mismatch",
            offset=session.size,
        )
    if session.state != OPEN:
        if not content_length:
            segment = _segment(service, session_id, int(session.extra.get("ranges", 0)), offset, 0)
            return SegmentResult(session, segment, {}, duplicate=True)
        raise Conflict("the upload is already complete", code="upload_completed")
    limit = s.max_upload_size if session.length is None else session.length
    limit = (1 << 62) if limit is None else limit
    if content_length is not None and offset + content_length > limit:
        raise PayloadTooLarge("the range goes past the upload's length", limit=limit)
    if expected is not None and content_length is not None and content_length > s.max_segment_size:
        raise PayloadTooLarge(
            "a checksummed range is larger than allowed",
            code="segment_too_large",
            limit=s.max_segment_size,
        )
    try:
        target = service.storage.stage(session_id, offset)
    except FileNotFoundError:  # removed meanwhile (terminated or expired)
        raise NotFound("unknown upload session", code="unknown_session") from None
    try:
        if not target.in_place:
            raise Locked("another request is writing this upload", code="upload_locked")
        if expected is not None:
            _receive_checked(
                service,
                session_id,
                body,
                target,
                content_length,
                limit - offset,
                algorithm,
                expected,
            )
            return _commit_range(service, session_id, offset, target, checksum)
        error: BaseException | None = None
        try:
            read_body(body, target, content_length, limit - offset, None)
        except Exception as exc:  # keep what arrived, then report
            error = exc
        target.close()
        result = _commit_range(service, session_id, offset, target, None)
        if error is not None:
            raise error
        return result
    finally:
        target.release()


def _receive_checked(
    service: UploadService,
    session_id: str,
    body: IO[bytes],
    target: Staging,
    content_length: int | None,
    room: int,
    algorithm: str | None,
    expected: bytes,
) -> None:
    """Stage *body* in a temporary file, verify it, then copy it into
    *target* (which holds the append lock)."""
    staged = service.storage.stage(session_id, None)
    try:
        limit = min(room, service.settings.max_segment_size)
        digest = read_body(body, staged, content_length, limit, algorithm)
        staged.close()
        if digest != expected:
            raise BadRequest(
                f"the range's {algorithm} does not match; it was discarded",
                code="checksum_mismatch",
            )
        with staged.open() as f:
            while block := f.read(BLOCK_SIZE):
                try:
                    target.write(block)
                except OSError as exc:
                    raise storage_error(exc) from exc
        target.close()
    finally:
        staged.release()


def _segment(
    service: UploadService, session_id: str, index: int, offset: int, size: int
) -> Segment:
    return Segment(
        session_id=session_id,
        index=index,
        offset=offset,
        size=size,
        checksum=None,
        opener=lambda: service.storage.open_data(session_id, offset, size),
    )


def _commit_range(
    service: UploadService,
    session_id: str,
    offset: int,
    staging: Staging,
    checksum: str | None,
) -> SegmentResult:
    lock = service._locked(session_id)
    send: list[Pending] = []
    try:
        session = service._reload(session_id)
        if session.size != offset or session.state != OPEN:
            raise Conflict("the upload changed meanwhile", code="offset_mismatch")
        index = int(session.extra.get("ranges", 0))
        segment = _segment(service, session_id, index, offset, staging.size)
        segment.checksum = checksum
        results: dict[str, Any] = {}
        if staging.size:
            results = service._send(
                segment_received, "segment-received", session=session, segment=segment
            )
            session.size += staging.size
            session.received += 1
            session.extra["ranges"] = index + 1
        session.updated_at = time.time()
        send, acked = service._settle(session)
        if staging.size:
            send.append(delivery.add(session, Pending.new("segment-committed", segment)))
        completion = finish_if_complete(service, session, send)
        service.storage.save(session)
        service.storage.forget_acknowledged(session_id, acked)
        result = SegmentResult(session, segment, results, completion=completion)
    finally:
        lock.release()
    service.deliver(result.session, send)
    return result


def finish_if_complete(
    service: UploadService, session: UploadSession, send: list[Pending]
) -> CompletionResult | None:
    """Under the session's lock: when *session* holds its whole announced
    length, cut the stored bytes to it, mark it completed and (unless it is
    a partial upload) send ``upload-completed`` and add the
    ``upload-committed`` marker (also to *send*). The caller saves
    *session*, then delivers *send*. Returns the completion, ``None`` when
    the upload is not complete."""
    if session.state != OPEN or session.length is None or session.size != session.length:
        return None
    service.storage.assemble(session.id, (), session.size)
    done: dict[str, Any] = {}
    if session.extra.get("concat") != PARTIAL:
        done = service._send(upload_completed, "upload-completed", session=session)
        send.append(delivery.add(session, Pending.new("upload-committed")))
    session.state, session.results = COMPLETED, done
    session.completed_at = time.time()
    return CompletionResult(session, done)


def complete_if_full(service: UploadService, session_id: str) -> UploadSession:
    """Complete *session_id* when it already holds its whole length (an
    upload created with ``Upload-Length: 0``); returns the session."""
    lock = service._locked(session_id)
    send: list[Pending] = []
    try:
        session = service._reload(session_id)
        if finish_if_complete(service, session, send) is not None:
            service.storage.save(session)
    finally:
        lock.release()
    service.deliver(session, send)
    return session


def set_length(service: UploadService, session_id: str, length: int) -> UploadSession:
    """Fix the length of an upload created with a deferred length (tus
    ``Upload-Length`` on a ``PATCH``). Setting the same length again is a
    no-op.

    :raises BadRequest: the length differs from one already set, or is
        below the bytes already received.
    :raises PayloadTooLarge: above the upload limit.
    """
    limit = service.settings.max_upload_size
    if limit is not None and length > limit:
        raise PayloadTooLarge("the upload is larger than allowed", limit=limit)
    service.authorized(session_id, "append")
    lock = service._locked(session_id)
    try:
        session = service._reload(session_id)
        if session.length == length:
            return session
        if session.length is not None:
            raise Conflict(
                f"the upload's length is already {session.length}",
                code="length_already_set",
                length=session.length,
            )
        if length < session.size:
            raise BadRequest(
                f"{session.size} bytes were already received", code="bad_length", size=session.size
            )
        session.length = length
        session.updated_at = time.time()
        service.storage.save(session)
        return session
    finally:
        lock.release()
