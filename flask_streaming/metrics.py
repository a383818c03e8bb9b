"""Prometheus metrics of flask_streaming (``STREAMING_METRICS = True``).

``GET {prefix}/metrics`` answers the Prometheus text format (``prometheus_client``'s latest)
with these metrics, all counted from the extension's signals
(:mod:`flask_streaming.signals`) and Flask's ``request_finished``:

* ``flask_streaming_open_streams{kind}`` (gauge): open streaming responses;
  ``kind`` is ``channel`` (a subscription) or ``app`` (an app's own stream);
* ``flask_streaming_streams_closed_total{reason}``: streams ended, by
  ``stream-closed`` reason;
* ``flask_streaming_events_published_total``: :meth:`Streaming.publish
  <flask_streaming.Streaming.publish>` calls;
* ``flask_streaming_events_delivered_total``: events handed to local
  subscribers (live and replayed);
* ``flask_streaming_slow_consumer_disconnects_total``: subscribers cut off
  for lagging behind;
* ``flask_streaming_stream_resets_sent_total{reason}``: ``stream-reset``
  events queued;
* ``flask_streaming_upload_sessions_open`` (gauge): unfinished, unexpired
  upload sessions in the store, counted at each scrape (a scan of the
  store);
* ``flask_streaming_upload_requests_total{protocol,method,status}``:
  requests to the upload routes by ``protocol`` (``native`` or ``tus``),
  method and status: the outcomes;
* ``flask_streaming_segments_received_total``: segments (native) and
  ``PATCH`` ranges (tus) stored;
* ``flask_streaming_bytes_received_total``: bytes of those;
* ``flask_streaming_hook_duration_seconds{hook,outcome}`` (histogram): wall
  time of an upload signal's receivers; ``outcome`` is ``ok``,
  ``refused`` or ``failed``.

Under gunicorn with several workers every process counts its own: set the
environment variable ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder before
gunicorn starts (``prometheus_client``'s multiprocess mode) and the scrape,
whichever worker answers it, sums every worker's numbers. The shipped
``examples/gunicorn.conf.py`` does it; see the deployment guide.

Needs the ``metrics`` extra (``prometheus_client``).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request, request_finished
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .errors import Forbidden
from .settings import get_settings
from .signals import (
    event_published,
    events_delivered,
    hook_finished,
    segment_received,
    stream_closed,
    stream_opened,
    stream_reset_sent,
)

#: The environment variable of ``prometheus_client``'s multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

OPEN_STREAMS = Gauge(
    "flask_streaming_open_streams",
    "Open streaming responses (channel subscriptions and the app's own streams).",
    ["kind"],
    multiprocess_mode="livesum",
)
STREAMS_CLOSED = Counter(
    "flask_streaming_streams_closed", "Streams ended, by stream-closed reason.", ["reason"]
)
EVENTS_PUBLISHED = Counter("flask_streaming_events_published", "Events published.")
EVENTS_DELIVERED = Counter(
    "flask_streaming_events_delivered", "Events handed to local subscribers (live and replayed)."
)
SLOW_CONSUMERS = Counter(
    "flask_streaming_slow_consumer_disconnects", "Subscribers cut off for lagging behind."
)
RESETS_SENT = Counter(
    "flask_streaming_stream_resets_sent", "stream-reset events queued, by reason.", ["reason"]
)
UPLOAD_REQUESTS = Counter(
    "flask_streaming_upload_requests",
    "Requests to the upload routes by protocol, method and status.",
    ["protocol", "method", "status"],
)
SEGMENTS_RECEIVED = Counter(
    "flask_streaming_segments_received", "Segments (native) and PATCH ranges (tus) stored."
)
BYTES_RECEIVED = Counter(
    "flask_streaming_bytes_received", "Bytes of the segments and ranges stored."
)
HOOK_SECONDS = Histogram(
    "flask_streaming_hook_duration_seconds",
    "Wall time of an upload signal's receivers.",
    ["hook", "outcome"],
)


def _stream_opened(sender: Any, channels: tuple[str, ...] = (), **kw: Any) -> None:
    OPEN_STREAMS.labels("channel" if channels else "app").inc()


def _stream_closed(
    sender: Any, channels: tuple[str, ...] = (), reason: str | None = None, **kw: Any
) -> None:
    OPEN_STREAMS.labels("channel" if channels else "app").dec()
    STREAMS_CLOSED.labels(reason or "unknown").inc()
    if reason == "slow_consumer":
        SLOW_CONSUMERS.inc()


def _event_published(sender: Any, **kw: Any) -> None:
    EVENTS_PUBLISHED.inc()


def _events_delivered(sender: Any, count: int = 0, **kw: Any) -> None:
    EVENTS_DELIVERED.inc(count)


def _stream_reset_sent(sender: Any, reason: str = "", **kw: Any) -> None:
    RESETS_SENT.labels(reason).inc()


def _segment_received(sender: Any, segment: Any = None, **kw: Any) -> None:
    SEGMENTS_RECEIVED.inc()
    BYTES_RECEIVED.inc(getattr(segment, "size", 0) or 0)


def _hook_finished(
    sender: Any, hook: str = "", seconds: float = 0.0, outcome: str = "", **kw: Any
) -> None:
    HOOK_SECONDS.labels(hook, outcome).observe(seconds)


def _request_finished(sender: Flask, response: Response, **kw: Any) -> None:
    rule = request.url_rule
    if request.blueprint != "streaming" or rule is None:
        return
    prefix = get_settings(sender).url_prefix
    rest = rule.rule[len(prefix) :] if rule.rule.startswith(prefix) else rule.rule
    if rest.startswith("/uploads"):
        protocol = "native"
    elif rest.startswith("/tus"):
        protocol = "tus"
    else:
        return
    UPLOAD_REQUESTS.labels(protocol, request.method, str(response.status_code)).inc()


_RECEIVERS: list[tuple[Any, Callable[..., None]]] = [
    (stream_opened, _stream_opened),
    (stream_closed, _stream_closed),
    (event_published, _event_published),
    (events_delivered, _events_delivered),
    (stream_reset_sent, _stream_reset_sent),
    (segment_received, _segment_received),
    (hook_finished, _hook_finished),
    (request_finished, _request_finished),
]


#: Signals sent by a broker (not the app): counted for every broker of the
#: process.
_BROKER_SIGNALS = (events_delivered, stream_reset_sent)


def install(app: Flask) -> None:
    """Count *app*'s signals (idempotent)."""
    for signal, receiver in _RECEIVERS:
        if signal in _BROKER_SIGNALS:
            signal.connect(receiver, weak=False)
        else:
            signal.connect(receiver, sender=app, weak=False)


