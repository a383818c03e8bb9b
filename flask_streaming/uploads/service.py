"""The upload service: protocol-independent operations on upload sessions.

Protocol views (the native segmented protocol, tus) parse their headers and
call one method here; this module checks limits, talks to the
:class:`~flask_streaming.uploads.storage.Storage`, sends the signals (once
per event) and returns what the view turns into its response.

**Receivers run in the request's greenlet, under the session's lock.** Hooks
of one session therefore never run concurrently (a transcriber may keep
per-session state), but a hook that computes for long stalls every other
stream of that gevent worker: hand CPU-heavy work (transcription,
transcoding) to a process or thread pool and wait on its result.

**A raising receiver** undoes the event it was told about, so a segment (or a
completion) is accepted exactly when all its receivers ran:

* a :class:`~flask_streaming.errors.StreamingError` is a refusal: the segment
  is discarded (or the session stays open), and that error is the response
  (e.g. raise ``BadRequest("not audio")`` → 400);
* any other exception is logged with its traceback; the segment is discarded
  (or the session stays open) and the response is 500 ``hook_failed``. The
  client may resend; receivers then run again.

Receivers that ran before the raising one are not undone: make them
idempotent per ``(session.id, segment.index)``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

from blinker import Signal
from flask import Flask

from ..errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    StreamingError,
    TooManyRequests,
)
from ..settings import Settings
from ..signals import (
    hook_finished,
    segment_received,
    upload_aborted,
    upload_completed,
    upload_created,
    upload_expired,
    upload_removed,
)
from . import delivery, ranges
from .bodies import parse_checksum, read_body, same_bytes
from .delivery import Pending
from .json_body import MAX_JSON_DEPTH, check_value_depth
from .results import (
    CompletionResult,
    HookFailed,
    HookResultInvalid,
    SegmentResult,
    merge_results,
)
from .segments import Segment
from .sessions import COMPLETED, OPEN, UploadSession, new_session_id, valid_session_id
from .storage import Staging, Storage
from .transaction import Transaction

#: ``fn(action, session) -> bool``; actions: ``create`` (session ``None``),
#: ``append``, ``complete``, ``status``, ``read``, ``abort`` (see
#: :data:`UPLOAD_ACTIONS`).
Authorizer = Callable[[str, "UploadSession | None"], bool]

#: The upload authorization actions, each with what it guards (the table
#: of docs/security.rst is tested against this).
UPLOAD_ACTIONS: dict[str, str] = {
    "create": "open a session or tus upload (session is None)",
    "append": "send a segment, or tus PATCH bytes (and set a deferred length)",
    "complete": "complete a native session",
    "status": "see an upload's progress: native GET, tus HEAD",
    "read": "read an upload's bytes: list it as a part of a tus final upload, tus GET",
    "abort": "remove an upload and its bytes: native and tus DELETE",
}

#: Age (s) after which :meth:`UploadService.cleanup` removes folders that
#: no session record accounts for.
ORPHAN_GRACE = 300.0

#: How often (s) a worker sweeps expired sessions while creating new ones.
SWEEP_INTERVAL = 60.0

_MAX_MISSING_LISTED = 1000


class UploadService:
    """Upload sessions of one app on one *storage*.

    :param app: the real app: the sender of every signal.
    :param storage: where bytes and records live.
    :param settings: the app's settings (limits, timeout).
    :param authorizer: returns the authorization hook, looked up per call.
    """

    def __init__(
        self,
        app: Flask,
        storage: Storage,
        settings: Settings,
        authorizer: Callable[[], Authorizer | None] = lambda: None,
    ) -> None:
        self.app = app
        self.storage = storage
        self.settings = settings
        self._authorizer = authorizer
        self._last_sweep = 0.0

    # -- helpers -----------------------------------------------------------
    def authorize(self, action: str, session: UploadSession | None) -> None:
        """Ask the app's hook; :class:`Forbidden` when it says no."""
        hook = self._authorizer()
        if hook is not None and not hook(action, session):
            raise Forbidden(f"not allowed to {action} this upload", action=action)

    def send_hook(self, signal: Signal, what: str, **kwargs: Any) -> dict[str, Any]:
        """Send the pre-commit signal *signal* (in a transaction, before the
        commit); a refusal (:class:`StreamingError`) propagates, any other
        exception is logged and becomes 500 ``hook_failed``. Returns the
        receivers' dicts merged in connection order."""
        started, outcome = time.monotonic(), "failed"
        try:
            rv = merge_results(signal.send(self.app, **kwargs), what, self.app.json.dumps)
            outcome = "ok"
            return rv
        except StreamingError:
            outcome = "refused"
            raise
        except HookResultInvalid as exc:
            self.app.logger.error("flask_streaming: %s", exc)
            raise HookFailed(
                f"a {what} receiver returned a result the server cannot send (a server"
                " bug); nothing was accepted, sending again will not help",
                code="hook_result_invalid",
                hook=what,
            ) from exc
        except Exception as exc:
            self.app.logger.exception("a %s receiver failed", what)
            raise HookFailed(
                f"a {what} receiver failed on the server; nothing was accepted, send again",
                hook=what,
            ) from exc
        finally:
            seconds = time.monotonic() - started
            hook_finished.send(self.app, hook=what, seconds=seconds, outcome=outcome)

    def transaction(self, session_id: str, timeout: float | None = None) -> Transaction:
        """One short locked transaction on *session_id* (lock once, load
        once, commit once; post-commit signals after the lock): see
        :class:`~.transaction.Transaction`.

        :raises NotFound: ``unknown_session``.
        :raises ServiceUnavailable: ``session_busy`` (the lock stayed busy
            for *timeout* s, default ``STREAMING_UPLOAD_LOCK_TIMEOUT``).
        """
        if not valid_session_id(session_id):
            raise NotFound("unknown upload session", code="unknown_session")
        return Transaction(self.storage, session_id, self.deliver, timeout)

    def deliver(self, session: UploadSession, entries: list[Pending]) -> None:
        """Outside the lock: send the post-commit signals *entries* (the
        markers this request committed or took over) and acknowledge them."""
        if not entries:
            return
        sid = session.id

        def opener(fields: dict[str, Any]) -> IO[bytes]:
            record = self.storage.load_segment(sid, fields["index"])
            if record is not None:
                return self.storage.open_segment(sid, record)
            return self.storage.open_data(sid, fields["offset"] or 0, fields["size"])

        def acknowledge(token: str) -> None:
            self.storage.acknowledge(sid, token)

        delivery.deliver(self.app, session, entries, opener, acknowledge)

    def redeliver(self, session_id: str) -> None:
        """Settle the pending post-commit markers of *session_id*: drop the
        acknowledged ones, send those whose owner died between commit and
        send (the sweep's part). A busy session is left for later."""
        try:
            with self.transaction(session_id, timeout=0) as tx:
                if tx.session.pending:
                    tx.commit()
        except StreamingError:
            pass

    def get(self, session_id: str) -> UploadSession:
        """The live session: 404 when unknown, 410 (and removed) when expired."""
        session = self.storage.load(session_id) if valid_session_id(session_id) else None
        if session is None:
            raise NotFound("unknown upload session", code="unknown_session")
        if session.expired():
            self._expire(session)
            raise Gone("the upload session has expired", code="session_expired")
        return session

    def authorized(self, session_id: str, action: str) -> UploadSession:
        """:meth:`get`, then ask the hook for *action*: before any other
        check, so that a client without the right learns nothing of the
        upload (its protocol, kind, offset or state) but that it exists."""
        session = self.get(session_id)
        self.authorize(action, session)
        return session

    def _native(self, session_id: str, action: str) -> UploadSession:
        """:meth:`authorized` for segment operations: a tus upload (offset
        ranges) takes no numbered segments, so it is unknown here (404)."""
        session = self.authorized(session_id, action)
        if session.protocol != "native":
            raise NotFound("unknown upload session", code="unknown_session")
        return session

    def _expire(self, session: UploadSession) -> None:
        if self.storage.delete(session.id):
            self.storage.remove_client_session(session.client, session.id)
            if session.state == OPEN:
                upload_expired.send(self.app, session=session)

    # -- create / status / abort ---------------------------------------------
    def create(
        self,
        *,
        client: str = "",
        protocol: str = "native",
        filename: str | None = None,
        content_type: str | None = None,
        length: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        session_id: str | None = None,
        tus_metadata: str | None = None,
        concat: str | None = None,
        concat_header: str | None = None,
        parts: list[str] | None = None,
    ) -> UploadSession:
        """Open a session (*session_id*: an id from
        :func:`~.sessions.new_session_id` chosen beforehand, default a new
        one). *tus_metadata*, *concat*, *concat_header*, *parts*: the tus
        fields of :class:`~.sessions.UploadSession`. Sends ``upload-created``.

        :raises PayloadTooLarge: *length* above the upload limit.
        :raises TooManyRequests: the client has too many open sessions
            (``too_many_sessions``) or holds too many uploads in the store,
            finished ones included (``too_many_uploads``).
        """
        s = self.settings
        for name, text in (("filename", filename), ("content_type", content_type)):
            if text is not None and (not isinstance(text, str) or len(text) > 1024):
                raise BadRequest(f"{name} must be a string of at most 1024 characters")
        if length is not None:
            if isinstance(length, bool) or not isinstance(length, int) or length < 0:
                raise BadRequest("size must be a non-negative integer", code="bad_size")
            if s.max_upload_size is not None and length > s.max_upload_size:
                raise PayloadTooLarge("the upload is larger than allowed", limit=s.max_upload_size)
        meta = dict(metadata or {})
        check_value_depth("metadata", meta, MAX_JSON_DEPTH - 1)
        if len(json.dumps(meta)) > 16384:
            raise BadRequest("metadata is larger than 16 KiB", code="bad_metadata")
        self.authorize("create", None)
        self.sweep_if_due()
        session = UploadSession(
            id=session_id or new_session_id(),
            protocol=protocol,
            timeout=s.session_timeout if timeout is None else timeout,
            client=client,
            filename=filename,
            content_type=content_type,
            length=length,
            metadata=meta,
            tus_metadata=tus_metadata,
            concat=concat,
            concat_header=concat_header,
            parts=list(parts or []),
        )
        client_lock = self.storage.client_lock(client)
        if not client_lock.acquire():
            raise ServiceUnavailable(
                "too many sessions being opened at once; retry shortly",
                code="busy",
                headers={"Retry-After": "1"},
            )
        with client_lock:
            self._check_client_quota(client)
            self.storage.create(session)
            self.storage.add_client_session(client, session.id)
        session = self.storage.load(session.id) or session
        try:
            self.send_hook(upload_created, "upload-created", session=session)
        except StreamingError:
            self.storage.delete(session.id)
            self.storage.remove_client_session(client, session.id)
            raise
        return session

    def _check_client_quota(self, client: str) -> None:
        """Under the client's lock: refuse a new upload when *client* has
        ``max_sessions_per_client`` open sessions, or holds
        ``max_uploads_per_client`` uploads in the store, finished ones
        included (a finished upload keeps its bytes on disk until the app
        removes it, or ``STREAMING_COMPLETED_RETENTION`` passes)."""
        s = self.settings
        if not (s.max_sessions_per_client or s.max_uploads_per_client):
            return
        live = [
            other
            for sid in self.storage.client_sessions(client)
            if (other := self.storage.load(sid)) is not None and not self.removable(other)
        ]
        limit = s.max_uploads_per_client
        if limit and len(live) >= limit:
            raise TooManyRequests(
                f"at most {limit} stored uploads per client",
                code="too_many_uploads",
                limit=limit,
            )
        limit = s.max_sessions_per_client
        if limit and sum(other.state == OPEN for other in live) >= limit:
            raise TooManyRequests(
                f"at most {limit} open upload sessions per client",
                code="too_many_sessions",
                limit=limit,
            )

    def status(self, session_id: str) -> UploadSession:
        """The session, for a client that resumes (``status`` authorization)."""
        return self.authorized(session_id, "status")

    def abort(self, session_id: str) -> UploadSession:
        """Remove a session and its data. Sends ``upload-aborted``."""
        self.authorized(session_id, "abort")
        with self.transaction(session_id) as tx:
            session = tx.session
            self.storage.delete(session_id)
        self.storage.remove_client_session(session.client, session_id)
        upload_aborted.send(self.app, session=session)
        return session

    # -- segments --------------------------------------------------------
    def _segment(self, session_id: str, record: dict[str, Any]) -> Segment:
        return Segment(
            session_id=session_id,
            index=record["index"],
            offset=record["offset"],
            size=record["size"],
            checksum=record.get("checksum"),
            opener=lambda: self.storage.open_segment(session_id, record),
        )

    def append_segment(
        self,
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
        s = self.settings
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
        session = self._native(session_id, "append")
        if done:
            self.authorize("complete", session)
        if (
            session.state == OPEN
            and s.max_upload_size is not None
            and (session.offset + (content_length or 0) > s.max_upload_size)
        ):
            raise PayloadTooLarge("the upload is larger than allowed", limit=s.max_upload_size)
        offset = (
            session.prefix_end if session.state == OPEN and index == session.contiguous else None
        )
        # 2. the body into staging, without the session lock
        try:
            staging = self.storage.stage(session_id, offset)
        except FileNotFoundError:  # removed meanwhile (aborted or expired)
            raise NotFound("unknown upload session", code="unknown_session") from None
        try:
            digest = read_body(body, staging, content_length, s.max_segment_size, algorithm)
            staging.close()
            if done and staging.size == 0:  # svelte-stream's done: segments 0..index-1
                staging.release()
                return self._complete(session_id, index)
            if expected is not None and digest != expected:
                raise BadRequest(
                    f"the segment's {algorithm} does not match; it was discarded",
                    code="checksum_mismatch",
                    segment=index,
                )
            # 3. one short transaction: the segment (and the completion)
            with self.transaction(session_id) as tx:
                result = self._commit_segment(tx, index, staging, checksum)
                if done:
                    result.completion = self._complete_in(tx, index + 1)
                if not result.duplicate or result.completion is not None:
                    tx.commit()
        finally:
            staging.release()
        # 4. post-commit signals were sent on leaving the transaction
        return result

    def _commit_segment(
        self, tx: Transaction, index: int, staging: Staging, checksum: str | None
    ) -> SegmentResult:
        """In *tx*: check segment *index* against the record and commit it
        (a duplicate of a stored one: its stored results, nothing changes)."""
        s = self.settings
        session, session_id = tx.session, tx.session_id
        record = self.storage.load_segment(session_id, index)
        if record is not None:
            if record["size"] == staging.size and same_bytes(
                staging.open(), self.storage.open_segment(session_id, record)
            ):
                segment = self._segment(session_id, record)
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
        location = self.storage.place_segment(session_id, index, staging)
        record = {
            "index": index,
            "offset": session.prefix_end if in_order else None,
            "size": staging.size,
            "location": location,
            "checksum": checksum,
            "received_at": time.time(),
            "results": {},
        }
        segment = self._segment(session_id, record)
        try:
            results = self.send_hook(
                segment_received, "segment-received", session=session, segment=segment
            )
        except BaseException:
            self.storage.drop_segment(session_id, index, location)
            raise
        record["results"] = results
        self.storage.save_segment(session_id, record)
        session.received += 1
        session.offset += staging.size
        session.max_index = max(session.max_index, index)
        session.updated_at = time.time()
        if in_order:
            session.prefix_end += staging.size
            session.contiguous += 1
            load = self.storage.load_segment
            while (nxt := load(session_id, session.contiguous)) is not None:
                session.prefix_end += nxt["size"]
                session.contiguous += 1
        tx.post("segment-committed", segment)
        return SegmentResult(session, segment, results)

    def complete(self, session_id: str, count: int) -> CompletionResult:
        """Assemble segments ``0..count-1`` and send ``upload-completed``.

        :raises Conflict: segments missing (listed in ``missing``) or beyond
            the end; the client sends them (or not) and completes again.
        """
        if count < 0 or count > self.settings.max_segments:
            raise BadRequest("bad segment count", code="bad_segment")
        self._native(session_id, "complete")
        return self._complete(session_id, count)

    def _complete(self, session_id: str, count: int) -> CompletionResult:
        with self.transaction(session_id) as tx:
            result = self._complete_in(tx, count)
            if not result.duplicate:
                tx.commit()
        return result

    def _complete_in(self, tx: Transaction, count: int) -> CompletionResult:
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
        records = self.storage.segment_records(session_id)
        present = {r["index"] for r in records}
        missing = [i for i in range(count) if i not in present]
        if missing:
            raise Conflict(
                f"{len(missing)} segment(s) missing; send them and complete again",
                code="missing_segments",
                missing=missing[:_MAX_MISSING_LISTED],
                segments=count,
            )
        beyond = sorted(i for i in present if i >= count)
        if beyond:
            raise Conflict(
                "segments were received beyond the end",
                code="segments_beyond_end",
                beyond=beyond[:_MAX_MISSING_LISTED],
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
        self.storage.assemble(session_id, records, total)
        session.segments = count
        session.offset = total
        results = self.send_hook(upload_completed, "upload-completed", session=session)
        for r in records:
            if r["location"] == "file":
                r["location"] = "data"
                self.storage.save_segment(session_id, r)
        session.state = COMPLETED
        session.results = results
        session.completed_at = session.updated_at = time.time()
        tx.post("upload-committed")
        self.storage.drop_segment_bodies(session_id)
        return CompletionResult(session, results)

    # -- offset ranges (tus) ---------------------------------------------
    def append_range(
        self,
        session_id: str,
        offset: int,
        body: IO[bytes],
        *,
        content_length: int | None = None,
        checksum: str | None = None,
    ) -> SegmentResult:
        """Append bytes at *offset* from *body*; see :func:`.ranges.append_range`."""
        return ranges.append_range(
            self, session_id, offset, body, content_length=content_length, checksum=checksum
        )

    # -- housekeeping ----------------------------------------------------
    def sessions(self) -> list[UploadSession]:
        """Every stored session (expired ones included)."""
        return [x for sid in self.storage.session_ids() if (x := self.storage.load(sid))]

    def removable(self, session: UploadSession, now: float | None = None) -> bool:
        """Whether :meth:`cleanup` removes *session*: unfinished and idle
        past its timeout, or completed longer ago than
        ``STREAMING_COMPLETED_RETENTION`` (when that is set)."""
        return session.expired(now) or session.retention_over(
            self.settings.completed_retention, now
        )

    def cleanup(self, now: float | None = None, *, dry_run: bool = False) -> list[UploadSession]:
        """Remove unfinished sessions idle past their timeout (sending
        ``upload-expired``) and, only when ``STREAMING_COMPLETED_RETENTION``
        is set, completed uploads older than that (sending
        ``upload-removed``). Completed uploads are otherwise kept until the
        app removes them (:meth:`remove`). Sessions busy right now are left
        for the next sweep. Also removes the store's orphans older than
        :data:`ORPHAN_GRACE` (folders without a record, left by a worker
        killed while creating or deleting).

        :param now: the time to judge expiry by (Unix seconds; default now).
        :param dry_run: remove nothing, return what would be removed.
        :returns: the sessions removed (or that would be), as they were.
        """
        removed = []
        for session in self.sessions():
            if session.pending and not dry_run:
                self.redeliver(session.id)
            if not self.removable(session, now):
                continue
            if dry_run:
                removed.append(session)
                continue
            try:
                lock = self.storage.lock(session.id, 0)
                if not lock.acquire():
                    continue
            except FileNotFoundError:
                continue
            try:
                current = self.storage.load(session.id)
                if current is not None and self.removable(current, now):
                    if current.state == OPEN:
                        self._expire(current)
                    elif self.storage.delete(current.id):
                        upload_removed.send(self.app, session=current)
                    removed.append(current)
            finally:
                lock.release()
        if not dry_run:
            self.storage.remove_orphans((time.time() if now is None else now) - ORPHAN_GRACE)
            self._last_sweep = time.monotonic()
        return removed

    def remove(self, session_id: str) -> UploadSession:
        """Remove an upload and its data, whatever its state: the app's call
        once it has taken a completed upload's bytes elsewhere (completed
        uploads are never expired). No authorization hook is asked: this is
        the app acting, not a client. Sends ``upload-removed`` for a
        completed upload, ``upload-aborted`` for an unfinished one.

        :raises NotFound: ``unknown_session``.
        """
        with self.transaction(session_id) as tx:
            session = tx.session
            self.storage.delete(session_id)
        self.storage.remove_client_session(session.client, session_id)
        signal = upload_removed if session.state == COMPLETED else upload_aborted
        signal.send(self.app, session=session)
        return session

    def sweep_if_due(self) -> None:
        """Run :meth:`cleanup` when this worker has not for a while."""
        if time.monotonic() - self._last_sweep >= SWEEP_INTERVAL:
            self._last_sweep = time.monotonic()
            self.cleanup()
