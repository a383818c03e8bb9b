"""Tests written for mutants of the ``transport`` mutation slice
(``transport.py``) that survived the suite (docs/testing.rst, "Mutation
testing"). Each states a behaviour of the transport layer; each docstring
names the mutant it was written for, and each was seen failing against that
mutant, applied by hand. Live tests run tests/apps/transport_app.py under a
real gunicorn with the gevent worker."""

from __future__ import annotations

import io
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask

from flask_streaming import stream_closed, stream_opened
from flask_streaming.sse_wire import EventParser
from flask_streaming.testing import GunicornServer
from flask_streaming.transport import Outbox, ResponseBody
from tests.conftest import ROOT

APP = "tests.apps.transport_app:create_app()"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    tmp = tmp_path_factory.mktemp("transport")
    env = {"PYTHONPATH": str(ROOT), "INSTANCE_PATH": str(tmp / "instance")}
    with GunicornServer(APP, env=env, cwd=str(ROOT), log_path=str(tmp / "server.log")) as s:
        yield s


def serve(body: ResponseBody) -> bytes:
    """Iterate *body* to its end as a server does, then close it."""
    out = io.BytesIO()
    try:
        for chunk in body:
            out.write(chunk)
    finally:
        body.close()
    return out.getvalue()


@pytest.mark.live
def test_a_client_that_leaves_an_idle_stream_is_noticed_without_a_heartbeat(
    server: GunicornServer,
) -> None:
    """``socket.MSG_PEEK | socket.MSG_DONTWAIT`` made ``/`` in
    ``_DisconnectWatcher._readable``: the peek at a readable socket failed
    (a float for flags), so a client that closed an idle stream was noticed
    only by the next heartbeat's failed write, a minute later here."""
    token = uuid.uuid4().hex
    parser = EventParser()
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", f"{server.url}/idle", headers={"X-Token": token}) as r,
    ):
        for chunk in r.iter_raw():
            if any(e.data == "opened" for e in parser.feed(chunk)):
                break
    closed_at = time.monotonic()
    reasons: list[Any] = []
    while time.monotonic() - closed_at < 10 and not reasons:
        reasons = httpx.get(f"{server.url}/closed/{token}", timeout=5).json()
        time.sleep(0.02)
    elapsed = time.monotonic() - closed_at
    assert reasons == ["disconnect"]
    assert elapsed < 5, f"the close was noticed after {elapsed:.1f} s"


@pytest.mark.live
def test_a_stream_runs_with_the_send_timeout_on_its_socket(server: GunicornServer) -> None:
    """``sock.settimeout(seconds or None)`` made ``seconds and None`` in
    ``set_socket_timeout``: the socket of a stream never got
    ``STREAMING_SEND_TIMEOUT`` (1.5 s in this app), the backstop for a write
    that fills the buffer half-way."""
    r = httpx.get(f"{server.url}/socket-timeout", timeout=10)
    [event] = EventParser().feed(r.content)
    assert event.json() == {"timeout": 1.5}


@pytest.mark.live
def test_a_client_that_stops_reading_is_cut_off_for_the_send_timeout(
    server: GunicornServer,
) -> None:
    """``outbox.reason or "send_timeout"`` made ``and`` in
    ``ResponseBody._has_room``: a client cut off for not reading was
    reported as having disconnected (``stream_closed``'s reason)."""
    token = uuid.uuid4().hex
    host, port = "127.0.0.1", server.port
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, port))
    try:
        sock.sendall(
            f"GET /flood HTTP/1.1\r\nHost: {host}:{port}\r\nX-Token: {token}\r\n\r\n".encode()
        )
        # never read: the server's writes fill the socket buffers, then wait
        deadline = time.monotonic() + 20
        reasons: list[Any] = []
        while time.monotonic() < deadline and not reasons:
            reasons = httpx.get(f"{server.url}/closed/{token}", timeout=5).json()
            time.sleep(0.1)
        assert reasons == ["send_timeout"]
    finally:
        sock.close()


def test_outbox_and_body_options_are_keyword_only() -> None:
    """The keyword-only ``*`` of ``Outbox.__init__`` and
    ``ResponseBody.__init__`` made ``/``: a position was taken for
    ``high_water`` or ``app``."""
    with pytest.raises(TypeError):
        Outbox(1024)  # type: ignore[call-arg]
    outbox = Outbox(high_water=1024, green=False)
    assert outbox.high_water == 1024
    with pytest.raises(TypeError):
        ResponseBody(outbox, None)  # type: ignore[call-arg]


