"""Streaming in both directions for Flask under gunicorn with gevent workers:
Server-Sent Events, chunked responses, segmented and tus uploads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .channels import subscribe_response
from .client_js import client_url
from .deprecations import renamed
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

__version__ = "0.1.0"

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

# Old names: typed aliases for type checkers, a warning at run time.
if TYPE_CHECKING:
    EventStream = EventWriter
    ResponseStream = ResponseWriter
else:
    __getattr__ = renamed(
        __name__, {"EventStream": "EventWriter", "ResponseStream": "ResponseWriter"}
    )
