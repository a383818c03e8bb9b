"""Streams under a real gunicorn with the gevent worker on a loopback port.

The server is tests/apps/live_app.py. Clients are httpx, or, for the many
clients test, plain non-blocking sockets driven by ``selectors`` in this
process: the pytest process is never monkey-patched by gevent.
"""

from __future__ import annotations

import hashlib
import json
import selectors
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from werkzeug.http import parse_options_header

from flask_streaming.sse_wire import EventParser
from flask_streaming.testing import GunicornServer
from tests.apps.live_app import DOWNLOAD_NAME, DOWNLOAD_SIZE, chunk, download_bytes
from tests.conftest import ROOT

from .tls import self_signed_certificate

pytestmark = pytest.mark.live

APP = "tests.apps.live_app:create_app()"
PING = 0.5  # the server's heartbeat interval in these tests


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    """One server for the tests that do not need a fresh worker (each
    gunicorn start and stop costs more than a second)."""
    tmp = tmp_path_factory.mktemp("live")
    env = {
        "PYTHONPATH": str(ROOT),
        "INSTANCE_PATH": str(tmp / "instance"),
        "LIVE_PING_INTERVAL": str(PING),
    }
    with GunicornServer(APP, env=env, cwd=str(ROOT), log_path=str(tmp / "server.log")) as s:
        yield s


@pytest.fixture
def fresh_server(live_server: Callable[..., GunicornServer]) -> GunicornServer:
    return live_server(APP, env={"LIVE_PING_INTERVAL": str(PING)})


def state(server: GunicornServer, token: str) -> list[str]:
    result: list[str] = httpx.get(f"{server.url}/state/{token}", timeout=5).json()
    return result


def wait_state(server: GunicornServer, token: str, *wanted: str, timeout: float) -> list[str]:
    """Poll the stream's recorded state until every *wanted* entry is there
    (or *timeout* passed); return the last state."""
    deadline = time.monotonic() + timeout
    while True:
        got = state(server, token)
        if all(w in got for w in wanted) or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def read_until(
    chunks: Iterator[bytes], predicate: Callable[[bytes], bool], timeout: float = 5.0
) -> bytes:
    """Read body bytes from *chunks* (one iterator kept for the whole
    response: dropping an httpx iterator closes the connection) until
    *predicate* holds for everything read so far, for at most *timeout* s."""
    seen = b""
    deadline = time.monotonic() + timeout
    for data in chunks:
        seen += data
        if predicate(seen):
            return seen
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"the condition did not hold in {timeout}s: {seen[-200:]!r}")


