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
the final's lock, so exactly one assembles it. Partials are kept (the spec
lets clients reuse them) until they expire.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest, PayloadTooLarge, StreamingError
from .bodies import storage_error
from .ranges import PARTIAL, finish_if_complete
from .segments import BLOCK_SIZE
from .sessions import COMPLETED, UploadSession

if TYPE_CHECKING:
    from .service import UploadService

#: ``session.extra["concat"]`` of an upload assembled from partial ones.
FINAL = "final"


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

    :raises BadRequest: a part is unknown, expired or not a partial upload.
    :raises PayloadTooLarge: the parts add up to more than the upload limit.
    """
    parts: list[UploadSession] = []
    for part_id in part_ids:
        try:
            part = service.get(part_id)
        except StreamingError:
            raise BadRequest(
                f"partial upload {part_id!r} does not exist (or has expired)",
                code="unknown_partial",
            ) from None
        service.authorize("status", part)
        if part.protocol != "tus" or part.extra.get("concat") != PARTIAL:
            raise BadRequest(f"upload {part_id!r} is not a partial upload", code="not_partial")
        parts.append(part)
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
    session = service.create(length=length, extra=extra, **create)
    for part in parts:
        if part.state != COMPLETED:
            _register_final(service, part.id, session.id)
    return try_finish(service, session.id)


def _register_final(service: UploadService, part_id: str, final_id: str) -> None:
    """Note in the partial's record that *final_id* waits for it."""
    lock = service._locked(part_id)
    try:
        part = service._reload(part_id)
        finals = part.extra.setdefault("finals", [])
        if final_id not in finals:
            finals.append(final_id)
            service.storage.save(part)
    finally:
        lock.release()


def try_finish(service: UploadService, final_id: str) -> UploadSession:
    """Assemble the final upload *final_id* if every partial is complete;
    return its current record either way (unchanged when a partial is
    missing or still open)."""
    lock = service._locked(final_id)
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
        finish_if_complete(service, final)  # sends upload-completed
        service.storage.save(final)
        return final
    finally:
        lock.release()


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
