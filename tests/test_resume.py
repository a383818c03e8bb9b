"""The resume contract (docs/guides/channels.rst, "The resume contract"):
the four failing inputs of issue 12 as regression tests, on both brokers,
plus the bounds it relies on. Redis tests run a real redis-server."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

from flask_streaming.brokers import Broker, MemoryBroker
from flask_streaming.brokers.redis import RedisBroker, stream_bound
from flask_streaming.testing import RedisServer

from .resume_support import Conn, data_of, gen, seq


@pytest.fixture(params=["memory", "redis"])
def make_broker(
    request: pytest.FixtureRequest, redis_factory: Callable[..., RedisServer]
) -> Iterator[Callable[..., Broker]]:
    """Factory of brokers of one kind (Redis: one server for the test)."""
    brokers: list[Broker] = []
    url = redis_factory().url if request.param == "redis" else ""

    def make(**kwargs: Any) -> Broker:
        broker: Broker = (
            MemoryBroker(**kwargs) if request.param == "memory" else RedisBroker(url, **kwargs)
        )
        brokers.append(broker)
        return broker

    try:
        yield make
    finally:
        for broker in brokers:
            broker.close()


# -- failing input 1: an id the broker never issued ------------------------


@pytest.mark.parametrize("last_id", ["1", "5", "current-5", "garbage", "00000000-1"])
def test_an_id_never_issued_resets_and_swallows_no_live_event(
    make_broker: Callable[..., Broker], last_id: str
) -> None:
    broker = make_broker()
    if last_id == "current-5":  # this generation's, but never issued
        broker.publish("other", "x")
        last_id = f"{broker.generation}-5"
    conn = Conn(broker, ["news"], last_id)
    try:
        [reset] = conn.resets()
        assert reset.json()["reason"] == "unknown_id"
        ids = [broker.publish("news", i) for i in range(3)]
        got = conn.wait_for(3)
        assert [e.id for e in got] == ids and data_of(got) == ["0", "1", "2"]
        # the reset carries a position of the current generation
        assert gen(reset.id) == gen(ids[0]) and seq(reset.id) < seq(ids[0])
    finally:
        conn.close()


def test_ids_from_an_earlier_memory_broker_are_foreign() -> None:
    before = MemoryBroker()
    old = [before.publish("news", i) for i in range(3)]
    after = MemoryBroker()  # a deploy: a new process
    assert after.generation != before.generation
    new = after.publish("news", "fresh")
    conn = Conn(after, ["news"], old[-1])
    try:
        assert len(conn.resets()) == 1
        assert [e.id for e in conn.data()] == [new]
    finally:
        conn.close()


# -- failing input 2: replay keeps the newest, and signals the gap ---------


def test_replay_keeps_the_newest_events_and_resets(make_broker: Callable[..., Broker]) -> None:
    broker = make_broker(history_size=1)
    before = broker.publish("feed", "before")
    broker.publish("feed", "first")
    second = broker.publish("feed", "second")
    conn = Conn(broker, ["feed"], before)
    try:
        [reset] = conn.resets()
        assert reset.json() == {"last_event_id": before, "reason": "history"}
        assert [e.id for e in conn.data()] == [second]
        # straight back with the reset's id: no second reset, nothing lost
        again = Conn(broker, ["feed"], reset.id)
        assert again.resets() == []
        assert [e.id for e in again.data()] == [second]
        again.close()
    finally:
        conn.close()


def test_the_1001st_missed_event_arrives(make_broker: Callable[..., Broker]) -> None:
    broker = make_broker()  # history 1000
    before = broker.publish("feed", "before")
    ids = [broker.publish("feed", i) for i in range(1001)]
    conn = Conn(broker, ["feed"], before)
    try:
        assert len(conn.resets()) == 1
        assert [e.id for e in conn.data()] == ids[1:]
    finally:
        conn.close()


# -- failing input 3: no duplicates, ids never go back ---------------------


def test_the_catch_up_and_live_overlap_is_delivered_once() -> None:
    """Deterministic: an event that the catch-up and the live path both
    bring (same seq) goes out once; an older one never."""
    broker = MemoryBroker()
    conn = Conn(broker, ["a"])
    try:
        sub = conn.sub
        sub.deliver(5, b"id: g-5\ndata: five\n\n")
        sub.deliver(5, b"id: g-5\ndata: five\n\n")
        sub.deliver(4, b"id: g-4\ndata: four\n\n")
        sub.deliver(6, b"id: g-6\ndata: six\n\n")
        assert data_of(conn.data()) == ["five", "six"]
    finally:
        conn.close()


def test_overflow_resume_over_two_channels_has_no_duplicates(
    make_broker: Callable[..., Broker],
) -> None:
    broker = make_broker(history_size=100)
    first = broker.publish("a", "first")
    ids = [broker.publish("ab"[i % 2], i) for i in range(300)]
    conn = Conn(broker, ["a", "b"], first)
    try:
        assert len(conn.resets()) == 1
        got = [e.id for e in conn.data()]
        assert got == ids[-200:]  # the newest 100 of each, in order, once
        live = broker.publish("b", "live")
        assert [e.id for e in conn.wait_for(201)][-1] == live
        assert len(set(e.id for e in conn.data())) == len(conn.data())
    finally:
        conn.close()


# -- failing input 4: a replay is not live lag -----------------------------


def test_a_long_replay_is_not_cut_as_a_slow_consumer(make_broker: Callable[..., Broker]) -> None:
    broker = make_broker()  # max_queue 1000, history 1000
    before = broker.publish("a", "before")
    ids = [broker.publish(ch, i) for i in range(600) for ch in ("a", "b")]
    conn = Conn(broker, ["a", "b"], before)
    try:
        assert conn.resets() == []
        assert not conn.ended
        # live events after it are not lag either, as long as the client reads
        ids.append(broker.publish("a", "live"))
        got = conn.wait_for(1201)
        assert [e.id for e in got] == ids
        assert not any(e.event == "stream-error" for e in conn.events)
    finally:
        conn.close()


def test_live_lag_after_a_replay_is_still_cut(make_broker: Callable[..., Broker]) -> None:
    broker = make_broker(max_queue=10)
    before = broker.publish("a", "before")
    for i in range(50):
        broker.publish("a", i)
    conn = Conn(broker, ["a"], before)  # the replay stays unread
    try:
        for i in range(11):
            broker.publish("a", f"live{i}")
        assert conn.wait_end()
        assert conn.events[-1].event == "stream-error"
    finally:
        conn.close()


# -- the memory broker's gap boundary --------------------------------------


def test_memory_gap_boundary() -> None:
    broker = MemoryBroker(history_size=5)
    ids = [broker.publish("c", i) for i in range(11)]  # holds seqs 7..11
    exact = Conn(broker, ["c"], ids[5])  # after 6: nothing missing
    early = Conn(broker, ["c"], ids[4])  # after 5: seq 6 is gone
    try:
        assert exact.resets() == [] and [e.id for e in exact.data()] == ids[6:]
        [reset] = early.resets()
        assert reset.id == ids[5] and [e.id for e in early.data()] == ids[6:]
    finally:
        exact.close()
        early.close()


# -- Redis keys stay bounded; idle channels expire --------------------------


def test_redis_streams_stay_within_the_stated_bound(
    redis_factory: Callable[..., RedisServer],
) -> None:
    rs = redis_factory()
    broker = RedisBroker(rs.url, history_size=10)
    r = redis_lib.Redis.from_url(rs.url)
    try:
        lengths = []
        for i in range(200):
            broker.publish("big", i)
            lengths.append(r.xlen("flask_streaming:stream:big"))
        assert max(lengths) <= stream_bound(10) == 18
        assert min(lengths[20:]) >= 10  # trimmed to the history, not below
    finally:
        broker.close()
        r.close()


def test_redis_idle_channels_expire_and_resume_resets(
    redis_factory: Callable[..., RedisServer],
) -> None:
    rs = redis_factory()
    ttl = 0.4
    broker = RedisBroker(rs.url, history_ttl=ttl)
    r = redis_lib.Redis.from_url(rs.url)
    try:
        before = broker.publish("idle", "before")
        last = broker.publish("idle", "last")
        time.sleep(ttl + 0.2)
        assert not r.exists("flask_streaming:stream:idle")  # the stream expired ...
        assert r.exists("flask_streaming:chan:idle")  # ... its record outlives it
        conn = Conn(broker, ["idle"], before)
        [reset] = conn.resets()
        assert reset.json()["reason"] == "history" and reset.id == last and conn.data() == []
        conn.close()
        up_to_date = Conn(broker, ["idle"], last)
        assert up_to_date.resets() == []
        up_to_date.close()
        time.sleep(ttl + 0.2)
        assert r.keys("flask_streaming:*idle*") == []  # nothing of it is left
        conn = Conn(broker, ["idle"], before)
        assert len(conn.resets()) == 1  # still a reset, not silence
        conn.close()
    finally:
        broker.close()
        r.close()


# -- Redis persistence ------------------------------------------------------


def test_redis_appendfsync_always_restart_loses_nothing_and_resets_no_one(
    redis_factory: Callable[..., RedisServer],
) -> None:
    rs = redis_factory(persistence="always")
    broker = RedisBroker(rs.url)
    try:
        open_conn = Conn(broker, ["d"])
        ids = [broker.publish("d", i) for i in range(5)]
        assert len(open_conn.wait_for(5)) == 5
        rs.kill()  # a crash, then the same port and directory
        rs.start()
        time.sleep(0.2)
        ids += [broker.publish("d", i) for i in range(5, 8)]
        assert gen(ids[-1]) == gen(ids[0])  # the same generation
        got = open_conn.wait_for(8, timeout=15)
        assert [e.id for e in got] == ids and not open_conn.ended
        resumed = Conn(broker, ["d"], ids[2])
        assert resumed.resets() == [] and [e.id for e in resumed.data()] == ids[3:]
        resumed.close()
        open_conn.close()
    finally:
        broker.close()


@pytest.mark.parametrize("persistence", ["everysec", "none"])
def test_redis_restart_that_may_lose_data_starts_a_new_generation(
    redis_factory: Callable[..., RedisServer], persistence: str
) -> None:
    rs = redis_factory(persistence=persistence)
    broker = RedisBroker(rs.url)
    try:
        open_conn = Conn(broker, ["v"])
        ids = [broker.publish("v", i) for i in range(5)]
        assert len(open_conn.wait_for(5)) == 5
        rs.kill()
        rs.start()
        new = broker.publish("v", "after")  # retried on a fresh connection
        assert gen(new) != gen(ids[0])
        # the open stream ends instead of carrying ids of another generation
        assert open_conn.wait_end(15)
        assert [e.id for e in open_conn.data()] == ids
        assert open_conn.parser.last_event_id == ids[-1]
        resumed = Conn(broker, ["v"], open_conn.parser.last_event_id)
        [reset] = resumed.resets()
        assert reset.json()["reason"] == "unknown_id"
        got = [e.id for e in resumed.data()]
        assert got[-1] == new and all(gen(i) == gen(new) for i in got)
        resumed.close()
    finally:
        broker.close()


@pytest.mark.parametrize("persistence", ["always", "none"])
def test_redis_without_info_keeps_working(tmp_path: Path, persistence: str) -> None:
    """Some managed Redis disable INFO: restarts cannot be told there, so
    the generation only changes when the data is gone (documented)."""

    class NoInfo(RedisServer):
        def command(self) -> list[str]:
            return [*super().command(), "--rename-command", "INFO", ""]

    rs = NoInfo(tmp_path / "redis", persistence=persistence).start()
    broker = RedisBroker(rs.url)
    try:
        first = broker.publish("x", 1)
        rs.kill()
        rs.start()
        after = broker.publish("x", 2)
        assert (gen(after) == gen(first)) is (persistence == "always")
        conn = Conn(broker, ["x"], first)
        assert [e.id for e in conn.data()] == [after]
        assert bool(conn.resets()) is (persistence == "none")
        conn.close()
    finally:
        broker.close()
        rs.kill()


def test_redis_streams_of_an_older_dataset_do_not_block_publishing(
    redis_factory: Callable[..., RedisServer],
) -> None:
    """Streams written before the id hash (an older version, integer ids)
    hold ids above the new counter: XADD would refuse; the stale stream is
    dropped and a resume into it resets."""
    rs = redis_factory()
    r = redis_lib.Redis.from_url(rs.url)
    r.xadd("flask_streaming:stream:old", {"b": b"data: stale\n\n"}, id="5000-0")
    broker = RedisBroker(rs.url)
    try:
        first = broker.publish("old", "new")
        assert seq(first) == 1
        conn = Conn(broker, ["old"], "4999")  # an old-format id
        assert len(conn.resets()) == 1
        assert [e.id for e in conn.data()] == [first]
        conn.close()
    finally:
        broker.close()
        r.close()