def compact(obj: Any) -> str:
    """JSON as the app's default provider writes it: sorted keys, ASCII."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, sort_keys=True)


def token() -> str:
    return uuid.uuid4().hex


# --- first bytes, heartbeats, cleanup -------------------------------------------------


def test_headers_and_first_bytes_arrive_at_once(server: GunicornServer) -> None:
    t = token()
    with httpx.Client(timeout=5) as client:
        t0 = time.monotonic()
        # No heartbeat before the generator's first event: the first bytes
        # must be the stream's own opening, not a ping.
        with client.stream("GET", f"{server.url}/sse/wait?token={t}&delay=5&ping=30") as r:
            headers_at = time.monotonic() - t0
            assert r.status_code == 200
            assert r.headers["content-type"] == "text/event-stream"
            assert r.headers["x-accel-buffering"] == "no"
            chunks = r.iter_raw()  # kept: dropping it would close the connection
            first = read_until(chunks, lambda b: b"\n" in b)
            first_at = time.monotonic() - t0
            assert first.startswith(b":")  # a comment: onopen fires, no event
            assert b"ping" not in first
            assert EventParser().feed(first) == []
            # The generator is still inside its 5 s wait.
            assert state(server, t) == ["waiting"]
    assert headers_at < 1.0
    assert first_at < 1.0


def test_heartbeat_while_the_generator_waits(server: GunicornServer) -> None:
    t = token()
    with (
        httpx.Client(timeout=5) as client,
        client.stream("GET", f"{server.url}/sse/wait?token={t}&delay=30") as r,
    ):
        chunks = r.iter_raw()
        read_until(chunks, lambda b: b"stream opened\n" in b)  # the opening comment
        t0 = time.monotonic()
        parser = EventParser()
        pings = 0
        for data in chunks:
            assert parser.feed(data) == []
            pings = data.count(b": ping\n")
            if pings:
                break
        elapsed = time.monotonic() - t0
        assert pings >= 1
        assert state(server, t) == ["waiting"]
    assert PING * 0.5 < elapsed < PING * 3


def _close_and_time_cleanup(
    server: GunicornServer, url: str, wanted: tuple[str, ...], first: bytes
) -> tuple[float, list[str]]:
    t = url.rsplit("token=", 1)[1].split("&")[0]
    client = httpx.Client(timeout=5)
    with client.stream("GET", url) as r:
        chunks = r.iter_raw()
        read_until(chunks, lambda b: first in b)
        closed_at = time.monotonic()
        del chunks
    client.close()  # the connection, not only the response
    got = wait_state(server, t, *wanted, timeout=2 * PING + 2)
    return time.monotonic() - closed_at, got


def test_client_close_stops_the_generator(server: GunicornServer) -> None:
    t = token()
    elapsed, got = _close_and_time_cleanup(
        server,
        f"{server.url}/sse/wait?token={t}&delay=30",
        ("finally", "closed:disconnect"),
        b"stream opened",
    )
    assert got == ["waiting", "finally", "closed:disconnect"]
    assert elapsed < 2 * PING + 0.3  # two ping intervals (and scheduling slack)


def test_client_close_stops_a_busy_generator(server: GunicornServer) -> None:
    t = token()
    elapsed, got = _close_and_time_cleanup(
        server,
        f"{server.url}/sse/wait?token={t}&delay=0",
        ("finally", "closed:disconnect"),
        b"id: 3\n",
    )
    assert got == ["waiting", "woke", "finally", "closed:disconnect"]
    assert elapsed < 2 * PING + 0.3


def test_client_close_runs_produce_stop_callbacks(server: GunicornServer) -> None:
    t = token()
    elapsed, got = _close_and_time_cleanup(
        server,
        f"{server.url}/produce/wait?token={t}",
        ("cancel", "stop", "closed:disconnect"),
        b"data: hello\n\n",
    )
    assert sorted(got) == ["cancel", "closed:disconnect", "stop"]
    assert elapsed < 2 * PING + 0.3


# --- many clients ------------------------------------------------------------------------


def dechunk(body: bytes) -> tuple[bytes, bool]:
    """Decode a chunked body; return the data and whether it was complete."""
    out = bytearray()
    pos = 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            return bytes(out), False
        size = int(body[pos:end].split(b";")[0], 16)
        start = end + 2
        if size == 0:
            return bytes(out), body[start : start + 2] == b"\r\n"
        if len(body) < start + size + 2:
            out += body[start : start + size]
            return bytes(out), False
        out += body[start : start + size]
        pos = start + size + 2


class RawClients:
    """*n* HTTP/1.1 clients on plain non-blocking sockets, one selector."""

    def __init__(self, port: int, path: str, n: int) -> None:
        self.sel = selectors.DefaultSelector()
        self.bufs: dict[socket.socket, bytearray] = {}
        self.open: set[socket.socket] = set()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Accept: text/event-stream\r\nConnection: close\r\n\r\n"
        ).encode()
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(request)
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ)
            self.bufs[s] = bytearray()
            self.open.add(s)

    def pump(self, until: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("clients timed out")
            for key, _ in self.sel.select(min(left, 0.5)):
                s: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except ConnectionError:
                    data = b""
                if data:
                    self.bufs[s] += data
                else:
                    self.sel.unregister(s)
                    self.open.discard(s)

    def close(self) -> None:
        for s in self.bufs:
            if s in self.open:
                self.sel.unregister(s)
            s.close()
        self.sel.close()


def stats(server: GunicornServer) -> dict[str, int]:
    result: dict[str, int] = httpx.get(f"{server.url}/stats", timeout=10).json()
    return result


def test_500_clients_on_one_worker_all_receive_every_event(fresh_server: GunicornServer) -> None:
    server = fresh_server
    n, events = 500, 5
    baseline = stats(server)
    assert baseline["open_streams"] == 0
    clients = RawClients(server.port, f"/sse/broadcast?n={events}", n)
    try:
        # Every client has its headers and the opening comment before any event.
        clients.pump(lambda: all(b": stream opened" in b for b in clients.bufs.values()), 30)
        assert stats(server)["open_streams"] == n
        assert httpx.post(f"{server.url}/go", timeout=10).status_code == 200
        clients.pump(lambda: not clients.open, 60)
    finally:
        clients.close()
    expected = [
        ("b", str(i), compact({"i": i, "text": "caf\u00e9 \U0001f600"})) for i in range(events)
    ]
    for buf in clients.bufs.values():
        head, _, body = bytes(buf).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"transfer-encoding: chunked" in head.lower()
        data, complete = dechunk(body)
        assert complete
        assert [(e.event, e.id, e.data) for e in EventParser().feed(data)] == expected
    # Nothing leaks: no open stream, and the greenlets go back to the baseline.
    deadline = time.monotonic() + 10
    while True:
        now = stats(server)
        if now["open_streams"] == 0 and now["greenlets"] <= baseline["greenlets"]:
            break
        assert time.monotonic() < deadline, (baseline, now)
        time.sleep(0.1)


# --- bodies intact, failures truncated -------------------------------------------------


def test_ndjson_body_intact(server: GunicornServer) -> None:
    count = 50_000
    r = httpx.get(f"{server.url}/ndjson?count={count}", timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-ndjson"
    assert r.headers["transfer-encoding"] == "chunked"
    lines = r.content.split(b"\n")
    assert lines[-1] == b""
    assert [json.loads(line) for line in lines[:-1]] == [
        {"id": i, "name": f"item {i}", "t": "\u00e9\n"} for i in range(count)
    ]


@pytest.mark.parametrize("encoding", ["utf-8", "base64", "hex"])
def test_chunked_body_intact(server: GunicornServer, encoding: str) -> None:
    import base64

    count = 300
    r = httpx.get(f"{server.url}/chunked?count={count}&encoding={encoding}", timeout=30)
    assert r.status_code == 200
    if encoding == "utf-8":
        assert r.content == b"".join(chunk(i) for i in range(count))
    else:
        decode = base64.b64decode if encoding == "base64" else bytes.fromhex
        lines = r.content.split(b"\n")
        assert lines[-1] == b""
        assert [decode(line.decode()) for line in lines[:-1]] == [chunk(i) for i in range(count)]


def test_chunked_writes_are_http_chunks(server: GunicornServer) -> None:
    """Each chunk is one HTTP chunk on the wire (checked with a raw socket)."""
    clients = RawClients(server.port, "/chunked?count=20", 1)
    try:
        clients.pump(lambda: not clients.open, 20)
    finally:
        clients.close()
    (buf,) = clients.bufs.values()
    _, _, body = bytes(buf).partition(b"\r\n\r\n")
    sizes = []
    pos = 0
    while True:
        end = body.index(b"\r\n", pos)
        size = int(body[pos:end], 16)
        if size == 0:
            break
        sizes.append(size)
        pos = end + 2 + size + 2
    assert sizes == [len(chunk(i)) for i in range(20)]


def test_text_failure_is_visible_as_truncation(server: GunicornServer) -> None:
    received = b""
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", f"{server.url}/text?lines=1000&fail=500") as r,
    ):
        assert r.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            for data in r.iter_bytes():
                received += data
    assert received == b"".join(f"line {i}\n".encode() for i in range(500))
    # and the same stream without the failure ends cleanly
    r = httpx.get(f"{server.url}/text?lines=1000", timeout=10)
    assert r.content == b"".join(f"line {i}\n".encode() for i in range(1000))


def test_sse_failure_sends_stream_error_then_truncates(server: GunicornServer) -> None:
    parser = EventParser()
    events = []
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", f"{server.url}/sse/fail") as r,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        for data in r.iter_bytes():
            events.extend(parser.feed(data))
    assert [(e.event, e.data) for e in events] == [
        ("message", "before"),
        ("stream-error", compact({"message": "The stream failed on the server."})),
    ]


def test_short_sse_stream_completes(server: GunicornServer) -> None:
    r = httpx.get(f"{server.url}/sse/short", timeout=10)
    parser = EventParser()
    assert [e.data for e in parser.feed(r.content)] == ["one", "two"]


def test_stream_response_first_bytes_within_flush_interval(server: GunicornServer) -> None:
    t = token()
    with (
        httpx.Client(timeout=5) as client,
        client.stream("GET", f"{server.url}/text/slow?token={t}&flush=0.2") as r,
    ):
        t0 = time.monotonic()
        chunks = r.iter_raw()
        assert read_until(chunks, lambda b: b"\n" in b) == b"first\n"
        elapsed = time.monotonic() - t0
        assert wait_state(server, t, "waiting", timeout=2) == ["waiting"]
    assert elapsed < 0.2 + 0.5


def test_response_stream_from_another_greenlet(server: GunicornServer) -> None:
    r = httpx.get(f"{server.url}/manual?count=2000", timeout=10)
    assert r.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line) for line in r.content.splitlines()] == [{"i": i} for i in range(2000)]


# --- downloads ---------------------------------------------------------------------------


def test_download_whole_file_and_ranges(server: GunicornServer) -> None:
    data = download_bytes()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        r = client.get("/download")
        assert r.status_code == 200
        assert int(r.headers["content-length"]) == DOWNLOAD_SIZE
        assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(data).hexdigest()
        kind, params = parse_options_header(r.headers["content-disposition"])
        assert kind == "attachment"
        assert params["filename"] == DOWNLOAD_NAME
        for spec, start, stop in [
            ("bytes=0-0", 0, 1),
            ("bytes=1000-1999", 1000, 2000),
            ("bytes=1048575-2097152", 1048575, 2097153),  # across read blocks
            ("bytes=10-", 10, DOWNLOAD_SIZE),
            ("bytes=-777", DOWNLOAD_SIZE - 777, DOWNLOAD_SIZE),
        ]:
            r = client.get("/download", headers={"Range": spec})
            assert r.status_code == 206, spec
            assert r.headers["content-range"] == f"bytes {start}-{stop - 1}/{DOWNLOAD_SIZE}"
            assert int(r.headers["content-length"]) == stop - start
            assert r.content == data[start:stop], spec
        r = client.get("/download", headers={"Range": f"bytes={DOWNLOAD_SIZE}-"})
        assert r.status_code == 416
        r = client.head("/download")
        assert r.status_code == 200
        assert int(r.headers["content-length"]) == DOWNLOAD_SIZE
        etag = client.get("/download", headers={"Range": "bytes=0-0"}).headers["etag"]
        assert client.get("/download", headers={"If-None-Match": etag}).status_code == 304
        # later requests on the same client still work after sendfile
        for _ in range(3):
            r = client.get("/download", headers={"Range": "bytes=5-9"})
            assert r.content == data[5:10]


def test_download_over_tls_is_not_sent_around_tls(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    """The kernel's sendfile would put plaintext on a TLS connection: under
    TLS the body must go through the SSL socket."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    cert, key = self_signed_certificate(openssl, tmp_path, "127.0.0.1")
    server = live_server(
        APP,
        args=["--certfile", str(cert), "--keyfile", str(key)],
        env={"LIVE_PING_INTERVAL": str(PING)},
    )
    data = download_bytes()
    url = server.url.replace("http://", "https://")
    with httpx.Client(verify=False, timeout=30) as client:
        r = client.get(f"{url}/download")
        assert r.status_code == 200
        assert hashlib.sha256(r.content).digest() == hashlib.sha256(data).digest()
        r = client.get(f"{url}/download", headers={"Range": "bytes=1000000-1000099"})
        assert r.status_code == 206
        assert r.content == data[1000000:1000100]


# --- not gevent ------------------------------------------------------------------------


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_non_gevent_worker_fallback_warns_once(
    live_server: Callable[..., GunicornServer], tmp_path: Path, worker: str
) -> None:
    server = live_server(APP, args=["-k", worker], env={"LIVE_PING_INTERVAL": str(PING)})
    for _ in range(3):
        r = httpx.get(f"{server.url}/sse/short", timeout=10)
        assert [e.data for e in EventParser().feed(r.content)] == ["one", "two"]
        r = httpx.get(f"{server.url}/text?lines=10", timeout=10)
        assert r.content == b"".join(f"line {i}\n".encode() for i in range(10))
    server.stop()
    log = (tmp_path / "server.log").read_text()
    assert "Booting worker with pid" in log  # the log is the server's
    assert "gevent" in log.lower()
    assert log.count("flask_streaming: not running under gevent") == 1
