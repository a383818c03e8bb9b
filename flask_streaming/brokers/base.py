"""What every broker shares: ids, framing, in-process fan-out, subscribers.

A broker assigns each published event an id ``<generation>-<seq>``: *seq*
comes from one monotonic counter (not per channel, so the single
``Last-Event-ID`` a browser sends can resume a stream of several channels)
and *generation* names the counter's lifetime. A new generation starts
whenever the counter may have gone back or lost events (a new memory broker,
a Redis that lost data or may have), so an id from before is recognised as
foreign instead of being mistaken for a position in the new sequence. The
broker encodes each event once, keeps a bounded history per channel, and
hands the same bytes to every local subscriber's outbox.

The resume contract these classes hold is stated in
``docs/guides/channels.rst`` ("The resume contract").
"""

from __future__ import annotations

import dataclasses
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import BadRequest
from ..signals import events_delivered, stream_reset_sent
from ..sse_wire import DEFAULT_RETRY, ServerSentEvent, jittered_retry
from ..transport import Outbox, ResponseBody, gevent_active

logger = logging.getLogger(__name__)

#: Channel names: letters, digits and ``_ . : @ / + = -``, 1 to 128 of them.
CHANNEL_NAME = re.compile(r"[A-Za-z0-9_.:@/+=\-]{1,128}")

#: An event id: ``<generation>-<seq>``, generation 1 to 16 of ``0-9 a-z``,
#: seq 1 to 19 digits.
EVENT_ID = re.compile(r"([0-9a-z]{1,16})-([0-9]{1,19})")

#: Sent (after a jittered ``retry``) to a subscriber cut off for lagging.
SLOW_CONSUMER = ServerSentEvent(
    {"message": "Too far behind; reconnect to resume."}, event="stream-error"
).encode()

#: ``stream-reset`` reasons: events after the client's id are gone (history
#: bound or TTL), or its id is not one of the current generation (an earlier
#: process or Redis dataset, or never issued).
RESET_HISTORY = "history"
RESET_UNKNOWN_ID = "unknown_id"


def check_channel(name: str) -> str:
    """Return *name*, or raise :class:`~flask_streaming.errors.BadRequest`."""
    if not isinstance(name, str) or not CHANNEL_NAME.fullmatch(name):
        raise BadRequest(
            "Channel names are 1 to 128 of A-Z a-z 0-9 _ . : @ / + = -.",
            code="invalid_channel",
            channel=str(name)[:200],
        )
    return name


def new_generation() -> str:
    """A fresh generation: 8 random lowercase hex digits."""
    return secrets.token_hex(4)


def format_id(generation: str, seq: int) -> str:
    """The event id ``<generation>-<seq>`` browsers see and send back."""
    return f"{generation}-{seq}"


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


@dataclasses.dataclass(frozen=True)
class EncodedEvent:
    """An event as brokers take it: checked and encoded once, by
    :meth:`Publisher.publish`.

    :ivar channel: the channel, a valid name.
    :ivar body: the event's lines without ``id:`` (the broker adds its id).
    :ivar seq: the explicit seq asked for (``None``: the broker's next).
    """

    channel: str
    body: bytes
    seq: int | None = None


class Publisher:
    """What publishes events: :class:`Broker` (in a Flask app) and
    :class:`~flask_streaming.brokers.redis.RedisPublisher` (any process)."""

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
        """Publish one event; return the id assigned, ``<generation>-<seq>``.
        Safe from any greenlet and from real threads (handed over to the
        worker's hub).

        :param data: ``str`` as is, anything else as JSON (``None``: ``null``).
        :param event: the event type (``message`` when ``None``).
        :param id: an explicit seq for this event in the current generation
            (an int or a string of ASCII digits above the last seq; the id
            returned is ``<generation>-<id>``). Ids are the broker's, so most
            apps never pass one.
        :param retry: a ``retry:`` field for the subscribers.
        :param dumps: the JSON encoder (default: compact stdlib JSON);
            :meth:`Streaming.publish <flask_streaming.Streaming.publish>`
            passes its app's.
        :raises BadRequest: *channel* is not a valid channel name.
        :raises ValueError: *id* is not digits or not above the last seq.
        """
        check_channel(channel)
        body = encode_body(data, event=event, retry=retry, dumps=dumps)
        return self.publish_event(EncodedEvent(channel, body, explicit_seq(id)))

    def publish_event(self, event: EncodedEvent) -> str:
        """Publish an encoded event; return the id assigned."""
        raise NotImplementedError


def frame(generation: str, seq: int, channel: str, body: bytes) -> bytes:
    """Prefix an encoded event with its id and its channel. ``channel:`` is
    a field ``EventSource`` ignores; fetch-based clients read it."""
    return (
        b"id: %s-%d\nchannel: %s\n"
        % (
            generation.encode("ascii"),
            seq,
            channel.encode("ascii"),
        )
        + body
    )


