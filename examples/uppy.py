"""Resumable drag-and-drop uploads with Uppy (``@uppy/core``,
``@uppy/drag-drop`` and ``@uppy/tus``): drop files on the page, they go to
the extension's tus endpoint in 5 MiB ``PATCH`` requests. Reload the page
mid-upload and drop the same file again: it resumes where it stopped
(``@uppy/tus`` keeps the upload URL in ``localStorage``); if the server goes
away mid-upload, the upload retries until it is back and then resumes.

Hook it into an app with ``register(app)`` (after ``Streaming(app)``);
``/uppy`` is the page. Finished files are listed with a link to
``/tus-files/<id>`` (the route of :mod:`examples.tus`, which the demo also
registers).

The page loads ``examples/static/uppy/uppy.min.js``, one ~135 KB ES module
built from npm by ``bash examples/vendor_uppy.sh`` and committed: the demo
needs no network or Node at run time.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, render_template, send_from_directory

BUNDLE_DIR = Path(__file__).resolve().parent / "static" / "uppy"


def register(app: Flask) -> None:
    """Add the Uppy upload page and its bundle's route to *app*."""

    @app.get("/uppy")
    def uppy_page() -> str:
        return render_template("uppy.html")

    @app.get("/uppy-client/<any('uppy.min.js', 'uppy.min.css'):name>")
    def uppy_bundle(name: str) -> Response:
        return send_from_directory(BUNDLE_DIR, name, max_age=0)
