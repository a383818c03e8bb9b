"""An app for tests/test_transport_survivors.py, served by a real gunicorn
with the gevent worker: an idle event stream (no heartbeat for a minute)
whose close is recorded, a stream that reports its socket's timeout, a
flood of events for a client that stops reading, and a generator that never
blocks.

Serve it with ``gunicorn -k gevent "tests.apps.transport_app:create_app()"``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from flask import Flask, jsonify, request

from flask_streaming import Streaming, sse_response, stream_closed

#: token -> the stream-closed reasons recorded for it.
CLOSED: dict[str, list[str | None]] = {}


def create_app() -> Flask:
    app = Flask(__name__, instance_path=os.environ.get("INSTANCE_PATH") or None)
    # No heartbeat for a minute: only the disconnect watcher notices a
    # client that left an idle stream.
    app.config["STREAMING_PING_INTERVAL"] = 60.0
    app.config["STREAMING_SEND_TIMEOUT"] = 1.5
    Streaming(app)

    @stream_closed.connect_via(app)
    def on_closed(sender: Flask, stream: Any, reason: str | None, **kw: Any) -> None:
        token = stream.environ.get("HTTP_X_TOKEN")
        if token:
            CLOSED.setdefault(token, []).append(reason)

    @app.get("/closed/<token>")
    def closed(token: str) -> Any:
        return jsonify(CLOSED.get(token, []))

    @app.get("/idle")
    def idle() -> Any:
        """One event, then nothing (the generator waits a minute)."""

        def gen() -> Iterator[Any]:
            yield {"data": "opened"}
            import gevent

            gevent.sleep(60)

        return sse_response(gen())

    @app.get("/flood")
    def flood() -> Any:
        """64 KiB events as fast as the client takes them, for ever."""
        payload = "x" * 65536

        def gen() -> Iterator[Any]:
            while True:
                yield {"data": payload}

        return sse_response(gen())

    @app.get("/busy")
    def busy() -> Any:
        """Events from a generator that never blocks, for 1.5 s: each takes
        50 ms of computing and carries the wall-clock time it was made."""
        import time

        def gen() -> Iterator[Any]:
            start = time.time()
            while (now := time.time()) - start < 1.5:
                yield {"data": {"at": now}}
                while time.time() - now < 0.05:  # busy: no switch to the hub
                    pass

        return sse_response(gen())

    @app.get("/socket-timeout")
    def socket_timeout() -> Any:
        """The timeout of the client's socket while the stream runs."""
        sock = request.environ["gunicorn.socket"]

        def gen() -> Iterator[Any]:
            yield {"data": {"timeout": sock.gettimeout()}}

        return sse_response(gen())

    @app.get("/plain-timeout")
    def plain_timeout() -> Any:
        """The timeout of the client's socket in a plain (not streamed) view."""
        return jsonify({"timeout": request.environ["gunicorn.socket"].gettimeout()})

    return app
