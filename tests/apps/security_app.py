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
* channels: ``private-<user>`` only for that user, others public; users
  listed in ``revoked.txt`` in the instance folder (one a line) may
  subscribe to nothing; a stream's user is ``X-User`` (``stream_user``);
* ``POST /admin/end-streams`` (JSON ``{"channels": [...], "user": ...}``):
  ``streaming.end_streams``; ``POST /publish/<channel>`` (body: the data);
* every response carries ``X-Worker`` (the pid); ``GET /whoami``: the pid;
* ``GET /custom/<channel>``: a custom view's stream whose user is the int
  ``X-User-Id`` (``subscribe_response(user=...)``);
* ``GET /page/<user>``: a page (for a browser, whose ``EventSource`` sends
  no custom header) that sets the ``user`` cookie — read when ``X-User`` is
  absent — and keeps an ``EventSource`` of ``news`` open, recording what it
  sees in ``window.seen``.

``PROXY_FIX = n`` in the config applies Werkzeug's ``ProxyFix(x_for=n)``.

Serve it with ``gunicorn -k gevent "tests.apps.security_app:create_app()"``;
the instance folder is ``$INSTANCE_PATH``; ``$SECURITY_APP_CONFIG`` (JSON) is
extra config.
"""

from __future__ import annotations

import json
import os
from typing import Any

from flask import Flask, Response, request

from flask_streaming import Streaming, subscribe_response

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>revocation</title>
<script>
window.seen = {messages: [], opens: 0, errors: 0};
window.start = () => {
  const es = new EventSource("/streaming/events/news");
  window.es = es;
  es.onopen = () => { window.seen.opens += 1; };
  es.onerror = () => { window.seen.errors += 1; };
  es.onmessage = (e) => { window.seen.messages.push(e.data); };
};
</script>
"""


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
    if app.config.get("PROXY_FIX"):  # behind N proxies: Werkzeug's ProxyFix, x_for=N
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=int(app.config["PROXY_FIX"]))  # type: ignore[method-assign]
    streaming = Streaming(app)
    os.makedirs(app.instance_path, exist_ok=True)

    def current_user() -> str | None:
        return request.headers.get("X-User") or request.cookies.get("user")

    @streaming.authorize_upload
    def owner_only(action: str, session: Any) -> bool:
        user = current_user()
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

    revoked = os.path.join(app.instance_path, "revoked.txt")

    @streaming.authorize_channel
    def own_channel(channel: str, action: str) -> bool:
        user = current_user()
        if os.path.exists(revoked):
            with open(revoked) as f:
                if user in f.read().split():
                    return False
        if channel.startswith("private-"):
            return channel == f"private-{user}"
        return True

    @streaming.stream_user
    def stream_user() -> str | None:
        return current_user()

    @app.post("/admin/end-streams")
    def end_streams() -> tuple[str, int]:
        body = request.get_json()
        streaming.end_streams(body.get("channels"), user=body.get("user"))
        return "", 204

    @app.post("/publish/<path:channel>")
    def publish(channel: str) -> dict[str, str]:
        return {"id": streaming.publish(channel, request.get_data(as_text=True))}

    @app.after_request
    def worker(response: Response) -> Response:
        response.headers["X-Worker"] = str(os.getpid())
        return response

    @app.get("/page/<user>")
    def page(user: str) -> Response:
        rv = Response(PAGE, mimetype="text/html")
        rv.set_cookie("user", user)
        return rv

    @app.get("/custom/<channel>")
    def custom(channel: str) -> Response:
        # A custom view naming its stream's user itself, as an int (a
        # database id), the way an app without type checks would.
        user_id: Any = int(request.headers.get("X-User-Id", "0"))
        return subscribe_response([channel], user=user_id)

    @app.get("/whoami")
    def whoami() -> dict[str, int]:
        return {"pid": os.getpid()}

    return app
