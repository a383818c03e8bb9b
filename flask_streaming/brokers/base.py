"""What every broker shares: framing, in-process fan-out, subscribers.

A broker assigns each published event an id from one monotonic sequence (not
per channel, so the single ``Last-Event-ID`` a browser sends can resume a
stream of several channels), encodes the event once, keeps a bounded history
per channel, and hands the same bytes to every local subscriber's outbox.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import BadRequest
from ..sse import ServerSentEvent
from ..transport import Outbox, StreamBody, gevent_active, jittered_retry

logger = logging.getLogger("flask_streaming")

#: Channel names: letters, digits and ``_ . : @ / + = -``, 1 to 128 of them.
CHANNEL_NAME = re.compile(r"[A-Za-z0-9_.:@/+=\-]{1,128}")


#: Sent (after a jittered ``retry``) to a subscriber cut off for lagging.
SLOW_CONSUMER = ServerSentEvent(
    {"message": "Too far behind; reconnect to resume."}, event="stream-error"
).encode()


def check_channel(name: str) -> str:
    """Return *name*, or raise :class:`~flask_streaming.errors.BadRequest`."""
    if not isinstance(name, str) or not CHANNEL_NAME.fullmatch(name):
        raise BadRequest(
            "Channel names are 1 to 128 of A-Z a-z 0-9 _ . : @ / + = -.",
            code="invalid_channel",
            channel=str(name)[:200],
        )
    return name


def encode_body(
    data: Any,
    *,
    event: str | None,
    retry: int | None,
    dumps: Callable[[Any], str] | None,
) -> bytes:
    """The event's bytes without its ``id:`` line (the broker adds it)."""
    if data is None:
        data = "null"
    return ServerSentEvent(data, event=event, retry=retry).encode(dumps)


def frame(seq: int, channel: str, body: bytes) -> bytes:
    """Prefix an encoded event with its id and its channel. ``channel:`` is
    a field ``EventSource`` ignores; fetch-based clients read it."""
    return b"id: %d\nchannel: %s\n" % (seq, channel.encode("ascii")) + body


def reset_event(last_event_id: str, reason: str) -> bytes:
    """The gap signal: events after *last_event_id* are no longer known."""
    return ServerSentEvent(
        {"last_event_id": last_event_id, "reason": reason}, event="stream-reset"
    ).encode()


def parse_last_event_id(value: str | None) -> int | None:
    """The sequence number in a ``Last-Event-ID`` (``None``: absent or not ours)."""
    if not value:
        return None
    head = value.strip().split(":", 1)[0]
    # isascii: str.isdigit() is also true for "²" and other digits int() refuses
    return int(head) if head.isascii() and head.isdigit() and len(head) < 20 else -1


class Subscriber:
    """One connection's subscription to one or more channels.

    It is the stream's source: :meth:`start` registers it (after replaying
    what the client missed), :meth:`stop` unregisters it. Events reach it
    through :meth:`deliver`, already encoded; it adds the same bytes object
    to its outbox, never a copy.
    """

    __slots__ = (
        "attached",
        "broker",
        "channels",
        "client",
        "last_event_id",
        "last_seq",
        "outbox",
        "pending",
        "retry",
    )

    def __init__(
        self,
        broker: Broker,
        channels: tuple[str, ...],
        outbox: Outbox,
        last_event_id: str | None,
        client: str = "",
    ) -> None:
        self.broker = broker
        #: the client's address, for the per-client connection quota
        self.client = client
        self.attached = False
        self.channels = channels
        self.outbox = outbox
        self.last_event_id = last_event_id
        self.last_seq = 0
        #: events that arrive while a replay is being fetched
        self.pending: list[tuple[int, bytes]] | None = None
        #: the stream's normal ``retry`` (ms): a jittered one above it is sent
        #: with a disconnect the client should come back from
        self.retry = 3000

    def start(self, body: StreamBody) -> None:
        self.broker.attach(self)

    def stop(self) -> None:
        if self.attached:
            self.broker.detach(self)

    def deliver(self, seq: int, raw: bytes) -> None:
        if seq <= self.last_seq:
            return
        if self.pending is not None:
            self.pending.append((seq, raw))
            return
        self.last_seq = seq
        outbox = self.outbox
        if outbox.size >= self.broker.max_queue_bytes or (
            outbox.chunk_count() >= self.broker.max_queue
        ):
            outbox.put(jittered_retry(self.retry) + SLOW_CONSUMER)
            outbox.finish("slow_consumer")
            return
        outbox.put(raw)


