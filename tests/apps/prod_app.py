"""An app for the production tests (tests/test_settings.py,
tests/test_prod_errors.py): the environment's ``STREAMING_*`` keys as config,
and

* ``/settings``: the settings as the worker sees them;
* ``POST /publish/<channel>``: a publish from the app's own view;
* ``/failing``: an SSE stream whose generator raises after two events;
  ``/failing-chunked``: the same as a chunked ``text/plain`` response;
* ``/client-test``: a bare page importing the JS client as ``window.fs``;
* ``/stats``: the broker's open connections, per-client slots and subscribers;
* ``BODY_WRAPPER``: ``compress`` (Flask-Compress after the extension, set to
  compress ``text/event-stream``), ``compress-first`` (before it), or
  ``generator`` (an ``after_request`` hook that replaces every streamed body
  with a generator that never passes ``close()`` on);
* a partial hook that returns ``{"at": <datetime>}``, or, for a session
  whose metadata has ``bad_result``, an object no JSON provider serialises
  (metadata ``slow``: it sleeps that many seconds first);
  ``/hook-calls`` counts its calls.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, render_template_string

from flask_streaming import Streaming, sse_response, stream_response
from flask_streaming.signals import segment_received
from flask_streaming.uploads import Segment, UploadSession

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>client test</title>
<script type="module">
  import * as fs from "{{ streaming_client_url() }}";
  window.fs = fs;
  window.ready = true;
</script>
"""

#: What the partial hook returns as ``at``.
WHEN = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)


def _compress(app: Flask) -> None:
    from flask_compress import Compress

    app.config["COMPRESS_MIMETYPES"] = ["text/event-stream"]
    app.config["COMPRESS_STREAMS"] = True
    Compress(app)


def _wrap_bodies(app: Flask) -> None:
    """An ``after_request`` hook that replaces every streamed body with a
    generator of its own that never passes ``close()`` on."""

    @app.after_request
    def wrap(response: Response) -> Response:
        if response.is_streamed:
            inner = response.response

            def passthrough() -> Iterator[bytes]:
                yield from inner

            response.response = passthrough()
        return response


def create_app() -> Flask:
    app = Flask(__name__, instance_path=os.environ.get("INSTANCE_PATH"))
    for key, value in os.environ.items():
        if key.startswith("STREAMING_"):
            app.config[key] = value
    wrapper = os.environ.get("BODY_WRAPPER", "")
    if wrapper == "compress-first":
        _compress(app)
    streaming = Streaming(app)
    if wrapper == "compress":
        _compress(app)
    elif wrapper == "generator":
        _wrap_bodies(app)

    @app.get("/stats")
    def stats() -> dict[str, object]:
        broker = streaming.broker()
        return {
            "connections": broker.connections,
            "clients": sum(broker.clients.values()),
            "subscribers": sum(len(s) for s in broker.subscribers.values()),
        }

    calls = {"n": 0}

    @segment_received.connect_via(app)
    def stamp(sender: Flask, session: UploadSession, segment: Segment, **kw: Any) -> Any:
        calls["n"] += 1
        if session.metadata.get("slow"):
            time.sleep(float(session.metadata["slow"]))
        if session.metadata.get("bad_result"):
            return {"at": object()}
        return {"at": WHEN}

    @app.get("/hook-calls")
    def hook_calls() -> dict[str, int]:
        return calls

    @app.get("/settings")
    def settings() -> dict[str, object]:
        s = app.extensions["streaming"].settings
        return {"max_connections": s.max_connections, "pid": os.getpid()}

    @app.post("/publish/<channel>")
    def publish(channel: str) -> dict[str, object]:
        return {"id": streaming.publish(channel, {"n": 1}), "pid": os.getpid()}

    @app.get("/failing")
    def failing() -> Response:
        def events() -> Iterator[str]:
            yield "one"
            yield "two"
            raise ValueError("the source broke")

        return sse_response(events())

    @app.get("/failing-chunked")
    def failing_chunked() -> Response:
        def lines() -> Iterator[str]:
            yield "one\n"
            yield "two\n"
            raise ValueError("the source broke")

        return stream_response(lines(), mimetype="text/plain")

    @app.get("/client-test")
    def client_test() -> str:
        return render_template_string(PAGE)

    return app
