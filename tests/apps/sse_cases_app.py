"""The app behind tests/test_sse_conformance.py and tests/test_sse_wire_live.py:
the conformance table (tests/sse_cases.py) served as raw bytes, for real
clients on a real gunicorn + gevent server.

* ``/case/<name>?token=T&split=N``: the first request of a token gets the
  case's stream (in writes of *N* bytes, a short pause between them, when
  *N* > 0); every later one gets ``204`` (a client stops reconnecting).
  Each request is recorded with the raw bytes of its ``Last-Event-ID``.
* ``/response/<name>?token=T``: the answer of a :data:`RESPONSES` row
  (status, ``Content-Type``, a body of ``retry: 50`` and one event)
  to the first request of a token, ``204`` to later ones.
* ``/seen/<token>``: the requests recorded for a token:
  ``[{"last_event_id": hex or null}, ...]``.
* ``/idle``: an ``sse_response`` that sends an event with an id, stays idle
  for ``?idle=`` seconds (heartbeats every ``STREAMING_PING_INTERVAL``, from
  the ``PING`` environment variable), then a second event, then ends.
* ``/gated?token=T&ping=S``: an ``sse_response`` whose generator waits
  until ``POST /go/T`` before its first event (so a client can show that it
  saw the stream open before any event existed), then ends.
* ``POST /publish/<channel>?data=...``: publish to a channel.
* ``/id-only``: ``sse_response([ServerSentEvent(id="7")], retry=50)`` (an
  id-only block, then the end), recording ``Last-Event-ID`` per ``token``;
  later requests of a token get ``204``.
* ``/echo-id``: one event whose data is the ``Last-Event-ID`` the server
  read (:func:`flask_streaming.sse.last_event_id`), as JSON.
* ``/client-page``: a bare page importing the JS client as ``window.fs``.

Serve it with ``gunicorn -k gevent "tests.apps.sse_cases_app:create_app()"``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, jsonify, render_template_string, request

from flask_streaming import ServerSentEvent, Streaming, sse_response
from flask_streaming.sse import last_event_id
from tests.sse_cases import CASES, RESPONSES

BY_NAME = {c.name: c for c in CASES}
RESPONSE_BY_NAME = {r.name: r for r in RESPONSES}
#: token -> the requests seen, in order
SEEN: dict[str, list[dict[str, Any]]] = defaultdict(list)
#: token -> released by POST /go/<token>
GATES: dict[str, threading.Event] = defaultdict(threading.Event)

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>sse conformance</title>
<body>
<script type="module">
  import * as fs from "{{ streaming_client_url() }}";
  window.fs = fs;
  window.ready = true;
</script>
"""


def _record(token: str) -> int:
    raw = request.environ.get("HTTP_LAST_EVENT_ID")
    # WSGI hands header bytes over as latin-1 text: recover the bytes.
    value = None if raw is None else raw.encode("latin-1").hex()
    SEEN[token].append({"last_event_id": value})
    return len(SEEN[token])


def create_app() -> Flask:
    app = Flask(__name__, instance_path=os.environ.get("INSTANCE_PATH") or None)
    app.config["STREAMING_PING_INTERVAL"] = float(os.environ.get("PING", "15"))
    Streaming(app)

    @app.get("/case/<name>")
    def case(name: str) -> Response:
        c = BY_NAME[name]
        if _record(request.args["token"]) > 1:
            return Response(status=204)
        split = request.args.get("split", 0, type=int)
        stream = c.stream

        def pieces() -> Iterator[bytes]:
            if split <= 0:
                yield stream
                return
            for i in range(0, len(stream), split):
                yield stream[i : i + split]
                time.sleep(0.001)  # gevent: each piece its own write

        return Response(
            pieces(),
            headers={"Content-Type": c.content_type, "Cache-Control": "no-store"},
            direct_passthrough=True,
        )

    @app.get("/response/<name>")
    def response(name: str) -> Response:
        r = RESPONSE_BY_NAME[name]
        if _record(request.args["token"]) > 1:
            return Response(status=204)
        # A 205 has no body (HTTP): one sent anyway would be read as the
        # start of the next response on a kept-alive connection.
        body = b"" if r.status == 205 else b"retry: 50\ndata: body\n\n"
        return Response(
            body,
            status=r.status,
            headers={"Content-Type": r.content_type, "Cache-Control": "no-store"},
        )

    @app.get("/seen/<token>")
    def seen(token: str) -> Response:
        return jsonify(SEEN.get(token, []))

    @app.get("/idle")
    def idle() -> Response:
        pause = request.args.get("idle", 1.0, type=float)

        def gen() -> Iterator[Any]:
            yield {"data": '{"n":1}', "id": "1"}
            time.sleep(pause)
            yield {"data": '{"n":2}', "id": "2"}
            time.sleep(pause)

        return sse_response(gen(), retry=100)

    @app.get("/gated")
    def gated() -> Response:
        gate = GATES[request.args["token"]]

        def gen() -> Iterator[Any]:
            gate.wait(20)  # gevent-patched: the worker serves others meanwhile
            yield {"data": "first", "id": "1"}

        # ?ping=: no heartbeat within the test, so nothing but the stream's
        # own opening can get the headers out before the first event
        return sse_response(gen(), ping=request.args.get("ping", type=float))

    @app.post("/go/<token>")
    def go(token: str) -> Response:
        GATES[token].set()
        return jsonify({"released": token})

    @app.post("/publish/<channel>")
    def publish(channel: str) -> Response:
        streaming: Streaming = app.extensions["streaming"].extension
        return jsonify({"id": streaming.publish(channel, request.args["data"])})

    @app.get("/id-only")
    def id_only() -> Response:
        if _record(request.args["token"]) > 1:
            return Response(status=204)
        return sse_response([ServerSentEvent(id="7")], retry=50)

    @app.get("/echo-id")
    def echo_id() -> Response:
        # one event: the Last-Event-ID the server read, as text
        return sse_response([{"data": json.dumps(last_event_id())}])

    @app.get("/client-page")
    def client_page() -> str:
        return render_template_string(PAGE)

    return app