class _UploadSessions(Collector):
    """``flask_streaming_upload_sessions_open`` of one app, read from its
    store at scrape time (the store is shared by the workers)."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Any:
        from .uploads import get_upload_service
        from .uploads.sessions import OPEN

        gauge = GaugeMetricFamily(
            "flask_streaming_upload_sessions_open",
            "Unfinished, unexpired upload sessions in the store.",
        )
        settings = get_settings(self.app)
        if not ({"uploads", "tus"} & settings.routes):
            gauge.add_metric([], 0)
            yield gauge
            return
        sessions = get_upload_service(self.app).sessions()
        gauge.add_metric([], sum(1 for s in sessions if s.state == OPEN and not s.expired()))
        yield gauge


def exposition(app: Flask) -> bytes:
    """The text format of every metric: this process's, or with
    ``PROMETHEUS_MULTIPROC_DIR`` set, all processes' summed."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    sessions = CollectorRegistry()
    sessions.register(_UploadSessions(app))
    return generate_latest(registry) + generate_latest(sessions)


def _is_loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address((address or "").split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def metrics_view(authorizer: Callable[[], Callable[[], bool] | None]) -> Callable[[], Response]:
    """The ``{prefix}/metrics`` view. *authorizer* returns the app's hook
    (``None``: only loopback clients are answered); refused: 403 JSON."""

    def metrics() -> Response:
        from flask import current_app

        hook = authorizer()
        allowed = hook() if hook is not None else _is_loopback(request.remote_addr)
        if not allowed:
            return Forbidden("metrics are not served to this client").response()
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        return Response(exposition(app), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics
