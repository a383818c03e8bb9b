"""Server-Sent Events: the Flask side (responses, the request's
``Last-Event-ID``, JSON through the app's provider).

* :class:`ServerSentEvent` (defined in :mod:`flask_streaming.sse_wire`,
  with the rest of the wire format) encodes one event exactly to the WHATWG
  event-stream rules (HTML Living Standard, "Server-sent events",
  https://html.spec.whatwg.org/multipage/server-sent-events.html).
* :func:`sse_response` streams an app's own (sync) generator, with heartbeats
  while the generator waits, disconnect detection and a ``stream-error``
  event when it raises.
* :func:`produce` is the push-style API of sveltekit-sse: ``start(stream)``
  gets an :class:`EventWriter` to ``emit`` on from any greenlet.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from flask import Response, current_app, has_app_context, request, stream_with_context
from flask.json.provider import DefaultJSONProvider, JSONProvider

from .deprecations import renamed
from .producers import Producer, pump
from .settings import get_settings
from .sse_wire import (
    DEFAULT_RETRY,
    EVENT_STREAM_TYPE,
    PING,
    PRELUDE,
    ServerSentEvent,
    compact_json_dumps,
    jittered_retry,
    retry_line,
    to_event,
    use_json_dumps,
)
from .transport import Outbox, ResponseBody, Source, gevent_active

logger = logging.getLogger(__name__)

#: Headers of every event stream. No hop-by-hop ``Connection`` header: WSGI
#: forbids it and the server manages the connection.
SSE_HEADERS = {
    "Content-Type": EVENT_STREAM_TYPE,
    # no-transform: proxies must not compress (or otherwise transform) the
    # stream; compression holds events back. See docs/deployment.rst.
    "Cache-Control": "no-cache, no-store, no-transform",
    "X-Accel-Buffering": "no",
}


def json_dumps(provider: JSONProvider | None = None) -> Callable[[Any], str]:
    """A compact JSON encoder: *provider*'s (an app's ``app.json``; default:
    the current app's when there is one) with its ``default`` hook for
    dates, UUIDs, dataclasses, its ``sort_keys`` and ``ensure_ascii``; else
    the stdlib's (keys in insertion order, raw UTF-8).

    With the default provider this is
    :func:`~flask_streaming.sse_wire.compact_json_dumps` with the provider's
    settings: the stdlib's C encoder made once (it does not detect reference
    cycles). It is also what :meth:`ServerSentEvent.encode` uses when given
    no encoder.
    """
    if provider is None and has_app_context():
        provider = current_app.json
    if provider is None:
        return compact_json_dumps()
    if not isinstance(provider, DefaultJSONProvider):
        return provider.dumps
    return compact_json_dumps(
        provider.default,
        sort_keys=bool(provider.sort_keys),
        ensure_ascii=bool(provider.ensure_ascii),
    )


use_json_dumps(json_dumps)


def last_event_id() -> str | None:
    """The current request's ``Last-Event-ID`` as text, ``None`` without one.

    Clients send the last event ID string encoded as UTF-8 (WHATWG HTML,
    "The Last-Event-ID header"; browsers, our JS and Python clients), while
    WSGI hands header bytes over as Latin-1 text: this undoes that, so that
    an id such as ``"…"`` comes back as sent (bytes that are not UTF-8
    become U+FFFD). A value that is not Latin-1 text (a test client's ``str``
    header) is returned as it is.
    """
    raw = request.headers.get("Last-Event-ID")
    if raw is None:
        return None
    try:
        return raw.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return raw


def event_body(
    outbox: Outbox,
    *,
    ping: float | None,
    retry: int | None,
    producer: Source | None = None,
    on_close: Iterable[Callable[[], Any]] = (),
    channels: tuple[str, ...] = (),
) -> ResponseBody:
    """The :class:`~flask_streaming.transport.ResponseBody` of an event stream
    in the current request: it opens with :data:`PRELUDE` and, when *retry*
    (ms; default ``STREAMING_RETRY``) is set, a ``retry:`` line; heartbeats
    (:data:`PING`) every *ping* seconds (default
    ``STREAMING_PING_INTERVAL``) while idle; a jittered ``retry:`` line when
    the worker shuts down. Every one of these is a single line without a
    blank line after it, so no client dispatches an event for it.

    :param producer: what fills *outbox* once the stream started.
    :param on_close: run once when the stream ends.
    :param channels: channel names, reported in the signals.

    :meta private:
    """
    settings = get_settings()
    if retry is None:
        retry = settings.retry
    prelude, on_shutdown = _stream_ends(retry)
    return ResponseBody(
        outbox,
        app=current_app._get_current_object(),  # type: ignore[attr-defined]
        environ=request.environ,
        prelude=prelude,
        ping=settings.ping_interval if ping is None else ping,
        ping_bytes=PING,
        producer=producer,
        on_close=on_close,
        channels=channels,
        on_shutdown=on_shutdown,
        send_timeout=settings.send_timeout,
        park_after=settings.park_after,
    )


@functools.lru_cache(maxsize=64)
def _stream_ends(retry: int | None) -> tuple[bytes, Callable[[], bytes]]:
    """An event stream's prelude (:data:`PRELUDE`, then a ``retry:`` line
    when *retry* (ms) is set) and its shutdown hint (a jittered ``retry:``
    line around *retry*, else :data:`DEFAULT_RETRY`), made once per *retry*
    value and shared by every stream that uses it: an idle connection holds
    no bytes or closure of its own for them."""
    base_retry = retry or DEFAULT_RETRY
    prelude = PRELUDE
    if retry is not None:
        # A retry field takes effect when its line is parsed: no blank line,
        # it rides on the first event (no phantom event, see PING).
        prelude += retry_line(retry)

    def on_shutdown() -> bytes:
        return jittered_retry(base_retry)

    return prelude, on_shutdown


def event_stream_response(
    body: ResponseBody, *, headers: Mapping[str, str] | None = None, status: int = 200
) -> Response:
    """Wrap a :class:`~flask_streaming.transport.ResponseBody` of SSE bytes in a
    :class:`~flask.Response` with the event-stream headers
    (:data:`SSE_HEADERS`; *headers* are applied last, so a ``Content-Type``
    of the caller's wins).

    :meta private:
    """
    rv = Response(body, status=status, headers=SSE_HEADERS, direct_passthrough=True)
    if headers:
        rv.headers.update(headers)
    return rv


def error_event() -> Callable[[BaseException], bytes]:
    """The ``stream-error`` event sent before aborting a failed stream.

    :meta private:
    """
    message = get_settings().error_message

    def encode(exc: BaseException) -> bytes:
        return ServerSentEvent({"message": message}, event="stream-error").encode(
            json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
        )

    return encode


def sse_response(
    source: Iterable[Any],
    *,
    ping: float | None = None,
    retry: int | None = None,
    headers: Mapping[str, str] | None = None,
    status: int = 200,
) -> Response:
    """Stream *source* as Server-Sent Events.

    :param source: any iterable or (sync) generator of ``str``, ``bytes``,
        ``dict`` or :class:`ServerSentEvent` (see :func:`to_event`). It runs
        inside the request context (:func:`~flask.stream_with_context`) in a
        greenlet of its own, so heartbeats go out while it waits.
    :param ping: seconds between heartbeats (default ``STREAMING_PING_INTERVAL``).
    :param retry: ``retry:`` sent first (default ``STREAMING_RETRY``).
    :param headers: extra response headers.
    :param status: the response status.

    The status line, the headers and a first comment are sent at once. When
    the client leaves, the generator is stopped (its ``finally`` runs). When
    it raises, a ``stream-error`` event is sent and the connection aborted.
    """
    dumps = json_dumps()

    def encode(item: Any) -> bytes:
        if type(item) is str and "\n" not in item and "\r" not in item:
            return b"data: %s\n\n" % item.encode("utf-8") if item else b"data:\n\n"
        return to_event(item).encode(dumps)

    producer = pump(stream_with_context(iter(source)), encode, on_error=error_event())
    body = event_body(Outbox(), ping=ping, retry=retry, producer=producer)
    return event_stream_response(body, headers=headers, status=status)


class StreamClosedError(Exception):
    """Returned (not raised) by :meth:`EventWriter.emit` and
    :meth:`~flask_streaming.ResponseWriter.write` once the stream ended."""


class EventWriter:
    """What :func:`produce` passes to ``start``: emit events, close.

    Emitting is safe from any greenlet of the worker. :meth:`emit` returns
    an error value instead of raising once the stream ended, as
    sveltekit-sse's ``emit()`` does.

    Named ``EventStream`` in 0.1; that name still works and warns
    (:exc:`DeprecationWarning`).
    """

    def __init__(self, outbox: Outbox, dumps: Callable[[Any], str]) -> None:
        self._outbox = outbox
        self._dumps = dumps

    @property
    def closed(self) -> bool:
        """``True`` once the stream ended (closed, or the client left)."""
        return not self._outbox.open

    def emit(
        self,
        data: Any,
        *,
        event: str | None = None,
        id: str | int | None = None,
        retry: int | None = None,
    ) -> StreamClosedError | None:
        """Send one event. Returns ``None``, or a :class:`StreamClosedError`
        once the stream ended (never raises for that)."""
        raw = ServerSentEvent(data, event=event, id=id, retry=retry).encode(self._dumps)
        if self._outbox.put(raw):
            return None
        return StreamClosedError("the stream is closed")

    def close(self) -> None:
        """End the stream after what was emitted (releases the lock)."""
        self._outbox.finish("closed")


def produce(
    start: Callable[[EventWriter], Callable[[], Any] | None],
    *,
    ping: float | None = None,
    stop: Callable[[], Any] | None = None,
    retry: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """An event stream driven by ``start(stream)``, as sveltekit-sse's
    ``produce``.

    ``start`` runs in its own greenlet inside the request context and gets an
    :class:`EventWriter`. The stream stays open (locked) until
    :meth:`EventWriter.close` or until the client leaves. If ``start``
    returns a callable, it is called when the stream ends; so is *stop*.
    If ``start`` raises, a ``stream-error`` event is sent and the connection
    aborted.
    """
    stream = EventWriter(Outbox(), json_dumps())
    cancels: list[Callable[[], Any]] = [stop] if stop else []
    on_error = error_event()

    def run() -> Iterator[str]:
        try:
            cancel = start(stream)
        except Exception as exc:
            logger.exception("flask_streaming: produce() start raised")
            stream._outbox.finish("error", on_error(exc))
            return
        if callable(cancel):
            cancels.insert(0, cancel)
        yield ""

    started = stream_with_context(run())  # captures the request context here

    def cleanup() -> None:
        for fn in cancels:
            fn()

    body = event_body(
        stream._outbox,
        ping=ping,
        retry=retry,
        producer=Producer(lambda outbox: list(started)),
        on_close=[cleanup],
    )
    return event_stream_response(body, headers=headers)


__all__ = [
    "EVENT_STREAM_TYPE",
    "PING",
    "PRELUDE",
    "SSE_HEADERS",
    "EventWriter",
    "ServerSentEvent",
    "StreamClosedError",
    "event_stream_response",
    "gevent_active",
    "json_dumps",
    "last_event_id",
    "produce",
    "sse_response",
    "to_event",
]

# Old names: typed aliases for type checkers, a warning at run time.
if TYPE_CHECKING:
    EventStream = EventWriter
else:
    __getattr__ = renamed(__name__, {"EventStream": "EventWriter"})
