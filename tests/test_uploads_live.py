"""Upload sessions under a real gunicorn with 2 gevent workers: sessions
that cross workers, svelte-stream's exact headers, out-of-order and retried
segments, and a worker killed with SIGKILL in the middle of a segment."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from flask_streaming.testing import GunicornServer, http_request

pytestmark = pytest.mark.live

APP = "tests.apps.uploads_app:create_app()"
URL = "/streaming/uploads"


_OPEN: list[Conn] = []


class Conn:
    """A keep-alive connection, so that a test knows which worker serves it."""

    def __init__(self, port: int) -> None:
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        _OPEN.append(self)
        self.pid = self.request("GET", "/whoami")[1]["pid"]

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        self.http.request(method, path, body=body, headers=headers or {})
        rv = self.http.getresponse()
        data = rv.read()
        return rv.status, json.loads(data)

    def segment(self, sid: str, index: int, data: bytes, done: bool = False) -> tuple[int, Any]:
        headers = {
            "X-Svelte-Stream-Id": sid,
            "X-Svelte-Stream-Segment": str(index),
            "X-Svelte-Stream-Done": "true" if done else "false",
            "Content-Type": "application/octet-stream",
        }
        return self.request("POST", URL, data, headers)

    def close(self) -> None:
        self.http.close()


def one_conn_per_worker(server: GunicornServer, workers: int = 2) -> list[Conn]:
    """Open keep-alive connections until each worker holds one."""
    found: dict[int, Conn] = {}
    spare: list[Conn] = []
    deadline = time.monotonic() + 20
    while len(found) < workers:
        assert time.monotonic() < deadline, "could not reach every worker"
        batch = [Conn(server.port) for _ in range(4)]
        for conn in batch:
            if conn.pid in found:
                spare.append(conn)
            else:
                found[conn.pid] = conn
    for conn in spare:
        conn.close()
    return list(found.values())


@pytest.fixture
def server(live_server: Callable[..., GunicornServer]) -> Iterator[GunicornServer]:
    yield live_server(APP, workers=2)
    while _OPEN:
        _OPEN.pop().close()


def test_a_session_crosses_workers_out_of_order_with_retries(server: GunicornServer) -> None:
    a, b = one_conn_per_worker(server)
    sid = a.request("GET", URL)[1]["streamId"]
    parts = [os.urandom(200_000 + i) for i in range(8)]
    order = [5, 0, 7, 2, 1, 6, 3, 4]
    workers = set()
    for n, i in enumerate(order):
        conn = (a, b)[n % 2]
        status, body = conn.segment(sid, i, parts[i])
        assert status == 200, body
        assert body["seen"] == len(parts[i]) and body["duplicate"] is False
        workers.add(body["worker"])
    assert workers == {a.pid, b.pid}
    # a retry on the other worker: acknowledged with the stored results
    status, body = b.segment(sid, 5, parts[5])
    assert status == 200 and body["duplicate"] is True and body["worker"] == a.pid
    status, body = a.segment(sid, 2, b"different")
    assert status == 409 and body["error"] == "segment_conflict"
    status, st = b.request("GET", f"{URL}/{sid}")
    assert st["received"] == 8 and st["contiguous"] == 8
    status, final = b.segment(sid, 8, b"", done=True)
    assert status == 200, final
    assert final["sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()
    assert final["worker"] == b.pid and final["segments"] == 8


def test_parallel_segments_from_many_connections(server: GunicornServer) -> None:
    conns = one_conn_per_worker(server)
    sid = conns[0].request("GET", URL)[1]["streamId"]
    parts = [os.urandom(300_000) for _ in range(24)]

    def put(i: int) -> tuple[int, Any]:
        headers = {"X-Stream-Id": sid, "X-Stream-Segment": str(i), "X-Stream-Done": "false"}
        status, _, data = http_request(server.port, "POST", URL, parts[i], headers)
        return status, json.loads(data)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(put, range(24)))
    assert all(s == 200 for s, _ in results), results
    assert len({body["worker"] for _, body in results}) == 2
    status, final = conns[1].segment(sid, 24, b"", done=True)
    assert status == 200 and final["sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()


def test_svelte_stream_client_exact_headers(server: GunicornServer) -> None:
    # As svelte-stream's StreamingClient does: getStarted() is a GET; each
    # MediaRecorder chunk is a POST with X-Svelte-Stream-*; then an empty done.
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        c.request("GET", URL)
        sid = json.loads(c.getresponse().read())["streamId"]
        chunks = [os.urandom(16_000) for _ in range(5)]
        for i, chunk in enumerate([*chunks, b""]):
            c.request("POST", URL, body=chunk, headers={
                "X-Svelte-Stream-Id": sid,
                "X-Svelte-Stream-Segment": str(i),
                "X-Svelte-Stream-Done": "true" if i == len(chunks) else "false",
            })  # fmt: skip
            rv = c.getresponse()
            body = json.loads(rv.read())
            assert rv.status == 200, body
        assert body["done"] is True and body["size"] == sum(map(len, chunks))
        assert body["sha256"] == hashlib.sha256(b"".join(chunks)).hexdigest()
    finally:
        c.close()


def test_sigkill_mid_segment_then_resume(server: GunicornServer) -> None:
    a, b = one_conn_per_worker(server)
    sid = a.request("GET", URL)[1]["streamId"]
    parts = [os.urandom(3_000_000) for _ in range(4)]
    assert a.segment(sid, 0, parts[0])[0] == 200
    assert b.segment(sid, 1, parts[1])[0] == 200
    # Segment 2 on a's worker: headers and half of the body, then SIGKILL.
    a.http.putrequest("POST", URL)
    for k, v in {"X-Stream-Id": sid, "X-Stream-Segment": "2",
                 "Content-Length": str(len(parts[2]))}.items():  # fmt: skip
        a.http.putheader(k, v)
    a.http.endheaders()
    a.http.send(parts[2][: len(parts[2]) // 2])
    time.sleep(0.3)  # the worker is now writing the segment
    os.kill(a.pid, signal.SIGKILL)
    with pytest.raises((OSError, http.client.HTTPException)):
        a.http.send(parts[2][len(parts[2]) // 2 :])
        a.http.getresponse().read()
    a.close()
    # The session is consistent on the surviving worker: segment 2 is missing.
    status, st = b.request("GET", f"{URL}/{sid}")
    assert status == 200 and st["received"] == 2 and st["contiguous"] == 2, st
    status, body = b.segment(sid, 3, parts[3], done=True)
    assert status == 409 and body["missing"] == [2]
    # Resume: resend segment 2 (on a replacement worker or b), then done.
    deadline = time.monotonic() + 15
    while len(server.worker_pids()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    c = Conn(server.port)
    assert c.pid != a.pid
    status, body = c.segment(sid, 2, parts[2])
    assert status == 200 and body["duplicate"] is False, body
    status, final = c.segment(sid, 3, parts[3], done=True)
    assert status == 200, final
    assert final["sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()
    assert final["size"] == sum(map(len, parts))
    c.close()
    b.close()


def test_errors_are_json_under_gunicorn(server: GunicornServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            b"POST /streaming/uploads HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"X-Stream-Id: nope\r\n"
            b"X-Stream-Segment: 0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404") and json.loads(body)["error"] == "unknown_session"