def test_a_body_of_an_app_sends_the_stream_signals_and_one_without_sends_none(
    tmp_path: Path,
) -> None:
    """``if self.app is not None`` made ``is None`` before
    ``stream_opened.send`` in ``ResponseBody._run``: the signal was sent
    for bodies of no app (with ``None`` as sender) and never for an app's."""
    app = Flask("signals", instance_path=str(tmp_path))
    seen: list[tuple[str, Any, Any]] = []

    def opened(sender: Any, stream: Any, **kw: Any) -> None:
        seen.append(("opened", sender, stream))

    def closed(sender: Any, stream: Any, **kw: Any) -> None:
        seen.append(("closed", sender, stream))

    with stream_opened.connected_to(opened), stream_closed.connected_to(closed):
        outbox = Outbox(green=False)
        outbox.put(b"data: x\n\n")
        outbox.finish()
        body = ResponseBody(outbox, app=app, channels=("c",))
        assert serve(body) == b"data: x\n\n"
        assert seen == [("opened", app, body), ("closed", app, body)]
        seen.clear()
        outbox = Outbox(green=False)
        outbox.finish()
        assert serve(ResponseBody(outbox)) == b""
        assert seen == []


#: A monkey-patched process (an app's own tests under gevent, or a gevent
#: server other than gunicorn): no ``gunicorn.socket`` in the environ.
PATCHED_CLIENT = """
from gevent import monkey

monkey.patch_all()

from flask import Flask

from flask_streaming import Streaming, sse_response

app = Flask("patched")
Streaming(app)


@app.get("/events")
def events():
    return sse_response(iter([{"data": "one"}, {"data": "two"}]))


rv = app.test_client().get("/events")
print(rv.status_code)
print(rv.get_data(as_text=True))
"""


def test_a_stream_works_under_gevent_without_a_gunicorn_socket(tmp_path: Path) -> None:
    """``if raw is None or not gevent_active()`` made ``and`` in
    ``_DisconnectWatcher``: under gevent, a request without gunicorn's
    socket (Flask's test client in a monkey-patched process) had its
    missing socket watched, and the stream failed."""
    import os
    import subprocess
    import sys

    script = tmp_path / "patched_client.py"
    script.write_text(PATCHED_CLIENT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    status, _, body = out.stdout.partition("\n")
    assert status == "200", out.stderr
    assert [e.data for e in EventParser().feed(body.encode())] == ["one", "two"]


def test_a_generator_that_never_blocks_lets_its_events_out_at_once(
    server: GunicornServer,
) -> None:
    """``max_delay: float = 0.005`` made ``1.005`` in ``Outbox.__init__``:
    an event stream's busy generator held its events for a second before
    the writer had a turn (the outbox's default is the event streams')."""
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", f"{server.url}/busy") as r,
    ):
        parser = EventParser()
        for chunk in r.iter_raw():
            events = parser.feed(chunk)
            if events:
                lag = time.time() - events[0].json()["at"]
                break
    assert lag < 0.5, f"the first event waited {lag:.2f} s"


def test_a_body_made_without_a_send_timeout_has_no_limit() -> None:
    """``send_timeout: float = 0.0`` made ``-1.0`` in ``ResponseBody``: a
    body made without one got a negative limit (``0`` means none), which
    gevent's ``settimeout`` refuses."""
    body = ResponseBody(Outbox(green=False))
    assert body.send_timeout == 0


@pytest.mark.live
def test_a_stream_leaves_its_connection_with_the_socket_timeout_it_found(
    server: GunicornServer,
) -> None:
    """``if self.send_timeout and self.green`` negated in
    ``ResponseBody.close``: the send timeout stayed on the socket after the
    stream, for the next request of the kept-alive connection."""
    with httpx.Client(timeout=10) as client:
        before = client.get(f"{server.url}/plain-timeout").json()["timeout"]
        ports = set()
        r = client.get(f"{server.url}/socket-timeout")
        assert EventParser().feed(r.content)[0].json() == {"timeout": 1.5}
        after = client.get(f"{server.url}/plain-timeout")
        for resp in (r, after):
            stream = resp.extensions["network_stream"]
            ports.add(stream.get_extra_info("client_addr")[1])
        assert len(ports) == 1, "the connection was not kept alive"
        assert after.json()["timeout"] == before != 1.5


def test_a_producer_at_exactly_high_water_waits_for_room_without_spinning() -> None:
    """``wait_room`` with exactly ``high_water`` bytes queued waits (a
    ``>`` for the ``>=`` spins without ever yielding: the hub, and this
    test, hang)."""
    import gevent

    outbox = Outbox(high_water=8, green=True)
    assert outbox.put(b"12345678")
    done: list[bool] = []

    def produce() -> None:
        outbox.wait_room()
        done.append(True)

    producer = gevent.spawn(produce)
    gevent.sleep(0.05)
    assert not done, "a producer at high water went on without room"
    outbox.drain()
    producer.join(timeout=5)
    assert done == [True]
