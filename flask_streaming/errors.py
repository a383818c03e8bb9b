"""The one exception family of flask_streaming.

Views raise; the blueprint's error handler turns every :class:`StreamingError`
(and any :class:`~werkzeug.exceptions.HTTPException` raised under the
blueprint) into the same JSON body::

    {"error": "<machine_code>", "message": "...", ...details}
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from flask import Response, has_request_context, jsonify, request
from werkzeug.exceptions import HTTPException

from .error_codes import ERRORS
from .error_codes import TRANSIENT_500_CODES as TRANSIENT_500_CODES


class StreamingError(Exception):
    """An error with an HTTP status, a machine-readable code and a message.

    :param message: text for a human.
    :param code: machine code, e.g. ``"segment_conflict"``.
    :param status: the HTTP status code of the response; by default the
        status :data:`~flask_streaming.error_codes.ERRORS` lists for *code*
        (one code, one status), else the class's.
    :param headers: extra response headers, e.g. ``Retry-After``.
    :param details: further JSON-serialisable members of the body.
    """

    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        elif (entry := ERRORS.get(self.code)) is not None:
            self.status = entry.status
        self.headers = headers or {}
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of this error."""
        return {"error": self.code, "message": self.message, **self.details}

    def response(self) -> Response:
        """A JSON :class:`~flask.Response` for this error."""
        rv = jsonify(self.to_dict())
        rv.status_code = self.status
        rv.headers.update(self.headers)
        return rv


class BadRequest(StreamingError):
    """400: malformed input."""

    status, code = 400, "bad_request"


class Forbidden(StreamingError):
    """403: an authorization hook said no."""

    status, code = 403, "forbidden"


class NotFound(StreamingError):
    """404: unknown id or channel."""

    status, code = 404, "not_found"


class Conflict(StreamingError):
    """409: the request contradicts what the server already holds."""

    status, code = 409, "conflict"


class RequestTimeout(StreamingError):
    """408: the request body stalled longer than ``STREAMING_BODY_TIMEOUT``;
    the connection is closed after this answer."""

    status, code = 408, "body_timeout"

    def response(self) -> Response:
        """The JSON answer; the connection is shut once it was sent (the
        rest of the stalled body is never read)."""
        rv = super().response()
        sock = request.environ.get("gunicorn.socket") if has_request_context() else None
        if sock is not None:

            def shut() -> None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

            rv.call_on_close(shut)
        return rv


class UnsupportedMediaType(StreamingError):
    """415: the request body is not of the media type the route takes."""

    status, code = 415, "unsupported_media_type"


class Gone(StreamingError):
    """410: the resource existed and has expired."""

    status, code = 410, "gone"


class PayloadTooLarge(StreamingError):
    """413: a size limit was exceeded."""

    status, code = 413, "payload_too_large"


class TooManyRequests(StreamingError):
    """429: a per-client quota was exceeded."""

    status, code = 429, "too_many_requests"


class ServiceUnavailable(StreamingError):
    """503: a per-worker limit was reached; retry later."""

    status, code = 503, "service_unavailable"


class BrokerUnavailable(ServiceUnavailable):
    """503: the channels' broker (Redis) cannot be reached, or did not answer
    within its socket timeout. Raised by
    :meth:`Streaming.publish <flask_streaming.Streaming.publish>` (the
    event was not published; publish again later) with the broker's own
    exception as ``__cause__``. Answered as JSON 503 with ``Retry-After``."""

    status, code = 503, "broker_unavailable"

    def __init__(self, message: str = "The channels' broker is unavailable.", **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": "5"})
        super().__init__(message, **kw)


class Locked(StreamingError):
    """423: another request is writing the same upload right now."""

    status, code = 423, "locked"


class InsufficientStorage(StreamingError):
    """507: the upload store is out of space; nothing was accepted."""

    status, code = 507, "insufficient_storage"


class StorageFailed(StreamingError):
    """500: the upload store failed to write (an I/O error other than a full
    disk); nothing was accepted, the client may send again."""

    status, code = 500, "storage_error"


def _http_code(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_").replace("'", "")


def http_error_response(exc: HTTPException) -> Response:
    """Turn a Werkzeug :class:`HTTPException` into the JSON error shape."""
    err = StreamingError(
        exc.description or exc.name or "error",
        code=_http_code(exc),
        status=exc.code or 500,
    )
    rv = err.response()
    if exc.code == 405 and exc.valid_methods:  # type: ignore[attr-defined]
        rv.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
    return rv
