"""Chunked responses: text, NDJSON, raw chunks, downloads, a manual writer."""

import threading
import time
from pathlib import Path

from flask import Flask

from flask_streaming import (
    ResponseWriter,
    Streaming,
    chunked_response,
    download_response,
    ndjson_response,
    stream_response,
)

app = Flask(__name__)
Streaming(app, buffer_size=64 * 1024, flush_interval=0.05)


@app.get("/report.txt")
def report():
    # Small yields are coalesced into large writes, never held over 50 ms.
    return stream_response(f"line {i}\n" for i in range(10_000))


@app.get("/rows.ndjson")
def rows():
    # One compact JSON document per line, through the app's JSON provider.
    return ndjson_response({"id": i, "square": i * i} for i in range(1_000))


@app.get("/frames")
def frames():
    # Each chunk is one write; base64 puts each chunk on a line of its own.
    return chunked_response([b"\x00\x01", b"\xff"], encoding="base64")


@app.get("/export.csv")
def export_csv():
    lines = (f"{i},{i * i}\n" for i in range(1_000))
    return download_response(lines, filename="squares.csv", mimetype="text/csv")


@app.get("/files/<name>")
def file_download(name):
    path = Path(app.instance_path, "exports", "report.bin")
    # A path: send_file's headers, conditional requests and Range, with the
    # kernel's sendfile under gevent. Any filename is safe (RFC 6266).
    return download_response(path, filename=f"Bericht für {name}.bin")


@app.get("/manual")
def manual():
    stream = ResponseWriter(mimetype="application/x-ndjson")

    def work():
        for step in range(3):
            # write*() returns an error value once the client left.
            if stream.write_chunk({"step": step}):
                return
            time.sleep(0.01)
        stream.close()

    # Under gunicorn's gevent worker this thread is a greenlet.
    threading.Thread(target=work, daemon=True).start()
    return stream.response
