"""One short locked transaction on an upload session.

Every change to a session goes through :class:`Transaction` (tusd's
``PatchFile`` is the model: lock once, load once, pass the state by value)::

    with service.transaction(session_id) as tx:   # lock, load the record once
        check(tx.session)                        # raise: nothing is saved
        tx.session.offset += n                   # change the copy
        tx.post("segment-committed", segment)    # a post-commit signal
        tx.commit()                              # save the record once
    # lock released; the post-commit signals are sent now

Request bodies are read into staging *before* the transaction (a stalled
client never holds the session lock). :meth:`Transaction.commit` also
settles the pending markers of post-commit signals (see :mod:`.delivery`):
the markers written by this commit are sent once the lock is released,
together with any left by a worker that died between commit and send.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from ..errors import NotFound, ServiceUnavailable
from . import delivery
from .delivery import Pending
from .locks import Lock, LockTimeout
from .segments import Segment
from .sessions import UploadSession
from .storage import Storage


class Transaction:
    """The session *session_id* under its lock (see the module docstring).

    :param storage: the store.
    :param session_id: the session.
    :param deliver: sends post-commit signals after the lock is released:
        ``deliver(session, markers)``.
    :param timeout: seconds to wait for the lock (``None``: the store's).
    :raises NotFound: ``unknown_session`` (from ``__enter__``).
    :raises ServiceUnavailable: ``session_busy`` when the lock stayed busy.
    """

    def __init__(
        self,
        storage: Storage,
        session_id: str,
        deliver: Callable[[UploadSession, list[Pending]], None],
        timeout: float | None = None,
    ) -> None:
        self.storage = storage
        self.session_id = session_id
        self._deliver = deliver
        self._timeout = timeout
        self._lock: Lock | None = None
        self._markers: list[Pending] = []
        self._send: list[Pending] = []
        #: The session record, loaded once under the lock.
        self.session: UploadSession
        #: Whether :meth:`commit` saved the record.
        self.committed = False

    def __enter__(self) -> Transaction:
        try:
            lock = self.storage.lock(self.session_id, self._timeout)
            lock.__enter__()
        except FileNotFoundError:
            raise NotFound("unknown upload session", code="unknown_session") from None
        except LockTimeout:
            raise ServiceUnavailable(
                "the session is busy; retry shortly",
                code="session_busy",
                headers={"Retry-After": "1"},
            ) from None
        self._lock = lock
        try:
            session = self.storage.load(self.session_id)
            if session is None:
                raise NotFound("unknown upload session", code="unknown_session")
        except BaseException:
            lock.release()
            raise
        self.session = session
        return self

    def post(self, signal: str, segment: Segment | None = None) -> None:
        """Add the post-commit signal *signal* (``"segment-committed"``,
        ``"upload-committed"``) to this commit: its marker is saved with the
        record, the signal sent after the lock."""
        self._markers.append(delivery.add(self.session, Pending.new(signal, segment)))

    def commit(self) -> None:
        """Save the record (once): settles acknowledged and orphaned
        markers first."""
        acked: set[str] = set()
        if self.session.pending:  # none pending: no note can concern this record
            acked, self.session.acks_read = self.storage.acknowledged(
                self.session_id, self.session.acks_read
            )
        taken = delivery.settle(self.session, acked)
        self.storage.save(self.session)
        if acked:
            self.storage.forget_acknowledged(self.session_id, acked)
        self.committed = True
        self._send = taken + [m for m in self._markers if m not in taken]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()
        if self.committed and self._send:
            self._deliver(self.session, self._send)
