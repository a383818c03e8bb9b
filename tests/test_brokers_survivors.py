"""Tests written for mutants of the ``brokers`` mutation slice
(``brokers/base.py``, ``memory.py``, ``redis.py``) that survived the suite
(docs/testing.rst, "Mutation testing"). Each states a behaviour of the
brokers; each docstring names the mutant it was written for, and each was
seen failing against that mutant, applied by hand. Redis is a real
redis-server (one per session, a key prefix per test)."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_lib
from flask import Flask

from flask_streaming import Streaming
from flask_streaming.brokers import Broker, MemoryBroker
from flask_streaming.brokers.base import Replay
from flask_streaming.brokers.redis import SOCKET_TIMEOUT, RedisBroker, RedisPublisher
from flask_streaming.settings import Settings
from flask_streaming.testing import GunicornServer, RedisServer

from .resume_support import Conn, data_of, seq
from .test_channels import Stream, streaming_of

ROOT = Path(__file__).resolve().parent.parent
_prefixes = itertools.count(1)


def prefix() -> str:
    """A key prefix of its own for each broker on the shared redis-server."""
    return f"survivors{next(_prefixes)}-{time.monotonic_ns()}"


# -- an event that goes live while a resume's replay is being fetched ------


class PublishingMidReplay:
    """A broker mixin that runs ``meanwhile`` once its replay is read and
    before the resume is handed to the subscriber: the moment another
    publisher may publish."""

    meanwhile: Callable[[], None] | None = None

    def replay(self, channels: Iterable[str], last_event_id: str) -> Replay:
        rv: Replay = super().replay(channels, last_event_id)  # type: ignore[misc]
        if self.meanwhile is not None:
            self.meanwhile()
        return rv


class MemoryBrokerPublishingMidReplay(PublishingMidReplay, MemoryBroker):
    """:class:`PublishingMidReplay` for the memory broker."""


class RedisBrokerPublishingMidReplay(PublishingMidReplay, RedisBroker):
    """:class:`PublishingMidReplay` for Redis."""


@pytest.fixture(params=["memory", "redis"])
def racing_broker(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[Broker]:
    broker: MemoryBrokerPublishingMidReplay | RedisBrokerPublishingMidReplay
    if request.param == "memory":
        broker = MemoryBrokerPublishingMidReplay()
    else:
        broker = RedisBrokerPublishingMidReplay(redis_server.url, prefix=prefix())

    def publish_live() -> None:
        broker.meanwhile = None
        broker.publish("news", "meanwhile")
        # Redis: the event reaches this process through its listener; wait
        # until the resuming subscriber has it among its pending events.
        deadline = time.monotonic() + 10
        while not any(s.pending for s in broker.subscribers.get("news", ())):
            assert time.monotonic() < deadline, "the listener never delivered the event"
            time.sleep(0.005)

    broker.meanwhile = publish_live
    try:
        yield broker
    finally:
        broker.close()


def test_an_event_published_while_a_resume_is_fetched_reaches_the_resumer_once(
    racing_broker: Broker,
) -> None:
    """``if replay.generation != self.generation`` negated in
    ``Broker._resume``: the events that went live during the replay's fetch
    were dropped, and the stream positioned past them."""
    broker = racing_broker
    first = broker.publish("news", "first")
    second = broker.publish("news", "second")
    conn = Conn(broker, ["news"], first)
    try:
        after = broker.publish("news", "after")
        got = conn.wait_for(3)
        assert data_of(got) == ["second", "meanwhile", "after"]
        assert got[0].id == second and got[2].id == after
        assert seq(got[0].id) < seq(got[1].id) < seq(got[2].id)
        assert conn.resets() == []
    finally:
        conn.close()


# -- the per-client connection quota ---------------------------------------


def test_a_client_may_hold_exactly_its_quota_of_streams(tmp_path: Path) -> None:
    """``self.clients.get(sub.client, 0) + 1`` made ``get(sub.client, 1)``
    in ``Broker.attach``: a client's first stream counted twice, so a quota
    of 2 let one stream in; ``if left > 0`` negated in ``Broker.detach``:
    closing one of two streams forgot the other, so the client could open
    past its quota."""
    app = Flask("quota", instance_path=str(tmp_path))
    app.config.update(TESTING=True, STREAMING_MAX_CONNECTIONS_PER_CLIENT=2)
    Streaming(app)
    client = app.test_client()
    streams = [Stream(client, f"/streaming/events/q{i}") for i in range(2)]
    try:
        assert [s.response.status_code for s in streams] == [200, 200]
        assert not any(b"stream-error" in s.raw for s in streams)
        refused = client.get("/streaming/events/q9")
        assert refused.status_code == 429
        assert refused.get_json()["error"] == "too_many_connections"
        streams.pop().close()
        again = Stream(client, "/streaming/events/q9")
        streams.append(again)
        assert again.response.status_code == 200
        # one closed, one opened: the quota is full again
        assert client.get("/streaming/events/q8").status_code == 429
    finally:
        for s in streams:
            s.close()
    # nothing of the client stays behind: all its streams closed
    assert streaming_of(app).broker(app).clients == {}


# -- the Redis connections' timeout, as documented -------------------------


def test_the_deployment_guide_states_the_redis_socket_timeout_in_force() -> None:
    """``SOCKET_TIMEOUT = 5.0`` made ``6.0``: the guide promised that a
    Redis that never answers holds a publish for at most 5 s."""
    text = (ROOT / "docs" / "deployment.rst").read_text("utf-8")
    m = re.search(r"redis\.SOCKET_TIMEOUT`\s+\((\d+(?:\.\d+)?) s\)", text)
    assert m is not None, "docs/deployment.rst no longer states the Redis timeout"
    assert float(m.group(1)) == SOCKET_TIMEOUT


# -- the replay's floor for channels whose record expired ------------------


def test_a_resume_on_a_channel_that_never_had_events_is_no_gap(
    redis_server: RedisServer,
) -> None:
    """``cks[0]`` made ``cks[1]`` in ``RedisPublisher.replay``: the
    counter's older checkpoint (time, seq) was ignored, so a channel with no
    record was assumed to have lost events up to the newer checkpoint, and
    a client resuming after an id between the two got a ``stream-reset``
    for events that never existed."""
    # history_ttl 2 s: the record lives 4 s, the counter is checkpointed
    # every second; both checkpoints stay inside the record's lifetime.
    broker = RedisBroker(redis_server.url, prefix=prefix(), history_ttl=2.0)
    try:
        early = [broker.publish("busy", i) for i in range(3)]  # checkpoint: seq 0
        time.sleep(1.2)
        broker.publish("busy", "later")  # checkpoint: seq 3
        conn = Conn(broker, ["quiet"], early[1])
        try:
            assert conn.resets() == []
            live = broker.publish("quiet", "hello")
            got = conn.wait_for(1)
            assert [e.id for e in got] == [live] and data_of(got) == ["hello"]
        finally:
            conn.close()
    finally:
        broker.close()


def test_a_resume_on_a_channel_that_never_had_events_is_no_gap_after_the_older_checkpoint_expired(
    redis_server: RedisServer,
) -> None:
    """``cks[2]`` made ``cks[1]`` in ``RedisPublisher.replay``: once the
    older checkpoint fell out of the record's lifetime, the newer one was
    ignored too, so a channel with no record was assumed to have lost
    events up to the counter."""
    ttl = 1.5  # the record lives 3 s; the counter is checkpointed every 0.75 s
    broker = RedisBroker(redis_server.url, prefix=prefix(), history_ttl=ttl)
    r = broker.redis
    key = broker.publisher.id_key

    def redis_ms() -> int:
        secs, usecs = r.time()
        return int(secs * 1000 + usecs // 1000)

    try:
        for i in range(3):
            broker.publish("busy", i)  # checkpoint at seq 0
        time.sleep(0.9)
        third = broker.publish("busy", "later")  # checkpoint at seq 3
        ck1t, ck2t, ck2s = (int(v or 0) for v in r.hmget(key, ["ck1t", "ck2t", "ck2s"]))
        assert ck2s == seq(third) - 1 and ck2t > ck1t
        # until the older checkpoint is older than the record's lifetime
        time.sleep(max(0.0, (ck1t + 2000 * ttl + 100 - redis_ms()) / 1000))
        newest = f"{broker.publisher.generation}-{ck2s}"
        conn = Conn(broker, ["quiet"], newest)
        try:
            assert redis_ms() < ck2t + 2000 * ttl, "too slow: the newer checkpoint expired too"
            assert conn.resets() == []
            live = broker.publish("quiet", "hello")
            assert [e.id for e in conn.wait_for(1)] == [live]
        finally:
            conn.close()
    finally:
        broker.close()


def test_broker_sizes_and_event_options_are_keyword_only(redis_server: RedisServer) -> None:
    """The keyword-only ``*`` of ``Broker.__init__``, ``Publisher.publish``
    and ``encode_body`` (and of the memory and Redis brokers' constructors,
    ``RedisPublisher``'s and its ``end_streams``) made ``/``: positions were taken for sizes and for
    an event's type, so ``publish(channel, data, "7")`` (an id meant) sent
    an event of type ``7``."""
    from flask_streaming.brokers.base import encode_body

    with pytest.raises(TypeError):
        Broker(10)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        MemoryBroker(10)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        RedisBroker(redis_server.url, "other-prefix")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        RedisPublisher(redis_server.url, "other-prefix")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        RedisPublisher(redis_server.url, prefix=prefix()).end_streams(["room"], "bob")  # type: ignore[call-arg]
    for broker in (MemoryBroker(), RedisBroker(redis_server.url, prefix=prefix())):
        try:
            with pytest.raises(TypeError):
                broker.publish("room", "hi", "7")  # type: ignore[call-arg]
            # channel and data by name work as by position
            event_id = broker.publish(channel="room", data="hi", event="note")
            assert seq(event_id) >= 1
        finally:
            broker.close()
    with pytest.raises(TypeError):
        encode_body("hi", "note", None, None)  # type: ignore[call-arg]
    assert encode_body(data="hi", event="note", retry=None, dumps=None) == (
        b"event: note\ndata: hi\n\n"
    )


# -- the Redis publisher's generation and the listener's recovery ----------


def test_a_publisher_knows_the_generation_once_connected(redis_server: RedisServer) -> None:
    """``isinstance(gen, bytes)`` negated in ``RedisPublisher._on_connect``:
    the boot check's generation was kept as ``"b'...'"``, not the id's
    generation."""
    publisher = RedisPublisher(redis_server.url, prefix=prefix())
    try:
        assert publisher.generation == ""
        gen, counter = publisher.position()  # the first command connects
        assert counter == 0 and re.fullmatch(r"[0-9a-f]{8}", gen)
        assert publisher.generation == gen
        event_id = publisher.publish("room", "hi")
        assert event_id == f"{gen}-1"
    finally:
        publisher.redis.close()


def test_the_listener_comes_back_at_once_after_a_malformed_message(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """``backoff = 0.05`` made ``1.05`` in ``RedisBroker._listen``: the
    first reconnect after a failure waited a second, not 50 ms. A message
    the listener cannot read (another program's, on the events channel)
    costs one quick restart of the listener; nothing published meanwhile is
    lost."""
    broker = RedisBroker(redis_server.url, prefix=prefix())
    conn = Conn(broker, ["room"])
    try:
        first = broker.publish("room", "first")
        assert [e.id for e in conn.wait_for(1)] == [first]
        t0 = time.monotonic()
        broker.redis.publish(broker.publisher.pubsub_channel, b"not an event")
        deadline = t0 + 10
        while broker.reconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert broker.reconnects == 1
        second = broker.publish("room", "second")  # while the listener is away
        got = conn.wait_for(2)
        elapsed = time.monotonic() - t0
        assert [e.id for e in got] == [first, second]
        assert elapsed < 0.8, f"the listener took {elapsed:.2f} s to come back"
        assert "the Redis listener failed" in caplog.text
    finally:
        conn.close()
        broker.close()


def test_a_listener_refused_at_its_first_subscribe_tries_again_at_once(
    redis_factory: Callable[..., RedisServer],
) -> None:
    """``backoff = 0.05`` made ``1.05`` where ``RedisBroker._listen``
    starts: a listener whose very first ``SUBSCRIBE`` failed waited a second
    before its next try. Here Redis refuses pub/sub channels (an ACL) when
    the first subscriber arrives, and allows them a moment later."""
    server = redis_factory()
    admin = redis_lib.Redis.from_url(server.url)
    acl: Callable[..., Any] = admin.execute_command
    acl("ACL", "SETUSER", "default", "resetchannels")
    broker = RedisBroker(server.url, prefix=prefix())
    conn = Conn(broker, ["room"])
    try:
        deadline = time.monotonic() + 10
        while broker.reconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.002)
        assert broker.reconnects >= 1, "the listener was not refused"
        t0 = time.monotonic()
        acl("ACL", "SETUSER", "default", "allchannels")
        event_id = broker.publish("room", "hello")
        got = conn.wait_for(1)
        elapsed = time.monotonic() - t0
        assert [e.id for e in got] == [event_id]
        assert elapsed < 0.8, f"the listener took {elapsed:.2f} s to try again"
    finally:
        conn.close()
        broker.close()
        admin.close()


# -- defaults and positions ------------------------------------------------


def test_brokers_made_without_options_hold_the_settings_defaults(
    redis_server: RedisServer,
) -> None:
    """``history_ttl = 3600.0`` made ``3601.0`` in ``MemoryBroker`` (and any
    other default of a broker's constructor moved by one): a broker made
    directly, outside an app, kept history by other bounds than the
    documented defaults (``STREAMING_HISTORY_*``, ``STREAMING_MAX_QUEUE*``)."""
    defaults = Settings()
    now = [1000.0]
    memory = MemoryBroker(clock=lambda: now[0])
    redis_broker = RedisBroker(redis_server.url, prefix=prefix())
    publisher = RedisPublisher(redis_server.url, prefix=prefix())
    try:
        for broker in (memory, redis_broker):
            assert (broker.history_size, broker.max_queue, broker.max_queue_bytes) == (
                defaults.history_size,
                defaults.max_queue,
                defaults.max_queue_bytes,
            )
        assert memory.history_channels == defaults.history_channels
        for p in (redis_broker.publisher, publisher):
            assert (p.history_size, p.history_ttl) == (defaults.history_size, defaults.history_ttl)
        # the memory broker drops a channel idle for the TTL, not before
        before = memory.publish("idle", "a")
        memory.publish("idle", "b")
        now[0] = 1000.0 + defaults.history_ttl - 0.5
        kept = Conn(memory, ["idle"], before)
        assert kept.resets() == [] and data_of(kept.data()) == ["b"]
        kept.close()
        now[0] = 1000.0 + defaults.history_ttl
        dropped = Conn(memory, ["idle"], before)
        assert [r.json()["reason"] for r in dropped.resets()] == ["history"]
        assert dropped.data() == []
        dropped.close()
    finally:
        memory.close()
        redis_broker.close()
        publisher.redis.close()


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_stream_ended_after_a_resume_is_positioned_at_the_newest_event(
    kind: str, redis_server: RedisServer
) -> None:
    """``replay.generation == self.generation`` made ``is not`` (or ``is``:
    a Redis generation is a new string each time) in ``Broker._resume``: a
    resumed stream stayed positioned at its client's id, not at the newest
    event of the broker, so the position marker sent when the stream is
    ended (``end_streams``, a shutdown) was older than what the stream had
    been told."""
    broker: Broker = (
        MemoryBroker() if kind == "memory" else RedisBroker(redis_server.url, prefix=prefix())
    )
    mine = broker.publish("mine", "x")
    newest = [broker.publish("theirs", i) for i in range(2)][-1]
    conn = Conn(broker, ["mine"], mine)
    try:
        assert conn.resets() == [] and conn.data() == []
        assert broker.end_local_streams(None, "revoked") == 1
        assert conn.wait_end()
        assert conn.parser.last_event_id == newest
        again = Conn(broker, ["mine"], conn.parser.last_event_id)
        assert again.resets() == [] and again.data() == []
        again.close()
    finally:
        conn.close()
        broker.close()


def test_a_redis_channel_expires_its_ttl_after_its_last_publish(redis_server: RedisServer) -> None:
    """``int(self.history_ttl * 1000)`` made ``* 999`` in
    ``RedisPublisher.ttl_ms``: a channel's stream expired 0.1 % early (3.6 s
    of an hour), its record with it."""
    ttl = 3600.0
    publisher = RedisPublisher(redis_server.url, prefix=prefix(), history_ttl=ttl)
    try:
        publisher.publish("room", "hi")
        stream_ms = publisher.redis.pttl(publisher.stream_key("room"))
        record_ms = publisher.redis.pttl(publisher.record_key("room"))
        assert ttl * 1000 - 1000 < stream_ms <= ttl * 1000
        assert 2 * ttl * 1000 - 1000 < record_ms <= 2 * ttl * 1000
    finally:
        publisher.redis.close()


def test_a_malformed_control_message_is_ignored_without_a_listener_restart(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """``except ValueError`` made another exception in
    ``RedisBroker._on_control``: a control message that is not JSON (another
    program's, on the control channel) took the listener down and back up,
    instead of a warning."""
    broker = RedisBroker(redis_server.url, prefix=prefix())
    got: list[dict[str, Any]] = []
    broker.control_handler = got.append
    conn = Conn(broker, ["room"])
    try:
        first = broker.publish("room", "first")  # the listener is up once this arrives
        assert [e.id for e in conn.wait_for(1)] == [first]
        broker.redis.publish(broker.publisher.control_channel, b"{not json")
        broker.send_control({"op": "hello"})
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.005)
        assert got == [{"op": "hello"}]
        assert broker.reconnects == 0
        assert "ignored a malformed control message" in caplog.text
    finally:
        conn.close()
        broker.close()


def test_a_redis_stream_grows_an_eighth_past_its_history_before_a_trim(
    redis_server: RedisServer,
) -> None:
    """``history_size // 8`` made ``>> 8`` in ``stream_bound``: streams were
    trimmed every 8 publishes instead of every eighth of the history
    (docs/guides/channels.rst: ``HISTORY_SIZE + max(8, HISTORY_SIZE // 8)``
    entries at most, trimmed back in one go)."""
    size = 200
    bound = size + max(8, size // 8)  # as the guide states it
    publisher = RedisPublisher(redis_server.url, prefix=prefix(), history_size=size)
    key = publisher.stream_key("feed")
    try:
        lengths = []
        for i in range(bound):
            publisher.publish("feed", i)
            lengths.append(publisher.redis.xlen(key))
        assert lengths[: bound - 1] == list(range(1, bound))
        assert lengths[-1] == size
    finally:
        publisher.redis.close()


def test_a_sub_millisecond_history_ttl_still_keeps_the_stream_a_moment() -> None:
    """``max(1, ...)`` made ``max(0, ...)`` in ``RedisPublisher.ttl_ms``: a
    positive ``history_ttl`` under a millisecond gave ``PEXPIRE 0``, which
    deletes a channel's stream the moment it is written."""
    publisher = RedisPublisher("redis://127.0.0.1:1/0", history_ttl=0.0004)
    assert publisher.ttl_ms >= 1


def test_a_subscriber_may_lag_exactly_max_queue_live_events_behind_an_unread_replay() -> None:
    """``chunks -= 1`` made ``-= 0`` in ``Subscriber.deliver``: the unread
    replay counted as one event of live lag, so the ``max_queue``-th live
    event cut the stream off."""
    broker = MemoryBroker(max_queue=10)
    before = broker.publish("a", "before")
    for i in range(5):
        broker.publish("a", i)
    conn = Conn(broker, ["a"], before)  # the replay stays unread
    try:
        for i in range(10):
            broker.publish("a", f"live{i}")
        assert not conn.ended
        broker.publish("a", "one too many")
        assert conn.wait_end()
        assert conn.events[-1].event == "stream-error"
        assert data_of(conn.data()) == [*map(str, range(5)), *(f"live{i}" for i in range(10))]
    finally:
        conn.close()


def test_an_invalid_channel_name_is_echoed_back_cut_to_200_characters() -> None:
    """``str(name)[:200]`` made ``[:199]`` in ``check_channel``: the error
    named one character less of the channel than it promises."""
    from flask_streaming.brokers.base import check_channel
    from flask_streaming.errors import BadRequest

    name = "é" * 150 + "x" * 150
    with pytest.raises(BadRequest) as info:
        check_channel(name)
    assert info.value.to_dict()["channel"] == name[:200]


@pytest.mark.parametrize("protocol", [2, 3])
def test_a_durable_redis_restart_keeps_the_generation_whatever_the_protocol(
    redis_factory: Callable[..., RedisServer], protocol: int
) -> None:
    """``pairs[1::2]`` made ``pairs[0::2]`` in ``RedisPublisher._on_connect``:
    over RESP2 (``?protocol=2``; ``CONFIG GET`` answers a flat list there,
    a map over RESP3) an ``appendfsync always`` Redis was never recognised
    as durable, so every restart started a new generation and reset every
    client."""
    rs = redis_factory(persistence="always")
    publisher = RedisPublisher(f"{rs.url}?protocol={protocol}", prefix=prefix())
    try:
        first = publisher.publish("d", "before")
        rs.kill()  # a crash, then the same port and directory
        rs.start()
        publisher.redis.connection_pool.disconnect()
        after = publisher.publish("d", "after")
        assert after.rsplit("-", 1)[0] == first.rsplit("-", 1)[0]
        assert seq(after) == seq(first) + 1
    finally:
        publisher.redis.close()


# -- publishing from a real OS thread of a gevent worker -------------------


@pytest.mark.live
def test_an_event_published_from_a_real_thread_of_a_gevent_worker_goes_out_at_once(
    live_server: Callable[..., GunicornServer],
) -> None:
    """``self._ident_fn() != self._ident`` made ``is`` in
    ``_ThreadHandoff.foreign``: a publish from a real OS thread was not
    handed over to the worker's event loop; it woke no stream's writer (the
    wake-up went to a loop of that thread's own), so subscribers got the
    event only at the next heartbeat, a minute later here."""
    from .test_channels_live import Subscriber

    server = live_server("tests.apps.thread_publish_app:create_app()", workers=1)
    s = Subscriber(f"{server.url}/sub/news")
    try:
        assert s.opened.wait(10)
        r = httpx.post(f"{server.url}/publish-from-a-thread/news", timeout=10)
        assert r.status_code == 200
        got = s.wait_for(1, timeout=10)
        assert [e.data for e in got] == ["from a thread"]
    finally:
        s.stop()


def test_the_first_event_of_a_broker_published_while_a_resume_is_fetched_arrives() -> None:
    """``self.last_seq = 0`` made ``1`` in ``Subscriber.__init__``: while a
    resume's replay was fetched, the broker's very first event (seq 1) was
    taken for one the stream already had, and dropped."""
    broker = MemoryBrokerPublishingMidReplay()

    def publish_first() -> None:
        broker.meanwhile = None
        broker.publish("news", "first ever")

    broker.meanwhile = publish_first
    conn = Conn(broker, ["news"], f"{broker.generation}-0")
    try:
        assert conn.resets() == []
        got = conn.wait_for(1)
        assert data_of(got) == ["first ever"] and seq(got[0].id) == 1
    finally:
        conn.close()


def test_a_listener_refused_again_and_again_backs_off_exponentially(
    redis_factory: Callable[..., RedisServer],
) -> None:
    """``backoff * 2`` made ``backoff / 2`` in ``RedisBroker._listen``: a
    listener Redis kept refusing tried again faster and faster (50 ms, 25,
    12.5, ...), hammering a Redis in trouble, instead of waiting 50 ms, 100,
    200, 400 ... (at most 2 s) between its tries. Here Redis refuses pub/sub
    channels (an ACL) for 1.5 s."""
    server = redis_factory()
    admin = redis_lib.Redis.from_url(server.url)
    acl: Callable[..., Any] = admin.execute_command
    acl("ACL", "SETUSER", "default", "resetchannels")
    broker = RedisBroker(server.url, prefix=prefix())
    conn = Conn(broker, ["room"])
    try:
        deadline = time.monotonic() + 10
        while broker.reconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.002)
        assert broker.reconnects >= 1, "the listener was not refused"
        time.sleep(1.5)
        # sleeps of 0.05, 0.1, 0.2, 0.4, 0.8 s: 5 tries, a 6th if slow
        tries = broker.reconnects
        assert 3 <= tries <= 6, f"{tries} tries in 1.5 s"
        acl("ACL", "SETUSER", "default", "allchannels")
        event_id = broker.publish("room", "hello")
        assert [e.id for e in conn.wait_for(1, timeout=10)] == [event_id]
    finally:
        conn.close()
        broker.close()
        admin.close()


def test_a_resume_past_an_odd_history_size_still_in_the_redis_stream_is_a_gap(
    redis_server: RedisServer,
) -> None:
    """``count=size + 1`` made ``size | 1`` in ``RedisPublisher.replay``:
    with an odd ``history_size`` the replay read no entry past the history,
    so a client further behind than ``history_size`` events, whose older
    events were still in the stream (not yet trimmed: it holds up to
    :func:`stream_bound` entries), got the newest ``history_size`` events
    without the ``stream-reset`` that tells it the rest is missing."""
    size = 5
    broker = RedisBroker(redis_server.url, prefix=prefix(), history_size=size)
    try:
        ids = [broker.publish("odd", i) for i in range(8)]  # 8 < 5 + 8: no trim yet
        assert broker.redis.xlen(broker.publisher.stream_key("odd")) == 8
        conn = Conn(broker, ["odd"], ids[0])
        try:
            resets = conn.resets()
            assert [r.json()["reason"] for r in resets] == ["history"]
            # the newest missing event: the one before the replayed ones
            assert resets[0].id == ids[2]
            assert data_of(conn.data()) == [str(i) for i in range(3, 8)]
        finally:
            conn.close()
    finally:
        broker.close()


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_an_explicit_id_equal_to_the_last_one_is_refused(
    kind: str, redis_server: RedisServer
) -> None:
    """``min_seq <= self.seq`` made ``<`` in ``MemoryBroker._publish``: an
    explicit id equal to the last seq was taken, so two events had the same
    id and a client resuming after it missed the second (the docstring of
    ``publish``: an explicit id must be *above* the last seq). Redis's script
    refuses it too."""
    broker: Broker = (
        MemoryBroker() if kind == "memory" else RedisBroker(redis_server.url, prefix=prefix())
    )
    try:
        first = broker.publish("c", "first", id=7)
        assert seq(first) == 7
        with pytest.raises((ValueError, redis_lib.ResponseError)):
            broker.publish("c", "again", id=7)
        conn = Conn(broker, ["c"], f"{first.rsplit('-', 1)[0]}-6")
        try:
            got = conn.data()
            assert [e.id for e in got] == [first] and data_of(got) == ["first"]
        finally:
            conn.close()
        assert seq(broker.publish("c", "next", id=8)) == 8
    finally:
        broker.close()


def test_a_history_ttl_of_a_millisecond_or_less_is_one_millisecond() -> None:
    """``max(1, ...)`` made ``max(2, ...)`` in ``RedisPublisher.ttl_ms``: a
    ``history_ttl`` of 1 ms (or less, but above 0) kept a channel's stream
    2 ms; the floor is the smallest ``PEXPIRE`` that keeps it at all, 1 ms.
    (``max(0, ...)`` is the test above.)"""
    for ttl in (0.0004, 0.001, 0.0019):
        assert RedisPublisher("redis://127.0.0.1:1/0", history_ttl=ttl).ttl_ms == 1
    assert RedisPublisher("redis://127.0.0.1:1/0", history_ttl=0.002).ttl_ms == 2


def test_a_redis_resume_from_before_a_trim_is_a_gap_and_from_the_trim_point_none(
    redis_server: RedisServer,
) -> None:
    """``int(trimmed) > after`` made ``==`` in ``RedisPublisher.replay``:
    right after a trim the stream holds exactly ``history_size`` entries, so
    only the record's ``trimmed`` tells that a client from before it missed
    events (it got the rest with no ``stream-reset``), and a client at
    exactly the trimmed seq, which missed nothing, got a reset."""
    size = 5
    broker = RedisBroker(redis_server.url, prefix=prefix(), history_size=size)
    try:
        # the 13th publish reaches stream_bound(5) = 13 entries: trimmed back to 5
        ids = [broker.publish("t", i) for i in range(13)]
        publisher = broker.publisher
        assert broker.redis.xlen(publisher.stream_key("t")) == size
        assert int(broker.redis.hget(publisher.record_key("t"), "trimmed")) == seq(ids[7])
        behind = Conn(broker, ["t"], ids[0])
        at_trim = Conn(broker, ["t"], ids[7])
        try:
            resets = behind.resets()
            assert [r.json()["reason"] for r in resets] == ["history"]
            assert resets[0].id == ids[7]
            assert data_of(behind.data()) == [str(i) for i in range(8, 13)]
            assert at_trim.resets() == []
            assert data_of(at_trim.data()) == [str(i) for i in range(8, 13)]
        finally:
            behind.close()
            at_trim.close()
    finally:
        broker.close()


def test_a_subscriber_whose_replay_was_sent_may_lag_exactly_max_queue_live_events() -> None:
    """``self.backlog = 0`` made ``-1`` in ``Subscriber.deliver``: once the
    writer had taken the replay, every later live event counted one chunk
    less (and one byte more) of lag, so a subscriber was cut off one event
    late, at ``max_queue + 1`` events behind."""
    broker = MemoryBroker(max_queue=10)
    before = broker.publish("a", "before")
    for i in range(5):
        broker.publish("a", i)
    conn = Conn(broker, ["a"], before)
    try:
        assert data_of(conn.data()) == [str(i) for i in range(5)]  # the writer took the replay
        for i in range(10):
            broker.publish("a", f"live{i}")
        assert not conn.ended
        broker.publish("a", "one too many")
        assert conn.wait_end()
        assert conn.events[-1].event == "stream-error"
        assert data_of(conn.data()) == [*map(str, range(5)), *(f"live{i}" for i in range(10))]
    finally:
        conn.close()
