"""Parked streams (``STREAMING_PARK_AFTER``): an idle event stream whose
writes may go straight to the socket is handed over by gunicorn's request
greenlet, which ends; the stream then writes from short-lived greenlets of
its own.

The invariants: the client receives exactly the bytes, in the framing, that
an unparked stream would have sent (HTTP/1.1 chunked with its terminator on
a clean end, none after a failure; HTTP/1.0 as they are), in the order they
were put, with heartbeats while idle; a parked stream notices a client that
left and a client that stopped reading, and is released exactly once (its
close callbacks, ``open_stream_count``); gunicorn's ``close()`` at the
hand-over does not end it; it keeps no server objects. In-process tests use
gunicorn's own request loop (tests/served.py); the live ones a real
gunicorn with the gevent worker.
"""

from __future__ import annotations

import gc
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import gevent
import httpx
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from flask_streaming.sse_wire import PING
from flask_streaming.testing import GunicornServer
from flask_streaming.transport import ResponseBody, open_stream_count, parked_stream_count
from tests.served import EVENTS, PRELUDE, WAIT, Served, dechunk, put_while_idle, split_response
from tests.test_channels_live import Subscriber
from tests.tls import self_signed_certificate

PARK = 0.05
APP = "tests.apps.channels_app:create_app()"


def wait_parked(served: Served) -> ResponseBody:
    """Wait until *served*'s stream is parked; return its body."""
    with gevent.Timeout(WAIT, AssertionError("the stream did not park")):
        while not (served.body is not None and served.body.parked):
            gevent.sleep(0.01)
    return served.body


def parked(**options: Any) -> tuple[Served, ResponseBody]:
    """A stream served with ``park_after=PARK`` (and *options*), its
    prelude read, once it is parked."""
    served = Served(park_after=PARK, **options)
    served.read_until(1)
    return served, wait_parked(served)


def read_all(served: Served) -> bytes:
    """Read until the server closes the connection."""
    with gevent.Timeout(WAIT):
        while data := served.client.recv(65536):
            served.raw += data
    served.client.close()
    return served.raw


def chunks_so_far(body: bytes) -> bytes:
    """The data of the complete chunks at the start of a chunked body."""
    out, pos = [], 0
    while m := re.compile(rb"([0-9A-F]+)\r\n").match(body, pos):
        size = int(m.group(1), 16)
        end = m.end() + size + 2
        if size == 0 or len(body) < end:
            break
        assert body[end - 2 : end] == b"\r\n", body[pos:end]
        out.append(body[m.end() : end - 2])
        pos = end
    return b"".join(out)


def test_an_idle_stream_parks_and_its_events_arrive_as_before() -> None:
    before = open_stream_count()
    served, body = parked()
    with gevent.Timeout(WAIT):
        served.greenlet.join()  # gunicorn's request greenlet is done ...
    assert served.greenlet.successful(), served.greenlet.exception  # ... cleanly
    assert not body.closed and open_stream_count() == before + 1
    assert parked_stream_count() >= 1
    # what it keeps of the environ: plain values only
    assert "gunicorn.socket" not in body.environ and "wsgi.input" not in body.environ
    assert body.remote_addr == "127.0.0.1"
    put_while_idle(served, EVENTS)
    raw = served.finish()
    head, rest = split_response(raw)
    assert b"Transfer-Encoding: chunked" in head
    data, _ = dechunk(rest)  # strict: ends with the last chunk
    assert data == PRELUDE + b"".join(EVENTS)
    assert body.closed and body.reason == "complete"
    assert open_stream_count() == before


def test_a_burst_while_parked_arrives_whole_and_in_order() -> None:
    served, _ = parked()
    burst = [b"id: %d\ndata: %s\n\n" % (i, b"x" * (i % 300)) for i in range(500)]
    for ev in burst:  # one greenlet, no switch: the first goes straight out
        assert served.outbox.put(ev)
    served.idle()
    wait_parked(served)  # idle again after the burst: parked again ...
    assert served.outbox.direct is served.body  # ... and writing straight out
    put_while_idle(served, EVENTS)
    data, _ = dechunk(split_response(served.finish())[1])
    assert data == PRELUDE + b"".join(burst) + b"".join(EVENTS)


