"""The app behind tests/test_uploads_live.py: native upload sessions with
hooks that report which worker ran them.

* ``segment-received`` returns ``{"worker": pid, "seen": size}``;
* ``upload-completed`` returns ``{"worker": pid, "sha256": <hex of the whole>}``;
* ``GET /whoami`` returns the worker's pid, so a test can pin a keep-alive
  connection to a known worker;
* ``PUT /raw/<name>`` streams a body to disk in 1 MiB reads (the baseline).

Serve it with ``gunicorn -k gevent "tests.apps.uploads_app:create_app()"``;
the instance folder is ``$INSTANCE_PATH`` when set.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from flask import Flask, request

from flask_streaming import Streaming
from flask_streaming.signals import segment_received, upload_completed
from tests.apps import sha256_of


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_path=os.environ.get("INSTANCE_PATH") or None)
    app.config.from_mapping(config or {})
    Streaming(app)

    @segment_received.connect_via(app)
    def on_segment(sender: Flask, session: Any, segment: Any, **kw: Any) -> dict[str, Any]:
        return {"worker": os.getpid(), "seen": segment.size}

    @upload_completed.connect_via(app)
    def on_complete(sender: Flask, session: Any, **kw: Any) -> dict[str, Any]:
        return {"worker": os.getpid(), "sha256": sha256_of(session)}

    @app.get("/whoami")
    def whoami() -> dict[str, int]:
        return {"pid": os.getpid()}

    @app.put("/raw/<name>")
    def raw(name: str) -> dict[str, int]:
        os.makedirs(app.instance_path, exist_ok=True)
        path = os.path.join(app.instance_path, "raw-" + hashlib.sha256(name.encode()).hexdigest())
        size = 0
        with open(path, "wb") as f:
            while block := request.stream.read(1 << 20):
                f.write(block)
                size += len(block)
        return {"size": size}

    return app
