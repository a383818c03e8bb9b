"""The event-stream wire format (HTML Living Standard, "Server-sent events",
https://html.spec.whatwg.org/multipage/server-sent-events.html), both
ways, with no Flask, Werkzeug or blinker import: what the server's
:mod:`flask_streaming.sse`, the channels' brokers, the Python client
(:mod:`flask_streaming.client`) and the test helpers share.

* Encoding: :class:`ServerSentEvent` writes one event exactly to the rules
  of "Interpreting an event stream"; :func:`to_event` turns what an app
  yields into one; :func:`compact_json_dumps` is the stdlib's compact JSON
  encoder the events use when no app is involved.
* The stream's own lines: :data:`PRELUDE`, :data:`PING`, and the ``retry:``
  field (:func:`retry_line`, :func:`jittered_retry`, the default
  :data:`DEFAULT_RETRY` and the shutdown :data:`SHUTDOWN_RETRY_SPREAD`).
* Parsing: :class:`EventParser` is incremental, spec-exact ("Parsing an
  event stream"); it yields :class:`Event` objects as a browser's
  ``EventSource`` reports them.

The parser's rules, each pinned by the conformance table of the test suite
(``tests/sse_cases.py``), which our JavaScript parser is held to as well:

* the stream is UTF-8 (invalid bytes become U+FFFD); one leading byte order
  mark is skipped, even when its three bytes arrive in separate chunks; a
  second one is part of the first field name;
* a line ends at CR LF, LF or CR (a CR at the end of a chunk and an LF at
  the start of the next are one line end);
* a line starting with ``:`` is a comment (counted in :attr:`EventParser.comments`);
* ``name: value`` (one space after the colon removed) or a bare ``name``
  (the value is empty); unknown names are ignored;
* ``data`` appends a line to the data buffer, ``event`` sets the type,
  ``id`` sets the *last event ID buffer* unless the value contains NUL,
  ``retry`` sets the reconnection time when the value is all ASCII digits
  (at once, when the line is parsed);
* at a blank line the *last event ID string* (what a client resends as
  ``Last-Event-ID``) takes the buffer's value, whether or not an event is
  dispatched; an event is dispatched only when data lines were seen; the
  data and type buffers are then cleared (the id buffer is kept);
* at the end of a stream an unterminated block is discarded: an ``id:``
  line that no blank line followed changes nothing a client resends.

``channel`` (flask_streaming's channel name, ignored by ``EventSource``) is
kept per event.
"""

from __future__ import annotations

import dataclasses
import random
import re
from _json import encode_basestring as _c_encode_basestring
from _json import encode_basestring_ascii as _c_encode_basestring_ascii
from _json import make_encoder as _c_make_encoder
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "BOM",
    "DEFAULT_RETRY",
    "EVENT_STREAM_TYPE",
    "PING",
    "PRELUDE",
    "SHUTDOWN_RETRY_SPREAD",
    "Event",
    "EventParser",
    "ServerSentEvent",
    "compact_json_dumps",
    "data_lines",
    "jittered_retry",
    "retry_line",
    "to_event",
]

_LINE_END = re.compile(rb"\r\n|\r|\n")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FORBIDDEN = re.compile(r"[\r\n\x00]")

# --- the stream's own lines --------------------------------------------------

#: The reconnection time (ms) a server tells its clients when the app sets
#: none (``STREAMING_RETRY`` unset), and the base of the jittered ``retry:``
#: a worker sends when it shuts down.
DEFAULT_RETRY = 3000

#: Spread (ms) of the random ``retry`` sent when a worker shuts down, so that
#: its clients do not all reconnect at once.
SHUTDOWN_RETRY_SPREAD = 5000

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


def retry_line(ms: int) -> bytes:
    """An SSE ``retry:`` line *without* the blank line that would end a
    block: the field takes effect when the line is parsed, and a client that
    dispatches at every blank line sees no empty event for it (the line
    rides on the next event, or the stream ends after it).

    :param ms: the reconnection time in milliseconds (``int`` >= 0).
    """
    return b"retry: %d\n" % ms


def jittered_retry(base: int) -> bytes:
    """A :func:`retry_line` between *base* and *base* plus
    :data:`SHUTDOWN_RETRY_SPREAD` ms."""
    return retry_line(base + random.randrange(SHUTDOWN_RETRY_SPREAD))


# --- encoding ----------------------------------------------------------------

_EVENT_FIELDS = frozenset({"data", "event", "id", "retry", "comment"})


