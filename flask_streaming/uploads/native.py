"""The native segmented protocol's flow (svelte-stream's wire format),
in one pass per request, like :mod:`.ranges` for tus:

1. the session is loaded once, unlocked, and the hook asked first
   (``append``; ``complete`` too for a done request); then the limits;
2. the segment's body goes to staging **without** the session lock: in
   place at its offset when it is the next one (the append lock), else a
   temporary file (an out-of-order segment, kept apart until completion);
3. one short :class:`~.transaction.Transaction`: the segment is checked
   against the record (a duplicate of a stored one returns its stored
   results, a different one is ``segment_conflict``), placed, sent to
   ``segment-received``, recorded; a done request also completes the upload
   in the same transaction (``upload-completed``);
4. after the lock: ``segment-committed`` / ``upload-committed``.

It uses the service only through :class:`~.core.UploadCore`.
"""

from __future__ import annotations

import time
from typing import IO, Any

from ..errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from ..signals import segment_received, upload_completed
from .bodies import parse_checksum, read_body, same_bytes
from .core import UploadCore
from .results import CompletionResult, SegmentResult
from .segments import Segment
from .sessions import COMPLETED, OPEN, UploadSession
from .storage import Staging
from .transaction import Transaction

#: At most this many missing (or extra) segment numbers are listed in a 409.
MAX_LISTED = 1000


def _native(core: UploadCore, session_id: str, action: str) -> UploadSession:
    """:meth:`UploadCore.authorized`, for segment operations: a tus upload
    (offset ranges) takes no numbered segments, so it is unknown here (404)."""
    session = core.authorized(session_id, action)
    if session.protocol != "native":
        raise NotFound("unknown upload session", code="unknown_session")
    return session


def _segment(core: UploadCore, session_id: str, record: dict[str, Any]) -> Segment:
    return Segment(
        session_id=session_id,
        index=record["index"],
        offset=record["offset"],
        size=record["size"],
        checksum=record.get("checksum"),
        opener=lambda: core.storage.open_segment(session_id, record),
    )


def append_segment(
    core: UploadCore,
    session_id: str,
    index: int,
    body: IO[bytes],
    *,
    content_length: int | None = None,
    checksum: str | None = None,
    done: bool = False,
) -> SegmentResult | CompletionResult:
    """Receive segment *index* of a native session from *body*, then, when
    *done*, complete the upload with segments ``0..index``; an empty done
    body completes with ``0..index-1`` (returns the completion only).

    Sends ``segment-received`` once per accepted segment; an identical
    retry returns the stored results (``duplicate``).
    """
    s = core.settings
    if index < 0 or index >= s.max_segments:
        raise BadRequest(
            f"segment number must be 0..{s.max_segments - 1}",
            code="bad_segment",
            limit=s.max_segments,
        )
    if content_length is not None and content_length > s.max_segment_size:
        raise PayloadTooLarge(
            "the segment is larger than allowed",
            code="segment_too_large",
            limit=s.max_segment_size,
        )
    algorithm, expected = parse_checksum(checksum) if checksum else (None, None)
    # 1. load once, unlocked: authorize first, then check (nothing told before)
    session = _native(core, session_id, "append")
    if done:
        core.authorize("complete", session)
    if (
        session.state == OPEN
        and s.max_upload_size is not None
        and (session.offset + (content_length or 0) > s.max_upload_size)
        and core.storage.load_segment(session_id, index) is None  # a retry adds nothing
    ):
        raise PayloadTooLarge("the upload is larger than allowed", limit=s.max_upload_size)
    offset = session.prefix_end if session.state == OPEN and index == session.contiguous else None
    # 2. the body into staging, without the session lock
    try:
        staging = core.storage.stage(session_id, offset)
    except FileNotFoundError:  # removed meanwhile (aborted or expired)
        raise NotFound("unknown upload session", code="unknown_session") from None
    try:
        digest = read_body(body, staging, content_length, s.max_segment_size, algorithm)
        staging.close()
        if done and staging.size == 0:  # svelte-stream's done: segments 0..index-1
            staging.release()
            return _complete(core, session_id, index)
        if expected is not None and digest != expected:
            raise BadRequest(
                f"the segment's {algorithm} does not match; it was discarded",
                code="checksum_mismatch",
                segment=index,
            )
        # 3. one short transaction: the segment (and the completion)
        with core.transaction(session_id) as tx:
            result = _commit_segment(core, tx, index, staging, checksum)
            if done:
                result.completion = _complete_in(core, tx, index + 1)
            if not result.duplicate or result.completion is not None:
                tx.commit()
    finally:
        staging.release()
    # 4. post-commit signals were sent on leaving the transaction
    return result


