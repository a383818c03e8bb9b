"""Resumable uploads with tus-js-client: pick a file, watch the progress,
reload the page mid-upload, pick the same file again: it resumes where it
stopped (tus-js-client keeps the upload's URL in ``localStorage`` under the
file's fingerprint and asks the server for the offset with ``HEAD``).

Hook it into an app with ``register(app)`` (after ``Streaming(app)``);
``/tus`` is the page, ``/tus-files/<id>`` downloads a finished upload.

The page loads tus-js-client's browser bundle from
``examples/static/tus/tus.min.js`` (vendored by ``bash examples/vendor_tus.sh``
from the npm registry), or, when that is missing, from
``tests/js/node_modules`` (``npm ci --prefix tests/js``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, render_template, send_from_directory

from flask_streaming import download_response
from flask_streaming.signals import upload_completed
from flask_streaming.uploads import UploadSession, get_upload_service

HERE = Path(__file__).resolve().parent
#: Where the bundle is looked for, in order.
BUNDLE_DIRS = (
    HERE / "static" / "tus",
    HERE.parent / "tests" / "js" / "node_modules" / "tus-js-client" / "dist",
)


def register(app: Flask) -> None:
    """Add the tus upload page, its hook and the download route to *app*."""

    @upload_completed.connect_via(app)
    def on_complete(sender: Flask, session: UploadSession, **kw: Any) -> Any:
        # The final hook. tus responses have no body, so what this returns is
        # stored with the session (session.results), not sent to the client.
        if session.protocol == "tus":
            app.logger.info("tus upload %s complete: %d bytes", session.id, session.offset)
        return None

    @app.get("/tus")
    def tus_page() -> str:
        return render_template("tus.html")

    @app.get("/tus-client/tus.min.js")
    def tus_bundle() -> Response:
        for folder in BUNDLE_DIRS:
            if (folder / "tus.min.js").is_file():
                return send_from_directory(folder, "tus.min.js", max_age=0)
        abort(404, "tus-js-client is not vendored: run bash examples/vendor_tus.sh")

    @app.get("/tus-files/<upload_id>")
    def tus_file(upload_id: str) -> Response:
        session = get_upload_service().status(upload_id)  # 404/410 JSON when unknown
        if not session.completed or session.path is None:
            abort(404)
        return download_response(
            session.path,
            filename=session.filename or f"upload-{session.id}",
            mimetype="application/octet-stream",
        )
