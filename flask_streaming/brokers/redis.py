"""The Redis broker: channels across gunicorn workers and machines.

* Publishing runs one Lua script: take the next id from one counter, append
  the encoded event to the channel's Redis Stream (``XADD ... MAXLEN ~``, the
  replay history) and ``PUBLISH`` it. Any process can publish, Flask app or
  not (:class:`RedisPublisher`).
* Each worker process holds exactly one pub/sub connection, whatever the
  number of its subscribers, and fans out in process.
* When Redis goes away the listener reconnects with backoff and catches up
  from the Streams, starting after the last id it saw; when the ids went
  backwards (Redis lost its data), subscribers get a ``stream-reset``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from .base import Broker, check_channel, encode_body, frame, reset_event

logger = logging.getLogger("flask_streaming")

#: Redis connections a process uses for publishing and replay (besides its
#: one pub/sub connection).
POOL_SIZE = 32

_PUBLISH = """
local seq
if ARGV[3] ~= '' then
  local want = tonumber(ARGV[3])
  local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
  if want <= cur then
    return redis.error_reply('event id ' .. want .. ' is not above the last id ' .. cur)
  end
  redis.call('SET', KEYS[1], want)
  seq = want
else
  seq = redis.call('INCR', KEYS[1])
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'b', ARGV[1])
redis.call('PUBLISH', KEYS[3], seq .. ' ' .. ARGV[4] .. ' ' .. ARGV[1])
return seq
"""


class RedisPublisher:
    """Publishes channel events through Redis from any process.

    ::

        from flask_streaming.brokers.redis import RedisPublisher
        RedisPublisher("redis://localhost:6379/0").publish("room-1", {"text": "hi"})

    :param url: the Redis URL (same as ``STREAMING_BROKER_URL``).
    :param prefix: key prefix (same as ``STREAMING_REDIS_PREFIX``).
    :param history_size: events kept per channel's stream (approximately).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "flask_streaming",
        history_size: int = 1000,
        client: redis.Redis | None = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.history_size = history_size
        # A bounded pool: however many subscribers replay at once, a worker
        # holds at most this many connections (they wait for a free one).
        self.redis = client or redis.Redis(
            connection_pool=redis.BlockingConnectionPool.from_url(
                url, max_connections=POOL_SIZE, timeout=30
            )
        )
        self._script = self.redis.register_script(_PUBLISH)
        self.seq_key = f"{prefix}:seq"
        self.pubsub_channel = f"{prefix}:events"

    def stream_key(self, channel: str) -> str:
        return f"{self.prefix}:stream:{channel}"

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
        """Publish one event; return its id."""
        check_channel(channel)
        body = encode_body(data, event=event, retry=retry, dumps=dumps)
        return self.publish_encoded(channel, body, None if id is None else int(str(id)))

    def publish_encoded(self, channel: str, body: bytes, min_seq: int | None) -> str:
        seq = self._script(
            keys=[self.seq_key, self.stream_key(channel), self.pubsub_channel],
            args=[body, self.history_size, "" if min_seq is None else min_seq, channel],
        )
        return str(int(seq))


