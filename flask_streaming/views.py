"""The blueprint: the built-in routes, JSON errors and CORS for all of them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from .errors import StreamingError, http_error_response
from .settings import Settings
from .transport import set_socket_timeout

logger = logging.getLogger(__name__)

#: Request headers a cross-origin client may send (tus and the native
#: upload protocol included).
CORS_ALLOW_HEADERS = (
    "Content-Type, Last-Event-ID, Authorization, X-Requested-With, "
    "X-Stream-Id, X-Stream-Segment, X-Stream-Done, X-Stream-Checksum, "
    "X-Svelte-Stream-Id, X-Svelte-Stream-Segment, X-Svelte-Stream-Done, "
    "Tus-Resumable, Upload-Length, Upload-Offset, Upload-Metadata, "
    "Upload-Defer-Length, Upload-Concat, Upload-Checksum, X-HTTP-Method-Override"
)
#: Response headers a cross-origin client may read.
CORS_EXPOSE_HEADERS = (
    "Location, Retry-After, Upload-Offset, Upload-Length, Tus-Version, Tus-Resumable, "
    "Tus-Max-Size, Tus-Extension, Upload-Metadata, Upload-Defer-Length, Upload-Concat, "
    "Upload-Expires"
)

CORS_METHODS = "GET, POST, HEAD, PATCH, DELETE, OPTIONS"


def apply_cors(settings: Settings, response: Response) -> Response:
    """Add CORS headers for an allowed ``Origin`` (none for others)."""
    origin = request.headers.get("Origin")
    allowed = settings.cors_origins
    wildcard = "*" in allowed and not settings.cors_credentials
    if allowed and not wildcard:
        # The answer depends on Origin, allowed or not: tell shared caches.
        response.vary.add("Origin")
    if not origin or not allowed or ("*" not in allowed and origin.rstrip("/") not in allowed):
        return response
    if "*" in allowed and settings.cors_credentials:
        # Refused at start (settings.py); never reflect an unlisted origin
        # with credentials even for Settings made by hand.
        return response
    h = response.headers
    h["Access-Control-Allow-Origin"] = "*" if wildcard else origin
    if settings.cors_credentials:
        h["Access-Control-Allow-Credentials"] = "true"
    h["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        h["Access-Control-Allow-Methods"] = CORS_METHODS
        h["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
        h["Access-Control-Max-Age"] = str(settings.cors_max_age)
    return response


def create_blueprint(
    settings: Settings, decorators: Iterable[Callable[..., Any]] = ()
) -> Blueprint:
    """Build the blueprint for one app's *settings*; *decorators* wrap every
    view (innermost first)."""
    bp = Blueprint("streaming", __name__, static_folder="static")
    decorators = list(decorators)

    # One wrapped function per view, so that a view with several rules
    # (stacked @route) maps to one endpoint function.
    wrapped_views: dict[Callable[..., Any], Callable[..., Any]] = {}

    def route(rule: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(view: Callable[..., Any]) -> Callable[..., Any]:
            wrapped = wrapped_views.get(view)
            if wrapped is None:
                wrapped = view
                for decorate in decorators:
                    wrapped = decorate(wrapped)
                wrapped_views[view] = wrapped
            bp.add_url_rule(rule, view.__name__, wrapped, **options)
            return view

        return register

    @bp.errorhandler(StreamingError)
    def streaming_error(exc: StreamingError) -> Response:
        return exc.response()

    @bp.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return http_error_response(exc)

    @bp.errorhandler(OSError)
    def storage_failed(exc: OSError) -> Response:
        # A write to the upload store failed (disk full, I/O error): still
        # the JSON shape, 507 when out of space.
        from .uploads.bodies import storage_error

        logger.error("flask_streaming: storage error: %s", exc)
        return storage_error(exc).response()

    @bp.after_request
    def cors(response: Response) -> Response:
        return apply_cors(settings, response)

    if settings.body_timeout > 0:

        @bp.before_request
        def body_deadline() -> None:
            # A stalled request body must not hold a greenlet forever: a
            # socket timeout makes reads fail (uploads/bodies.py turns that
            # into 408); cleared before the response is written.
            set_socket_timeout(request.environ, settings.body_timeout)

        @bp.teardown_request
        def clear_deadline(exc: BaseException | None) -> None:
            set_socket_timeout(request.environ, None)

    @bp.before_app_request
    def routing_error() -> Response | None:
        # A 404 or 405 from routing never reaches the blueprint's handlers
        # (no endpoint, so no blueprint): answer those under our prefix here.
        exc = request.routing_exception
        prefix = settings.url_prefix
        if (
            not isinstance(exc, HTTPException)
            or (exc.code or 500) < 400
            or not prefix
            or not (request.path == prefix or request.path.startswith(prefix + "/"))
        ):
            return None
        return apply_cors(settings, http_error_response(exc))

    if "events" in settings.routes:
        from .channels import register_event_views

        register_event_views(bp, route, settings)

    if "uploads" in settings.routes:
        from .uploads.views import register_upload_views

        register_upload_views(bp, route, settings)

    if "tus" in settings.routes:
        from .uploads.tus import register_tus_views

        register_tus_views(bp, route, settings)

    if "client" in settings.routes:
        from .client_js import register_client_views

        register_client_views(bp, route, settings)

    if "index" in settings.routes:

        @route("/", methods=["GET"])
        def index() -> Response:
            """What this server offers: the package version and route groups."""
            from .version import __version__

            return jsonify(
                {
                    "name": "flask_streaming",
                    "version": __version__,
                    "routes": sorted(settings.routes),
                }
            )

    return bp
