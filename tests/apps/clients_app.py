"""The app behind tests/test_client*.py: the examples (recorder, chat) plus
routes that exercise the JavaScript and Python clients.

* ``/client-test``: a bare page that imports the JS client as
  ``window.fs`` (the module) and sets ``window.ready``.
* ``/counter``: an event stream of ids ``n+1, n+2, ...`` after the
  ``Last-Event-ID`` *n* (header or ``last_event_id``), one every
  ``?every=`` seconds, with ``retry: 300``: a restarted server resumes
  exactly where the client says it stopped.
* ``/tricky``: the browser tests' tricky payloads (``SENT``), then ``done``.
* ``POST /echo-events``: echoes the request's method, a header and its body
  as events (for ``source()`` with POST and custom headers).
* ``POST /publish/<channel>``: publish ``{"data", "event"}``.
* ``/recorded/<id>``: the first bytes of a finished upload, hex (the test
  checks the WebM/EBML header), and its sha256.

A session whose metadata has ``crash_at: k`` makes the worker exit (once,
marked by a file in the instance folder) right after storing segment *k*:
the client sees its connection drop and must resume.
Serve it with ``gunicorn -k gevent "tests.apps.clients_app:create_app()"``.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Flask, Response, render_template_string, request

from examples import chat
from examples import uploads as upload_example
from flask_streaming import ServerSentEvent, Streaming, sse_response
from flask_streaming.signals import segment_received
from flask_streaming.uploads import Segment, UploadSession, get_upload_service
from tests.apps.browser_app import SENT

ROOT = Path(__file__).resolve().parents[2]

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>client test</title>
<body>
<script type="module">
  import * as fs from "{{ streaming_client_url() }}";
  window.fs = fs;
  window.ready = true;
</script>
"""


def create_app() -> Flask:
    app = Flask(
        __name__,
        instance_path=os.environ.get("INSTANCE_PATH"),
        template_folder=str(ROOT / "examples" / "templates"),
    )
    app.config["STREAMING_RETRY"] = int(os.environ.get("RETRY", "500"))
    app.config["STREAMING_PING_INTERVAL"] = 1.0
    app.config["STREAMING_MAX_SEGMENT_SIZE"] = 8 << 20
    streaming = Streaming(app)
    upload_example.register(app)
    chat.register(app, streaming)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    @segment_received.connect_via(app)
    def crash_once(sender: Flask, session: UploadSession, segment: Segment, **kw: Any) -> Any:
        crash_at = session.metadata.get("crash_at")
        marker = Path(app.instance_path, f"crashed-{session.id}")
        if crash_at == segment.index and not marker.exists():
            marker.touch()
            os._exit(1)  # the worker dies after storing the segment, before answering
        return None

    @app.get("/client-test")
    def client_test() -> str:
        return render_template_string(PAGE)

    @app.get("/counter")
    def counter() -> Response:
        raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or "0"
        start = int(raw) if raw.isdigit() else 0
        every = min(max(request.args.get("every", 0.1, type=float), 0.01), 5.0)
        limit = request.args.get("limit", 100000, type=int)

        def count() -> Iterator[Any]:
            yield ServerSentEvent(retry=300)
            n = start
            while n < limit:
                n += 1
                yield ServerSentEvent({"n": n, "pid": os.getpid()}, event="count", id=n)
                time.sleep(every)

        return sse_response(count(), ping=1.0)

    @app.get("/tricky")
    def tricky() -> Response:
        def generate() -> Iterator[Any]:
            yield from SENT
            yield ServerSentEvent("end", event="done")

        return sse_response(generate(), ping=0.5)

    @app.post("/echo-events")
    def echo_events() -> Response:
        body = request.get_data(as_text=True)
        info = {
            "method": request.method,
            "token": request.headers.get("X-Token"),
            "body": body,
            "lastEventId": request.headers.get("Last-Event-ID"),
        }
        return sse_response(iter([ServerSentEvent(info, event="echo", id="e1")]))

    @app.post("/publish/<channel>")
    def publish(channel: str) -> dict[str, Any]:
        body = request.get_json(silent=True) or {}
        event_id = streaming.publish(channel, body.get("data"), event=body.get("event"))
        return {"id": event_id}

    @app.get("/recorded/<session_id>")
    def recorded(session_id: str) -> dict[str, Any]:
        session = get_upload_service().status(session_id)
        digest = hashlib.sha256()
        with session.open() as f:
            head = f.read(16)
            digest.update(head)
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return {
            "head": head.hex(),
            "sha256": digest.hexdigest(),
            "size": session.offset,
            "segments": session.segments,
            "state": session.state,
        }

    return app
