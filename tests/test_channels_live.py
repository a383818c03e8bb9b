"""Channels under a real gunicorn with gevent workers, with a real Redis."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from flask_streaming.brokers.redis import RedisPublisher
from flask_streaming.sse_wire import Event, EventParser
from flask_streaming.testing import GunicornServer

pytestmark = pytest.mark.live
APP = "tests.apps.channels_app:create_app()"


class Subscriber(threading.Thread):
    """Reads one event stream in a thread, parsing as it goes."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.headers = headers or {}
        self.parser = EventParser()
        self.events: list[Event] = []
        self.raw = b""
        self.response_headers: dict[str, str] = {}
        self.opened = threading.Event()
        self.ended = threading.Event()
        self.error: BaseException | None = None
        self._stop = False
        self.start()

    def run(self) -> None:
        try:
            with httpx.stream("GET", self.url, headers=self.headers, timeout=30) as r:
                self.response_headers = dict(r.headers)
                for chunk in r.iter_raw():
                    self.raw += chunk
                    self.events.extend(self.parser.feed(chunk))
                    self.opened.set()
                    if self._stop:
                        break
        except BaseException as exc:
            self.error = exc
        finally:
            self.opened.set()
            self.ended.set()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Event]:
        deadline = time.monotonic() + timeout
        while len(self.data_events()) < n and time.monotonic() < deadline:
            if self.ended.is_set():
                break
            time.sleep(0.02)
        return self.data_events()

    def data_events(self) -> list[Event]:
        return [e for e in self.events if e.event == "message"]

    def stop(self) -> None:
        self._stop = True


def subscribers_on_every_worker(server: GunicornServer, channel: str, workers: int) -> list[Any]:
    """Open subscriptions until each worker serves at least one."""
    subs: list[Subscriber] = []
    pids: set[str] = set()
    for _ in range(60):
        s = Subscriber(f"{server.url}/sub/{channel}")
        assert s.opened.wait(10)
        subs.append(s)
        pids.add(s.response_headers.get("x-worker-pid", ""))
        if len(pids) >= workers:
            return subs
    raise AssertionError(f"only workers {pids} answered")


