"""The app behind the reliability scenarios (tests/reliability/, run by
``python -m tests.reliability`` and trimmed in tests/test_reliability.py).

Configured from the environment so that one app serves every scenario:
``BROKER_URL``, ``UPLOAD_FOLDER``, ``BODY_TIMEOUT``, ``SEND_TIMEOUT``,
``MAX_CONNECTIONS``, ``MAX_CONNECTIONS_PER_CLIENT``, ``MAX_SESSIONS``,
``PING``, ``MAX_SEGMENT_SIZE``, ``MAX_UPLOAD_SIZE``, ``HISTORY``.

* ``POST /publish/<channel>?data=...&pad=n`` publishes (*data* then *n*
  dots); 503 when the broker is
  down (the publisher then knows the event was not published);
* ``GET /stats`` reports the worker's open channel streams and RSS;
* ``GET /whoami`` names the worker, so a test can pin a keep-alive
  connection to a worker it may kill;
* ``upload-completed`` returns the sha256 of the assembled file.

Serve it with ``gunicorn -k gevent "tests.apps.reliability_app:create_app()"``.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, request

from flask_streaming import Streaming
from flask_streaming.signals import upload_completed
from flask_streaming.transport import open_stream_count
from tests.apps import sha256_of

_ENV = {
    "BROKER_URL": ("STREAMING_BROKER_URL", str),
    "UPLOAD_FOLDER": ("STREAMING_UPLOAD_FOLDER", str),
    "BODY_TIMEOUT": ("STREAMING_BODY_TIMEOUT", float),
    "SEND_TIMEOUT": ("STREAMING_SEND_TIMEOUT", float),
    "MAX_CONNECTIONS": ("STREAMING_MAX_CONNECTIONS", int),
    "MAX_CONNECTIONS_PER_CLIENT": ("STREAMING_MAX_CONNECTIONS_PER_CLIENT", int),
    "MAX_SESSIONS": ("STREAMING_MAX_SESSIONS_PER_CLIENT", int),
    "PING": ("STREAMING_PING_INTERVAL", float),
    "MAX_SEGMENT_SIZE": ("STREAMING_MAX_SEGMENT_SIZE", int),
    "MAX_UPLOAD_SIZE": ("STREAMING_MAX_UPLOAD_SIZE", int),
    "HISTORY": ("STREAMING_HISTORY_SIZE", int),
}


def create_app() -> Flask:
    app = Flask(__name__, instance_path=os.environ.get("INSTANCE_PATH") or None)
    for name, (key, convert) in _ENV.items():
        if os.environ.get(name):
            app.config[key] = convert(os.environ[name])
    streaming = Streaming(app)

    @upload_completed.connect_via(app)
    def on_complete(sender: Flask, session: Any, **kw: Any) -> dict[str, Any]:
        return {"sha256": sha256_of(session), "worker": os.getpid()}

    @app.post("/publish/<channel>")
    def publish(channel: str) -> tuple[dict[str, Any], int]:
        try:
            data = request.args.get("data", "") + "." * int(request.args.get("pad", 0))
            event_id = streaming.publish(channel, data)
        except Exception as exc:  # the broker is down: not published
            return {"error": "broker_down", "message": str(exc)}, 503
        return {"id": event_id, "pid": os.getpid()}, 200

    @app.get("/whoami")
    def whoami() -> dict[str, int]:
        return {"pid": os.getpid()}

    @app.get("/stats")
    def stats() -> dict[str, Any]:
        broker = streaming.broker()
        with open("/proc/self/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
        return {
            "pid": os.getpid(),
            "connections": broker.connections,
            "open_streams": open_stream_count(),
            "rss_kib": rss,
        }

    return app
