"""The app behind tests/test_security_live.py: users who may touch only
their own uploads and channels.

* the user is the ``X-User`` request header (no header: anonymous);
* uploads: ``create`` needs a user; ``status`` is open to every user (a
  team sees each other's progress); every other action (``append``,
  ``complete``, ``read``, ``abort``) only to the upload's owner, the
  ``owner`` metadata value (the native JSON body's ``metadata.owner``, tus
  ``Upload-Metadata: owner <base64>``);
* every decision is one JSON line in ``authz.log`` in the instance folder
  (``action``, ``user``, ``id``, ``allowed``);
* channels: ``private-<user>`` only for that user, others public;
* ``GET /whoami``: the worker's pid.

Serve it with ``gunicorn -k gevent "tests.apps.security_app:create_app()"``;
the instance folder is ``$INSTANCE_PATH``; ``$SECURITY_APP_CONFIG`` (JSON) is
extra config.
"""

from __future__ import annotations

import json
import os
from typing import Any

from flask import Flask, request

from flask_streaming import Streaming


def _log(app: Flask, record: dict[str, Any]) -> None:
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(
        os.path.join(app.instance_path, "authz.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT
    )
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_path=os.environ.get("INSTANCE_PATH") or None)
    app.config.from_mapping(json.loads(os.environ.get("SECURITY_APP_CONFIG") or "{}"))
    app.config.from_mapping(config or {})
    streaming = Streaming(app)
    os.makedirs(app.instance_path, exist_ok=True)

    @streaming.authorize_upload
    def owner_only(action: str, session: Any) -> bool:
        user = request.headers.get("X-User")
        if action in ("create", "status"):  # status: the team sees progress
            allowed = bool(user)
        else:
            allowed = bool(user) and session.metadata.get("owner") == user
        _log(
            app,
            {
                "action": action,
                "user": user,
                "id": None if session is None else session.id,
                "allowed": allowed,
            },
        )
        return allowed

    @streaming.authorize_channel
    def own_channel(channel: str, action: str) -> bool:
        if channel.startswith("private-"):
            return channel == f"private-{request.headers.get('X-User')}"
        return True

    @app.get("/whoami")
    def whoami() -> dict[str, int]:
        return {"pid": os.getpid()}

    return app
