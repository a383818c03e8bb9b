"""``GET {prefix}/client.js``: the JavaScript client, cached for a year.

The URL carries a hash of the file's content (``?v=<hash>``), so a browser
may keep it forever: a new release is a new URL. Templates get it with
``streaming_client_url()``::

    <script type="module">
      import { source, StreamingClient } from "{{ streaming_client_url() }}";
    </script>

A request without the current hash (an old or a hand-written URL) gets the
file with ``Cache-Control: no-cache`` and an ``ETag`` instead, so it is never
cached stale. ``{prefix}/client.d.ts`` serves the TypeScript declarations.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from importlib import resources
from typing import Any

from flask import Blueprint, Response, request, url_for

from .settings import Settings

#: The file names in the package's ``static`` folder.
SCRIPT = "flask-streaming.js"
DECLARATIONS = "flask-streaming.d.ts"
#: ``Cache-Control`` of a URL with the current content hash.
IMMUTABLE = "public, max-age=31536000, immutable"


@functools.cache
def _asset(name: str) -> tuple[bytes, str]:
    """The bytes of a static file of the package and their short hash."""
    data = resources.files("flask_streaming").joinpath("static", name).read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:16]


def client_version() -> str:
    """The content hash of ``flask-streaming.js`` (16 hex digits)."""
    return _asset(SCRIPT)[1]


def client_url(**values: Any) -> str:
    """The versioned URL of the JavaScript client (needs a request or app
    context with the extension registered and the ``client`` route group on).

    :param values: extra URL arguments for :func:`flask.url_for`, e.g.
        ``_external=True``.
    """
    return url_for("streaming.client_js", v=client_version(), **values)


def _serve(name: str, mimetype: str) -> Response:
    data, version = _asset(name)
    rv = Response(data, mimetype=mimetype)
    rv.set_etag(version)
    if request.args.get("v") == version:
        rv.headers["Cache-Control"] = IMMUTABLE
    else:
        rv.headers["Cache-Control"] = "no-cache"
    rv.make_conditional(request)
    return rv


def register_client_views(
    bp: Blueprint,
    route: Callable[..., Callable[[Callable[..., Any]], Callable[..., Any]]],
    settings: Settings,
) -> None:
    """Add ``/client.js`` and ``/client.d.ts`` (``client`` route group) and
    the template global ``streaming_client_url()``."""

    @route("/client.js", methods=["GET"])
    def client_js() -> Response:
        """The ES module; immutable when ``?v=`` is the current hash."""
        return _serve(SCRIPT, "text/javascript")

    @route("/client.d.ts", methods=["GET"])
    def client_dts() -> Response:
        """TypeScript declarations of the ES module."""
        return _serve(DECLARATIONS, "application/typescript")

    bp.add_app_template_global(client_url, "streaming_client_url")
