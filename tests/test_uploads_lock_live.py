"""The session lock under a real gunicorn with 2 gevent workers (issue 14,
failing input 2): many requests for one session at once, native and tus.

Each test checks what the lock guards: every accepted segment counted once
in the session record, the bytes contiguous (the sha256 of the whole), and
every signal, the post-commit ones included, sent exactly once. Without
the lock (a no-op in its place) the record loses segments and the signals
repeat; see the notes of issue 14.
The app (``tests/apps/tus_app.py``) logs every signal, with its worker's
pid, to ``signals.log`` in the instance folder.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from flask_streaming.testing import GunicornServer, http_request

pytestmark = pytest.mark.live

APP = "tests.apps.tus_app:create_app()"
SEGMENTS = 24


def call(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    return http_request(port, method, path, body, headers, timeout=60)


class Pinned:
    """A keep-alive connection whose worker (pid) is known."""

    def __init__(self, port: int) -> None:
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.pid = json.loads(self.call("GET", "/whoami")[2])["pid"]

    def call(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        self.http.request(method, path, body=body, headers=headers or {})
        rv = self.http.getresponse()
        return rv.status, dict(rv.headers), rv.read()


def pinned(port: int, per_worker: int) -> tuple[list[Pinned], list[Pinned]]:
    """*per_worker* keep-alive connections to each of the 2 workers (the
    kernel may hand a burst of connections to one worker: pinning makes
    the race cross workers for sure)."""
    by_pid: dict[int, list[Pinned]] = {}
    # Bounded by count and time. A worker that is busy (a loaded machine)
    # lets the other one accept every connection of a burst: a pause after
    # each spare gives the busy one its turn.
    deadline = time.monotonic() + 30
    for _ in range(2000):
        conn = Pinned(port)
        group = by_pid.setdefault(conn.pid, [])
        if len(group) < per_worker:
            group.append(conn)
        else:
            conn.http.close()
            time.sleep(0.02)
        if len(by_pid) == 2 and all(len(g) == per_worker for g in by_pid.values()):
            break
        if time.monotonic() > deadline:
            break
    groups = list(by_pid.values())
    assert len(groups) == 2 and all(len(g) == per_worker for g in groups), "workers not reached"
    return groups[0], groups[1]


def signal_log(tmp_path: Path, upload_id: str) -> list[dict[str, Any]]:
    lines = (tmp_path / "instance" / "signals.log").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["id"] == upload_id]


def test_24_native_segments_at_once_on_2_workers(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    server = live_server(APP, workers=2)
    status, _, body = call(server.port, "GET", "/streaming/uploads")
    assert status == 200, body
    sid = json.loads(body)["streamId"]
    parts = [os.urandom(200_000 + 17 * i) for i in range(SEGMENTS)]
    a, b = pinned(server.port, SEGMENTS // 2)
    conns = [c for pair in zip(a, b, strict=True) for c in pair]  # alternate workers

    def put(i: int) -> tuple[int, Any]:
        headers = {"X-Stream-Id": sid, "X-Stream-Segment": str(i), "X-Stream-Done": "false"}
        status, _, body = conns[i].call("POST", "/streaming/uploads", parts[i], headers)
        return status, json.loads(body)

    try:
        with ThreadPoolExecutor(SEGMENTS) as pool:
            results = list(pool.map(put, range(SEGMENTS)))
    finally:
        for conn in conns:
            conn.http.close()
    assert all(s == 200 for s, _ in results), results
    status, _, body = call(server.port, "GET", f"/streaming/uploads/{sid}")
    st = json.loads(body)
    # every segment recorded in the session record, once
    assert st["received"] == SEGMENTS and st["contiguous"] == SEGMENTS, st
    assert st["bytes"] == sum(map(len, parts)) and st["maxSegment"] == SEGMENTS - 1
    headers = {"X-Stream-Id": sid, "X-Stream-Segment": str(SEGMENTS), "X-Stream-Done": "true"}
    status, _, body = call(server.port, "POST", "/streaming/uploads", b"", headers)
    final = json.loads(body)
    assert status == 200 and final["done"] is True, final
    whole = b"".join(parts)
    assert final["size"] == len(whole) and final["sha256"] == hashlib.sha256(whole).hexdigest()
    records = signal_log(tmp_path, sid)
    received = [r for r in records if r["signal"] == "segment-received"]
    assert Counter(r["index"] for r in received) == Counter(range(SEGMENTS))
    assert len({r["pid"] for r in received}) == 2, "both workers took segments"
    committed = [r for r in records if r["signal"] == "segment-committed"]
    assert Counter(r["index"] for r in committed) == Counter(range(SEGMENTS))
    kinds = Counter(r["signal"] for r in records)
    assert kinds["upload-created"] == 1 and kinds["upload-completed"] == 1, kinds
    assert kinds["upload-committed"] == 1, kinds


def test_24_tus_chunks_each_sent_twice_at_once_on_2_workers(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    # tus has one writer at a time by design (offsets): the race is a chunk
    # sent again while the first try still runs (a client that timed out).
    # Two senders per chunk, 48 requests at once; each sender retries on 409
    # (not its turn yet) and 423 (another request is writing) and stops once
    # the offset is past its chunk.
    server = live_server(APP, workers=2)
    size = 100_000
    whole = os.urandom(SEGMENTS * size)
    tus = {"Tus-Resumable": "1.0.0"}
    status, headers, _ = call(
        server.port, "POST", "/streaming/tus/", headers={**tus, "Upload-Length": str(len(whole))}
    )
    assert status == 201
    path = (
        "/" + headers["Location"].split("/", 3)[3]
        if "://" in headers["Location"]
        else headers["Location"]
    )
    upload_id = path.rsplit("/", 1)[1]

    failed = threading.Event()
    a, b = pinned(server.port, SEGMENTS)
    answered: Counter[int] = Counter()

    def send(n: int) -> list[int]:
        i, conn = n // 2, (a, b)[n % 2][n // 2]  # chunk i: one sender per worker
        statuses = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not failed.is_set():
            status, _, body = conn.call(
                "PATCH",
                path,
                whole[i * size : (i + 1) * size],
                {
                    **tus,
                    "Upload-Offset": str(i * size),
                    "Content-Type": "application/offset+octet-stream",
                },
            )
            statuses.append(status)
            answered[conn.pid] += 1
            if status == 204:
                return statuses
            if status not in (409, 423):
                failed.set()
                raise AssertionError(f"chunk {i}: {status} {body!r}")
            if status == 409 and json.loads(body).get("offset", -1) > i * size:
                return statuses  # the other sender's copy was accepted
            time.sleep(0.005)
        failed.set()
        raise AssertionError(f"chunk {i} not accepted: {statuses[-10:]}")

    try:
        with ThreadPoolExecutor(2 * SEGMENTS) as pool:
            outcomes = list(pool.map(send, range(2 * SEGMENTS)))
    finally:
        for conn in a + b:
            conn.http.close()
    assert len(answered) == 2, "both workers took part in the race"
    accepted = sum(o.count(204) for o in outcomes)
    assert accepted == SEGMENTS, "each chunk accepted exactly once"
    status, headers, _ = call(server.port, "HEAD", path, headers=tus)
    assert headers["Upload-Offset"] == str(len(whole))
    status, _, body = call(server.port, "GET", f"/upload-info/{upload_id}")
    stored = json.loads(body)
    assert (
        stored["state"] == "completed"
        and stored["data_sha256"] == hashlib.sha256(whole).hexdigest()
    )
    records = signal_log(tmp_path, upload_id)
    received = [r for r in records if r["signal"] == "segment-received"]
    assert sorted((r["offset"], r["end"]) for r in received) == [
        (i * size, (i + 1) * size) for i in range(SEGMENTS)
    ], "one segment-received per chunk, contiguous"
    committed = [r for r in records if r["signal"] == "segment-committed"]
    assert sorted((r["offset"], r["end"]) for r in committed) == [
        (i * size, (i + 1) * size) for i in range(SEGMENTS)
    ], "one segment-committed per chunk"
    kinds = Counter(r["signal"] for r in records)
    assert kinds["upload-created"] == 1 and kinds["upload-completed"] == 1, kinds
    assert kinds["upload-committed"] == 1, kinds
