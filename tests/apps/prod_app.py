"""An app for the production tests (tests/test_settings.py, tests/test_prod*.py):
its settings as the worker sees them, publishing, and the environment's
``STREAMING_*`` keys as config."""

from __future__ import annotations

import os

from flask import Flask

from flask_streaming import Streaming


def create_app() -> Flask:
    app = Flask(__name__, instance_path=os.environ.get("INSTANCE_PATH"))
    for key, value in os.environ.items():
        if key.startswith("STREAMING_"):
            app.config[key] = value
    streaming = Streaming(app)

    @app.get("/settings")
    def settings() -> dict[str, object]:
        s = app.extensions["streaming"].settings
        return {"max_connections": s.max_connections, "pid": os.getpid()}

    @app.post("/publish/<channel>")
    def publish(channel: str) -> dict[str, object]:
        return {"id": streaming.publish(channel, {"n": 1})}

    return app
