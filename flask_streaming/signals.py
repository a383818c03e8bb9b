"""Blinker signals sent by flask_streaming.

Every signal is sent with the real application object as sender, so connect
with ``signal.connect_via(app)`` or ``signal.connect(receiver)``.
"""

from __future__ import annotations

from blinker import NamedSignal, Namespace

_signals = Namespace()

#: Sent when a streaming response starts sending (its headers and first bytes
#: are on their way). Kwargs: ``stream`` (the :class:`~flask_streaming.transport.ResponseBody`),
#: ``channels`` (a tuple of channel names; empty for an app's own stream).
stream_opened = _signals.signal("stream-opened")

#: Every ``reason`` of ``stream-closed``, with its meaning: the one list the
#: code sends (``tests/test_error_codes.py`` checks every ``finish(...)``
#: call of the package against it) and the signals reference renders.
STREAM_CLOSED_REASONS: dict[str, str] = {
    "complete": "the source ended",
    "closed": "the app closed it",
    "disconnect": "the client went away",
    "error": "the source raised",
    "shutdown": "the worker is stopping",
    "slow_consumer": "a subscriber fell too far behind (``STREAMING_MAX_QUEUE``)",
    "send_timeout": "the client stopped reading for ``STREAMING_SEND_TIMEOUT``",
    "broker_unavailable": "the broker (Redis) went away; the client resumes by ``Last-Event-ID``",
    "broker_reset": "the broker's ids went back (Redis lost data); the client resumes"
    " and gets a ``stream-reset``",
    "revoked": "the app ended it (``Streaming.end_streams`` or a failed re-check); the"
    " client reconnects and is authorized again",
}

#: Sent once when a streaming response ends, whatever the cause. Kwargs:
#: ``stream``, ``channels`` and ``reason``, one of
#: :data:`STREAM_CLOSED_REASONS`.
stream_closed = _signals.signal("stream-closed")

#: Sent after :meth:`Streaming.publish` handed an event to the broker, in the
#: publishing process (and thread). Kwargs: ``channel``, ``id`` (the id
#: assigned), ``event`` (its type or ``None``), ``data``.
event_published = _signals.signal("event-published")


# Signals for observers (metrics): sent with the broker or the app as
# sender, cheap when nothing is connected.

#: A broker handed events to its local subscribers: once per live event
#: fanned out and once per replay. Sender: the
#: :class:`~flask_streaming.brokers.Broker`. Kwargs: ``count`` (how many
#: event deliveries: subscribers times events).
events_delivered = _signals.signal("events-delivered")

#: A ``stream-reset`` event was queued for a resuming subscriber. Sender: the
#: broker. Kwargs: ``reason`` (its ``reason`` member, e.g. ``"history"``).
stream_reset_sent = _signals.signal("stream-reset-sent")

#: An upload signal's receivers ran (the partial, final or creation hook).
#: Sender: the app. Kwargs: ``hook`` (the signal's name, e.g.
#: ``"segment-received"``), ``seconds`` (wall time of all its receivers),
#: ``outcome`` (``"ok"``, ``"refused"`` or ``"failed"``).
hook_finished = _signals.signal("hook-finished")


class _OrderedSet(dict[object, None]):
    """The set blinker keeps receivers in, remembering insertion order, so
    receivers run (and their results merge) in connection order."""

    def add(self, item: object) -> None:
        self[item] = None

    def discard(self, item: object) -> None:
        self.pop(item, None)

    def copy(self) -> _OrderedSet:
        return _OrderedSet(self)

    def __or__(self, other: object) -> _OrderedSet:  # type: ignore[override]
        rv = self.copy()
        rv.update(dict.fromkeys(other))  # type: ignore[call-overload]
        return rv


class _OrderedSignal(NamedSignal):
    set_class = _OrderedSet  # type: ignore[assignment]


def _ordered(name: str) -> NamedSignal:
    signal: NamedSignal = _signals.setdefault(name, _OrderedSignal(name))
    return signal


# Upload signals. Receivers connected for any sender run first, then those
# connected via the app, each group in connection order. The pre-commit ones
# (created, received, completed) run in the request's greenlet under the
# session's lock; what a raising receiver means is documented in
# :mod:`flask_streaming.uploads.service`.

#: A session was opened (native ``GET``/``POST /uploads`` or tus creation).
#: Kwargs: ``session`` (:class:`~flask_streaming.uploads.UploadSession`).
upload_created = _ordered("upload-created")

#: The partial hook: a segment (native) or a range (tus ``PATCH``) was
#: stored. Kwargs: ``session`` and ``segment``
#: (:class:`~flask_streaming.uploads.Segment`). The dicts receivers return
#: are merged into that segment's JSON response (native only) and stored, so
#: an identical retry gets them again without a second send.
segment_received = _ordered("segment-received")

#: The final hook: every segment arrived and the whole is assembled.
#: Kwargs: ``session`` (its ``path`` and ``open()`` give the whole upload).
#: The dicts receivers return are merged into the final response.
upload_completed = _ordered("upload-completed")

# Post-commit signals: sent after the commit, outside the session lock,
# exactly once per committed segment / completed upload (at least once
# across a worker crash); return values ignored, a raising receiver logged.
# See :mod:`flask_streaming.uploads.delivery`.

#: A segment (native) or a range (tus ``PATCH``) was committed: it is part
#: of the upload for good. For side effects (publish "segment 3 stored",
#: start a job). Kwargs: ``session``, ``segment``.
segment_committed = _ordered("segment-committed")

#: An upload was completed and committed (never for a tus partial upload).
#: For side effects (move the file, enqueue processing). Kwargs: ``session``.
upload_committed = _ordered("upload-committed")

#: A client aborted a session (``DELETE``); its data is gone.
#: Kwargs: ``session``.
upload_aborted = _ordered("upload-aborted")

#: An unfinished session passed its idle timeout and was removed (lazily on
#: access, by a sweep, or by ``flask streaming cleanup``). Never sent for a
#: completed upload: those do not expire. Kwargs: ``session``.
upload_expired = _ordered("upload-expired")

#: A completed upload was removed with its data: by the app
#: (:meth:`UploadService.remove <flask_streaming.uploads.UploadService.remove>`,
#: ``flask streaming remove``) or, when ``STREAMING_COMPLETED_RETENTION`` is
#: set, by the sweep once it is that old. Kwargs: ``session``.
upload_removed = _ordered("upload-removed")
