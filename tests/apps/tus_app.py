"""The app behind tests/test_tus_live.py and tests/test_tus_browser.py.

* every upload signal appends one JSON line to ``signals.log`` in the
  instance folder (``signal``, ``id``, ``offset``, ``end``, ``pid``), so a
  test sees exactly which hooks ran, in every worker;
* ``upload-completed`` returns ``{"sha256": <hex of the whole>}`` (stored
  with the session: tus responses have no body);
* the post-commit signals are logged too; when the file ``die-once`` exists
  in the instance folder, the next ``segment-committed`` receiver removes it
  and kills its own worker (SIGKILL) before logging: a worker dying between
  commit and send;
* ``$TUS_SLOW_SECONDS`` makes ``segment-received`` sleep that long (a
  gevent sleep in the worker), so that a test can interrupt an upload
  mid-way;
* ``GET /fixture/<seed>?size=N``: N deterministic bytes
  (``random.Random(seed).randbytes(N)``), what the browser uploads;
* ``GET /upload-info/<id>``: the stored session and the sha256 of its bytes;
* ``GET /tus-page`` and ``GET /js/tus.min.js``: a page with tus-js-client's
  browser bundle from ``tests/js/node_modules`` (``npm ci --prefix tests/js``);
* ``GET /whoami``: the worker's pid;
* ``create_example_app()``: the same, plus the example page of
  ``examples/tus.py`` at ``/tus``.

Serve it with ``gunicorn -k gevent "tests.apps.tus_app:create_app()"``; the
instance folder is ``$INSTANCE_PATH`` and ``$TUS_APP_CONFIG`` (JSON) is
extra config.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, jsonify, request, send_from_directory

from flask_streaming import Streaming, get_upload_service
from flask_streaming.signals import (
    segment_committed,
    segment_received,
    upload_aborted,
    upload_committed,
    upload_completed,
    upload_created,
    upload_expired,
)

TUS_DIST = Path(__file__).resolve().parents[1] / "js" / "node_modules" / "tus-js-client" / "dist"
MAX_FIXTURE = 256 << 20

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>tus-js-client test page</title>
<script src="/js/tus.min.js"></script>
<script>
async function fixture(seed, size) {
  const r = await fetch(`/fixture/${seed}?size=${size}`);
  return await r.blob();
}
function run(input, options) {
  return new Promise((resolve, reject) => {
    const upload = new tus.Upload(input, {
      endpoint: "/streaming/tus/",
      retryDelays: [0, 100, 300, 1000],
      removeFingerprintOnSuccess: true,
      ...options,
      onError: (err) => reject(String(err)),
      onSuccess: () => resolve(upload.url),
    });
    upload.start();
  });
}
// A file (Blob) upload.
window.uploadBlob = async (seed, size, options) =>
  run(await fixture(seed, size), {metadata: {filename: `blob-${seed}.bin`,
                                             filetype: "application/octet-stream"}, ...options});
// A stream of unknown length: the fixture's bytes in uneven pieces.
window.uploadStream = async (seed, size, options) => {
  const bytes = new Uint8Array(await (await fixture(seed, size)).arrayBuffer());
  let at = 0, n = 0;
  const stream = new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) { controller.close(); return; }
      const piece = 1000 + (n++ * 7919) % 70000;
      controller.enqueue(bytes.slice(at, at + piece));
      at += piece;
    },
  });
  return run(stream.getReader(), {uploadLengthDeferred: true, ...options});
};
</script>
"""


def _log(app: Flask, record: dict[str, Any]) -> None:
    line = json.dumps({**record, "pid": os.getpid(), "at": time.time()}) + "\n"
    fd = os.open(
        os.path.join(app.instance_path, "signals.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT
    )
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _sha256(f: Any) -> str:
    h = hashlib.sha256()
    while block := f.read(1 << 20):
        h.update(block)
    return h.hexdigest()


def create_example_app() -> Flask:
    """The tus example page (``examples/tus.py``) with the same hooks."""
    from examples import tus as tus_example

    templates = Path(__file__).resolve().parents[2] / "examples" / "templates"
    app = create_app(template_folder=str(templates))
    tus_example.register(app)
    return app


def create_app(config: dict[str, Any] | None = None, **flask_options: Any) -> Flask:
    app = Flask(__name__, instance_path=os.environ.get("INSTANCE_PATH") or None, **flask_options)
    app.config.from_mapping(json.loads(os.environ.get("TUS_APP_CONFIG") or "{}"))
    app.config.from_mapping(config or {})
    Streaming(app)
    os.makedirs(app.instance_path, exist_ok=True)
    slow = float(os.environ.get("TUS_SLOW_SECONDS") or 0)

    @upload_created.connect_via(app)
    def on_created(sender: Flask, session: Any, **kw: Any) -> None:
        _log(app, {"signal": "upload-created", "id": session.id})

    @segment_received.connect_via(app)
    def on_segment(sender: Flask, session: Any, segment: Any, **kw: Any) -> None:
        _log(
            app,
            {
                "signal": "segment-received",
                "id": session.id,
                "index": segment.index,
                "offset": segment.offset,
                "end": segment.end,
            },
        )
        if slow:
            time.sleep(slow)

    @upload_completed.connect_via(app)
    def on_completed(sender: Flask, session: Any, **kw: Any) -> dict[str, Any]:
        with session.open() as f:
            digest = _sha256(f)
        _log(
            app,
            {
                "signal": "upload-completed",
                "id": session.id,
                "size": session.offset,
                "sha256": digest,
            },
        )
        return {"sha256": digest}

    @segment_committed.connect_via(app)
    def on_segment_committed(sender: Flask, session: Any, segment: Any, **kw: Any) -> None:
        try:
            os.unlink(os.path.join(app.instance_path, "die-once"))
        except FileNotFoundError:
            pass
        else:
            os.kill(os.getpid(), signal.SIGKILL)
        record = {"signal": "segment-committed", "id": session.id, "index": segment.index}
        _log(app, {**record, "offset": segment.offset, "end": segment.end})

    @upload_committed.connect_via(app)
    def on_upload_committed(sender: Flask, session: Any, **kw: Any) -> None:
        _log(app, {"signal": "upload-committed", "id": session.id, "size": session.offset})

    @upload_aborted.connect_via(app)
    def on_aborted(sender: Flask, session: Any, **kw: Any) -> None:
        _log(app, {"signal": "upload-aborted", "id": session.id})

    @upload_expired.connect_via(app)
    def on_expired(sender: Flask, session: Any, **kw: Any) -> None:
        _log(app, {"signal": "upload-expired", "id": session.id})

    @app.get("/whoami")
    def whoami() -> dict[str, int]:
        return {"pid": os.getpid()}

    @app.get("/fixture/<int:seed>")
    def fixture(seed: int) -> Response:
        size = request.args.get("size", 0, type=int) or 0
        if not 0 <= size <= MAX_FIXTURE:
            abort(400)
        return Response(random.Random(seed).randbytes(size), mimetype="application/octet-stream")

    @app.get("/upload-info/<upload_id>")
    def upload_info(upload_id: str) -> Response:
        session = get_upload_service().storage.load(upload_id)
        if session is None:
            abort(404)
        with session.open() as f:
            digest = _sha256(f)
        return jsonify({**session.to_record(), "data_sha256": digest})

    @app.get("/tus-page")
    def tus_test_page() -> Response:
        return Response(PAGE, mimetype="text/html")

    @app.get("/js/<path:name>")
    def tus_js(name: str) -> Response:
        return send_from_directory(TUS_DIST, name)

    return app
