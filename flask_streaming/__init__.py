"""Streaming in both directions for Flask under gunicorn with gevent workers:
Server-Sent Events, chunked responses, segmented and tus uploads."""

from __future__ import annotations

from .errors import StreamingError
from .extension import Streaming
from .responses import (
    ResponseStream,
    chunked_response,
    download_response,
    ndjson_response,
    stream_response,
)
from .settings import Settings
from .signals import stream_closed, stream_opened
from .sse import EventStream, ServerSentEvent, StreamClosedError, produce, sse_response

__version__ = "0.1.0"

__all__ = [
    "EventStream",
    "ResponseStream",
    "ServerSentEvent",
    "Settings",
    "StreamClosedError",
    "Streaming",
    "StreamingError",
    "__version__",
    "chunked_response",
    "download_response",
    "ndjson_response",
    "produce",
    "sse_response",
    "stream_closed",
    "stream_opened",
    "stream_response",
]
