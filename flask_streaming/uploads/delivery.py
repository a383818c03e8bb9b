"""Post-commit signals: ``segment-committed`` and ``upload-committed``,
sent after the commit, outside the session lock, exactly once per
committed segment / completed upload — and at least once across crashes.

How: the locked transaction that commits a segment (or completes an
upload) also writes a **pending marker** into the session record, in the
same save, naming the signal, what it is about, and its *owner* (this
process). After the lock is released the owner sends the signal and notes
an acknowledgement in the store (a line appended to the session's log, no
lock needed). The next locked transaction on the session reads the notes
made since the last one read (the record keeps where: ``acks_read``) and
drops acknowledged markers. A marker without
acknowledgement whose owner is gone — a dead process on this host, or a
lease of :data:`LEASE` seconds passed for an owner on another host — is
taken over by the next request on the session (or the sweep, ``flask
streaming cleanup``) and sent again. So:

* retries, parallel requests, several workers: once (only a commit writes a
  marker; an identical retry commits nothing);
* a worker killed between commit and send (or while its receivers run): the
  signal is sent again later, so receivers may see it twice — make them
  idempotent per ``(session.id, segment.index)`` / ``session.id``.

Receivers' return values are ignored (the response was decided by the
commit); a raising receiver is logged and changes nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

from blinker import Signal

from ..signals import segment_committed, upload_committed
from .segments import Segment
from .sessions import UploadSession

logger = logging.getLogger(__name__)

#: Seconds after which a marker owned by a process on another host is
#: taken over (its liveness cannot be checked from here).
LEASE = 300.0

_SIGNALS: dict[str, Signal] = {
    "segment-committed": segment_committed,
    "upload-committed": upload_committed,
}


def owner() -> str:
    """``host:pid`` of this process (computed per call: workers fork)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclasses.dataclass
class Pending:
    """One post-commit signal not yet acknowledged (stored in the record)."""

    token: str
    signal: str
    owner: str
    at: float
    #: ``index``, ``offset``, ``size``, ``checksum`` of the segment
    #: (``segment-committed``); ``None`` for ``upload-committed``.
    segment: dict[str, Any] | None = None

    @classmethod
    def new(cls, signal: str, segment: Segment | None = None) -> Pending:
        fields = None
        if segment is not None:
            fields = {
                "index": segment.index,
                "offset": segment.offset,
                "size": segment.size,
                "checksum": segment.checksum,
            }
        return cls(secrets.token_hex(8), signal, owner(), time.time(), fields)

    def owner_gone(self, now: float) -> bool:
        host, _, pid = self.owner.rpartition(":")
        if host == socket.gethostname():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return True
            except (PermissionError, ValueError):
                return False
            return False  # alive on this host: it sends (or has sent) it
        return now - self.at >= LEASE

    def to_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Pending:
        return cls(**record)


def settle(session: UploadSession, acknowledged: Iterable[str]) -> list[Pending]:
    """Under the session's lock, before the transaction saves *session*:
    drop markers in *acknowledged*, take over those whose owner is gone.
    Returns the taken-over markers (this process sends them after the
    lock)."""
    done = set(acknowledged)
    now = time.time()
    kept: list[Pending] = []
    taken: list[Pending] = []
    for record in session.pending:
        entry = Pending.from_record(record)
        if entry.token in done:
            continue
        if entry.owner_gone(now):
            entry.owner, entry.at = owner(), now
            taken.append(entry)
        kept.append(entry)
    session.pending = [e.to_record() for e in kept]
    return taken


def add(session: UploadSession, entry: Pending) -> Pending:
    """Record *entry* in *session* (saved by the caller's transaction)."""
    session.pending.append(entry.to_record())
    return entry


def deliver(
    app: Any,
    session: UploadSession,
    entries: Iterable[Pending],
    opener: Callable[[dict[str, Any]], IO[bytes]],
    acknowledge: Callable[[str], None],
) -> None:
    """Outside the lock: send each entry's signal, then acknowledge it.
    *opener(fields)* reads a committed segment's bytes (for
    :meth:`Segment.open`) from its marker's ``segment`` fields. A raising
    receiver is logged; the others still run."""
    for entry in entries:
        kwargs: dict[str, Any] = {"session": session}
        if entry.segment is not None:
            fields = entry.segment
            kwargs["segment"] = Segment(
                session_id=session.id,
                index=fields["index"],
                offset=fields["offset"],
                size=fields["size"],
                checksum=fields["checksum"],
                opener=functools.partial(opener, fields),
            )
        try:
            _send(app, _SIGNALS[entry.signal], kwargs)
        finally:
            acknowledge(entry.token)


def _send(app: Any, signal: Signal, kwargs: dict[str, Any]) -> None:
    """Call every receiver (return values ignored); a raising one is
    logged, the others still run."""
    for receiver in signal.receivers_for(app):
        try:
            receiver(app, **kwargs)
        except Exception:
            name = getattr(signal, "name", "post-commit")
            logger.exception("a %s receiver failed (the commit stands)", name)