def drain(served: Served) -> bytes:
    """Read what arrives within 0.1 s; return the data of the complete
    chunks read so far."""
    with gevent.Timeout(0.1, False):
        while data := served.client.recv(65536):
            served.raw += data
    return chunks_so_far(split_response(served.raw)[1])


def test_a_fan_out_to_parked_streams_leaves_no_object_per_stream_to_collect() -> None:
    """With tens of thousands of subscribers, objects the garbage collector
    tracks, allocated per subscriber during one publish, trigger a
    collection in its middle that delays the last of them by a pass over
    the whole heap (idle-max: 480 ms instead of 190 to reach 18,500)."""
    streams = [Served(park_after=PARK) for _ in range(40)]
    for served in streams:
        served.read_until(1)
    for served in streams:
        wait_parked(served)
    event = b"data: to all\n\n"
    gc.disable()
    try:
        before = gc.get_count()[0]
        for served in streams:  # as a broker's fan-out: one greenlet, no switch
            assert served.outbox.put(event)
        grown = gc.get_count()[0] - before
    finally:
        gc.enable()
    assert grown < 10, f"{grown} objects for the collector for {len(streams)} streams"
    for served in streams:
        assert served.outbox.direct_at > 0  # it went straight out
        served.idle()
        assert served.body is not None and served.outbox.direct is served.body  # re-armed
        data, _ = dechunk(split_response(served.finish())[1])
        assert data == PRELUDE + event


def test_heartbeats_continue_while_parked_counting_writes_straight_out() -> None:
    served, _ = parked(ping=0.3)
    # an event every 0.1 s for 0.9 s: no heartbeat is due meanwhile
    for i in range(9):
        assert served.outbox.put(b"data: %d\n\n" % i)
        gevent.sleep(0.1)
    assert drain(served).count(b":\n") == 0, served.raw
    assert served.body is not None and served.body.parked
    # then idle for 1 s: a heartbeat every 0.3 s
    gevent.sleep(1.0)
    assert 2 <= drain(served).count(b":\n") <= 4, served.raw
    served.finish()


def test_a_client_that_leaves_a_parked_stream_releases_it() -> None:
    closed: list[str | None] = []
    served, body = parked()
    body.on_close = (lambda: closed.append(body.reason),)
    served.client.close()  # FIN: the idle watcher sees EOF
    with gevent.Timeout(WAIT, AssertionError("not released")):
        while not body.closed:
            gevent.sleep(0.01)
    assert closed == ["disconnect"]
    assert served.outbox.put(b"data: late\n\n") is False


def test_a_write_that_goes_out_half_way_while_parked_keeps_its_rest_first() -> None:
    served, _ = parked(rcvbuf=4096)
    big = b"data: " + b"y" * (1 << 20) + b"\n\n"
    assert served.outbox.put(big)  # straight out, half-way: the rest waits
    assert served.outbox.put(b"data: after\n\n")
    served.read_until(len(big))
    served.idle()
    data, _ = dechunk(split_response(served.finish())[1])
    assert data == PRELUDE + big + b"data: after\n\n"


def test_a_burst_the_socket_takes_only_half_of_keeps_its_rest_first() -> None:
    served, _ = parked(rcvbuf=4096)
    big = b"data: " + b"q" * (8 << 20) + b"\n\n"  # more than the socket takes
    burst = [b"data: first\n\n", big, b"data: last\n\n"]
    for ev in burst:  # no switch: the first goes straight out, the rest waits
        assert served.outbox.put(ev)
    served.read_until(len(big))
    served.idle()
    put_while_idle(served, EVENTS)
    data, _ = dechunk(split_response(served.finish())[1])
    assert data == PRELUDE + b"".join(burst) + b"".join(EVENTS)


def test_a_client_that_stops_reading_a_parked_stream_is_cut_off() -> None:
    served, body = parked(rcvbuf=4096, send_timeout=0.3)
    started = time.monotonic()
    with gevent.Timeout(WAIT, AssertionError("not cut off")):
        while not body.closed:
            served.outbox.put(b"data: " + b"z" * 65536 + b"\n\n")
            gevent.sleep(0.02)
    assert body.reason == "send_timeout"
    assert time.monotonic() - started < WAIT
    served.client.close()


