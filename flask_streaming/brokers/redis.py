"""The Redis broker: channels across gunicorn workers and machines.

Keys (``<prefix>`` is ``STREAMING_REDIS_PREFIX``):

* ``<prefix>:id``: a hash: ``gen`` (the generation), ``seq`` (the counter),
  ``run`` (the ``run_id`` of the redis-server that last checked it) and two
  time checkpoints of the counter (``ck1t ck1s ck2t ck2s``, ms and seq).
* ``<prefix>:stream:<channel>``: the channel's history, a Redis Stream with
  entry ids ``<seq>-0``; trimmed to ``history_size`` entries once it holds
  :func:`stream_bound` of them; expires ``history_ttl`` after the last
  publish.
* ``<prefix>:chan:<channel>``: the channel's record, a hash: ``last`` (its
  newest seq) and ``trimmed`` (the newest seq no longer in its stream);
  outlives the stream (expires after twice ``history_ttl``), so that an
  expired stream is told apart from a channel that never had events.

Publishing runs one Lua script: the next seq, ``XADD``, trimming, the
record, ``PUBLISH``. Any process can publish, Flask app or not
(:class:`RedisPublisher`). Each worker process holds exactly one pub/sub
connection, whatever the number of its subscribers, and fans out in process.

Generations: every new connection to Redis first runs a check (a
``redis_connect_func``). When the server's ``run_id`` differs from the one
recorded, Redis restarted; unless it runs ``appendonly yes`` with
``appendfsync always`` the restart may have lost the last writes (the
counter may have gone back), so a new generation starts. The listener ends
its subscribers' streams when the generation changes under them; they
reconnect and get a ``stream-reset``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

import redis

from ..errors import BrokerUnavailable
from .base import (
    RESET_UNKNOWN_ID,
    Broker,
    EncodedEvent,
    Publisher,
    Replay,
    format_id,
    frame,
    new_generation,
    parse_last_event_id,
)

logger = logging.getLogger(__name__)

#: Redis connections a process uses for publishing and replay (besides its
#: one pub/sub connection).
POOL_SIZE = 32
#: Seconds to connect to Redis, and to wait for any one answer, before a
#: publish raises :class:`~flask_streaming.BrokerUnavailable` (a Redis that
#: accepts and never answers must not hold a worker forever). A
#: ``socket_timeout`` / ``socket_connect_timeout`` query parameter of the URL
#: wins (``redis://host:6379/0?socket_timeout=2``).
SOCKET_TIMEOUT = 5.0


def stream_bound(history_size: int) -> int:
    """The most entries a channel's stream holds: it is trimmed back to
    *history_size* (exactly) once it reaches this many (amortises the trim)."""
    return history_size + max(8, history_size // 8)


_PUBLISH = """
local h = redis.call('HMGET', KEYS[1], 'gen', 'seq', 'ck2t', 'ck2s', 'ck1t', 'ck1s')
local gen = h[1]
if not gen then
  gen = ARGV[5]
  redis.call('HSET', KEYS[1], 'gen', gen)
end
local cur = tonumber(h[2] or '0')
local seq
if ARGV[3] ~= '' then
  seq = tonumber(ARGV[3])
  if seq <= cur then
    return redis.error_reply('event id ' .. seq .. ' is not above the last id ' .. cur)
  end
else
  seq = cur + 1
end
redis.call('HSET', KEYS[1], 'seq', seq)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rec_ttl = tonumber(ARGV[7])
if not h[3] or now - tonumber(h[3]) >= rec_ttl / 4 then
  redis.call('HSET', KEYS[1], 'ck1t', h[3] or now, 'ck1s', h[4] or cur, 'ck2t', now, 'ck2s', cur)
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  local last = redis.call('HGET', KEYS[3], 'last')
  if last then
    -- the stream expired: everything up to its last event is gone
    redis.call('HSET', KEYS[3], 'trimmed', last)
  else
    -- no record either: it expired too, or the channel is new. Its last
    -- event (if any) is at most the counter at a checkpoint within the
    -- record's TTL (the floor); the same rule as a replay's.
    local floor = cur
    if h[5] and now - tonumber(h[5]) <= rec_ttl then
      floor = math.min(floor, tonumber(h[6]))
    end
    if h[3] and now - tonumber(h[3]) <= rec_ttl then
      floor = math.min(floor, tonumber(h[4]))
    end
    if floor > 0 then
      redis.call('HSET', KEYS[3], 'trimmed', floor)
    end
  end
end
if type(redis.pcall('XADD', KEYS[2], seq .. '-0', 'b', ARGV[1])) == 'table' then
  -- an error: the stream holds ids at or above seq, so it is not of this
  -- counter (a dataset from before the id hash, e.g. an older version):
  -- its events are gone for this generation
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[3], 'trimmed', seq - 1)
  redis.call('XADD', KEYS[2], seq .. '-0', 'b', ARGV[1])
