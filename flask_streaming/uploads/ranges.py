"""Appending offset ranges (what tus ``PATCH`` does), in one pass:

1. the session is loaded and the hook asked for ``append`` (before anything
   about the upload is told), then the request is checked against it: the
   offset, the state, the length (an ``Upload-Length`` on the ``PATCH``
   included), the limits;
2. the body goes to its final place at the offset **without** the session
   lock: only the append lock of the upload's data, taken at once or 423
   ``upload_locked`` (one writer per upload, across workers). A body with a
   checksum is staged in a temporary file first and copied into place only
   when it verifies; one without is written through, so an interrupted body
   keeps every byte that arrived;
3. one short :class:`~.transaction.Transaction`: load once, check the offset
   again, set the length, send ``segment-received``, complete (and send
   ``upload-completed``) when the length is reached, save once;
4. after the lock: the post-commit signals.
"""

from __future__ import annotations

import time
from typing import IO, Any

from ..errors import BadRequest, Conflict, Forbidden, Locked, NotFound, PayloadTooLarge
from ..signals import segment_received, upload_completed
from .bodies import parse_checksum, read_body, storage_error
from .core import UploadCore
from .results import CompletionResult, SegmentResult
from .segments import BLOCK_SIZE, Segment
from .sessions import COMPLETED, OPEN, UploadSession
from .storage import Staging
from .transaction import Transaction

#: :attr:`UploadSession.concat` of a partial upload: it completes without
#: ``upload-completed`` (only the upload assembled from it is announced).
PARTIAL = "partial"
#: :attr:`UploadSession.concat` of a final upload (assembled from partials).
FINAL = "final"


def append_range(
    service: UploadCore,
    session_id: str,
    offset: int,
    body: IO[bytes],
    *,
    content_length: int | None = None,
    checksum: str | None = None,
    length: int | None = None,
    protocol: str | None = None,
) -> SegmentResult:
    """Append bytes at *offset* (which must be the session's offset) from
    *body*; *length* sets a deferred length in the same transaction (tus
    ``Upload-Length`` on a ``PATCH``). Bytes that arrived before an
    interrupted body are kept, unless a *checksum* was given (then the range
    counts only when it verifies). Sends ``segment-received`` (``index``
    counts the ranges), and ``upload-completed`` when the length is reached
    (not for a partial upload). An empty body at the end of a complete
    upload is a no-op. *protocol*: the session must be of it (else 404).

    :raises Forbidden: the hook denied ``append``; ``final_upload`` (a final
        upload takes no data).
    :raises Conflict: ``offset_mismatch`` (nothing changes),
        ``length_already_set``, ``upload_completed``.
    :raises Locked: another request is appending to this upload.
    :raises PayloadTooLarge: the range goes past the upload's length (or
        the upload limit while the length is deferred); a checksummed range
        also past ``max_segment_size``.
    :raises BadRequest: ``checksum_mismatch`` (the range was discarded),
        ``bad_checksum``, ``bad_length`` (below the offset).
    """
    s = service.settings
    algorithm, expected = parse_checksum(checksum) if checksum else (None, None)
    session = service.authorized(session_id, "append")
    if protocol is not None and session.protocol != protocol:
        raise NotFound("unknown upload", code="unknown_session")
    if session.concat == FINAL:
        raise Forbidden("a final upload cannot be patched", code="final_upload")
    _check(session, offset, length, s.max_upload_size)
    if session.state != OPEN:
        if not content_length:
            segment = _segment(service, session_id, session.received, offset, 0)
            return SegmentResult(session, segment, {}, duplicate=True)
        raise Conflict("the upload is already complete", code="upload_completed")
    limit = length if length is not None else session.length
    limit = s.max_upload_size if limit is None else limit
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
        error: BaseException | None = None
        if expected is not None:
            _receive_checked(
                service, session_id, body, target, content_length, limit - offset, algorithm,
                expected,
            )  # fmt: skip
        else:
            try:
                read_body(body, target, content_length, limit - offset, None)
            except Exception as exc:  # keep what arrived, then report
                error = exc
            target.close()
        result = _commit_range(service, session_id, offset, target, checksum, length)
    finally:
        target.release()
    if error is not None:
        raise error
    return result


def _check(session: UploadSession, offset: int, length: int | None, limit: int | None) -> None:
    """The request against the session's state (before the body, and again
    in the transaction)."""
    if offset != session.offset:
        raise Conflict(
            "Upload-Offset is not the upload's offset",
            code="offset_mismatch",
            offset=session.offset,
        )
    if length is None or length == session.length:
        return
    if session.length is not None:
        raise Conflict(
            f"the upload's length is already {session.length}",
            code="length_already_set",
            length=session.length,
        )
    if limit is not None and length > limit:
        raise PayloadTooLarge("the upload is larger than allowed", limit=limit)
    if length < session.offset:
        raise BadRequest(
            f"{session.offset} bytes were already received",
            code="bad_length",
            size=session.offset,
        )


def _receive_checked(
    service: UploadCore,
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


def _segment(service: UploadCore, session_id: str, index: int, offset: int, size: int) -> Segment:
    return Segment(
        session_id=session_id,
        index=index,
        offset=offset,
        size=size,
        checksum=None,
        opener=lambda: service.storage.open_data(session_id, offset, size),
    )


def _commit_range(
    service: UploadCore,
    session_id: str,
    offset: int,
    staging: Staging,
    checksum: str | None,
    length: int | None,
) -> SegmentResult:
    with service.transaction(session_id) as tx:
        session = tx.session
        if session.state != OPEN:
            raise Conflict("the upload changed meanwhile", code="offset_mismatch")
        _check(session, offset, length, service.settings.max_upload_size)
        if length is not None:
            session.length = length
        segment = _segment(service, session_id, session.received, offset, staging.size)
        segment.checksum = checksum
        results: dict[str, Any] = {}
        if staging.size:
            results = service.send_hook(
                segment_received, "segment-received", session=session, segment=segment
            )
            session.offset += staging.size
            session.received += 1
            tx.post("segment-committed", segment)
        session.updated_at = time.time()
        completion = finish_if_complete(service, tx)
        tx.commit()
    return SegmentResult(tx.session, segment, results, completion=completion)


def finish_if_complete(service: UploadCore, tx: Transaction) -> CompletionResult | None:
    """In *tx*: when the session holds its whole announced length, cut the
    stored bytes to it, mark it completed and (unless it is a partial
    upload) send ``upload-completed`` and post ``upload-committed``. The
    caller commits. Returns the completion, ``None`` when not complete."""
    session = tx.session
    if session.state != OPEN or session.length is None or session.offset != session.length:
        return None
    service.storage.assemble(session.id, (), session.offset)
    done: dict[str, Any] = {}
    if session.concat != PARTIAL:
        done = service.send_hook(upload_completed, "upload-completed", session=session)
        tx.post("upload-committed")
    session.state, session.results = COMPLETED, done
    session.completed_at = time.time()
    return CompletionResult(session, done)


def complete_if_full(service: UploadCore, session_id: str) -> UploadSession:
    """Complete *session_id* when it already holds its whole length (an
    upload created with ``Upload-Length: 0``); returns the session."""
    with service.transaction(session_id) as tx:
        if finish_if_complete(service, tx) is not None:
            tx.commit()
    return tx.session
