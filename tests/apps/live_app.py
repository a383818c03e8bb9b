"""The app behind tests/test_live_streams.py, served by a real gunicorn.

Every stream takes a ``token`` query argument; what happens to it (the
generator started waiting, its ``finally`` ran, stop callbacks ran, the
``stream-closed`` reason) is recorded in this worker's memory and read back
with ``GET /state/<token>``. ``GET /stats`` reports the open streams and live
greenlets of the worker, for leak checks. The heartbeat interval comes from
the ``LIVE_PING_INTERVAL`` environment variable.

Serve it with ``gunicorn -k gevent "tests.apps.live_app:create_app()"``.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request

from flask_streaming import (
    ResponseWriter,
    Streaming,
    chunked_response,
    download_response,
    ndjson_response,
    produce,
    sse_response,
    stream_closed,
    stream_response,
    transport,
)

#: token -> what happened to that stream, in order.
STATE: dict[str, list[str]] = defaultdict(list)
#: Released by ``POST /go``: the broadcast streams send their events.
GO = threading.Event()

#: The file ``/download`` serves: 3 MiB and a bit, larger than one read block.
DOWNLOAD_SIZE = 3 * (1 << 20) + 12345
DOWNLOAD_NAME = "donn\u00e9es \u20ac 2024.bin"


def download_bytes() -> bytes:
    """The content of the download file (the tests rebuild it to compare)."""
    return (bytes(range(256)) * (DOWNLOAD_SIZE // 256 + 1))[:DOWNLOAD_SIZE]


def chunk(i: int) -> bytes:
    """The *i*-th chunk of ``/chunked``: varied sizes and every byte value."""
    return bytes((i * 7 + j) % 256 for j in range(i % 50 + 1))


def record(token: str | None, what: str) -> None:
    if token:
        STATE[token].append(what)


def create_app() -> Flask:
    app = Flask(__name__, instance_path=os.environ.get("INSTANCE_PATH") or None)
    app.config["STREAMING_PING_INTERVAL"] = float(os.environ.get("LIVE_PING_INTERVAL", "0.5"))
    Streaming(app)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    @stream_closed.connect_via(app)
    def on_closed(sender: Flask, stream: Any, reason: str | None, **kw: Any) -> None:
        from urllib.parse import parse_qs

        token = parse_qs(stream.environ.get("QUERY_STRING", "")).get("token", [None])[0]
        record(token, f"closed:{reason}")

    @app.get("/state/<token>")
    def state(token: str) -> Any:
        return jsonify(STATE.get(token, []))

    @app.get("/stats")
    def stats() -> Any:
        import greenlet

        live = sum(1 for o in gc.get_objects() if isinstance(o, greenlet.greenlet) and not o.dead)
        return jsonify({"open_streams": transport.open_stream_count(), "greenlets": live})

    @app.get("/sse/wait")
    def sse_wait() -> Any:
        """Waits ``delay`` seconds before its first event, then ticks."""
        token = request.args.get("token")
        delay = request.args.get("delay", 30.0, type=float)
        ping = request.args.get("ping", type=float)  # default: the config's

        def gen() -> Iterator[Any]:
            try:
                record(token, "waiting")
                time.sleep(delay)
                record(token, "woke")
                i = 0
                while True:
                    yield {"data": i, "id": i}
                    i += 1
                    time.sleep(0.05)
            finally:
                record(token, "finally")

        return sse_response(gen(), ping=ping)

    @app.get("/produce/wait")
    def produce_wait() -> Any:
        """Emits one event and stays open until the client leaves."""
        token = request.args.get("token")

        def start(stream: Any) -> Any:
            stream.emit("hello", event="greeting")
            return lambda: record(token, "cancel")

        return produce(start, stop=lambda: record(token, "stop"))

    @app.get("/sse/broadcast")
    def sse_broadcast() -> Any:
        """Waits for ``POST /go``, then sends ``n`` events and ends."""
        n = request.args.get("n", 5, type=int)

        def gen() -> Iterator[Any]:
            GO.wait()
            for i in range(n):
                yield {"data": {"i": i, "text": "caf\u00e9 \U0001f600"}, "id": i, "event": "b"}

        return sse_response(gen())

    @app.post("/go")
    def go() -> Any:
        GO.set()
        return jsonify({"ok": True})

    @app.get("/sse/short")
    def sse_short() -> Any:
        return sse_response(iter(["one", "two"]))

    @app.get("/sse/fail")
    def sse_fail() -> Any:
        def gen() -> Iterator[str]:
            yield "before"
            time.sleep(0.1)
            raise RuntimeError("the source broke")

        return sse_response(gen())

    @app.get("/ndjson")
    def ndjson() -> Any:
        count = request.args.get("count", 1000, type=int)
        rows = ({"id": i, "name": f"item {i}", "t": "\u00e9\n"} for i in range(count))
        return ndjson_response(rows)

    @app.get("/chunked")
    def chunked() -> Any:
        count = request.args.get("count", 100, type=int)
        encoding = request.args.get("encoding", "utf-8")
        return chunked_response((chunk(i) for i in range(count)), encoding=encoding)

    @app.get("/text")
    def text() -> Any:
        lines = request.args.get("lines", 1000, type=int)
        fail = request.args.get("fail", type=int)

        def gen() -> Iterator[str]:
            for i in range(lines):
                if fail is not None and i == fail:
                    time.sleep(0.1)
                    raise RuntimeError("the data source broke")
                yield f"line {i}\n"

        return stream_response(gen())

    @app.get("/text/slow")
    def text_slow() -> Any:
        """One line, then a long wait: the line must not wait with it."""
        token = request.args.get("token")

        def gen() -> Iterator[str]:
            yield "first\n"
            record(token, "waiting")
            time.sleep(30)
            yield "never\n"

        flush = request.args.get("flush", type=float)
        return stream_response(gen(), flush_interval=flush)

    @app.get("/manual")
    def manual() -> Any:
        """A ResponseWriter written from another greenlet (a monkey-patched thread)."""
        count = request.args.get("count", 100, type=int)
        stream = ResponseWriter(mimetype="application/x-ndjson")

        def work() -> None:
            for i in range(count):
                stream.write_chunk({"i": i})
                if i % 10 == 0:
                    time.sleep(0.001)
            stream.close()

        threading.Thread(target=work, daemon=True).start()
        return stream.response

    @app.route("/download", methods=["GET", "HEAD"])
    def download() -> Any:
        path = Path(app.instance_path, "download.bin")
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(download_bytes())
            tmp.replace(path)
        return download_response(path, filename=DOWNLOAD_NAME)

    return app