def _no_default(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def compact_json_dumps(
    default: Callable[[Any], Any] | None = None,
    *,
    sort_keys: bool = False,
    ensure_ascii: bool = False,
) -> Callable[[Any], str]:
    """A compact JSON encoder (no spaces after ``,`` and ``:``): the
    stdlib's C encoder made once, which saves the per-call set-up of
    :meth:`json.JSONEncoder.encode` on hot paths (one call per NDJSON record
    or SSE event). Like ``check_circular=False``, it does not detect
    reference cycles.

    :param default: called for objects JSON does not know (default: raise
        :exc:`TypeError`).
    :param sort_keys: write the keys of objects sorted.
    :param ensure_ascii: escape non-ASCII characters (default: raw UTF-8).
    """
    encode_str = _c_encode_basestring_ascii if ensure_ascii else _c_encode_basestring
    encoder = _c_make_encoder(
        None, default or _no_default, encode_str, None, ":", ",", sort_keys, False, True
    )
    join = "".join

    def dumps(obj: Any) -> str:
        return join(encoder(obj, 0))

    return dumps


#: Makes the JSON encoder :meth:`ServerSentEvent.encode` uses when it is
#: given none. :mod:`flask_streaming.sse` installs its
#: :func:`~flask_streaming.sse.json_dumps` (the app's JSON provider inside
#: an app context) with :func:`use_json_dumps`.
_json_dumps_factory: Callable[[], Callable[[Any], str]] = compact_json_dumps


def use_json_dumps(factory: Callable[[], Callable[[Any], str]]) -> None:
    """Make *factory* the maker of the JSON encoder that
    :meth:`ServerSentEvent.encode` and :func:`data_lines` use when given
    none (called once by :mod:`flask_streaming.sse`).

    :meta private:
    """
    global _json_dumps_factory
    _json_dumps_factory = factory


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
            :func:`flask_streaming.sse.json_dumps`: the app's JSON provider
            inside an app context, else :func:`compact_json_dumps`).
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
    """The ``data:`` lines for *data* (see :class:`ServerSentEvent`).

    :meta private:
    """
    if isinstance(data, bytes):
        text = data.decode("utf-8")
    elif isinstance(data, str):
        text = data
    else:
        text = (dumps or _json_dumps_factory())(data)
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


# --- parsing -----------------------------------------------------------------

#: The UTF-8 byte order mark that may open a stream.
BOM = b"\xef\xbb\xbf"


@dataclasses.dataclass
class Event:
    """One dispatched event, as a browser's ``EventSource`` reports it.

    :ivar data: the data lines joined with LF.
    :ivar event: the type (``"message"`` when the block had no ``event``).
    :ivar id: the last event ID string when the event was dispatched
        (``MessageEvent.lastEventId``).
    :ivar retry: the reconnection time (ms) set by the stream so far, if any.
    :ivar channel: the ``channel:`` field of flask_streaming channel events
        (``None`` without one).
    """

    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None
    channel: str | None = None

    def json(self) -> Any:
        """The data parsed as JSON (:func:`json.loads`; raises
        :exc:`ValueError` when it is not JSON)."""
        import json

        return json.loads(self.data)


class EventParser:
    """An incremental, spec-exact event-stream parser.

    :param last_event_id: the last event ID string to start from (a client
        that reconnects passes what it resends, as browsers do; the id
        buffer starts with it too, so events without an ``id`` field keep
        it).

    :meth:`feed` returns the events each chunk completed. Attributes:

    * :attr:`last_event_id`: the last event ID string, what to send as
      ``Last-Event-ID`` on reconnecting;
    * :attr:`retry`: the reconnection time (ms) last set, or ``None``;
    * :attr:`comments`: how many comment lines were seen (heartbeats).
    """

    def __init__(self, last_event_id: str = "") -> None:
        self._buf = b""
        self._head = b""  # the first bytes, while they may still be a BOM
        self._first = True
        self._pending_cr = False
        self._data: list[str] = []
        self._event = ""
        self._channel: str | None = None
        #: the last event ID buffer (set by ``id:`` lines)
        self.id_buffer = last_event_id
        #: the last event ID string (set from the buffer at every blank line)
        self.last_event_id = last_event_id
        self.retry: int | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse *chunk* (``bytes`` of any length); return the events it
        completed, in order."""
        if self._first:
            head = self._head + chunk
            if len(head) < len(BOM) and BOM.startswith(head):
                self._head = head  # maybe a BOM: wait for more
                return []
            self._first = False
            self._head = b""
            chunk = head[len(BOM) :] if head.startswith(BOM) else head
        if not chunk:
            return []  # an empty chunk must not forget a CR that ended the last one
        if self._pending_cr:
            self._pending_cr = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
        buf = self._buf + chunk
        out: list[Event] = []
        start = 0
        for m in _LINE_END.finditer(buf):
            if m.group() == b"\r" and m.end() == len(buf):
                self._pending_cr = True  # an LF may follow in the next chunk
            self._line(buf[start : m.start()].decode("utf-8", "replace"), out)
            start = m.end()
        self._buf = buf[start:]
        return out

    def end(self) -> None:
        """The stream ended: discard the unterminated block (its data, type
        and any ``id:`` it set; :attr:`last_event_id` is unchanged)."""
        self._buf = b""
        self._data = []
        self._event = ""
        self._channel = None
        self._pending_cr = False
        self.id_buffer = self.last_event_id

    def _line(self, line: str, out: list[Event]) -> None:
        if line == "":
            self.last_event_id = self.id_buffer
            if self._data:
                data = "\n".join(self._data)
                event = self._event or "message"
                out.append(Event(data, event, self.last_event_id, self.retry, self._channel))
            self._data = []
            self._event = ""
            self._channel = None
            return
        if line[0] == ":":
            self.comments += 1
            return
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self.id_buffer = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry = int(value)
        elif name == "channel":
            self._channel = value