def reset_event(last_event_id: str, reason: str, position: str) -> bytes:
    """The gap signal: some events after *last_event_id* are no longer known.

    Its ``id:`` is *position*: a client that reconnects straight after it
    resumes from there without a second reset."""
    return (
        b"id: %s\n" % position.encode("ascii")
        + ServerSentEvent(
            {"last_event_id": last_event_id[:200], "reason": reason}, event="stream-reset"
        ).encode()
    )


def mark_position(event_id: str) -> bytes:
    """An id-only block: sets the browser's last event id, dispatches nothing
    (WHATWG "dispatch the event": the id is taken before the empty data
    buffer ends the dispatch)."""
    return b"id: %s\n\n" % event_id.encode("ascii")


def parse_last_event_id(value: str | None, generation: str) -> int | None:
    """The seq of a ``Last-Event-ID`` of *generation*: ``None`` when absent,
    ``-1`` when not an id of that generation (foreign, or not ours at all)."""
    if not value:
        return None
    m = EVENT_ID.fullmatch(value.strip())
    if m is None or m.group(1) != generation:
        return -1
    return int(m.group(2))


@dataclasses.dataclass
class Replay:
    """What a resume gets: the held events after the client's position, and
    whether a ``stream-reset`` must come first.

    :ivar generation: the generation the events (and *position*) belong to.
    :ivar events: ``(seq, framed bytes)`` in seq order.
    :ivar after: the seq the replay starts after (0 for a foreign id).
    :ivar reason: ``None``, or the reset reason (:data:`RESET_HISTORY`,
        :data:`RESET_UNKNOWN_ID`).
    :ivar position: the reset's position: no event of the channels above it
        is missing (the newest missing seq, or *after*).
    """

    generation: str
    events: list[tuple[int, bytes]]
    after: int
    reason: str | None = None
    position: int = 0

    def lost(self, seq: int) -> None:
        """Record that the event *seq* (above *after*) is not held."""
        if self.reason is None:
            self.reason = RESET_HISTORY
        self.position = max(self.position, seq)


