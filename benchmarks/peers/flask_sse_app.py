"""Peer: Flask-SSE with Redis (the ``sse`` blueprint, its own ``publish``).

Each subscriber holds its own Redis pub/sub connection (that is how
Flask-SSE works). Served by the same gunicorn gevent worker as ours, with
``$BENCH_REDIS_URL`` pointing at a ``redis-server`` the benchmark started.
"""

from __future__ import annotations

import os

import gevent
from flask import Flask, request
from flask_sse import sse
from redis import Redis

from benchmarks.fanout_common import CHANNEL, payload, publish_run

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
app.register_blueprint(sse, url_prefix="/events")


@app.get("/health")
def health() -> str:
    """Readiness probe."""
    return "ok"


@app.get("/stats")
def stats() -> dict[str, int]:
    """The worker's pid and how many Redis subscriptions the channel has."""
    client = Redis.from_url(app.config["REDIS_URL"])
    try:
        count = int(dict(client.pubsub_numsub(CHANNEL)).get(CHANNEL.encode(), 0))
    finally:
        client.close()
    return {"pid": os.getpid(), "subscribers": count}


@app.get("/publish")
def publish() -> dict[str, float]:
    """``sse.publish`` ``n`` events on the benchmark channel (burst or paced)."""
    return publish_run(
        request.args, lambda seq: sse.publish(payload(seq), channel=CHANNEL), gevent.sleep
    )
