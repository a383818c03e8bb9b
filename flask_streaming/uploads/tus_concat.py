"""tus concatenation: partial uploads assembled into a final upload.

A partial upload is an ordinary tus upload with ``concat == "partial"``: it
gets ``upload-created`` and ``segment-received`` like any other, but
completes *without* ``upload-completed``. A final upload (``concat ==
"final"``, ``parts`` the partial ids in order) is never written by ``PATCH``
(403); it is assembled by copying its partials' bytes, in order, into its own
data, and only then is ``upload-completed`` sent, once, for it.

A final upload may be created before its partials are complete
(``concatenation-unfinished``). It is then assembled by whichever comes
first: the ``PATCH`` that completes its last partial (each partial lists its
waiting finals in ``finals``), or a ``HEAD`` of the final upload. Both run
in a transaction on the final upload, so exactly one assembles it. A partial
serves one final upload only (``used_by``): listing it twice, or in a second
final upload, is refused, so that a few small requests cannot make the
server store many copies of the same bytes; repeating the request that
created a final upload (the same partials in the same order) answers that
final upload again. Partials are kept like any finished upload.

Everything here goes through the service's public interface
(:class:`~.core.UploadCore`): :meth:`authorized`, :meth:`transaction`,
:meth:`send_hook`, :meth:`create`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..errors import BadRequest, Conflict, PayloadTooLarge, StreamingError
from .bodies import storage_error
from .core import UploadCore
from .ranges import FINAL, PARTIAL, finish_if_complete
from .segments import BLOCK_SIZE
from .sessions import COMPLETED, UploadSession, new_session_id

logger = logging.getLogger(__name__)


def is_final(session: UploadSession) -> bool:
    return session.concat == FINAL


def create_final(
    service: UploadCore,
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
        (``partial_used``). A repeat of the request that created a final
        upload (the same parts, in the same order) returns that final
        upload instead, storing nothing: a client whose ``201`` was lost
        can retry.
    :raises PayloadTooLarge: the parts add up to more than the upload limit.
    """
    parts = _readable_parts(service, part_ids)
    used = {p.used_by for p in parts}
    if used != {None}:
        again = _same_final(service, used, part_ids)
        if again is None:
            raise Conflict(
                "a partial upload listed is already part of a final upload", code="partial_used"
            )
        service.authorize("create", None)
        return try_finish(service, again.id)
    lengths = [p.length for p in parts]
    length = None if any(n is None for n in lengths) else sum(n for n in lengths if n)
    limit = service.settings.max_upload_size
    if length is not None and limit is not None and length > limit:
        raise PayloadTooLarge("the partial uploads add up to more than allowed", limit=limit)
    final_id = new_session_id()
    claimed: list[str] = []
    try:
        for part in parts:
            _claim_part(service, part.id, final_id)
            claimed.append(part.id)
        session = service.create(
            length=length,
            session_id=final_id,
            concat=FINAL,
            parts=list(part_ids),
            concat_header=header,
            **create,
        )
    except BaseException:
        for part_id in claimed:
            _unclaim_part(service, part_id, final_id)
        raise
    return try_finish(service, session.id)


def _readable_parts(service: UploadCore, part_ids: list[str]) -> list[UploadSession]:
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
        if part.protocol != "tus" or part.concat != PARTIAL:
            raise BadRequest(f"upload {part_id!r} is not a partial upload", code="not_partial")
        parts.append(part)
    return parts


def _same_final(
    service: UploadCore, used: set[str | None], part_ids: list[str]
) -> UploadSession | None:
    """The final upload that already holds exactly *part_ids*, in this
    order, when a request repeats the one that created it: a client whose
    ``201`` was lost (say, a proxy timed out while a big final upload was
    assembled) retries the same ``POST`` — tus-js-client does. Nothing new
    is stored. ``None`` when a part is free, used by another final upload,
    or that final upload is gone."""
    if len(used) != 1 or None in used:
        return None
    (final_id,) = used
    final = service.storage.load(final_id) if final_id else None
    if final is None or not is_final(final) or list(final.parts) != part_ids:
        return None
    return final


def _claim_part(service: UploadCore, part_id: str, final_id: str) -> None:
    """Mark the partial *part_id* as used by *final_id*, in a transaction
    (two finals racing for one partial: one wins, the other gets 409); an
    unfinished partial also lists the final that waits for it."""
    with service.transaction(part_id) as tx:
        part = tx.session
        if part.used_by:
            raise Conflict(
                f"partial upload {part_id!r} is already part of a final upload",
                code="partial_used",
            )
        part.used_by = final_id
        if part.state != COMPLETED:
            part.finals = [final_id]
        tx.commit()


def _unclaim_part(service: UploadCore, part_id: str, final_id: str) -> None:
    """Undo :func:`_claim_part` (the final upload was not created)."""
    try:
        with service.transaction(part_id) as tx:
            if tx.session.used_by == final_id:
                tx.session.used_by = None
                tx.session.finals = []
                tx.commit()
    except StreamingError:
        return


def try_finish(service: UploadCore, final_id: str) -> UploadSession:
    """Assemble the final upload *final_id* if every partial is complete;
    return its current record either way (unchanged when a partial is
    missing or still open)."""
    with service.transaction(final_id) as tx:
        final = tx.session
        if final.state == COMPLETED:
            return final
        parts = [service.storage.load(pid) for pid in final.parts]
        if not all(p is not None and p.state == COMPLETED for p in parts):
            return final
        done = [p for p in parts if p is not None]
        total = sum(p.offset for p in done)
        limit = service.settings.max_upload_size
        if limit is not None and total > limit:
            raise PayloadTooLarge("the partial uploads add up to more than allowed", limit=limit)
        if not _copy_parts(service, final_id, done):
            return final
        final.length = final.offset = total
        final.updated_at = time.time()
        finish_if_complete(service, tx)  # sends upload-completed
        tx.commit()
    return tx.session


def _copy_parts(service: UploadCore, final_id: str, parts: list[UploadSession]) -> bool:
    """Copy the parts' bytes into the final upload's data (from offset 0);
    ``False`` when a part vanished meanwhile."""
    target = service.storage.stage(final_id, 0)
    try:
        if not target.in_place:
            return False
        for part in parts:
            try:
                source = service.storage.open_data(part.id, 0, part.offset)
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


def finish_waiting_finals(service: UploadCore, part: UploadSession) -> None:
    """After *part* completed: assemble the final uploads that waited for
    it. A failure is logged, not raised: the part's own ``PATCH`` succeeded,
    and a ``HEAD`` of the final upload tries again."""
    for final_id in part.finals:
        try:
            try_finish(service, final_id)
        except StreamingError as exc:
            logger.warning("final upload %s not assembled yet: %s", final_id, exc.message)
