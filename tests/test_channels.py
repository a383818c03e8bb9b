"""Channels with the in-memory broker, through Flask's test client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from flask_streaming import Streaming, event_published, stream_closed, stream_opened
from flask_streaming.brokers import MemoryBroker
from flask_streaming.sse_wire import Event, EventParser


@pytest.fixture
def app(tmp_path: Any) -> Flask:
    app = Flask("channels", instance_path=str(tmp_path))
    app.config.update(
        STREAMING_PING_INTERVAL=0.2,
        STREAMING_HISTORY_SIZE=5,
        STREAMING_MAX_QUEUE=10,
        STREAMING_MAX_CONNECTIONS=3,
    )
    Streaming(app)
    return app


def streaming_of(app: Flask) -> Streaming:
    ext: Streaming = app.extensions["streaming"].extension
    return ext


class Stream:
    """An open event stream from the test client, read event by event."""

    def __init__(self, client: Any, url: str, **kwargs: Any) -> None:
        self.response = client.get(url, buffered=False, **kwargs)
        self.parser = EventParser()
        self.raw = b""
        self._it: Iterator[bytes] = iter(self.response.response)
        self.events: list[Event] = []
        self.ended = False
        self._pull()  # the first chunk: the subscription is registered by now

    def _pull(self) -> None:
        try:
            chunk = next(self._it)
        except StopIteration:
            self.ended = True
            return
        self.raw += chunk
        self.events.extend(self.parser.feed(chunk))

    def read(self, n: int, max_chunks: int = 50) -> list[Event]:
        for _ in range(max_chunks):
            if len(self.events) >= n or self.ended:
                break
            self._pull()
        return self.events

    def read_to_end(self, max_chunks: int = 100) -> list[Event]:
        for _ in range(max_chunks):
            if self.ended:
                break
            self._pull()
        assert self.ended, "the stream did not end"
        return self.events

    def close(self) -> None:
        self.response.close()


def test_publish_reaches_subscribers_with_ids_from_one_sequence(app: Flask) -> None:
    streaming = streaming_of(app)
    client = app.test_client()
    a = Stream(client, "/streaming/events/room-1")
    both = Stream(client, "/streaming/events?channel=room-1&channel=room-2")
    try:
        assert a.response.status_code == 200
        assert a.response.mimetype == "text/event-stream"
        ids = [
            streaming.publish("room-1", {"text": "hi"}),
            streaming.publish("room-2", "two", event="chat"),
            streaming.publish("room-1", "three"),
        ]
        gen = streaming.broker(app).generation
        assert ids == [f"{gen}-1", f"{gen}-2", f"{gen}-3"]
        got_a = a.read(2)
        assert [(e.id, e.data) for e in got_a] == [(ids[0], '{"text":"hi"}'), (ids[2], "three")]
        got_both = both.read(3)
        assert [(e.id, e.event, e.data) for e in got_both] == [
            (ids[0], "message", '{"text":"hi"}'),
            (ids[1], "chat", "two"),
            (ids[2], "message", "three"),
        ]
        # every event says which channel it came from
        assert b"id: %s\nchannel: room-2\nevent: chat\n" % ids[1].encode() in both.raw
        assert a.parser.retry == 3000  # a channel stream resets retry to the normal value
    finally:
        a.close()
        both.close()
    assert streaming.broker(app).connections == 0
    assert streaming.broker(app).subscribers == {}


def test_last_event_id_replays_and_header_wins_over_query(app: Flask) -> None:
    streaming = streaming_of(app)
    ids = [streaming.publish("news", f"n{i}") for i in range(4)]
    client = app.test_client()
    s = Stream(
        client, f"/streaming/events/news?last_event_id={ids[0]}", headers={"Last-Event-ID": ids[1]}
    )
    try:
        assert [e.data for e in s.read(2)] == ["n2", "n3"]
        streaming.publish("news", "live")
        assert [e.data for e in s.read(3)] == ["n2", "n3", "live"]
        assert not any(e.event == "stream-reset" for e in s.events)
    finally:
        s.close()
    q = Stream(client, f"/streaming/events/news?last_event_id={ids[2]}")
    try:
        assert [e.data for e in q.read(2)] == ["n3", "live"]
    finally:
        q.close()


def test_resume_older_than_history_gets_the_gap_signal_first(app: Flask) -> None:
    streaming = streaming_of(app)
    ids = [streaming.publish("feed", i) for i in range(12)]  # history keeps 5
    s = Stream(app.test_client(), "/streaming/events/feed", headers={"Last-Event-ID": ids[1]})
    try:
        events = s.read(6)
        assert events[0].event == "stream-reset"
        assert events[0].json() == {"last_event_id": ids[1], "reason": "history"}
        assert events[0].id == ids[6]  # the newest event no longer held
        assert [e.data for e in events[1:6]] == ["7", "8", "9", "10", "11"]
    finally:
        s.close()


@pytest.mark.parametrize("last_id", ["999", "garbage"])
def test_unknown_or_future_ids_get_the_gap_signal(app: Flask, last_id: str) -> None:
    streaming_of(app).publish("feed", "x")
    s = Stream(app.test_client(), "/streaming/events/feed", headers={"Last-Event-ID": last_id})
    try:
        assert s.read(1)[0].event == "stream-reset"
    finally:
        s.close()


def test_slow_consumer_is_cut_off_with_a_retry_hint_and_others_unaffected(app: Flask) -> None:
    streaming = streaming_of(app)
    client = app.test_client()
    reasons: list[str] = []
    stream_closed.connect(lambda sender, **kw: reasons.append(kw["reason"]), app, weak=False)
    slow = Stream(client, "/streaming/events/fast")
    fast = Stream(client, "/streaming/events/fast")
    try:
        for i in range(15):  # max_queue is 10; `slow` reads nothing meanwhile
            streaming.publish("fast", i)
            assert fast.read(i + 1)[-1].data == str(i)
        events = slow.read_to_end()
        assert events[-1].event == "stream-error"
        assert 3000 <= (slow.parser.retry or 0) < 8000
        assert len(events) <= 12
        slow.close()
        assert reasons == ["slow_consumer"]
        streaming.publish("fast", "after")
        assert fast.read(16)[-1].data == "after"
    finally:
        slow.close()
        fast.close()


def test_subscribe_errors_are_json(app: Flask) -> None:
    client = app.test_client()
    r = client.get("/streaming/events")
    assert r.status_code == 400 and r.json["error"] == "no_channel"  # type: ignore[index]
    r = client.get("/streaming/events/bad*name")
    assert r.status_code == 400 and r.json["error"] == "invalid_channel"  # type: ignore[index]
    r = client.get("/streaming/events?" + "&".join(f"channel=c{i}" for i in range(17)))
    assert r.status_code == 400 and r.json["error"] == "too_many_channels"  # type: ignore[index]
    r = client.get("/streaming/events/private-secrets")
    assert r.status_code == 403 and r.json["error"] == "forbidden"  # type: ignore[index]


def test_authorize_channel_hook_decides(app: Flask) -> None:
    streaming = streaming_of(app)
    asked: list[tuple[str, str]] = []

    @streaming.authorize_channel
    def allow(channel: str, action: str) -> bool:
        asked.append((channel, action))
        return channel in ("open", "private-mine")

    client = app.test_client()
    assert client.get("/streaming/events/closed").status_code == 403
    r = client.get("/streaming/events?channel=open&channel=closed")
    assert r.status_code == 403 and r.json["channel"] == "closed"  # type: ignore[index]
    s = Stream(client, "/streaming/events/private-mine")
    try:
        assert s.response.status_code == 200
    finally:
        s.close()
    assert ("closed", "subscribe") in asked


def test_connection_limit_answers_a_retry_stream(app: Flask) -> None:
    client = app.test_client()
    streams = [Stream(client, f"/streaming/events/c{i}") for i in range(3)]
    try:
        r = client.get("/streaming/events/c9")
        assert r.status_code == 200  # an EventSource gives up for good on anything else
        assert r.headers["Retry-After"] == "5"
        parser = EventParser()
        events = parser.feed(r.data)
        assert [e.event for e in events] == ["stream-error"]
        assert 3000 <= (parser.retry or 0) < 8000
    finally:
        for s in streams:
            s.close()
    ok = Stream(client, "/streaming/events/c9")
    try:
        assert b"stream-error" not in ok.raw
    finally:
        ok.close()


def test_signals_carry_channels(app: Flask) -> None:
    seen: list[tuple[str, Any]] = []

    def opened(sender: Flask, stream: Any, channels: tuple[str, ...], **kw: Any) -> None:
        seen.append(("opened", channels))

    def closed(sender: Flask, stream: Any, channels: tuple[str, ...], reason: str) -> None:
        seen.append(("closed", (channels, reason)))

    def published(sender: Flask, **kw: Any) -> None:
        seen.append(("published", (kw["channel"], kw["id"], kw["event"])))

    with (
        stream_opened.connected_to(opened, app),
        stream_closed.connected_to(closed, app),
        event_published.connected_to(published, app),
    ):
        s = Stream(app.test_client(), "/streaming/events?channel=a&channel=b&channel=a")
        streaming_of(app).publish("b", 1, event="x")
        s.read(1)
        s.close()
    assert seen == [
        ("opened", ("a", "b")),
        ("published", ("b", f"{streaming_of(app).broker(app).generation}-1", "x")),
        ("closed", (("a", "b"), "disconnect")),
    ]


def test_publish_outside_a_request_and_from_a_thread(app: Flask) -> None:
    streaming = streaming_of(app)
    s = Stream(app.test_client(), "/streaming/events/bg")
    try:
        out: list[str] = []
        t = threading.Thread(target=lambda: out.append(streaming.publish("bg", "from thread")))
        t.start()
        t.join(5)
        assert out == [f"{streaming.broker(app).generation}-1"]
        assert s.read(1)[0].data == "from thread"
    finally:
        s.close()


def test_publish_needs_an_app_when_several_are_registered(tmp_path: Any) -> None:
    streaming = Streaming()
    a, b = Flask("a"), Flask("b")
    streaming.init_app(a)
    streaming.init_app(b)
    with pytest.raises(RuntimeError, match="app="):
        streaming.publish("x", 1)
    assert streaming.publish("x", 1, app=b) == f"{streaming.broker(b).generation}-1"
    with a.app_context():
        assert streaming.publish("x", 1) == f"{streaming.broker(a).generation}-1"


def test_memory_broker_explicit_ids_must_grow() -> None:
    broker = MemoryBroker()
    gen = broker.generation
    assert broker.publish("c", 1, id=10) == f"{gen}-10"
    assert broker.publish("c", 2) == f"{gen}-11"
    with pytest.raises(ValueError):
        broker.publish("c", 3, id=5)
    with pytest.raises(ValueError):
        broker.publish("c", 3, id="abc")


def test_subscribe_abort_cycles_leave_nothing_registered(app: Flask) -> None:
    from flask_streaming.transport import open_stream_count

    streaming = streaming_of(app)
    client = app.test_client()
    before = open_stream_count()
    for i in range(300):
        s = Stream(client, f"/streaming/events?channel=x{i % 7}&channel=y")
        s.close()
    assert streaming.broker(app).connections == 0
    assert streaming.broker(app).subscribers == {}
    assert open_stream_count() == before


def test_memory_broker_drops_old_channels_and_signals_the_gap() -> None:
    broker = MemoryBroker(history_channels=3, history_ttl=3600)
    for i in range(5):
        broker.publish(f"session-{i}", i)  # ids 1..5
    assert list(broker.history) == ["session-2", "session-3", "session-4"]
    gen = broker.generation
    r = broker.replay(["session-0"], f"{gen}-0")
    assert (r.events, r.reason, r.position) == ([], "history", 2)
    r = broker.replay(["session-4"], f"{gen}-4")
    assert [s for s, _ in r.events] == [5] and r.reason is None
    # a kept channel published again moves to the back
    broker.publish("session-2", "again")
    broker.publish("session-9", "new")
    assert list(broker.history) == ["session-4", "session-2", "session-9"]


def test_memory_broker_drops_channels_idle_past_the_ttl() -> None:
    now = [0.0]
    broker = MemoryBroker(history_ttl=10, clock=lambda: now[0])
    broker.publish("old", 1)
    now[0] = 10.5
    broker.publish("fresh", 2)
    assert list(broker.history) == ["fresh"]
    r = broker.replay(["old"], f"{broker.generation}-0")
    assert (r.events, r.reason, r.position) == ([], "history", 1)
    now[0] = 21
    r = broker.replay(["fresh"], f"{broker.generation}-1")
    assert (r.events, r.reason, r.position) == ([], "history", 2)
