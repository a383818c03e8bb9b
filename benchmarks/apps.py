"""The benchmark server: flask_streaming's views and the peers' views in one app.

Served by ``benchmarks/run.py`` under a real gunicorn with the gevent worker::

    python -m gunicorn -k gevent -w 1 -b 127.0.0.1:PORT benchmarks.apps:app

Every ``/ours/...`` route uses flask_streaming; every ``/peer/...`` route is
what an app would write without it (a hand-written generator, Flask's
``send_file``). Paired routes produce the same data, so the only difference a
benchmark sees is the response machinery.

Files for the download routes are looked up in ``$BENCH_DATA_DIR`` (set by the
runner to a temporary folder it deletes afterwards).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, abort, request, send_file
from werkzeug.security import safe_join

from flask_streaming import Streaming, download_response, ndjson_response, sse_response

app = Flask(__name__)
Streaming(app)

#: Upper bound on ``n`` for the generator routes (keeps a typo from running forever).
MAX_ITEMS = 50_000_000


def _count() -> int:
    """The ``n`` query argument: how many items a generator route yields."""
    n = request.args.get("n", 1000, type=int)
    if n is None or not 0 <= n <= MAX_ITEMS:
        abort(400)
    return n


def event_payload(i: int) -> str:
    """The data of the *i*-th small SSE event (the same for ours and the peer)."""
    return f'{{"seq":{i},"msg":"hello"}}'


def record(i: int) -> dict[str, Any]:
    """The *i*-th small NDJSON record (the same for ours and the peer)."""
    return {"id": i, "name": "item", "ok": True}


def _data_file(name: str) -> str:
    """The path of a file of the benchmark's data folder, or 404."""
    folder = os.environ.get("BENCH_DATA_DIR")
    path = safe_join(folder, name) if folder else None
    if path is None or not os.path.isfile(path):
        abort(404)
    return path


@app.get("/health")
def health() -> str:
    """Readiness probe for the runner: the worker has imported the app."""
    return "ok"


# --- Server-Sent Events -------------------------------------------------------


@app.get("/ours/sse")
def ours_sse() -> Response:
    """``sse_response`` over a generator of *n* small events."""
    n = _count()

    def events() -> Iterator[str]:
        for i in range(n):
            yield event_payload(i)

    return sse_response(events())


@app.get("/peer/sse")
def peer_sse() -> Response:
    """A hand-written event stream: the same opening comment as ours (it
    gets the headers through proxies at once), then one ``data: ...``
    string per event: the same bytes as ours."""
    n = _count()

    def events() -> Iterator[str]:
        yield ": stream opened\n"
        for i in range(n):
            yield f"data: {event_payload(i)}\n\n"

    return Response(events(), mimetype="text/event-stream")


# --- NDJSON -------------------------------------------------------------------


@app.get("/ours/ndjson")
def ours_ndjson() -> Response:
    """``ndjson_response`` over *n* small records."""
    n = _count()
    return ndjson_response(record(i) for i in range(n))


@app.get("/peer/ndjson")
def peer_ndjson() -> Response:
    """A hand-written generator: ``json.dumps(rec, separators=(",", ":")) +
    "\\n"`` per record: the same bytes as ours (compact JSON)."""
    n = _count()

    def lines() -> Iterator[str]:
        for i in range(n):
            yield json.dumps(record(i), separators=(",", ":")) + "\n"

    return Response(lines(), mimetype="application/x-ndjson")


# --- File download ------------------------------------------------------------


@app.get("/ours/download/<name>")
def ours_download(name: str) -> Response:
    """``download_response`` of a file on disk."""
    return download_response(_data_file(name), filename=name)


@app.get("/peer/download/<name>")
def peer_download(name: str) -> Response:
    """Flask's ``send_file`` of the same file."""
    return send_file(_data_file(name), as_attachment=True, download_name=name)
