"""Peer: a hand-written Flask fan-out, one gevent ``Queue`` per subscriber.

What an app writes without an extension: the view registers a queue, its
generator blocks on it and yields one ``data: ...`` string per event (with a
heartbeat comment while idle); publishing puts the payload in every queue.
Served by the same gunicorn gevent worker as ours.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import gevent
from flask import Flask, Response, request
from gevent.queue import Empty, Queue

from benchmarks.fanout_common import payload, publish_run

app = Flask(__name__)
subscribers: set[Queue] = set()


@app.get("/health")
def health() -> str:
    """Readiness probe."""
    return "ok"


@app.get("/stats")
def stats() -> dict[str, int]:
    """This worker's pid and how many subscribers it holds."""
    return {"pid": os.getpid(), "subscribers": len(subscribers)}


@app.get("/events")
def events() -> Response:
    """One subscriber: a queue and a generator draining it."""
    queue: Queue = Queue()
    subscribers.add(queue)

    def stream() -> Iterator[str]:
        try:
            yield ": open\n\n"
            while True:
                try:
                    data = queue.get(timeout=15)
                except Empty:
                    yield ": ping\n\n"
                    continue
                yield f"data: {data}\n\n"
        finally:
            subscribers.discard(queue)

    return Response(stream(), mimetype="text/event-stream", headers={"Cache-Control": "no-cache"})


@app.get("/publish")
def publish() -> dict[str, float]:
    """Put ``n`` events into every subscriber's queue (burst or paced)."""

    def send(seq: int) -> None:
        data = payload(seq)
        for queue in tuple(subscribers):
            queue.put(data)

    return publish_run(request.args, send, gevent.sleep)