def _commit_segment(
    core: UploadCore, tx: Transaction, index: int, staging: Staging, checksum: str | None
) -> SegmentResult:
    """In *tx*: check segment *index* against the record and commit it
    (a duplicate of a stored one: its stored results, nothing changes)."""
    s = core.settings
    session, session_id = tx.session, tx.session_id
    record = core.storage.load_segment(session_id, index)
    if record is not None:
        if record["size"] == staging.size and same_bytes(
            staging.open(), core.storage.open_segment(session_id, record)
        ):
            segment = _segment(core, session_id, record)
            return SegmentResult(session, segment, record["results"], duplicate=True)
        raise Conflict(
            f"segment {index} was already received with different bytes",
            code="segment_conflict",
            segment=index,
        )
    if session.state != OPEN:
        raise Conflict("the upload is already complete", code="upload_completed")
    if s.max_upload_size is not None and session.offset + staging.size > s.max_upload_size:
        raise PayloadTooLarge("the upload is larger than allowed", limit=s.max_upload_size)
    in_order = index == session.contiguous
    if staging.in_place and not (in_order and staging.offset == session.prefix_end):
        raise Conflict("the session changed while receiving; send again", code="retry")
    location = core.storage.place_segment(session_id, index, staging)
    record = {
        "index": index,
        "offset": session.prefix_end if in_order else None,
        "size": staging.size,
        "location": location,
        "checksum": checksum,
        "received_at": time.time(),
        "results": {},
    }
    segment = _segment(core, session_id, record)
    try:
        results = core.send_hook(
            segment_received, "segment-received", session=session, segment=segment
        )
    except BaseException:
        core.storage.drop_segment(session_id, index, location)
        raise
    record["results"] = results
    core.storage.save_segment(session_id, record)
    session.received += 1
    session.offset += staging.size
    session.max_index = max(session.max_index, index)
    session.updated_at = time.time()
    if in_order:
        session.prefix_end += staging.size
        session.contiguous += 1
        load = core.storage.load_segment
        while (nxt := load(session_id, session.contiguous)) is not None:
            session.prefix_end += nxt["size"]
            session.contiguous += 1
    tx.post("segment-committed", segment)
    return SegmentResult(session, segment, results)


def complete(core: UploadCore, session_id: str, count: int) -> CompletionResult:
    """Assemble segments ``0..count-1`` and send ``upload-completed``.

    :raises Conflict: segments missing (listed in ``missing``) or beyond
        the end; the client sends them (or not) and completes again.
    """
    if count < 0 or count > core.settings.max_segments:
        raise BadRequest("bad segment count", code="bad_segment")
    _native(core, session_id, "complete")
    return _complete(core, session_id, count)


def _complete(core: UploadCore, session_id: str, count: int) -> CompletionResult:
    with core.transaction(session_id) as tx:
        result = _complete_in(core, tx, count)
        if not result.duplicate:
            tx.commit()
    return result


def _complete_in(core: UploadCore, tx: Transaction, count: int) -> CompletionResult:
    """In *tx*: complete the native session with segments ``0..count-1``."""
    session, session_id = tx.session, tx.session_id
    if session.state == COMPLETED:
        if session.segments == count:
            return CompletionResult(session, session.results, duplicate=True)
        raise Conflict(
            f"the upload was completed with {session.segments} segments",
            code="upload_completed",
            segments=session.segments,
        )
    records = core.storage.segment_records(session_id)
    present = {r["index"] for r in records}
    missing = [i for i in range(count) if i not in present]
    if missing:
        raise Conflict(
            f"{len(missing)} segment(s) missing; send them and complete again",
            code="missing_segments",
            missing=missing[:MAX_LISTED],
            segments=count,
        )
    beyond = sorted(i for i in present if i >= count)
    if beyond:
        raise Conflict(
            "segments were received beyond the end",
            code="segments_beyond_end",
            beyond=beyond[:MAX_LISTED],
            segments=count,
        )
    total = 0
    for r in records:
        r["offset"] = total
        total += r["size"]
    if session.length is not None and total != session.length:
        raise Conflict(
            f"received {total} bytes, announced {session.length}",
            code="size_mismatch",
            size=total,
            length=session.length,
        )
    core.storage.assemble(session_id, records, total)
    session.segments = count
    session.offset = total
    results = core.send_hook(upload_completed, "upload-completed", session=session)
    for r in records:
        if r["location"] == "file":
            r["location"] = "data"
            core.storage.save_segment(session_id, r)
    session.state = COMPLETED
    session.results = results
    session.completed_at = session.updated_at = time.time()
    tx.post("upload-committed")
    core.storage.drop_segment_bodies(session_id)
    return CompletionResult(session, results)