class Subscriber:
    """One connection's subscription to one or more channels.

    It is the stream's source: :meth:`start` registers it (after replaying
    what the client missed), :meth:`stop` unregisters it. Events reach it
    through :meth:`deliver`, already encoded; it adds the same bytes object
    to its outbox, never a copy.
    """

    __slots__ = (
        "attached",
        "backlog",
        "broker",
        "channels",
        "client",
        "generation",
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
        #: the generation of the ids this connection carries
        self.generation = ""
        #: the seq of the newest event sent: lower or equal ones are dropped
        self.last_seq = 0
        #: bytes of the replay still in the outbox: not live lag
        self.backlog = 0
        #: events that arrive while a replay is being fetched
        self.pending: list[tuple[int, bytes]] | None = None
        #: the stream's normal ``retry`` (ms): a jittered one above it is sent
        #: with a disconnect the client should come back from
        self.retry = DEFAULT_RETRY

    def start(self, body: ResponseBody) -> None:
        self.broker.attach(self)

    def stop(self) -> None:
        if self.attached:
            self.broker.detach(self)

    def deliver(self, seq: int, raw: bytes) -> None:
        """Queue one live event (dropped when not above the last one sent:
        the catch-up and live paths may both bring it)."""
        if seq <= self.last_seq:
            return
        if self.pending is not None:
            self.pending.append((seq, raw))
            return
        self.last_seq = seq
        outbox = self.outbox
        size = outbox.size
        chunks = outbox.chunk_count()
        if self.backlog:
            if size < self.backlog:
                self.backlog = 0  # the writer took the replay
            else:
                size -= self.backlog
                chunks -= 1
        if size >= self.broker.max_queue_bytes or chunks >= self.broker.max_queue:
            self.end("slow_consumer", SLOW_CONSUMER)
            return
        outbox.put(raw)

    def end(self, reason: str, last: bytes = b"") -> None:
        """End the stream: a jittered ``retry`` (the client comes back and
        resumes with its last event id), then *last*."""
        self.outbox.put(jittered_retry(self.retry) + last)
        self.outbox.finish(reason)


class Broker(Publisher):
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
        #: the generation of the ids this broker issues now
        self.generation = new_generation()
        self._handoff = _ThreadHandoff() if gevent_active() else None
        self._lock = threading.RLock() if self._handoff is None else None

    # -- publishing ------------------------------------------------------

    def publish_event(self, event: EncodedEvent) -> str:
        """Publish an encoded event from any greenlet or real thread."""
        if self._handoff is not None and self._handoff.foreign():
            return self._handoff.call(lambda: self._publish(event))
        if self._lock is not None:
            with self._lock:
                return self._publish(event)
        return self._publish(event)

    def _publish(self, event: EncodedEvent) -> str:
        raise NotImplementedError

    def fanout(self, channel: str, seq: int, raw: bytes) -> None:
        """Hand one framed event to every local subscriber of *channel*
        (the same event twice is harmless: subscribers drop what they have)."""
        subs = self.subscribers.get(channel)
        if subs:
            if self._lock is not None:  # threads: exclusive with a resume
                with self._lock:
                    for sub in tuple(subs):
                        sub.deliver(seq, raw)
            else:
                for sub in tuple(subs):
                    sub.deliver(seq, raw)
            events_delivered.send(self, count=len(subs))

    # -- subscribing -----------------------------------------------------

    def replay(self, channels: Iterable[str], last_event_id: str) -> Replay:
        """What a client resuming after *last_event_id* on *channels* gets:
        the held events after it, and whether a reset must come first (see
        :class:`Replay`). A foreign or unknown id resumes from before the
        first event of the current generation, with a reset."""
        raise NotImplementedError

    def attach(self, sub: Subscriber) -> None:
        """Register *sub*, after sending it what it missed."""
        self.connections += 1
        sub.attached = True
        self.clients[sub.client] = self.clients.get(sub.client, 0) + 1
        resume = bool(sub.last_event_id)
        sub.pending = [] if resume else None
        for ch in sub.channels:
            self.subscribers.setdefault(ch, set()).add(sub)
        try:
            for ch in sub.channels:
                self.on_first_subscriber(ch)
            if not resume:
                if self._lock is not None:
                    with self._lock:
                        sub.generation = self.generation
                        sub.last_seq = self.current_seq()
                else:
                    sub.generation = self.generation
                    sub.last_seq = self.current_seq()
                return
            replay = self.replay(sub.channels, sub.last_event_id or "")
        except Exception as exc:
            # Never a silent gap: end the stream with a retry hint; the
            # client comes back (with its Last-Event-ID) and replays then.
            logger.warning("flask_streaming: broker unavailable (%s); the client will retry", exc)
            sub.pending = None
            sub.end("broker_unavailable")
            return
        if self._lock is not None:
            with self._lock:  # the listener thread delivers meanwhile
                self._resume(sub, replay)
        else:
            self._resume(sub, replay)

    def _resume(self, sub: Subscriber, replay: Replay) -> None:
        sub.generation = replay.generation
        out: list[bytes] = []
        if replay.reason is not None:
            position = format_id(replay.generation, replay.position)
            out.append(reset_event(sub.last_event_id or "", replay.reason, position))
            stream_reset_sent.send(self, reason=replay.reason)
        pending, sub.pending = sub.pending or [], None
        if replay.generation != self.generation:
            # the listener has not seen the new generation yet (it will end
            # this stream when it does): never two generations on one stream
            pending = []
        last = replay.after
        # The replay, then what went live meanwhile, in seq order, once each.
        for seq, raw in sorted([*replay.events, *pending], key=_seq):
            if seq > last:
                out.append(raw)
                last = seq
        # Positioned at the newest event known here: older ones were in the
        # replay, went live meanwhile (pending), or are not held.
        if replay.generation == self.generation:
            last = max(last, self.current_seq())
        sub.last_seq = last
        if out:
            events_delivered.send(self, count=len(out))
            # One chunk, not counted as lag: however long, a replay never
            # trips the slow-consumer cut-off; the writer sends it as the
            # socket drains.
            chunk = b"".join(out)
            sub.backlog = len(chunk)
            sub.outbox.put(chunk, flush=True)

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

    def end_local_streams(self, channels: Iterable[str] | None, reason: str) -> int:
        """End this process's open streams of *channels* (all when ``None``)
        with a jittered ``retry``; each stream's position is marked first, so
        the client resumes from where it was. Returns how many ended."""
        if channels is None:
            subs = {s for group in self.subscribers.values() for s in group}
        else:
            subs = {s for ch in channels for s in self.subscribers.get(ch, ())}
        for sub in subs:
            sub.end(reason, mark_position(format_id(sub.generation, sub.last_seq)))
        return len(subs)

    # -- control messages (revocation) -----------------------------------

    #: Receives every control message that reaches this process (set by the
    #: extension: :mod:`flask_streaming.revocation`).
    control_handler: Callable[[dict[str, Any]], None] | None = None

    def send_control(self, message: dict[str, Any]) -> None:
        """Deliver a control message (a JSON-serialisable dict) to every
        process of this broker: here this process only; the Redis broker
        publishes it to all. Safe from any greenlet and real thread."""
        if self._handoff is not None and self._handoff.foreign():

            def send() -> str:
                self._send_control(message)
                return ""

            self._handoff.call(send)
            return
        self._send_control(message)

    def _send_control(self, message: dict[str, Any]) -> None:
        self.on_control(message)

    def on_control(self, message: dict[str, Any]) -> None:
        """A control message reached this process: hand it to the handler."""
        handler = self.control_handler
        if handler is not None:
            handler(message)

    def on_first_subscriber(self, channel: str) -> None:
        """Hook: *channel* has a local subscriber now."""

    def on_last_subscriber(self, channel: str) -> None:
        """Hook: *channel* has no local subscriber any more."""

    def current_seq(self) -> int:
        """The seq of the newest event this process knows of."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections and greenlets."""


def _seq(item: tuple[int, bytes]) -> int:
    return item[0]


def explicit_seq(id: int | str | None) -> int | None:
    """The seq an explicit ``id=`` asks for (``None``: the next one).

    :raises ValueError: not a positive integer or a string of digits."""
    if id is None:
        return None
    text = str(id)
    if not (text.isascii() and text.isdigit() and len(text) < 19):
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
