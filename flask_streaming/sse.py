"""Server-Sent Events: the encoder and the response helpers.

* :class:`ServerSentEvent` encodes one event exactly to the WHATWG
  event-stream rules (HTML Living Standard, "Server-sent events",
  https://html.spec.whatwg.org/multipage/server-sent-events.html).
* :func:`sse_response` streams an app's own (sync) generator, with heartbeats
  while the generator waits, disconnect detection and a ``stream-error``
  event when it raises.
* :func:`produce` is the push-style API of sveltekit-sse: ``start(stream)``
  gets an :class:`EventWriter` to ``emit`` on from any greenlet.
"""

from __future__ import annotations

import json
import logging
import re
from _json import encode_basestring as _c_encode_basestring
from _json import encode_basestring_ascii as _c_encode_basestring_ascii
from _json import make_encoder as _c_make_encoder
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from flask import Response, current_app, has_app_context, request, stream_with_context
from flask.json.provider import DefaultJSONProvider, JSONProvider

from .deprecations import renamed
from .producers import Producer, pump
from .settings import get_settings
from .transport import Outbox, ResponseBody, Source, gevent_active, retry_line
from .transport import jittered_retry as _jittered_retry

logger = logging.getLogger(__name__)


_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FORBIDDEN = re.compile(r"[\r\n\x00]")

#: The heartbeat: a comment line, which every client ignores. No blank line
#: follows it: a comment needs none, and clients that dispatch at every
#: blank line (fetch-event-source, httpx-sse once an id was seen) would hand
#: the app an empty "phantom" event for it.
PING = b": ping\n"

#: The first bytes of every event stream (before an optional ``retry:``
#: line): they make the server send the status line and headers at once.
#: A comment line without a blank line, like :data:`PING`.
PRELUDE = b": stream opened\n"

#: The ``Content-Type`` of every event stream: the bare type. The WHATWG
#: registration of ``text/event-stream`` says a ``charset`` parameter serves
#: no purpose (the stream is always UTF-8), and some clients (sveltekit-sse's
#: ``source()``) accept a response only when the type is exactly this.
EVENT_STREAM_TYPE = "text/event-stream"

#: Headers of every event stream. No hop-by-hop ``Connection`` header: WSGI
#: forbids it and the server manages the connection.
SSE_HEADERS = {
    "Content-Type": EVENT_STREAM_TYPE,
    # no-transform: proxies must not compress (or otherwise transform) the
    # stream; compression holds events back. See docs/deployment.rst.
    "Cache-Control": "no-cache, no-store, no-transform",
    "X-Accel-Buffering": "no",
}

_EVENT_FIELDS = frozenset({"data", "event", "id", "retry", "comment"})


def _no_default(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def json_dumps(provider: JSONProvider | None = None) -> Callable[[Any], str]:
    """A compact JSON encoder: *provider*'s (an app's ``app.json``; default:
    the current app's when there is one) with its ``default`` hook for
    dates, UUIDs, dataclasses, its ``sort_keys`` and ``ensure_ascii``; else
    the stdlib's (keys in insertion order, raw UTF-8).

    With the default provider this is the stdlib's C encoder made once, which
    saves the per-call set-up of :meth:`json.JSONEncoder.encode` on hot paths
    (one call per NDJSON record or SSE event). Like ``check_circular=False``,
    it does not detect reference cycles.
    """
    default: Any = _no_default
    sort_keys = ensure_ascii = False
    if provider is None and has_app_context():
        provider = current_app.json
    if provider is not None:
        if not isinstance(provider, DefaultJSONProvider):
            return provider.dumps
        default = provider.default
        sort_keys, ensure_ascii = bool(provider.sort_keys), bool(provider.ensure_ascii)
    encode_str = _c_encode_basestring_ascii if ensure_ascii else _c_encode_basestring
    encoder = _c_make_encoder(None, default, encode_str, None, ":", ",", sort_keys, False, True)
    join = "".join

    def dumps(obj: Any) -> str:
        return join(encoder(obj, 0))

    return dumps


def _check_field(name: str, value: str) -> str:
    if _FORBIDDEN.search(value):
        raise ValueError(f"SSE {name} must not contain CR, LF or NUL: {value!r}")
    return value


class ServerSentEvent:
    """One event of an event stream.

    :param data: ``str`` is sent as is (split into ``data:`` lines on CR, LF
        and CRLF only), ``bytes`` are decoded as UTF-8, anything else is
        encoded as compact JSON. ``None``: no ``data:`` line, so the event
        does not dispatch (useful for a lone ``retry`` or comment).
    :param event: the event type; clients dispatch it by name.
    :param id: sets the client's last event id (``0`` and ``""`` are kept).
    :param retry: the client's reconnection time in milliseconds.
    :param comment: a comment line, ignored by clients.
    :raises ValueError: CR, LF or NUL in ``event``, ``id`` or ``comment``, or
        a ``retry`` that is not a non-negative integer.
    """

    __slots__ = ("comment", "data", "event", "id", "retry")

    def __init__(
        self,
        data: Any = None,
        *,
        event: str | None = None,
        id: str | int | None = None,
        retry: int | None = None,
        comment: str | None = None,
    ) -> None:
        if retry is not None and (
            not isinstance(retry, int) or isinstance(retry, bool) or retry < 0
        ):
            raise ValueError(f"SSE retry must be a non-negative int, not {retry!r}")
        self.data = data
        self.event = None if event is None else _check_field("event", str(event))
        self.id = None if id is None else _check_field("id", str(id))
        self.retry = retry
        self.comment = None if comment is None else _check_field("comment", str(comment))

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{k}={getattr(self, k)!r}" for k in self.__slots__ if getattr(self, k) is not None
        )
        return f"ServerSentEvent({fields})"

    def encode(self, dumps: Callable[[Any], str] | None = None) -> bytes:
        """The event as UTF-8 bytes, ending with the blank line that
        dispatches it.

        :param dumps: JSON encoder for non-text data (default:
            :func:`json_dumps`).
        """
        out: list[str] = []
        if self.comment is not None:
            out.append(f": {self.comment}" if self.comment else ":")
        if self.id is not None:
            out.append(f"id: {self.id}" if self.id else "id:")
        if self.event is not None:
            out.append(f"event: {self.event}")
        if self.data is not None:
            out.extend(data_lines(self.data, dumps))
        if self.retry is not None:
            out.append(f"retry: {self.retry}")
        out.append("\n")
        return "\n".join(out).encode("utf-8")


