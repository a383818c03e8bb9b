"""Ending open streams when access ends.

Channel authorization runs when a stream opens. When a user's access is
withdrawn (logout, a role change, an expired token), the app ends that
user's open streams, or a channel's, with
:meth:`Streaming.end_streams <flask_streaming.Streaming.end_streams>`: a
control message goes through the broker to every worker (a reserved Redis
pub/sub channel; with ``memory://``, this process only), and each worker
ends its matching streams the way a graceful shutdown does — a jittered
``retry`` and the stream's position, reason ``revoked``. The client
reconnects and **is authorized again**: one still allowed resumes by
``Last-Event-ID`` without losing an event; one no longer allowed gets
``403`` (an ``EventSource`` then stops for good).

With ``STREAMING_REAUTHORIZE_INTERVAL`` set, each worker also re-asks the
channel hook for every open stream of the ``/events`` routes that often
(inside a copy of the stream's request context, so cookies and headers are
there) and ends those it now refuses: a safety net for access that ends
without a call (a token's expiry time).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .brokers.base import Subscriber, format_id, mark_position
from .transport import ResponseBody, gevent_active

logger = logging.getLogger(__name__)

#: The ``stream-closed`` reason of a stream ended by revocation.
REVOKED = "revoked"
#: ``op`` of the control message that ends streams.
END_STREAMS = "end_streams"


def end_streams_message(channels: Iterable[str] | None, user: str | None) -> dict[str, Any]:
    """The control message of :meth:`Streaming.end_streams`:
    ``{"op": "end_streams", "channels": [...] | None, "user": str | None}``;
    *channels* may also be one channel name (a ``str``).

    :raises ValueError: neither *channels* nor *user* given (ending every
        stream is a shutdown, not a revocation).
    """
    if isinstance(channels, str):  # one channel name, not its letters
        channels = [channels]
    names = None if channels is None else sorted(set(channels))
    if names is None and user is None:
        raise ValueError("name the channels or the user whose streams end")
    return {"op": END_STREAMS, "channels": names, "user": user}


class GuardedSubscription:
    """A channel subscription that knows its user and, optionally, how to
    re-check its authorization. It is the stream's source in place of the
    :class:`~flask_streaming.brokers.Subscriber` it wraps."""

    __slots__ = ("recheck", "registry", "sub", "user")

    def __init__(
        self,
        sub: Subscriber,
        registry: StreamRegistry,
        user: str | None,
        recheck: Callable[[], bool] | None,
    ) -> None:
        self.sub = sub
        self.registry = registry
        self.user = user
        self.recheck = recheck

    def start(self, body: ResponseBody) -> None:
        self.registry.add(self)
        self.sub.start(body)

    def stop(self) -> None:
        self.registry.discard(self)
        self.sub.stop()

    def matches(self, channels: frozenset[str] | None, user: str | None) -> bool:
        """Whether an ``end_streams`` for *channels* and *user* ends it."""
        if user is not None and self.user != user:
            return False
        return channels is None or not channels.isdisjoint(self.sub.channels)

    def end(self) -> None:
        """End the stream at its position (the client resumes from there
        once authorized again)."""
        sub = self.sub
        sub.end(REVOKED, mark_position(format_id(sub.generation, sub.last_seq)))


class StreamRegistry:
    """This process's open channel streams of one app, for revocation.

    :param interval: seconds between re-checks of streams that have a
        ``recheck`` (``0``: never).
    """

    def __init__(self, interval: float = 0.0) -> None:
        self.interval = interval
        self.guards: set[GuardedSubscription] = set()
        self._checker: Any = None

    def add(self, guard: GuardedSubscription) -> None:
        self.guards.add(guard)
        if guard.recheck is not None and self.interval > 0 and self._checker is None:
            self._start_checker()

    def discard(self, guard: GuardedSubscription) -> None:
        self.guards.discard(guard)

    def end(self, channels: Iterable[str] | None, user: str | None) -> int:
        """End this process's streams of *channels* (any of them) and/or of
        *user*; returns how many ended."""
        names = None if channels is None else frozenset(channels)
        ended = [g for g in tuple(self.guards) if g.matches(names, user)]
        for guard in ended:
            self.guards.discard(guard)
            guard.end()
        return len(ended)

    def on_control(self, message: dict[str, Any]) -> None:
        """Handle a broker control message (unknown ones are ignored):
        ``channels`` is ``None``, a list of names or one name; anything else
        is ignored with a warning (other senders write this channel too)."""
        if message.get("op") == END_STREAMS:
            channels = message.get("channels")
            user = message.get("user")
            if isinstance(channels, str):  # one channel, from a sender other than ours
                channels = [channels]
            if not (
                channels is None
                or (isinstance(channels, list) and all(isinstance(c, str) for c in channels))
            ):
                logger.warning("flask_streaming: ignored an end_streams with channels %r", channels)
                return
            if channels is None and user is None:
                return
            self.end(channels, None if user is None else str(user))

    def recheck(self) -> int:
        """Re-ask every re-checkable stream's authorization once; end the
        refused ones (a hook that raises counts as a refusal). Returns how
        many ended."""
        ended = 0
        for guard in tuple(self.guards):
            if guard.recheck is None or guard not in self.guards:
                continue
            try:
                allowed = bool(guard.recheck())
            except Exception:
                logger.exception("flask_streaming: the channel hook failed on a re-check")
                allowed = False
            if not allowed:
                self.guards.discard(guard)
                guard.end()
                ended += 1
        return ended

    def _start_checker(self) -> None:
        def loop() -> None:
            while True:
                time.sleep(self.interval)  # gevent's sleep under the gevent worker
                self.recheck()

        if gevent_active():
            import gevent

            self._checker = gevent.spawn(loop)
        else:
            self._checker = threading.Thread(target=loop, daemon=True, name="streaming-recheck")
            self._checker.start()