def test_a_client_that_stops_reading_in_the_middle_of_an_event_is_cut_off() -> None:
    served, body = parked(rcvbuf=4096, send_timeout=0.3)
    assert served.outbox.put(b"data: " + b"z" * (8 << 20) + b"\n\n")  # far more than fits
    gevent.sleep(0.1)
    served.read_until(5 << 20)  # room again: the writer sends on, then waits mid-event
    with gevent.Timeout(WAIT, AssertionError("not cut off")):
        while not body.closed:
            gevent.sleep(0.02)
    assert body.reason == "send_timeout"
    served.client.close()


def test_an_event_put_as_the_heartbeat_timer_fires_is_not_held_back() -> None:
    served, body = parked(ping=WAIT * 2)
    # The heartbeat timer fires; before the greenlet it starts runs, a
    # write went straight out and an event is queued (its wake-up finds no
    # one waiting): the writer must send it now, not at the next heartbeat.
    body._ping_due()
    served.outbox.direct_at = time.monotonic()
    served.outbox.direct = None
    assert served.outbox.put(b"data: raced\n\n")
    with gevent.Timeout(1.0, AssertionError("the event waits for the heartbeat")):
        while b"data: raced" not in drain(served):
            pass
    served.finish()


def test_heartbeats_go_on_when_the_timer_fires_as_an_event_wakes_the_stream() -> None:
    served, body = parked(ping=0.3)
    served.outbox.direct = None  # as just after a write straight out
    assert served.outbox.put(b"data: woke\n\n")  # wakes it: flushed on the hub's turn
    body._ping_due()  # the heartbeat's timer fires in the same turn
    gevent.sleep(1.0)
    got = drain(served)
    assert b"data: woke" in got
    assert got.count(b":\n") >= 2, served.raw  # heartbeats after it, every 0.3 s
    served.finish()


