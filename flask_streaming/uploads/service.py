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
import logging
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

from blinker import Signal
from flask import Flask

from ..errors import (
    BadRequest,
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
    upload_aborted,
    upload_created,
    upload_expired,
    upload_removed,
)
from . import delivery, native, ranges
from .delivery import Pending
from .json_body import MAX_JSON_DEPTH, check_value_depth
from .results import (
    CompletionResult,
    HookFailed,
    HookResultInvalid,
    SegmentResult,
    merge_results,
)
from .sessions import COMPLETED, OPEN, UploadSession, new_session_id, valid_session_id
from .storage import Storage
from .transaction import Transaction

logger = logging.getLogger(__name__)

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
            logger.error("flask_streaming: %s", exc)
            raise HookFailed(
                f"a {what} receiver returned a result the server cannot send (a server"
                " bug); nothing was accepted, sending again will not help",
                code="hook_result_invalid",
                hook=what,
            ) from exc
        except Exception as exc:
            logger.exception("a %s receiver failed", what)
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
    # -- native segments (see .native) ---------------------------------------
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
        """Receive segment *index* of a native session from *body*; see
        :func:`.native.append_segment`."""
        return native.append_segment(
            self, session_id, index, body, content_length=content_length, checksum=checksum,
            done=done,
        )  # fmt: skip

    def complete(self, session_id: str, count: int) -> CompletionResult:
        """Complete a native session with segments ``0..count-1``; see
        :func:`.native.complete`."""
        return native.complete(self, session_id, count)

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
