"""Streaming in both directions for Flask under gunicorn with gevent workers:
Server-Sent Events, chunked responses, segmented and tus uploads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .channels import subscribe_response
    from .client_js import client_url
    from .errors import BrokerUnavailable, StreamingError
    from .extension import Streaming
    from .responses import (
        ResponseWriter,
        chunked_response,
        download_response,
        ndjson_response,
        stream_response,
    )
    from .settings import ConfigError, Settings
    from .signals import (
        event_published,
        segment_committed,
        segment_received,
        stream_closed,
        stream_opened,
        upload_aborted,
        upload_committed,
        upload_completed,
        upload_created,
        upload_expired,
        upload_removed,
    )
    from .sse import EventWriter, ServerSentEvent, StreamClosedError, produce, sse_response
    from .uploads import Segment, UploadSession, get_upload_service


__all__ = [
    "BrokerUnavailable",
    "ConfigError",
    "EventWriter",
    "ResponseWriter",
    "Segment",
    "ServerSentEvent",
    "Settings",
    "StreamClosedError",
    "Streaming",
    "StreamingError",
    "UploadSession",
    "__version__",
    "chunked_response",
    "client_url",
    "download_response",
    "event_published",
    "get_upload_service",
    "ndjson_response",
    "produce",
    "segment_committed",
    "segment_received",
    "sse_response",
    "stream_closed",
    "stream_opened",
    "stream_response",
    "subscribe_response",
    "upload_aborted",
    "upload_committed",
    "upload_completed",
    "upload_created",
    "upload_expired",
    "upload_removed",
]

_EXPORTS = {
    "subscribe_response": "channels",
    "client_url": "client_js",
    "BrokerUnavailable": "errors",
    "StreamingError": "errors",
    "Streaming": "extension",
    "ResponseWriter": "responses",
    "chunked_response": "responses",
    "download_response": "responses",
    "ndjson_response": "responses",
    "stream_response": "responses",
    "ConfigError": "settings",
    "Settings": "settings",
    "event_published": "signals",
    "segment_committed": "signals",
    "segment_received": "signals",
    "stream_closed": "signals",
    "stream_opened": "signals",
    "upload_aborted": "signals",
    "upload_committed": "signals",
    "upload_completed": "signals",
    "upload_created": "signals",
    "upload_expired": "signals",
    "upload_removed": "signals",
    "EventWriter": "sse",
    "ServerSentEvent": "sse",
    "StreamClosedError": "sse",
    "produce": "sse",
    "sse_response": "sse",
    "Segment": "uploads",
    "UploadSession": "uploads",
    "get_upload_service": "uploads",
}

# Old names: typed aliases for type checkers, a warning at run time.
_RENAMED = {"EventStream": "EventWriter", "ResponseStream": "ResponseWriter"}
if TYPE_CHECKING:
    EventStream = EventWriter
    ResponseStream = ResponseWriter


def __getattr__(name: str) -> Any:
    """Import the module that defines *name* when it is first asked for
    (PEP 562), so that ``import flask_streaming.client`` or
    ``flask_streaming.sse_wire`` loads no Flask, Werkzeug or blinker and no
    server module. A submodule's name imports it, as when this package
    imported them all (``flask_streaming.sse.last_event_id``)."""
    import importlib

    if name in _RENAMED:
        from .deprecations import renamed

        return renamed(__name__, _RENAMED, stacklevel=3)(name)
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("__"):
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
