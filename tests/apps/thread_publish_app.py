"""An app for tests/test_brokers_survivors.py: a route that publishes from a
real OS thread (not a greenlet) of a gevent worker, as
docs/guides/channels.rst allows ("a real OS thread")."""

from __future__ import annotations

import os

from flask import Flask, Response

from flask_streaming import Streaming, subscribe_response


def create_app() -> Flask:
    app = Flask(__name__, instance_path=os.environ.get("INSTANCE_PATH"))
    app.config["STREAMING_BROKER_URL"] = os.environ.get("BROKER_URL", "memory://")
    # No heartbeat for a minute: an event that did not wake the stream's
    # writer would wait that long.
    app.config["STREAMING_PING_INTERVAL"] = 60.0
    streaming = Streaming(app)

    @app.get("/sub/<channel>")
    def sub(channel: str) -> Response:
        return subscribe_response([channel])

    @app.post("/publish-from-a-thread/<channel>")
    def publish_from_a_thread(channel: str) -> dict[str, str]:
        from gevent.monkey import get_original

        start_new_thread = get_original("_thread", "start_new_thread")

        def run() -> None:
            with app.app_context():
                streaming.publish(channel, "from a thread")

        # Not joined: the publish waits for this worker's event loop, which
        # runs once this view returns.
        start_new_thread(run, ())
        return {"started": "yes"}

    return app