def test_a_parked_stream_outlives_bytes_the_client_sends() -> None:
    served, _ = parked()
    served.client.sendall(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")  # pipelined: ignored
    gevent.sleep(0.1)
    assert served.body is not None and not served.body.closed
    put_while_idle(served, EVENTS)
    data, _ = dechunk(split_response(served.finish())[1])
    assert data == PRELUDE + b"".join(EVENTS)


def test_http_1_0_parked_stream_is_unframed_and_ends_by_closing() -> None:
    served, _ = parked(version="1.0")
    put_while_idle(served, EVENTS)
    served.outbox.finish()
    _, rest = split_response(read_all(served))
    assert rest == PRELUDE + b"".join(EVENTS)


def test_a_failed_producer_leaves_a_parked_stream_truncated() -> None:
    served, _ = parked()
    served.outbox.put(b"data: one\n\n")
    served.idle()
    served.outbox.finish("error", error=b"event: stream-error\ndata: x\n\n")
    _, rest = split_response(read_all(served))
    assert chunks_so_far(rest) == PRELUDE + b"data: one\n\nevent: stream-error\ndata: x\n\n"
    assert not rest.endswith(b"0\r\n\r\n"), "a failed stream must not end cleanly"
    assert served.body is not None and served.body.closed


def never_parks(served: Served) -> None:
    served.read_until(1)
    gevent.sleep(PARK * 6)
    assert served.body is not None and not served.body.parked
    put_while_idle(served, EVENTS[:1])
    served.finish()


def passthrough(body: Iterable[bytes]) -> Iterator[bytes]:
    yield from body


def test_a_stream_never_parks_when_told_not_to_or_behind_a_middleware(tmp_path: Path) -> None:
    never_parks(Served(park_after=0.0))
    never_parks(Served(park_after=PARK, wrap=passthrough))
    openssl = shutil.which("openssl")
    assert openssl is not None, "openssl is installed by scripts/test"
    never_parks(Served(park_after=PARK, tls=self_signed_certificate(openssl, tmp_path, "x")))


class ParkedStream(RuleBasedStateMachine):
    """Puts, pauses (long enough to park, or not) and partial reads in any
    order: what the client has read is always a prefix of what was put, and
    after the end it is all of it, framed strictly."""

    def __init__(self) -> None:
        super().__init__()
        self.served = Served(park_after=0.03, ping=0.05, rcvbuf=8192)
        self.served.read_until(1)
        self.sent = PRELUDE

    @rule(size=st.integers(1, 40_000), n=st.integers(1, 3))
    def put(self, size: int, n: int) -> None:
        for _ in range(n):
            ev = b"data: " + bytes([97 + len(self.sent) % 26]) * size + b"\n\n"
            assert self.served.outbox.put(ev)
            self.sent += ev

    @rule(seconds=st.sampled_from([0.0, 0.01, 0.08]))
    def pause(self, seconds: float) -> None:
        gevent.sleep(seconds)

    @rule()
    def read_some(self) -> None:
        with gevent.Timeout(0.05, False):
            data = self.served.client.recv(65536)
            assert data, "the server closed an open stream"
            self.served.raw += data

    @invariant()
    def what_was_read_was_put(self) -> None:
        _, sep, rest = self.served.raw.partition(b"\r\n\r\n")
        if sep:
            got = chunks_so_far(rest).replace(b":\n", b"")
            assert self.sent.replace(b":\n", b"").startswith(got)

    def teardown(self) -> None:
        try:
            data, _ = dechunk(split_response(self.served.finish())[1])
            assert data.replace(b":\n", b"") == self.sent.replace(b":\n", b"")
        finally:
            self.served.client.close()


ParkedStream.TestCase.settings = settings(max_examples=12, stateful_step_count=12, deadline=None)
test_parked_stream_state_machine = ParkedStream.TestCase


@pytest.mark.live
def test_idle_subscribers_park_and_give_their_greenlets_back(
    live_server: Callable[..., GunicornServer],
) -> None:
    server = live_server(APP, workers=1, env={"PARK_AFTER": "0.2", "PING": "0.5"})
    with httpx.Client(base_url=server.url, timeout=10) as http:
        base = http.get("/stats", params={"greenlets": 1, "gc": 1}).json()["greenlets"]
        subs = [Subscriber(f"{server.url}/sub/park") for _ in range(40)]
        for s in subs:
            assert s.opened.wait(10)
        deadline = time.monotonic() + WAIT
        while (stats := http.get("/stats").json())["parked_streams"] < 40:
            assert time.monotonic() < deadline, stats
            time.sleep(0.05)
        assert stats["open_streams"] == 40
        greenlets = http.get("/stats", params={"greenlets": 1, "gc": 1}).json()["greenlets"]
        # 40 streams, and fewer greenlets than streams beyond the baseline
        assert greenlets - base < 10, (base, greenlets)
        for i in range(3):
            http.post("/publish/park", json={"data": {"n": i}})
        for s in subs:
            assert [e.json()["n"] for e in s.wait_for(3)] == [0, 1, 2]
        time.sleep(1.7)  # heartbeats while parked (every 0.5 s)
        assert all(s.raw.count(PING) >= 2 for s in subs), [s.raw.count(PING) for s in subs]
        for s in subs:
            s.stop()
        # a client gone: released (the next heartbeat or its FIN tells)
        deadline = time.monotonic() + WAIT
        while http.get("/stats").json()["open_streams"] > 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)


@pytest.mark.live
def test_graceful_shutdown_reaches_parked_streams(
    live_server: Callable[..., GunicornServer],
) -> None:
    server = live_server(APP, workers=1, env={"PARK_AFTER": "0.1"})
    subs = [Subscriber(f"{server.url}/streaming/events/bye") for _ in range(5)]
    for s in subs:
        assert s.opened.wait(10)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        deadline = time.monotonic() + WAIT
        while http.get("/stats").json()["parked_streams"] < 5:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    for s in subs:
        assert s.ended.wait(4), "a parked stream was not closed at shutdown"
    retries = {s.parser.retry for s in subs}
    assert all(r is not None and 3000 <= r < 8000 for r in retries)
    assert len(retries) > 1
    for s in subs:  # ended cleanly: the chunked terminator arrived
        assert s.error is None, s.error
    server.proc.wait(10)