def data_lines(data: Any, dumps: Callable[[Any], str] | None = None) -> list[str]:
    """The ``data:`` lines for *data* (see :class:`ServerSentEvent`)."""
    if isinstance(data, bytes):
        text = data.decode("utf-8")
    elif isinstance(data, str):
        text = data
    else:
        text = (dumps or json_dumps())(data)
    return [f"data: {line}" if line else "data:" for line in _LINE_BREAK.split(text)]


def to_event(item: Any) -> ServerSentEvent:
    """Turn one item an app yields into a :class:`ServerSentEvent`.

    A :class:`ServerSentEvent` is kept; a dict whose keys are all event fields
    (``data``, ``event``, ``id``, ``retry``, ``comment``) gives those fields,
    as in sse-starlette; anything else becomes the event's data.
    """
    if isinstance(item, ServerSentEvent):
        return item
    if isinstance(item, Mapping) and item and _EVENT_FIELDS.issuperset(item):
        return ServerSentEvent(**item)
    return ServerSentEvent(item)


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


def jittered_retry(base: int | None = None) -> bytes:
    """A lone ``retry:`` line (no blank line after it: it takes effect when
    parsed and dispatches nothing) between *base* (default
    ``STREAMING_RETRY``, else 3 s) and *base* plus
    :data:`~flask_streaming.transport.SHUTDOWN_RETRY_SPREAD` ms."""
    return _jittered_retry(get_settings().retry or 3000 if base is None else base)


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
    """
    settings = get_settings()
    if retry is None:
        retry = settings.retry
    base_retry = retry or 3000
    prelude = PRELUDE
    if retry is not None:
        # A retry field takes effect when its line is parsed: no blank line,
        # it rides on the first event (no phantom event, see PING).
        prelude += retry_line(retry)
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
        on_shutdown=lambda: _jittered_retry(base_retry),
        send_timeout=settings.send_timeout,
    )


def event_stream_response(
    body: ResponseBody, *, headers: Mapping[str, str] | None = None, status: int = 200
) -> Response:
    """Wrap a :class:`~flask_streaming.transport.ResponseBody` of SSE bytes in a
    :class:`~flask.Response` with the event-stream headers
    (:data:`SSE_HEADERS`; *headers* are applied last, so a ``Content-Type``
    of the caller's wins)."""
    rv = Response(body, status=status, headers=SSE_HEADERS, direct_passthrough=True)
    if headers:
        rv.headers.update(headers)
    return rv


def error_event() -> Callable[[BaseException], bytes]:
    """The ``stream-error`` event sent before aborting a failed stream."""
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
    "PING",
    "PRELUDE",
    "EventWriter",
    "ServerSentEvent",
    "StreamClosedError",
    "event_stream_response",
    "gevent_active",
    "last_event_id",
    "produce",
    "sse_response",
]

# Old names: typed aliases for type checkers, a warning at run time.
if TYPE_CHECKING:
    EventStream = EventWriter
else:
    __getattr__ = renamed(__name__, {"EventStream": "EventWriter"})
