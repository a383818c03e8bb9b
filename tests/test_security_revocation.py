"""Revoking access to open event streams (issue 18, item 8), against real
gunicorn gevent workers: ``Streaming.end_streams`` by user and by channel on
2 workers through a real redis-server, and the re-check interval."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flask_streaming.brokers.redis import RedisPublisher
from flask_streaming.testing import GunicornServer, http_request, parse_events

pytestmark = pytest.mark.live

APP = "tests.apps.security_app:create_app()"
WAIT = 15.0  # the longest any expected change may take (a failure, not a speed claim)


class Stream:
    """One open ``GET /streaming/events/<channel>`` (``Connection: close``,
    so that the end of the stream is the end of the connection)."""

    def __init__(
        self, port: int, channel: str, user: str, last_event_id: str = "", *, path: str = ""
    ) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
        headers = {"X-User": user, "Connection": "close"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.conn.request("GET", path or f"/streaming/events/{channel}", headers=headers)
        self.resp = self.conn.getresponse()
        self.user = user
        self.worker = self.resp.getheader("X-Worker")
        self.data = b""
        self.ended = False

    @property
    def status(self) -> int:
        return self.resp.status

    def read_until(self, what: Callable[[Stream], bool]) -> None:
        deadline = time.monotonic() + WAIT
        while not what(self):
            if self.ended or time.monotonic() > deadline:
                raise AssertionError(f"{self.user}, ended={self.ended}: {self.data[-500:]!r}")
            try:
                chunk = self.resp.read1(65536)
            except TimeoutError:
                continue
            if not chunk:
                self.ended = True
            self.data += chunk

    def has(self, data: str) -> bool:
        return any(e.data == data for e in parse_events(self.data))

    def wait_for(self, data: str) -> None:
        self.read_until(lambda s: s.has(data))

    def wait_end(self) -> None:
        self.read_until(lambda s: s.ended)

    def last_id(self) -> str:
        ids = [line for line in self.data.split(b"\n") if line.startswith(b"id: ")]
        return ids[-1][4:].decode()

    def close(self) -> None:
        self.conn.close()


def post(port: int, path: str, body: Any) -> int:
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    return http_request(port, "POST", path, data, headers, timeout=WAIT)[0]


def test_end_streams_of_a_user_and_of_a_channel_on_two_workers_with_redis(
    live_server: Callable[..., GunicornServer], redis_server: Any, tmp_path: Path
) -> None:
    config = {"STREAMING_BROKER_URL": redis_server.url, "STREAMING_REDIS_PREFIX": tmp_path.name}
    server = live_server(APP, workers=2, env={"SECURITY_APP_CONFIG": json.dumps(config)})
    port = server.port
    streams: list[Stream] = []
    try:
        # Bounded (100 streams, ~5 s): until bob has a stream on each worker. The
        # second worker may still be booting when the first answers, so wait a
        # little between tries rather than open many at once.
        for _ in range(100):
            streams.append(Stream(port, "news", "bob"))
            if len({s.worker for s in streams}) == 2 and len(streams) >= 3:
                break
            time.sleep(0.05)
        bob = list(streams)
        assert len({s.worker for s in bob}) == 2, "connections never reached both workers"
        alice = [Stream(port, "news", "alice") for _ in range(3)]
        carol = Stream(port, "sports", "carol")
        streams += [*alice, carol]
        assert all(s.status == 200 for s in streams)
        assert post(port, "/publish/news", "e1") == 200
        for s in [*bob, *alice]:
            s.wait_for("e1")  # every stream is live, in both workers

        # One user: bob's streams end in both workers; the others go on.
        assert post(port, "/admin/end-streams", {"user": "bob"}) == 204
        for s in bob:
            s.wait_end()
            assert b"retry: " in s.data.rsplit(b"data: e1\n", 1)[1]  # ended with a retry hint
        assert post(port, "/publish/news", "e2") == 200
        for s in alice:
            s.wait_for("e2")
            assert not s.ended
        # bob's access was withdrawn: his reconnect is refused.
        (tmp_path / "instance" / "revoked.txt").write_text("bob\n")
        again = Stream(port, "news", "bob", bob[0].last_id())
        streams.append(again)
        assert again.status == 403

        # One channel, from a process without the app (this one, through
        # Redis): every stream of it ends; those still allowed resume from
        # their position without losing an event.
        RedisPublisher(redis_server.url, prefix=tmp_path.name).end_streams(["news"])
        for s in alice:
            s.wait_end()
        assert post(port, "/publish/news", "e3") == 200  # while nobody is connected
        assert post(port, "/publish/sports", "s1") == 200
        carol.wait_for("s1")
        assert not carol.ended
        resumed = Stream(port, "news", "alice", alice[0].last_id())
        streams.append(resumed)
        assert resumed.status == 200
        resumed.wait_for("e3")
        assert not resumed.has("e2") and not resumed.has("e1")
    finally:
        for s in streams:
            s.close()


def test_the_reauthorize_interval_ends_streams_refused_later(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    config = {"STREAMING_REAUTHORIZE_INTERVAL": 0.2}
    port = live_server(APP, env={"SECURITY_APP_CONFIG": json.dumps(config)}).port
    bob, alice = Stream(port, "news", "bob"), Stream(port, "news", "alice")
    try:
        assert post(port, "/publish/news", "e1") == 200
        bob.wait_for("e1")
        alice.wait_for("e1")
        (tmp_path / "instance" / "revoked.txt").write_text("bob\n")  # no call to the app
        bob.wait_end()
        assert post(port, "/publish/news", "e2") == 200
        alice.wait_for("e2")
        assert not alice.ended
    finally:
        bob.close()
        alice.close()


def test_end_streams_names_someone(app: Any) -> None:
    streaming = app.extensions["streaming"].extension
    with pytest.raises(ValueError):
        streaming.end_streams()


@pytest.mark.browser
def test_a_browser_event_source_stops_for_good_or_resumes(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    """Chromium's EventSource: a revoked user's stream ends and its
    reconnect gets 403, after which it stays closed (readyState 2); a user
    still allowed reconnects and gets every event once, none lost."""
    from tests.browser import chromium, new_page

    config = {"STREAMING_RETRY": 200}
    server = live_server(APP, env={"SECURITY_APP_CONFIG": json.dumps(config)})
    port = server.port
    with chromium() as browser, new_page(browser) as bob, new_page(browser) as alice:
        for page, user in ((bob, "bob"), (alice, "alice")):
            page.goto(f"{server.url}/page/{user}")
            page.evaluate("window.start()")
            page.wait_for_function("window.seen.opens === 1")
        assert post(port, "/publish/news", "e1") == 200
        for page in (bob, alice):
            page.wait_for_function("window.seen.messages.length === 1")
        (tmp_path / "instance" / "revoked.txt").write_text("bob\n")
        assert post(port, "/admin/end-streams", {"user": "bob"}) == 204
        bob.wait_for_function("window.es.readyState === 2", timeout=20_000)
        assert bob.evaluate("window.seen.opens") == 1
        # The channel ends for everyone; alice is still allowed.
        assert post(port, "/admin/end-streams", {"channels": ["news"]}) == 204
        alice.wait_for_function("window.seen.errors >= 1", timeout=20_000)
        assert post(port, "/publish/news", "e2") == 200
        alice.wait_for_function(
            "window.seen.opens === 2 && window.seen.messages.length === 2", timeout=20_000
        )
        assert alice.evaluate("window.seen.messages") == ["e1", "e2"]
        assert bob.evaluate("window.seen.messages") == ["e1"]
        assert bob.evaluate("window.es.readyState") == 2
