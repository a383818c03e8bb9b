"""No phantom events on a real gunicorn + gevent server, with a short
heartbeat (``STREAMING_PING_INTERVAL`` 0.1 s) and idle periods after an id:
the case where httpx-sse 0.4.3 used to hand the app an empty event for
every heartbeat, and fetch-event-source for every block. The headers still
go out at once, Chromium's ``EventSource`` (and our ``source()``) still see
the stream open before the first event exists, and heartbeats still flow
while the stream is idle.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from flask_streaming.client import events
from flask_streaming.sse import PING
from flask_streaming.testing import GunicornServer
from tests.sse_cases import cases_server
from tests.test_sse_wire import assert_no_phantom, httpx_sse_parser

PING_INTERVAL = 0.1

pytestmark = [pytest.mark.live]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    with cases_server(tmp_path_factory.mktemp("sse-wire-live"), PING=str(PING_INTERVAL)) as s:
        yield s


def read_until(chunks: Iterator[bytes], raw: bytes, done: Any, limit: int = 2000) -> bytes:
    for _ in range(limit):
        if done(raw):
            return raw
        raw += next(chunks)
    raise AssertionError(f"never got there: {raw[-200:]!r}")


def test_httpx_sse_app_loop_sees_only_the_apps_events(server: GunicornServer) -> None:
    """The app code that used to throw: ``json.loads`` on every event that
    httpx-sse yields, across idle periods full of heartbeats after an id."""
    with (
        httpx.Client(timeout=10) as client,
        connect_sse(client, "GET", f"{server.url}/idle?idle=0.6") as source,
    ):
        assert source.response.headers["content-type"] == "text/event-stream"
        got = [(sse.id, json.loads(sse.data)) for sse in source.iter_sse()]
    assert got == [("1", {"n": 1}), ("2", {"n": 2})]


def test_idle_stream_bytes_heartbeats_and_no_phantom(server: GunicornServer) -> None:
    raw = httpx.get(f"{server.url}/idle?idle=0.6", timeout=10).content
    assert raw.startswith(b": stream opened\nretry: 100\n")
    assert raw.count(PING) >= 4  # heartbeats kept the idle connection busy
    assert_no_phantom(raw, [("message", '{"n":1}'), ("message", '{"n":2}')])


def test_channel_stream_idle_after_an_id_no_phantom(server: GunicornServer) -> None:
    channel = "wire-" + uuid.uuid4().hex[:8]
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", f"{server.url}/streaming/events/{channel}") as r,
    ):
        assert r.headers["content-type"] == "text/event-stream"
        chunks = r.iter_raw()
        raw = read_until(chunks, b"", lambda b: b"stream opened" in b)
        client.post(f"{server.url}/publish/{channel}", params={"data": '"a"'})
        raw = read_until(chunks, raw, lambda b: b'data: "a"' in b)
        pings_before = raw.count(PING)
        raw = read_until(chunks, raw, lambda b: b.count(PING) >= pings_before + 3)
        client.post(f"{server.url}/publish/{channel}", params={"data": '"b"'})
        raw = read_until(chunks, raw, lambda b: b'data: "b"\n\n' in b)
    assert_no_phantom(raw, [("message", '"a"'), ("message", '"b"')])
    assert [json.loads(d) for _, d, _ in httpx_sse_parser(raw)] == ["a", "b"]


def test_id_only_block_is_resent_by_the_python_client(server: GunicornServer) -> None:
    """Issue item 4 as reported: ``sse_response([ServerSentEvent(id="7")],
    retry=50)``, the stream ends, ``events()`` reconnects with
    ``Last-Event-ID: 7``."""
    token = uuid.uuid4().hex
    assert list(events(f"{server.url}/id-only?token={token}", retry=5)) == []
    seen = httpx.get(f"{server.url}/seen/{token}").json()
    assert [s["last_event_id"] for s in seen] == [None, b"7".hex()]


@pytest.mark.parametrize("id_", ["7", "\u2026", "caf\u00e9 \U0001f600"])
def test_non_ascii_last_event_id_round_trips_through_the_server(
    server: GunicornServer, id_: str
) -> None:
    """The Python client sends the id as UTF-8; the server reads it back as
    the same text with ``last_event_id()``."""
    got = events(f"{server.url}/echo-id", last_event_id=id_, reconnect=False)
    assert [json.loads(e.data) for e in got] == [id_]


# --- Chromium: the stream opens before the first event ----------------------------


OPEN_BEFORE_FIRST_EVENT = """async ({token, kind}) => new Promise((resolve) => {
  // The server's generator waits for /go, which only onopen calls: the
  // first event can only exist after the client saw the stream open.
  const log = [];
  const go = () => fetch(`/go/${token}`, {method: "POST"});
  const timer = setTimeout(() => resolve(log), 15000);
  const done = (data) => { log.push(data); clearTimeout(timer); resolve(log); };
  if (kind === "EventSource") {
    const es = new EventSource(`/gated?token=${token}&ping=60`);
    es.onopen = () => { log.push("open"); go(); };
    es.onmessage = (e) => { es.close(); done(e.data); };
  } else {
    const src = fs.source(`/gated?token=${token}&ping=60`, {cache: false, reconnect: false,
                                                      onOpen: () => { log.push("open"); go(); }});
    const off = src.on("message", (e) => { off(); done(e.data); });
  }
})"""


@pytest.mark.browser
@pytest.mark.parametrize("kind", ["EventSource", "source"])
def test_stream_opens_before_the_first_event(
    server: GunicornServer, client_page: Any, kind: str
) -> None:
    log = client_page.evaluate(OPEN_BEFORE_FIRST_EVENT, {"token": uuid.uuid4().hex, "kind": kind})
    assert log == ["open", "first"]