class Broker:
    """Base of the brokers: in-process fan-out and history bookkeeping.

    :param history_size: events kept per channel for replay.
    :param max_queue: events a subscriber may lag before it is cut off.
    :param max_queue_bytes: bytes a subscriber may lag before it is cut off.
    """

    #: short name, as in the URL scheme
    name = "base"

    def __init__(
        self,
        *,
        history_size: int = 1000,
        max_queue: int = 1000,
        max_queue_bytes: int = 4 << 20,
    ) -> None:
        self.history_size = history_size
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self.subscribers: dict[str, set[Subscriber]] = {}
        self.connections = 0
        #: open subscriptions per client address
        self.clients: dict[str, int] = {}
        self._handoff = _ThreadHandoff() if gevent_active() else None
        self._lock = threading.RLock() if self._handoff is None else None

    # -- publishing ------------------------------------------------------

    def publish(
        self,
        channel: str,
        data: Any,
        *,
        event: str | None = None,
        id: int | str | None = None,
        retry: int | None = None,
        dumps: Callable[[Any], str] | None = None,
    ) -> str:
        """Publish one event; return the id assigned. Safe from any greenlet
        and from real threads (handed over to the worker's hub)."""
        check_channel(channel)
        body = encode_body(data, event=event, retry=retry, dumps=dumps)
        min_seq = _explicit_id(id)
        if self._handoff is not None and self._handoff.foreign():
            return self._handoff.call(lambda: self._publish(channel, body, min_seq))
        if self._lock is not None:
            with self._lock:
                return self._publish(channel, body, min_seq)
        return self._publish(channel, body, min_seq)

    def _publish(self, channel: str, body: bytes, min_seq: int | None) -> str:
        raise NotImplementedError

    def fanout(self, channel: str, seq: int, raw: bytes) -> None:
        """Hand one framed event to every local subscriber of *channel*."""
        subs = self.subscribers.get(channel)
        if subs:
            for sub in tuple(subs):
                sub.deliver(seq, raw)

    # -- subscribing -----------------------------------------------------

    def replay(self, channels: Iterable[str], after: int) -> tuple[list[tuple[int, bytes]], bool]:
        """Events of *channels* with ids above *after*, in id order, and
        whether some were lost (trimmed from history, or ids went back)."""
        raise NotImplementedError

    def attach(self, sub: Subscriber) -> None:
        """Register *sub*, after sending it what it missed."""
        self.connections += 1
        sub.attached = True
        self.clients[sub.client] = self.clients.get(sub.client, 0) + 1
        after = parse_last_event_id(sub.last_event_id)
        sub.pending = [] if after is not None else None
        for ch in sub.channels:
            self.subscribers.setdefault(ch, set()).add(sub)
        try:
            for ch in sub.channels:
                self.on_first_subscriber(ch)
            if after is None:
                sub.last_seq = self.current_seq()
                return
            events, gap = self.replay(sub.channels, after)
        except Exception as exc:
            # Never a silent gap: end the stream with a retry hint; the
            # client comes back (with its Last-Event-ID) and replays then.
            logger.warning("flask_streaming: broker unavailable (%s); the client will retry", exc)
            sub.pending = None
            sub.outbox.put(jittered_retry(sub.retry))
            sub.outbox.finish("broker_unavailable")
            return
        if gap or after < 0:
            sub.outbox.put(reset_event(sub.last_event_id or "", "history"))
        pending, sub.pending = sub.pending or [], None
        sub.last_seq = max(after, 0)
        for seq, raw in [*events, *pending]:
            sub.deliver(seq, raw)

    def detach(self, sub: Subscriber) -> None:
        """Unregister *sub*; nothing of it stays behind."""
        self.connections -= 1
        sub.attached = False
        left = self.clients.get(sub.client, 1) - 1
        if left > 0:
            self.clients[sub.client] = left
        else:
            self.clients.pop(sub.client, None)
        for ch in sub.channels:
            subs = self.subscribers.get(ch)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self.subscribers[ch]
                    self.on_last_subscriber(ch)

    def on_first_subscriber(self, channel: str) -> None:
        """Hook: *channel* has a local subscriber now."""

    def on_last_subscriber(self, channel: str) -> None:
        """Hook: *channel* has no local subscriber any more."""

    def current_seq(self) -> int:
        """The id of the newest event this process knows of."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections and greenlets."""


def _explicit_id(id: int | str | None) -> int | None:
    if id is None:
        return None
    text = str(id)
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"an explicit event id must be a positive integer, not {id!r}")
    return int(text)


class _ThreadHandoff:
    """Runs a callable on the gevent hub's thread for a caller in another OS
    thread, and waits for its result (gevent objects are not thread-safe)."""

    def __init__(self) -> None:
        from gevent import get_hub
        from gevent.monkey import get_original

        self._ident_fn = get_original("threading", "get_ident")
        self._lock_fn = get_original("_thread", "allocate_lock")
        self._ident = self._ident_fn()
        self._queue: list[tuple[Callable[[], Any], list[Any], Any]] = []
        self._watcher = get_hub().loop.async_()
        self._watcher.start(self._run)

    def foreign(self) -> bool:
        return bool(self._ident_fn() != self._ident)

    def call(self, fn: Callable[[], str]) -> str:
        done = self._lock_fn()
        done.acquire()
        box: list[Any] = []
        self._queue.append((fn, box, done))
        self._watcher.send()
        done.acquire()
        if isinstance(box[0], BaseException):
            raise box[0]
        result: str = box[0]
        return result

    def _run(self) -> None:
        while self._queue:
            fn, box, done = self._queue.pop(0)
            try:
                box.append(fn())
            except BaseException as exc:
                box.append(exc)
            done.release()