end
local size = tonumber(ARGV[2])
local n = redis.call('XLEN', KEYS[2])
if n >= tonumber(ARGV[8]) then
  local old = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', n - size)
  redis.call('XTRIM', KEYS[2], 'MAXLEN', size)
  redis.call('HSET', KEYS[3], 'trimmed', string.match(old[#old][1], '^%d+'))
end
redis.call('HSET', KEYS[3], 'last', seq)
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('PEXPIRE', KEYS[3], rec_ttl)
redis.call('PUBLISH', KEYS[4], gen .. ' ' .. seq .. ' ' .. ARGV[4] .. ' ' .. ARGV[1])
return {gen, seq}
"""

_BOOT = """
local h = redis.call('HMGET', KEYS[1], 'run', 'gen')
if h[1] == ARGV[1] and h[2] then
  return h[2]
end
if ARGV[1] == '' then
  -- INFO is disabled: restarts cannot be told; only make a generation
  if not h[2] then
    redis.call('HSET', KEYS[1], 'gen', ARGV[3])
  end
  return redis.call('HGET', KEYS[1], 'gen')
end
if not h[2] or (h[1] and ARGV[2] ~= '1') then
  redis.call('HSET', KEYS[1], 'gen', ARGV[3])
end
redis.call('HSET', KEYS[1], 'run', ARGV[1])
return redis.call('HGET', KEYS[1], 'gen')
"""


class RedisPublisher(Publisher):
    """Publishes channel events through Redis from any process.

    ::

        from flask_streaming.brokers.redis import RedisPublisher
        RedisPublisher("redis://localhost:6379/0").publish("room-1", {"text": "hi"})

    :param url: the Redis URL (same as ``STREAMING_BROKER_URL``).
    :param prefix: key prefix (same as ``STREAMING_REDIS_PREFIX``).
    :param history_size: events kept per channel's stream (same as
        ``STREAMING_HISTORY_SIZE``; the stream holds at most
        :func:`stream_bound` entries).
    :param history_ttl: seconds a channel's stream is kept after its last
        publish (same as ``STREAMING_HISTORY_TTL``).
    :param client: a client of your own; the restart check is installed on
        its pool's connections (``redis_connect_func``).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "flask_streaming",
        history_size: int = 1000,
        history_ttl: float = 3600.0,
        client: redis.Redis | None = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.id_key = f"{prefix}:id"
        self.pubsub_channel = f"{prefix}:events"
        #: the reserved pub/sub channel of control messages (revocation)
        self.control_channel = f"{prefix}:control"
        #: the generation seen last (by a publish, a replay or the boot check)
        self.generation = ""
        # A bounded pool: however many subscribers replay at once, a worker
        # holds at most this many connections (they wait for a free one).
        if client is None:
            client = redis.Redis(
                connection_pool=redis.BlockingConnectionPool.from_url(
                    url,
                    max_connections=POOL_SIZE,
                    timeout=30,
                    socket_timeout=SOCKET_TIMEOUT,
                    socket_connect_timeout=SOCKET_TIMEOUT,
                )
            )
        client.connection_pool.connection_kwargs["redis_connect_func"] = self._on_connect
        self.redis = client
        self._script = self.redis.register_script(_PUBLISH)

    def stream_key(self, channel: str) -> str:
        return f"{self.prefix}:stream:{channel}"

    def record_key(self, channel: str) -> str:
        return f"{self.prefix}:chan:{channel}"

    @property
    def ttl_ms(self) -> int:
        return max(1, int(self.history_ttl * 1000))

    def _on_connect(self, conn: Any) -> None:
        """Every new connection: has Redis restarted, and may it have lost
        writes? Then a new generation starts (see the module docstring)."""
        conn.on_connect()
        run_id = ""
        with contextlib.suppress(redis.ResponseError):  # INFO may be disabled
            conn.send_command("INFO", "server")
            info = conn.read_response()
            if isinstance(info, bytes):
                info = info.decode("utf-8", "replace")
            for line in str(info).splitlines():
                if line.startswith("run_id:"):
                    run_id = line[7:].strip()
        durable = False
        with contextlib.suppress(redis.ResponseError):  # CONFIG may be disabled
            conn.send_command("CONFIG", "GET", "appendonly", "appendfsync")
            pairs = conn.read_response()
            conf = (
                pairs
                if isinstance(pairs, dict)
                else dict(zip(pairs[::2], pairs[1::2], strict=True))
            )
            durable = conf.get(b"appendonly") == b"yes" and conf.get(b"appendfsync") == b"always"
        conn.send_command("EVAL", _BOOT, 1, self.id_key, run_id, int(durable), new_generation())
        gen = conn.read_response()
        self.generation = gen.decode("ascii") if isinstance(gen, bytes) else str(gen)

    def publish_event(self, event: EncodedEvent) -> str:
        """Publish an encoded event (one script run); return its id.

        :raises BrokerUnavailable: Redis unreachable, or no answer in time.
        """
        channel, min_seq = event.channel, event.seq
        try:
            gen, seq = self._script(
                keys=[self.id_key, self.stream_key(channel), self.record_key(channel),
                      self.pubsub_channel],
                args=[event.body, self.history_size, "" if min_seq is None else min_seq, channel,
                      new_generation(), self.ttl_ms, 2 * self.ttl_ms,
                      stream_bound(self.history_size)],
            )  # fmt: skip
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerUnavailable(f"Redis is unavailable: {exc}") from exc
        self.generation = gen.decode("ascii")
        return format_id(self.generation, int(seq))

    def send_control(self, message: dict[str, Any]) -> None:
        """Publish a control message to every worker's listener.

        :raises BrokerUnavailable: Redis unreachable, or no answer in time.
        """
        try:
            self.redis.publish(self.control_channel, json.dumps(message))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerUnavailable(f"Redis is unavailable: {exc}") from exc

    def end_streams(
        self, channels: Iterable[str] | None = None, *, user: str | None = None
    ) -> None:
        """End the open streams of *channels* and/or *user* in every worker,
        from any process (see :meth:`Streaming.end_streams
        <flask_streaming.Streaming.end_streams>`)."""
        from ..revocation import end_streams_message

        self.send_control(end_streams_message(channels, user))

    def position(self) -> tuple[str, int]:
        """The current generation and seq (``("", 0)`` before any)."""
        gen, seq = self.redis.hmget(self.id_key, ["gen", "seq"])
        return _text(gen), int(seq or 0)

    def replay(self, channels: Iterable[str], last_event_id: str) -> Replay:
        """See :meth:`Broker.replay <flask_streaming.brokers.Broker.replay>`:
        per channel the newest ``history_size`` entries after the position
        (``XREVRANGE``); an older one still in the stream, the record's
        ``trimmed``, an expired stream or an expired record mean a gap."""
        names = list(channels)
        head = self.redis.pipeline(transaction=False)
        head.hmget(self.id_key, ["gen", "seq", "ck1t", "ck1s", "ck2t", "ck2s"])
        head.time()
        (gen_b, seq_b, *cks), (secs, usecs) = head.execute()
        gen = _text(gen_b)
        counter = int(seq_b or 0)
        if gen:
            self.generation = gen
        after = parse_last_event_id(last_event_id, gen)
        rv = Replay(gen, [], 0)
        if after is None or after < 0 or after > counter:
            rv.reason = RESET_UNKNOWN_ID
        else:
            rv.after = rv.position = after
        after = rv.after
        # Channels whose record expired were last published before the
        # record TTL: at most the counter at a checkpoint inside it.
        now = secs * 1000 + usecs // 1000
        floor = counter
        for t, s in ((cks[0], cks[1]), (cks[2], cks[3])):
            if t is not None and int(t) >= now - 2 * self.ttl_ms:
                floor = min(floor, int(s))
        size = self.history_size
        pipe = self.redis.pipeline(transaction=False)
        for ch in names:
            pipe.xrevrange(self.stream_key(ch), min=f"{after + 1}-0", count=size + 1)
            pipe.hmget(self.record_key(ch), ["last", "trimmed"])
        results = pipe.execute()
        for i, ch in enumerate(names):
            entries, (last, trimmed) = results[2 * i], results[2 * i + 1]
            if len(entries) > size:
                rv.lost(int(entries[size][0].split(b"-", 1)[0]))
                del entries[size:]
            if trimmed is not None and int(trimmed) > after:
                rv.lost(int(trimmed))
            if last is None:
                if not entries and after < floor:
                    rv.lost(floor)  # its record may have expired
            elif not entries and int(last) > after:
                rv.lost(int(last))  # the stream expired
            for entry_id, fields in entries:
                seq = int(entry_id.split(b"-", 1)[0])
                rv.events.append((seq, frame(gen, seq, ch, fields[b"b"])))
        rv.events.sort(key=lambda item: item[0])
        return rv


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii")
    return value or ""


class RedisBroker(Broker):
    """Channels through Redis (``STREAMING_BROKER_URL = "redis://..."``).

    :param history_ttl: seconds a channel's history is kept after its last
        publish (``STREAMING_HISTORY_TTL``).
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "flask_streaming",
        history_ttl: float = 3600.0,
        **kwargs: int,
    ) -> None:
        super().__init__(**kwargs)
        self.publisher = RedisPublisher(
            url, prefix=prefix, history_size=self.history_size, history_ttl=history_ttl
        )
        self.redis = self.publisher.redis
        self.generation = ""
        self.last_seen = 0
        self._listener: Any = None
        self._starting: Any = None
        self._stopping = False
        self.reconnects = 0

    def _publish(self, event: EncodedEvent) -> str:
        return self.publisher.publish_event(event)

    def _send_control(self, message: dict[str, Any]) -> None:
        self.publisher.send_control(message)

    def _on_control(self, data: bytes) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            logger.warning("flask_streaming: ignored a malformed control message")
            return
        if isinstance(message, dict):
            self.on_control(message)

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
            self.generation, self.last_seen = self.publisher.position()
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
                events = self.publisher.pubsub_channel
                pubsub.subscribe(self.publisher.control_channel, events)
                # Catch up only once Redis confirmed the subscription, and
                # also on the first connection: events published between
                # on_first_subscriber (which read the counter) and the
                # SUBSCRIBE reached no one yet. Subscribers drop the ids
                # they already have.
                deadline = time.monotonic() + 10
                while (msg := pubsub.get_message(timeout=1.0)) is None or (
                    msg["type"] != "subscribe" or _text(msg["channel"]) != events
                ):
                    if time.monotonic() > deadline:
                        raise redis.TimeoutError("Redis did not confirm SUBSCRIBE")
                self._catch_up()
                backoff = 0.05
                while not self._stopping:
                    msg = pubsub.get_message(timeout=1.0)
                    if msg is None or msg["type"] != "message":
                        continue
                    if _text(msg["channel"]) == events:
                        self._on_message(msg["data"])
                    else:
                        self._on_control(msg["data"])
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
        if self._lock is not None:  # threads: exclusive with attach
            with self._lock:
                self._message(data)
        else:
            self._message(data)

    def _message(self, data: bytes) -> None:
        gen_b, _, rest = data.partition(b" ")
        head, _, rest = rest.partition(b" ")
        channel_b, _, body = rest.partition(b" ")
        gen, seq = gen_b.decode("ascii"), int(head)
        if gen != self.generation:
            self._ids_went_back(gen, seq)
            return
        # Lower or equal seqs: the catch-up brought them already; each
        # subscriber drops what it has.
        self.last_seen = max(self.last_seen, seq)
        channel = channel_b.decode("ascii")
        self.fanout(channel, seq, frame(gen, seq, channel, body))

    def _ids_went_back(self, gen: str, seq: int) -> None:
        """Redis lost data (or may have): end every stream here, so that its
        client comes back and gets a ``stream-reset``; never lower ids on an
        open stream."""
        logger.warning(
            "flask_streaming: Redis event ids went back (%s-%d after %s-%d); "
            "ending the open streams",
            gen,
            seq,
            self.generation,
            self.last_seen,
        )
        if self._lock is not None:
            with self._lock:
                self.generation, self.last_seen = gen, seq
                self.end_local_streams(None, "broker_reset")
        else:
            self.generation, self.last_seen = gen, seq
            self.end_local_streams(None, "broker_reset")

    def _catch_up(self) -> None:
        """After a (re)connect: deliver what was published meanwhile; end
        the streams when ids went back or events were lost meanwhile."""
        gen, counter = self.publisher.position()
        if gen != self.generation or counter < self.last_seen:
            self._ids_went_back(gen, counter)
            return
        if not self.subscribers:
            self.last_seen = counter
            return
        replay = self.publisher.replay(list(self.subscribers), format_id(gen, self.last_seen))
        if replay.generation != self.generation or replay.reason is not None:
            self._ids_went_back(replay.generation, counter)
            return
        if self._lock is not None:
            with self._lock:
                self._fanout_all(replay.events)
        else:
            self._fanout_all(replay.events)

    def _fanout_all(self, events: list[tuple[int, bytes]]) -> None:
        for seq, raw in events:
            channel = raw.split(b"\n", 2)[1][len(b"channel: ") :].decode("ascii")
            self.last_seen = max(self.last_seen, seq)
            self.fanout(channel, seq, raw)

    # -- history ---------------------------------------------------------

    def replay(self, channels: Iterable[str], last_event_id: str) -> Replay:
        return self.publisher.replay(channels, last_event_id)

    def current_seq(self) -> int:
        return self.last_seen

    def close(self) -> None:
        self._stopping = True
        listener, self._listener = self._listener, None
        if listener is not None and hasattr(listener, "kill"):
            listener.kill(block=True, timeout=2)
        self.redis.close()
