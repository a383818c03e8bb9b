"""tus concatenation: partial uploads assembled into a final upload.

A partial upload is an ordinary tus upload whose record says
``extra["concat"] == "partial"``: it gets ``upload-created`` and
``segment-received`` like any other, but completes *without*
``upload-completed``. A final upload (``extra["concat"] == "final"``,
``extra["parts"]`` the partial ids in order) is never written by ``PATCH``
(403); it is assembled by copying its partials' bytes, in order, into its own
data, and only then is ``upload-completed`` sent, once, for it.

A final upload may be created before its partials are complete
(``concatenation-unfinished``). It is then assembled by whichever comes
first: the ``PATCH`` that completes its last partial (each partial lists its
finals in ``extra["finals"]``), or a ``HEAD`` of the final upload. Both take
the final's lock, so exactly one assembles it. A partial serves one final
upload only (``extra["used_by"]``): listing it twice, or in a second final
upload, is refused, so that a few small requests cannot make the server
store many copies of the same bytes. Partials are kept like any finished
upload.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest, Conflict, PayloadTooLarge, StreamingError
from .bodies import storage_error
from .delivery import Pending
from .ranges import PARTIAL, finish_if_complete
from .segments import BLOCK_SIZE
from .sessions import COMPLETED, UploadSession, new_session_id

if TYPE_CHECKING:
    from .service import UploadService

#: ``session.extra["concat"]`` of an upload assembled from partial ones.
FINAL = "final"
#: ``session.extra`` key of a partial upload: the final upload using it.
USED_BY = "used_by"


def is_final(session: UploadSession) -> bool:
    return session.extra.get("concat") == FINAL


def create_final(
    service: UploadService,
    part_ids: list[str],
    *,
    header: str,
    **create: Any,
) -> UploadSession:
    """Create a final upload of *part_ids* (in order) and assemble it at
    once when every partial is complete. *header* is the ``Upload-Concat``
    value as received (echoed by ``HEAD``); *create* goes to
    :meth:`UploadService.create`.

    Each partial serves one final upload only, once (the tus spec lets a
    server drop partials after concatenation): so the bytes a final upload
    stores never exceed what the client itself uploaded as partials.

    :raises BadRequest: a part is unknown, expired, not a partial upload, or
        listed twice (``partial_listed_twice``).
    :raises Forbidden: the authorization hook denies ``read`` on a part.
    :raises Conflict: a part is already used by another final upload
        (``partial_used``).
    :raises PayloadTooLarge: the parts add up to more than the upload limit.
    """
    parts = _readable_parts(service, part_ids)
    lengths = [p.length for p in parts]
    length = None if any(n is None for n in lengths) else sum(n for n in lengths if n)
    limit = service.settings.max_upload_size
    if length is not None and limit is not None and length > limit:
        raise PayloadTooLarge("the partial uploads add up to more than allowed", limit=limit)
    extra = {
        **create.pop("extra", {}),
        "concat": FINAL,
        "parts": list(part_ids),
        "concat_header": header,
    }
    final_id = new_session_id()
    claimed: list[str] = []
    try:
        for part in parts:
            _claim_part(service, part.id, final_id)
            claimed.append(part.id)
        session = service.create(length=length, extra=extra, session_id=final_id, **create)
    except BaseException:
        for part_id in claimed:
            _unclaim_part(service, part_id, final_id)
        raise
    return try_finish(service, session.id)


def _readable_parts(service: UploadService, part_ids: list[str]) -> list[UploadSession]:
    """The partial uploads *part_ids*: each known, listed once, a partial,
    and readable by the current client (the ``read`` action, asked before
    anything about the part is told)."""
    parts: list[UploadSession] = []
    seen: set[str] = set()
    for part_id in part_ids:
        if part_id in seen:
            raise BadRequest(
                f"partial upload {part_id!r} is listed twice", code="partial_listed_twice"
            )
        seen.add(part_id)
        try:
            part = service.get(part_id)
        except StreamingError:
            raise BadRequest(
                f"partial upload {part_id!r} does not exist (or has expired)",
                code="unknown_partial",
            ) from None
        service.authorize("read", part)
        if part.protocol != "tus" or part.extra.get("concat") != PARTIAL:
            raise BadRequest(f"upload {part_id!r} is not a partial upload", code="not_partial")
        if part.extra.get(USED_BY):
            raise Conflict(
                f"partial upload {part_id!r} is already part of a final upload",
                code="partial_used",
            )
        parts.append(part)
    return parts


def _claim_part(service: UploadService, part_id: str, final_id: str) -> None:
    """Mark the partial *part_id* as used by *final_id*, under its lock (two
    finals racing for one partial: one wins, the other gets 409); an
    unfinished partial also lists the final that waits for it."""
    lock = service._locked(part_id)
    try:
        part = service._reload(part_id)
        if part.extra.get(USED_BY):
            raise Conflict(
                f"partial upload {part_id!r} is already part of a final upload",
                code="partial_used",
            )
        part.extra[USED_BY] = final_id
        if part.state != COMPLETED:
            part.extra["finals"] = [final_id]
        service.storage.save(part)
    finally:
        lock.release()


def _unclaim_part(service: UploadService, part_id: str, final_id: str) -> None:
    """Undo :func:`_claim_part` (the final upload was not created)."""
    try:
        lock = service._locked(part_id)
    except StreamingError:
        return
    try:
        part = service.storage.load(part_id)
        if part is not None and part.extra.get(USED_BY) == final_id:
            del part.extra[USED_BY]
            part.extra.pop("finals", None)
            service.storage.save(part)
    finally:
        lock.release()


def try_finish(service: UploadService, final_id: str) -> UploadSession:
    """Assemble the final upload *final_id* if every partial is complete;
    return its current record either way (unchanged when a partial is
    missing or still open)."""
    lock = service._locked(final_id)
    send: list[Pending] = []
    try:
        final = service._reload(final_id)
        if final.state == COMPLETED:
            return final
        parts = [service.storage.load(pid) for pid in final.extra.get("parts", [])]
        if not all(p is not None and p.state == COMPLETED for p in parts):
            return final
        done = [p for p in parts if p is not None]
        total = sum(p.size for p in done)
        limit = service.settings.max_upload_size
        if limit is not None and total > limit:
            raise PayloadTooLarge("the partial uploads add up to more than allowed", limit=limit)
        if not _copy_parts(service, final_id, done):
            return final
        final.length = final.size = total
        final.updated_at = time.time()
        finish_if_complete(service, final, send)  # sends upload-completed
        service.storage.save(final)
    finally:
        lock.release()
    service.deliver(final, send)
    return final


def _copy_parts(service: UploadService, final_id: str, parts: list[UploadSession]) -> bool:
    """Copy the parts' bytes into the final upload's data (from offset 0);
    ``False`` when a part vanished meanwhile."""
    target = service.storage.stage(final_id, 0)
    try:
        if not target.in_place:
            return False
        for part in parts:
            try:
                source = service.storage.open_data(part.id, 0, part.size)
            except FileNotFoundError:
                return False
            with source:
                while block := source.read(BLOCK_SIZE):
                    try:
                        target.write(block)
                    except OSError as exc:
                        raise storage_error(exc) from exc
                    time.sleep(0)  # let the other greenlets of a gevent worker run
        target.close()
        return True
    finally:
        target.release()


def finish_waiting_finals(service: UploadService, part: UploadSession) -> None:
    """After *part* completed: assemble the final uploads that waited for
    it. A failure is logged, not raised: the part's own ``PATCH`` succeeded,
    and a ``HEAD`` of the final upload tries again."""
    for final_id in part.extra.get("finals", []):
        try:
            try_finish(service, final_id)
        except StreamingError as exc:
            service.app.logger.warning(
                "final upload %s not assembled yet: %s", final_id, exc.message
            )