def test_memory_broker_warns_when_several_workers(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    server = live_server(APP, workers=2)
    s = Subscriber(f"{server.url}/streaming/events/x")
    assert s.opened.wait(10)
    s.stop()
    log = (tmp_path / "server.log").read_text()
    # at start-up, from gunicorn's own config ...
    assert "STREAMING_BROKER_URL is memory:// but gunicorn runs 2 workers" in log
    # ... and again when a subscription arrives (servers we cannot inspect)
    assert "memory:// but the server runs several worker processes" in log


@pytest.mark.redis
def test_redis_fans_out_across_workers_with_one_pubsub_connection_each(
    live_server: Callable[..., GunicornServer], redis_factory: Callable[..., Any]
) -> None:
    # A Redis of its own: the session-wide one may still hold a pub/sub
    # connection of an earlier test's broker, which this count must not see.
    redis_server = redis_factory()
    server = live_server(APP, workers=2, env={"BROKER_URL": redis_server.url})
    subs = subscribers_on_every_worker(server, "fan", 2)
    sub_pids = {s.response_headers["x-worker-pid"] for s in subs}
    published: list[tuple[str, str]] = []
    # A new connection per publish, until both workers have published (at
    # least 10 events, at most 60): events from either worker reach the
    # subscribers of both.
    while len(published) < 60:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            r = http.post("/publish/fan", json={"data": {"n": len(published)}})
        published.append((r.json()["id"], str(r.json()["pid"])))
        if len(published) >= 10 and {pid for _, pid in published} == sub_pids:
            break
    assert len(sub_pids) == 2
    assert {pid for _, pid in published} == sub_pids, "both workers published"
    n = len(published)
    for s in subs:
        got = s.wait_for(n)
        assert [e.json()["n"] for e in got] == list(range(n))
        assert [e.id for e in got] == [i for i, _ in published]
    client = redis.Redis.from_url(redis_server.url)
    pubsub_clients = client.client_list(_type="pubsub")
    assert len(pubsub_clients) == 2, pubsub_clients
    # A standalone publisher, not a Flask app, reaches them too.
    RedisPublisher(redis_server.url).publish("fan", {"n": n})
    for s in subs:
        assert s.wait_for(n + 1)[-1].json() == {"n": n}
        s.stop()


@pytest.mark.redis
def test_redis_restart_loses_no_published_event(
    live_server: Callable[..., GunicornServer], redis_factory: Callable[..., Any]
) -> None:
    rs = redis_factory(appendonly=True)
    server = live_server(APP, workers=1, env={"BROKER_URL": rs.url})
    stay = Subscriber(f"{server.url}/streaming/events/durable")
    assert stay.opened.wait(10)
    publisher = RedisPublisher(rs.url)
    ids = [publisher.publish("durable", i) for i in range(5)]
    assert [e.data for e in stay.wait_for(5)] == ["0", "1", "2", "3", "4"]

    rs.stop(kill=True)
    time.sleep(0.5)
    rs.start()
    publisher = RedisPublisher(rs.url)
    ids += [publisher.publish("durable", i) for i in range(5, 10)]

    got = stay.wait_for(10, timeout=15)
    assert [e.data for e in got] == [str(i) for i in range(10)], stay.raw[-500:]
    assert [e.id for e in got] == ids
    resumed = Subscriber(
        f"{server.url}/streaming/events/durable", headers={"Last-Event-ID": ids[2]}
    )
    assert [e.data for e in resumed.wait_for(7)] == [str(i) for i in range(3, 10)]
    assert not any(e.event == "stream-reset" for e in resumed.events)
    stay.stop()
    resumed.stop()


@pytest.mark.redis
def test_redis_that_lost_its_data_gives_the_gap_signal(
    live_server: Callable[..., GunicornServer], redis_factory: Callable[..., Any]
) -> None:
    rs = redis_factory(appendonly=False)
    server = live_server(APP, workers=1, env={"BROKER_URL": rs.url})
    stay = Subscriber(f"{server.url}/streaming/events/volatile")
    assert stay.opened.wait(10)
    publisher = RedisPublisher(rs.url)
    for i in range(5):
        publisher.publish("volatile", i)
    assert len(stay.wait_for(5)) == 5
    rs.stop(kill=True)
    rs.start()  # empty: a new generation of ids
    # The open stream ends (never lower ids on it), its position marked ...
    assert stay.ended.wait(15)
    assert b"event: stream-reset" not in stay.raw
    assert stay.parser.retry is not None and stay.parser.retry >= 3000
    assert stay.parser.last_event_id == stay.data_events()[-1].id
    # ... and the client comes back with it: the gap signal, then live events.
    back = Subscriber(
        f"{server.url}/streaming/events/volatile",
        headers={"Last-Event-ID": stay.parser.last_event_id},
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and b"stream-reset" not in back.raw:
        time.sleep(0.05)
    assert b"event: stream-reset" in back.raw
    RedisPublisher(rs.url).publish("volatile", "after")
    assert back.wait_for(1)[-1].data == "after"
    back.stop()


def test_graceful_shutdown_sends_a_jittered_retry_and_closes(
    live_server: Callable[..., GunicornServer],
) -> None:
    server = live_server(APP, workers=1)
    subs = [Subscriber(f"{server.url}/streaming/events/bye") for _ in range(5)]
    for s in subs:
        assert s.opened.wait(10)
        assert s.parser.retry == 3000
    assert server.proc is not None
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    for s in subs:
        assert s.ended.wait(4), "stream not closed within the graceful timeout"
    assert time.monotonic() - started < 4
    retries = {s.parser.retry for s in subs}
    assert all(r is not None and 3000 <= r < 8000 for r in retries)
    assert len(retries) > 1  # jittered, not one storm
    server.proc.wait(10)


def _cycle(port: int, path: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"stream opened" not in data:
            chunk = s.recv(4096)
            assert chunk, "closed before the stream opened"
            data += chunk


def test_subscribe_abort_cycles_leave_nothing_behind(
    live_server: Callable[..., GunicornServer],
) -> None:
    server = live_server(APP, workers=1)
    stats = lambda **q: httpx.get(f"{server.url}/stats", params=q, timeout=10).json()  # noqa: E731

    def run(n: int) -> None:
        threads = [
            threading.Thread(
                target=lambda k=k: [
                    _cycle(server.port, b"/streaming/events?channel=c%d&channel=all" % (i % 50))
                    for i in range(k, n, 4)
                ]
            )
            for k in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)

    run(1000)  # warm up: allocator, caches
    time.sleep(0.5)
    before = stats(gc=1)
    started = time.monotonic()
    run(10_000)
    elapsed = time.monotonic() - started
    deadline = time.monotonic() + 5
    after = stats(gc=1)
    while after["connections"] and time.monotonic() < deadline:
        time.sleep(0.1)
        after = stats(gc=1)
    assert after["connections"] == 0
    assert after["subscribed_channels"] == 0
    assert after["open_streams"] == 0
    assert after["rss_kib"] <= before["rss_kib"] * 1.10, (before, after, elapsed)
    os.environ.get("CI")  # nothing else to check


@pytest.mark.redis
def test_redis_connections_do_not_grow_with_subscribers(
    live_server: Callable[..., GunicornServer], redis_factory: Callable[..., Any]
) -> None:
    from flask_streaming.brokers.redis import POOL_SIZE

    rs = redis_factory()
    server = live_server(APP, workers=1, env={"BROKER_URL": rs.url})
    publisher = RedisPublisher(rs.url)
    first = publisher.publish("many", "old")
    publisher.redis.close()
    # 80 browsers at once, each resuming (a replay from Redis each)
    subs = [
        Subscriber(f"{server.url}/streaming/events/many", headers={"Last-Event-ID": "0"})
        for _ in range(80)
    ]
    for s in subs:
        assert [e.id for e in s.wait_for(1)] == [first]
    watcher = redis.Redis.from_url(rs.url)
    watcher.client_setname("watcher")
    others = [c for c in watcher.client_list() if c.get("name") != "watcher"]
    assert 1 <= len(others) <= 1 + POOL_SIZE, others
    for s in subs:
        s.stop()


@pytest.mark.redis
def test_redis_down_at_subscribe_sends_the_client_back_later(
    live_server: Callable[..., GunicornServer], redis_factory: Callable[..., Any]
) -> None:
    rs = redis_factory(appendonly=True)
    server = live_server(APP, workers=1, env={"BROKER_URL": rs.url})
    first = RedisPublisher(rs.url).publish("later", "before")
    rs.stop(kill=True)
    # No silent gap: a retry hint and the end of the stream, no stream-reset.
    for headers in ({}, {"Last-Event-ID": "0"}):
        s = Subscriber(f"{server.url}/streaming/events/later", headers=headers)
        assert s.ended.wait(40), "the stream did not end while Redis was down"
        assert s.response_headers and s.error is None
        assert s.parser.retry is not None and s.parser.retry >= 3000
        assert b"stream-reset" not in s.raw
        assert s.data_events() == []
    rs.start()
    back = Subscriber(f"{server.url}/streaming/events/later", headers={"Last-Event-ID": "0"})
    assert [e.id for e in back.wait_for(1, timeout=15)] == [first]
    back.stop()
