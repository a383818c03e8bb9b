"""The demo: every example on one index page.

Run: ``gunicorn -c examples/gunicorn.conf.py`` (see the README).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from flask import Flask, Response, render_template, request

from examples import chat as chat_example
from examples import tus as tus_example
from examples import uploads as upload_example
from examples import uppy as uppy_example
from flask_streaming import (
    ResponseWriter,
    Streaming,
    download_response,
    ndjson_response,
    produce,
    sse_response,
    stream_response,
)

FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<circle cx="8" cy="8" r="7" fill="#2f6fed"/></svg>'
)

EXAMPLES = [
    ("clock", "Clock", "A Server-Sent Events clock, one tick a second."),
    ("progress", "Task progress", "A long task reports its progress as events."),
    ("logtail", "Log tail", "Lines appended to a log file stream to the page."),
    ("dataset", "NDJSON dataset", "A large table streamed as newline-delimited JSON."),
    ("download", "File download", "A generated file served with sendfile and Range."),
    (
        "record",
        "Microphone recorder",
        "MediaRecorder chunks streamed as upload segments; partial and final hooks.",
    ),
    (
        "chat",
        "Chat rooms",
        "Rooms as channels: POST to send, members-only rooms, history on reconnect.",
    ),
    (
        "tus",
        "Resumable upload (tus)",
        "tus-js-client in 5 MiB chunks; reload mid-upload, pick the file again: it resumes.",
    ),
    (
        "uppy",
        "Drag-and-drop upload (Uppy)",
        "Uppy with @uppy/tus: drop files; they resume after a reload or a server restart.",
    ),
]


def create_app(config: dict[str, object] | None = None) -> Flask:
    """The demo app. ``STREAMING_*`` environment variables are config keys
    (``STREAMING_BROKER_URL=redis://...`` for several workers); *config*
    overrides both (tests use it)."""
    app = Flask(__name__, instance_path=os.environ.get("INSTANCE_PATH"))
    app.config.update({k: v for k, v in os.environ.items() if k.startswith("STREAMING_")})
    app.config.from_mapping(config or {})
    streaming = Streaming(app)
    upload_example.register(app)
    chat_example.register(app, streaming)
    tus_example.register(app)
    uppy_example.register(app)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    log_file = Path(app.instance_path, "demo.log")

    @app.get("/favicon.ico")
    def favicon() -> Response:
        # Browsers ask for it on every page: an icon, not a 404 in the log.
        return Response(
            FAVICON, mimetype="image/svg+xml", headers={"Cache-Control": "max-age=86400"}
        )

    @app.get("/")
    def index() -> str:
        return render_template("index.html", examples=EXAMPLES)

    @app.get("/clock")
    def clock_page() -> str:
        return render_template("clock.html")

    @app.get("/clock/events")
    def clock_events():  # type: ignore[no-untyped-def]
        def ticks() -> Iterator[dict[str, object]]:
            while True:
                yield {"event": "tick", "data": {"time": time.strftime("%H:%M:%S")}}
                time.sleep(1)

        return sse_response(ticks())

    @app.get("/progress")
    def progress_page() -> str:
        return render_template("progress.html")

    @app.get("/progress/events")
    def progress_events():  # type: ignore[no-untyped-def]
        steps = min(max(request.args.get("steps", 20, type=int), 1), 1000)
        delay = min(max(request.args.get("delay", 0.2, type=float), 0.0), 5.0)

        def start(stream):  # type: ignore[no-untyped-def]
            for i in range(1, steps + 1):
                time.sleep(delay)
                if stream.emit({"done": i, "total": steps}, event="progress"):
                    return None  # the client left
            stream.emit({"result": "finished"}, event="complete")
            stream.close()
            return None

        return produce(start)

    @app.get("/logtail")
    def logtail_page() -> str:
        return render_template("logtail.html")

    @app.post("/logtail/append")
    def logtail_append():  # type: ignore[no-untyped-def]
        line = str((request.get_json(silent=True) or {}).get("line", "")).replace("\n", " ")
        if not line.strip():
            return {"error": "empty", "message": "Write something."}, 400
        with log_file.open("a", encoding="utf-8") as f:
            f.write(line[:1000] + "\n")
        return {"ok": True}

    @app.get("/logtail/events")
    def logtail_events():  # type: ignore[no-untyped-def]
        def tail() -> Iterator[dict[str, object]]:
            log_file.touch()
            with log_file.open(encoding="utf-8") as f:
                f.seek(0, os.SEEK_END)
                while True:
                    line = f.readline()
                    if line:
                        yield {"event": "line", "data": line.rstrip("\n")}
                    else:
                        time.sleep(0.2)

        return sse_response(tail())

    @app.get("/dataset")
    def dataset_page() -> str:
        return render_template("dataset.html")

    @app.get("/dataset/rows")
    def dataset_rows():  # type: ignore[no-untyped-def]
        count = min(max(request.args.get("count", 1000, type=int), 0), 10_000_000)
        rows = ({"id": i, "name": f"item {i}", "value": (i * 7919) % 1000} for i in range(count))
        return ndjson_response(rows)

    @app.get("/download")
    def download_page() -> str:
        return render_template("download.html")

    @app.get("/download/file")
    def download_file():  # type: ignore[no-untyped-def]
        path = Path(app.instance_path, "demo-download.bin")
        if not path.exists():
            path.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
        return download_response(path, filename="demo données.bin")

    @app.get("/download/generated")
    def download_generated():  # type: ignore[no-untyped-def]
        lines = (f"{i},{i * i}\n" for i in range(100_000))
        return download_response(lines, filename="squares.csv", mimetype="text/csv")

    @app.get("/manual")
    def manual():  # type: ignore[no-untyped-def]
        stream = ResponseWriter()

        def work() -> None:
            for i in range(1, 6):
                if stream.write(f"step {i} done\n"):
                    return
                time.sleep(0.2)
            stream.close()

        # A thread is a greenlet under gunicorn's gevent worker (monkey-patched).
        threading.Thread(target=work, daemon=True).start()
        return stream.response

    @app.get("/text")
    def text():  # type: ignore[no-untyped-def]
        if request.args.get("fail"):

            def failing() -> Iterator[str]:
                yield "partial line\n"
                raise RuntimeError("the data source broke")

            return stream_response(failing())
        return stream_response(f"line {i}\n" for i in range(1000))

    return app
