"""Peer helper: the "application" in front of nginx + nchan.

nchan is configured entirely in nginx (:func:`benchmarks.fanout.nchan_conf`):
subscribers ``GET /events`` (EventSource) straight from nginx, and messages
are ``POST``-ed to its publisher location ``/pub``. This small gunicorn
gevent app is what an application would be: nginx proxies ``/publish``,
``/stats`` and ``/health`` to it, and ``/publish`` POSTs the same payloads
as every other fan-out app (:mod:`benchmarks.fanout_common`) to nchan.

A burst is sent as *n* pipelined ``POST`` requests on one keep-alive
connection (nchan's best case: nginx never waits for the publisher between
events); a paced run sends one ``POST`` per slot and waits for its answer.

Environment: ``$BENCH_NCHAN_PORT`` (nginx's port) and ``$BENCH_NCHAN_PID``
(the nginx worker's pid, reported by ``/stats`` for the memory readings).
"""

from __future__ import annotations

import json
import os
import socket
import time

import gevent
from flask import Flask, request

from benchmarks.fanout_common import next_slot, payload, publish_args

app = Flask(__name__)
NCHAN_PORT = int(os.environ.get("BENCH_NCHAN_PORT", "0"))
NCHAN_PID = int(os.environ.get("BENCH_NCHAN_PID", "0"))
#: nchan's publisher location (see the generated nginx.conf).
PUB_PATH = "/pub"
#: Seconds one publish request may take, at most.
DEADLINE = 60.0


def _post(data: str) -> bytes:
    body = data.encode()
    return (
        f"POST {PUB_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _await_answers(sock: socket.socket, want: int, deadline: float) -> None:
    """Read until *want* ``2xx`` status lines arrived (nchan answers each
    publish with 201/202 and a short channel-info body)."""
    buf = b""
    while buf.count(b"HTTP/1.1 2") < want:
        if b"HTTP/1.1 4" in buf or b"HTTP/1.1 5" in buf:
            raise RuntimeError(f"nchan refused a publish: {buf[:200]!r}")
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"nchan answered {buf.count(b'HTTP/1.1 2')}/{want} publishes")
        sock.settimeout(left)
        got = sock.recv(65536)
        if not got:
            raise RuntimeError("nchan closed the publisher connection")
        buf += got


@app.get("/health")
def health() -> str:
    """Readiness probe."""
    return "ok"


@app.get("/stats")
def stats() -> dict[str, int]:
    """The nginx worker's pid and the channel's subscriber count (nchan's
    channel info; 404 before the channel exists)."""
    subscribers = 0
    with socket.create_connection(("127.0.0.1", NCHAN_PORT), timeout=10) as sock:
        sock.sendall(
            f"GET {PUB_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        buf = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = sock.recv(65536)
            if not got:
                break
            buf += got
    head, _, body = buf.partition(b"\r\n\r\n")
    if head.startswith(b"HTTP/1.1 200"):
        subscribers = int(json.loads(body[body.find(b"{") :])["subscribers"])
    return {"pid": NCHAN_PID, "subscribers": subscribers}


@app.get("/publish")
def publish() -> dict[str, float]:
    """POST ``n`` events to nchan: pipelined for a burst, one per slot when
    paced at ``rate`` events/s; answer with the first and last publish times."""
    n, interval = publish_args(request.args)
    first = start = time.monotonic()
    deadline = start + DEADLINE + n * interval
    with socket.create_connection(("127.0.0.1", NCHAN_PORT), timeout=10) as sock:
        if interval:
            for seq in range(n):
                gevent.sleep(next_slot(start, seq, interval))
                if seq == 0:
                    first = time.monotonic()
                sock.sendall(_post(payload(seq)))
                _await_answers(sock, 1, deadline)
        elif n:
            first = time.monotonic()
            sock.sendall(b"".join(_post(payload(seq)) for seq in range(n)))
            _await_answers(sock, n, deadline)
    return {"first": first, "last": time.monotonic()}
