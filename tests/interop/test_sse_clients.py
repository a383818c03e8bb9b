"""Every SSE client of the matrix, unmodified, against a real gunicorn +
gevent server (tests/interop/app.py): events in order with ids and a resume
after the stream ends, a resume across a server restart, a channel
subscription, and heartbeats over an idle stream. In every scenario the
client must hand the app no phantom event: an event with empty data and no
name that neither the app nor a documented control event (``stream-reset``,
``stream-error``) produced.

The cells and the table they prove are in ``matrix.py``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flask_streaming.testing import GunicornServer
from tests.interop import matrix
from tests.interop.clients import (
    AiohttpSSEClient,
    FetchEventSource,
    Got,
    HttpxSSE,
    NodeEventSource,
    RequestsSSE,
    SSEClient,
    SseclientPy,
    SveltekitSSE,
)
from tests.interop.conftest import APP, PING, RETRY_MS, require_npm_clients

pytestmark = [pytest.mark.live]

APP_TYPES = {"tick", "done"}
#: Seconds the server stays down in the restart scenario.
DOWNTIME = 2.0
#: Control events the library documents; a client may see them.
CONTROL_TYPES = {"stream-reset", "stream-error"}

ADAPTERS: dict[str, type[SSEClient]] = {
    "sveltekit-sse": SveltekitSSE,
    "@microsoft/fetch-event-source": FetchEventSource,
    "eventsource": NodeEventSource,
    "httpx-sse": HttpxSSE,
    "sseclient-py": SseclientPy,
    "requests-sse": RequestsSSE,
    "aiohttp-sse-client": AiohttpSSEClient,
}


def cells(scenario: str) -> list[Any]:
    params = []
    for client, (_, _, kind, _) in matrix.CLIENTS.items():
        if kind != "sse":
            continue
        marks = [pytest.mark.matrix(client, scenario)]
        if matrix.CLIENTS[client][0] == "Chromium":
            marks.append(pytest.mark.browser)
        known = matrix.KNOWN_FAILURES.get((client, scenario))
        if known:
            marks.append(pytest.mark.xfail(strict=True, reason=known))
        params.append(pytest.param(client, marks=marks, id=client))
    return params


@pytest.fixture
def make_client(
    request: pytest.FixtureRequest, live_server: Callable[..., GunicornServer]
) -> Iterator[Callable[[str], SSEClient]]:
    """Clients stop before the servers (this fixture depends on their factory)."""
    started: list[SSEClient] = []

    def make(name: str) -> SSEClient:
        cls = ADAPTERS[name]
        if cls.runtime in ("Node", "Chromium"):
            require_npm_clients()
        if cls.runtime == "Chromium":
            browser = request.getfixturevalue("browser")
            client: SSEClient = cls(browser, RETRY_MS)  # type: ignore[call-arg]
        else:
            client = cls()
        started.append(client)
        return client

    try:
        yield make
    finally:
        for client in started:
            client.stop()


def wait_for(
    client: SSEClient, done: Callable[[list[Got]], bool], timeout: float, what: str
) -> list[Got]:
    deadline = time.monotonic() + timeout
    while True:
        got = client.received()
        if done(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{client.name}: {what} not seen within {timeout}s; got {got}")
        time.sleep(0.05)


def ticks(got: list[Got]) -> list[Got]:
    return [e for e in got if e.type == "tick"]


def check_no_phantoms(got: list[Got]) -> None:
    phantoms = [e for e in got if e.type in ("", "message") and e.data == ""]
    assert phantoms == [], f"phantom events (empty data, no name): {phantoms}"
    unexpected = [e for e in got if e.type not in APP_TYPES | CONTROL_TYPES]
    assert unexpected == [], f"events the app never sent: {unexpected}"


def requests_log(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "instance" / "requests.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("name", cells("order"))
def test_events_in_order_then_resume_after_the_stream_ends(
    name: str, make_client: Callable[[str], SSEClient], interop_server: GunicornServer,
    tmp_path: Path,
) -> None:  # fmt: skip
    client = make_client(name)
    client.start(interop_server.url + "/count?per=10&total=20&every=0.01")
    got = wait_for(client, lambda g: any(e.type == "done" for e in g), 20, "the done event")
    check_no_phantoms(got)
    got = got[: next(i for i, e in enumerate(got) if e.type == "done")]
    assert [e.id for e in ticks(got)] == [str(n) for n in range(1, 21)]
    assert [json.loads(e.data)["n"] for e in ticks(got)] == list(range(1, 21))
    if isinstance(client, SveltekitSSE):  # what its documented store API gives the app
        assert client.selected() == [{"n": n} for n in range(1, 21)]
    log = requests_log(tmp_path)
    opened = [r for r in log if "end" not in r]
    assert [r["last_event_id"] for r in opened[:2]] == [None, "10"], opened
    first_end = next(r for r in log if r.get("end") == 10)
    waited = opened[1]["at"] - first_end["at"]
    assert waited >= 0.9 * RETRY_MS / 1000, f"reconnected after {waited:.3f}s, retry is 700 ms"


@pytest.mark.parametrize("name", cells("restart"))
def test_resume_after_a_server_restart(
    name: str, make_client: Callable[[str], SSEClient], interop_server: GunicornServer,
    tmp_path: Path,
) -> None:  # fmt: skip
    client = make_client(name)
    client.start(interop_server.url + "/count?per=0&total=0&every=0.05")
    wait_for(client, lambda g: len(ticks(g)) >= 5, 20, "5 events")
    restarted_at = time.time()
    interop_server.stop()
    time.sleep(DOWNTIME)  # reconnect attempts meet a closed port first
    before = len(ticks(client.received()))  # read after the delivery of the last ones
    interop_server.start()
    got = wait_for(client, lambda g: len(ticks(g)) >= before + 5, 40, "5 events after the restart")
    check_no_phantoms(got)
    ids = [int(e.id) for e in ticks(got)]
    assert ids == list(range(1, len(ids) + 1)), "an event was lost or repeated"
    again = [r for r in requests_log(tmp_path) if "end" not in r and r["at"] > restarted_at]
    assert again and again[0]["last_event_id"] == str(before), again


@pytest.mark.parametrize("name", cells("channel"))
def test_channel_events_with_the_channel_field(
    name: str, make_client: Callable[[str], SSEClient], interop_server: GunicornServer
) -> None:
    # The raw stream really carries the field the clients must ignore.
    with httpx.stream("GET", interop_server.url + "/streaming/events/ticker", timeout=10) as rv:
        raw = b""
        for chunk in rv.iter_bytes():
            raw += chunk
            if raw.count(b"channel: ticker") >= 1:
                break
    client = make_client(name)
    client.start(interop_server.url + "/streaming/events/ticker")
    # 7 events in a row span at least one pause between bursts of 5.
    got = wait_for(client, lambda g: len(ticks(g)) >= 7, 20, "7 channel events")
    check_no_phantoms(got)
    ns = [json.loads(e.data)["n"] for e in ticks(got)]
    assert ns == list(range(ns[0], ns[0] + len(ns))), ns
    ids = [e.id for e in ticks(got)]
    assert all(ids) and len(set(ids)) == len(ids), ids


@pytest.mark.redis
@pytest.mark.parametrize("name", cells("channel-restart"))
def test_channel_resume_across_a_server_restart_with_redis(
    name: str, make_client: Callable[[str], SSEClient], live_server: Callable[..., GunicornServer],
    redis_server: Any, bundles: Any,
) -> None:  # fmt: skip
    from flask_streaming.brokers.redis import RedisPublisher

    prefix = f"interop-{uuid.uuid4().hex[:8]}"
    config = {"STREAMING_BROKER_URL": redis_server.url, "STREAMING_REDIS_PREFIX": prefix}
    env = {
        "RETRY": str(RETRY_MS), "PING": str(PING), "INTEROP_BUNDLES": str(bundles),
        "TUS_APP_CONFIG": json.dumps(config),
    }  # fmt: skip
    server = live_server(APP, env=env)
    publisher = RedisPublisher(redis_server.url, prefix=prefix)
    stop = threading.Event()

    def publish() -> None:  # another process's role: it keeps publishing all along
        n = 0
        while not stop.is_set():
            n += 1
            publisher.publish("feed", {"n": n}, event="tick")
            stop.wait(0.1)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        client = make_client(name)
        client.start(server.url + "/streaming/events/feed")
        wait_for(client, lambda g: len(ticks(g)) >= 5, 20, "5 channel events")
        server.stop()
        time.sleep(DOWNTIME)  # events published meanwhile must be replayed
        before = len(ticks(client.received()))
        server.start()
        got = wait_for(
            client, lambda g: len(ticks(g)) >= before + 30, 40, "30 events after the restart"
        )
    finally:
        stop.set()
        thread.join(5)
    check_no_phantoms(got)
    ns = [json.loads(e.data)["n"] for e in ticks(got)]
    assert ns == list(range(ns[0], ns[0] + len(ns))), f"lost or repeated: {ns}"


@pytest.mark.parametrize("name", cells("idle"))
def test_heartbeats_over_an_idle_stream_after_an_id(
    name: str, make_client: Callable[[str], SSEClient], interop_server: GunicornServer
) -> None:
    assert PING == 0.2
    client = make_client(name)
    client.start(interop_server.url + "/idle?idle=1.5")
    got = wait_for(client, lambda g: any(e.type == "done" for e in g), 20, "the done event")
    time.sleep(0.3)  # heartbeats and a reconnect after the end: still nothing extra
    got = client.received()
    check_no_phantoms(got)
    assert [(e.type, e.id) for e in got[:2]] == [("tick", "1"), ("tick", "2")], got


def test_the_idle_stream_sends_heartbeats(interop_server: GunicornServer) -> None:
    """What the idle scenario relies on: heartbeats during the silence."""
    with httpx.stream("GET", interop_server.url + "/idle?idle=1.5", timeout=10) as rv:
        raw = b"".join(rv.iter_bytes())
    _, _, rest = raw.partition(b"id: 1")
    assert b"id: 2" in rest and rest.split(b"id: 2")[0].count(b": ping") >= 4, raw
