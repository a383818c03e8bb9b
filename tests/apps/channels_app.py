"""An app for the live channel tests: publish over HTTP, stats, and a
subscription route that names the worker serving it."""

from __future__ import annotations

import gc
import os

from flask import Flask, Response, request

from flask_streaming import Streaming, subscribe_response
from flask_streaming.transport import open_stream_count, parked_stream_count


def create_app() -> Flask:
    app = Flask(__name__, instance_path=os.environ.get("INSTANCE_PATH"))
    app.config["STREAMING_BROKER_URL"] = os.environ.get("BROKER_URL", "memory://")
    app.config["STREAMING_PING_INTERVAL"] = float(os.environ.get("PING", "15"))
    app.config["STREAMING_HISTORY_SIZE"] = int(os.environ.get("HISTORY", "1000"))
    app.config["STREAMING_HISTORY_TTL"] = float(os.environ.get("HISTORY_TTL", "3600"))
    app.config["STREAMING_MAX_QUEUE"] = int(os.environ.get("MAX_QUEUE", "1000"))
    if "PARK_AFTER" in os.environ:
        app.config["STREAMING_PARK_AFTER"] = float(os.environ["PARK_AFTER"])
    streaming = Streaming(app)

    @app.post("/publish/<channel>")
    def publish(channel: str) -> dict[str, object]:
        body = request.get_json(silent=True) or {}
        event_id = streaming.publish(channel, body.get("data"), event=body.get("event"))
        return {"id": event_id, "pid": os.getpid()}

    @app.get("/sub/<channel>")
    def sub(channel: str) -> Response:
        last = request.headers.get("Last-Event-ID")
        rv = subscribe_response([channel], last_event_id=last)
        rv.headers["X-Worker-Pid"] = str(os.getpid())
        return rv

    @app.get("/stats")
    def stats() -> dict[str, object]:
        import gevent
        from greenlet import greenlet

        broker = streaming.broker()
        if request.args.get("gc"):
            gc.collect()
        greenlets = (
            sum(1 for o in gc.get_objects() if isinstance(o, greenlet) and not o.dead)
            if request.args.get("greenlets")
            else -1
        )
        with open("/proc/self/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
        del gevent
        return {
            "pid": os.getpid(),
            "connections": broker.connections,
            "subscribed_channels": len(broker.subscribers),
            "open_streams": open_stream_count(),
            "parked_streams": parked_stream_count(),
            "greenlets": greenlets,
            "rss_kib": rss,
        }

    return app
