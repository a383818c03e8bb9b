"""The event-stream parser: WHATWG HTML, "Server-sent events", sections
"Parsing an event stream" and "Interpreting an event stream".

:class:`EventParser` is incremental: feed it the bytes of a stream in
chunks of any size; where the chunks are cut never changes the result.
The rules, each pinned by the conformance table of the test suite
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
import re
from typing import Any

__all__ = ["BOM", "Event", "EventParser"]

#: The UTF-8 byte order mark that may open a stream.
BOM = b"\xef\xbb\xbf"
_LINE_END = re.compile(rb"\r\n|\r|\n")


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
