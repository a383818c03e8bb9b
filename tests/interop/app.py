"""The app the interoperability matrix runs its clients against.

It is :func:`tests.apps.tus_app.create_app` (tus and native uploads, every
upload signal logged, ``/upload-info/<id>`` with the sha256 of the stored
bytes, ``/fixture/<seed>``) plus:

* ``GET /count?per=P&total=T&every=S``: ``tick`` events ``{"n": n}`` with
  ``id: n``, resuming after ``Last-Event-ID``; each connection sends at most
  *P* events (0: no limit) one every *S* seconds, then ends; once *T* (0: no
  limit) is reached a ``done`` event follows and the stream ends.
* ``GET /idle?idle=S``: ``tick`` 1 with ``id: 1``, *S* seconds of silence
  (heartbeats only), ``tick`` 2 with ``id: 2``, ``done``.
* channel ``ticker``: ``tick`` events ``{"n": n}`` published in bursts of
  five 0.1 s apart, then 1 s of silence (subscribe at
  ``/streaming/events/ticker``).
* ``GET /interop-page`` and ``GET /interop-js/<name>``: a blank page and the
  browser bundles the tests build with esbuild into ``$INTEROP_BUNDLES``.
* ``/uppy``: the Uppy example page of the demo (``examples/uppy.py``).

Every request to ``/count`` and ``/idle`` appends a JSON line to
``requests.log`` in the instance folder (``path``, ``last_event_id``,
``method``, ``at``), and every stream end one with ``end``: the tests check
what each client resent and how long it waited.

Settings come from the environment: ``RETRY`` (ms, the ``retry:`` sent at
the start of each stream, default 700) and ``PING`` (seconds between
heartbeats, default 0.2).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, request, send_from_directory

from flask_streaming import ServerSentEvent, sse_response
from tests.apps import tus_app

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>interop</title>
<body>
"""


def _log(app: Flask, record: dict[str, Any]) -> None:
    line = json.dumps({**record, "at": time.time(), "pid": os.getpid()}) + "\n"
    fd = os.open(
        os.path.join(app.instance_path, "requests.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT
    )
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _last_event_id() -> int:
    raw = request.headers.get("Last-Event-ID") or ""
    return int(raw) if raw.isdigit() else 0


def create_app() -> Flask:
    retry = int(os.environ.get("RETRY", "700"))
    ping = float(os.environ.get("PING", "0.2"))
    templates = Path(__file__).resolve().parents[2] / "examples" / "templates"
    app = tus_app.create_app(
        {"STREAMING_RETRY": retry, "STREAMING_PING_INTERVAL": ping},
        template_folder=str(templates),
    )
    from examples import uppy as uppy_example

    uppy_example.register(app)
    streaming = app.extensions["streaming"].extension
    bundles = os.environ.get("INTEROP_BUNDLES", "")

    def opened(path: str) -> None:
        _log(
            app,
            {
                "path": path,
                "method": request.method,
                "last_event_id": request.headers.get("Last-Event-ID"),
            },
        )

    @app.route("/count", methods=["GET", "POST"])
    def count() -> Response:
        opened("/count")
        per = request.args.get("per", 10, type=int) or 0
        total = request.args.get("total", 20, type=int) or 0
        every = min(max(request.args.get("every", 0.02, type=float) or 0.0, 0.0), 1.0)
        start = _last_event_id()

        def ticks() -> Iterator[ServerSentEvent]:
            n = start
            try:
                while not per or n < start + per:
                    if total and n >= total:
                        yield ServerSentEvent("end", event="done")
                        return
                    n += 1
                    yield ServerSentEvent({"n": n}, event="tick", id=n)
                    if every:
                        time.sleep(every)
            finally:
                _log(app, {"path": "/count", "end": n})

        return sse_response(ticks(), retry=retry)

    @app.route("/idle", methods=["GET", "POST"])
    def idle() -> Response:
        opened("/idle")
        quiet = min(max(request.args.get("idle", 1.0, type=float) or 0.0, 0.0), 10.0)
        start = _last_event_id()

        def events() -> Iterator[ServerSentEvent]:
            if start < 1:
                yield ServerSentEvent({"n": 1}, event="tick", id=1)
                time.sleep(quiet)
            if start < 2:
                yield ServerSentEvent({"n": 2}, event="tick", id=2)
            yield ServerSentEvent("end", event="done")

        return sse_response(events(), retry=retry)

    def ticker() -> None:
        n = 0
        while True:
            n += 1
            with app.app_context():
                streaming.publish("ticker", {"n": n}, event="tick")
            # Bursts of 5, then a pause of heartbeats after an id.
            time.sleep(0.1 if n % 5 else 1.0)

    threading.Thread(target=ticker, name="ticker", daemon=True).start()

    @app.get("/interop-page")
    def page() -> Response:
        return Response(PAGE, mimetype="text/html")

    @app.get("/interop-js/<name>")
    def bundle(name: str) -> Response:
        if not bundles:
            abort(404)
        return send_from_directory(bundles, name, max_age=0)

    return app