class RedisBroker(Broker):
    """Channels through Redis (``STREAMING_BROKER_URL = "redis://..."``)."""

    name = "redis"

    def __init__(self, url: str, *, prefix: str = "flask_streaming", **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.publisher = RedisPublisher(url, prefix=prefix, history_size=self.history_size)
        self.redis = self.publisher.redis
        self.last_seen = 0
        self._listener: Any = None
        self._starting: Any = None
        self._stopping = False
        self.reconnects = 0

    def _publish(self, channel: str, body: bytes, min_seq: int | None) -> str:
        return self.publisher.publish_encoded(channel, body, min_seq)

    # -- the one pub/sub connection of this process ----------------------

    def on_first_subscriber(self, channel: str) -> None:
        """Start this worker's listener, which catches up from the event
        counter read here. Subscribers that arrive meanwhile wait for that
        read: their own replay must not run before the catch-up point is
        fixed, or events between the two would reach no one."""
        if self._listener is not None:
            return
        if self._starting is not None:
            self._starting.wait(30)
            return
        if self._handoff is not None:
            from gevent.event import Event

            self._starting = Event()
        else:
            self._starting = threading.Event()
        try:
            self.last_seen = int(self.redis.get(self.publisher.seq_key) or 0)
            if self._handoff is not None:
                import gevent

                self._listener = gevent.spawn(self._listen)
            else:
                self._listener = threading.Thread(target=self._listen, daemon=True)
                self._listener.start()
        finally:
            starting, self._starting = self._starting, None
            starting.set()

    def _listen(self) -> None:
        backoff = 0.05
        while not self._stopping:
            pubsub = self.redis.pubsub()  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(self.publisher.pubsub_channel)
                # Catch up only once Redis confirmed the subscription, and
                # also on the first connection: events published between
                # on_first_subscriber (which read the counter) and the
                # SUBSCRIBE reached no one yet. Subscribers drop the ids
                # they already have.
                deadline = time.monotonic() + 10
                while (msg := pubsub.get_message(timeout=1.0)) is None or (
                    msg["type"] != "subscribe"
                ):
                    if time.monotonic() > deadline:
                        raise redis.TimeoutError("Redis did not confirm SUBSCRIBE")
                self._catch_up()
                backoff = 0.05
                while not self._stopping:
                    msg = pubsub.get_message(timeout=1.0)
                    if msg is not None and msg["type"] == "message":
                        self._on_message(msg["data"])
            except Exception as exc:
                # Whatever went wrong, the one listener of this worker must
                # live on: every subscriber here depends on it.
                if isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError):
                    logger.warning("flask_streaming: Redis connection lost (%s); reconnecting", exc)
                else:
                    logger.exception("flask_streaming: the Redis listener failed; restarting it")
                self.reconnects += 1
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()

    def _on_message(self, data: bytes) -> None:
        head, _, rest = data.partition(b" ")
        channel, _, body = rest.partition(b" ")
        seq = int(head)
        self.last_seen = max(self.last_seen, seq)
        self.fanout(channel.decode("ascii"), seq, frame(seq, channel.decode("ascii"), body))

    def _catch_up(self) -> None:
        """After a reconnect: deliver what was published meanwhile, or tell
        every subscriber that the history is gone."""
        counter = int(self.redis.get(self.publisher.seq_key) or 0)
        if counter < self.last_seen:
            logger.warning(
                "flask_streaming: Redis event ids went back (%d < %d): its data was lost",
                counter,
                self.last_seen,
            )
            reset = reset_event(str(self.last_seen), "broker_restarted")
            for subs in list(self.subscribers.values()):
                for sub in tuple(subs):
                    sub.last_seq = 0
                    sub.outbox.put(reset)
            self.last_seen = counter
            return
        events, _ = self.replay(list(self.subscribers), self.last_seen)
        for seq, raw in events:
            channel = raw.split(b"\n", 2)[1][len(b"channel: ") :].decode("ascii")
            self.last_seen = max(self.last_seen, seq)
            self.fanout(channel, seq, raw)

    # -- history ---------------------------------------------------------

    def replay(self, channels: Iterable[str], after: int) -> tuple[list[tuple[int, bytes]], bool]:
        counter = int(self.redis.get(self.publisher.seq_key) or 0)
        gap = after > counter
        events: list[tuple[int, bytes]] = []
        pipe = self.redis.pipeline(transaction=False)
        names = list(channels)
        for ch in names:
            key = self.publisher.stream_key(ch)
            pipe.xrange(key, min=f"{after + 1}-0", count=self.history_size)
        results = pipe.execute()
        for ch, entries in zip(names, results, strict=True):
            for entry_id, fields in entries:
                seq = int(entry_id.split(b"-", 1)[0])
                events.append((seq, frame(seq, ch, fields[b"b"])))
            if not gap:
                gap = self._trimmed_after(ch, after)
        events.sort()
        return events, gap

    def _trimmed_after(self, channel: str, after: int) -> bool:
        try:
            info = self.redis.xinfo_stream(self.publisher.stream_key(channel))
        except redis.ResponseError:
            return False  # no such stream: nothing was ever trimmed
        deleted = info.get("max-deleted-entry-id") or b"0-0"
        if isinstance(deleted, bytes):
            deleted = deleted.decode("ascii")
        return int(str(deleted).split("-", 1)[0]) > after

    def current_seq(self) -> int:
        return self.last_seen

    def close(self) -> None:
        self._stopping = True
        listener, self._listener = self._listener, None
        if listener is not None and hasattr(listener, "kill"):
            listener.kill(block=True, timeout=2)
        self.redis.close()
