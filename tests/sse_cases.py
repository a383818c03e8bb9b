"""The one table every event-stream parser of the project is held to.

Each :class:`Case` is a byte stream and what a spec-exact client reports
for it: the events (type, data, ``lastEventId``), the last event ID string
afterwards (what a reconnecting client resends as ``Last-Event-ID``) and
the reconnection time the stream set. Rows marked ``wpt`` restate, in our
own words, the stream and the expected result of a web-platform-tests
``eventsource/`` test (named in ``source``); the others pin one rule of the
WHATWG algorithm ("Interpreting an event stream") each.

The same rows run against the Python :class:`~flask_streaming.sse_wire.EventParser`
and the JavaScript ``EventStreamParser`` (whole, cut at every byte, and fed
one byte at a time), against the clients on a live server
(``flask_streaming.client.events`` and the JS ``source()``), and against
Chromium's own ``EventSource``, the reference (tests/test_sse_conformance.py).

:data:`RESPONSES` lists answers a client must refuse (fail the connection:
no event, no reconnect) or accept.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from flask_streaming.sse_wire import EventParser
from flask_streaming.testing import GunicornServer

ROOT = Path(__file__).resolve().parents[1]
#: The app that serves the table's streams and answers (tests/apps/sse_cases_app.py).
APP = "tests.apps.sse_cases_app:create_app()"

BOM = b"\xef\xbb\xbf"
#: (type, data, lastEventId) of one dispatched event.
Seen = tuple[str, str, str]


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    stream: bytes
    events: tuple[Seen, ...]
    #: the last event ID string after the stream ended (resent on reconnect)
    resent: str = ""
    #: the reconnection time set by the stream (ms), ``None``: none
    retry: int | None = None
    #: where the row comes from: "wpt <file>" or "spec: <rule>"
    source: str = ""
    #: the ``channel`` of each event (our extension; EventSource ignores it)
    channels: tuple[str | None, ...] | None = None
    content_type: str = "text/event-stream"
    #: Chromium's EventSource departs from the spec on this row: it fails
    #: the connection (the reference test checks that it still does)
    chromium_fails: bool = False

    @property
    def wpt(self) -> bool:
        return self.source.startswith("wpt ")


def m(data: str, last_id: str = "", type_: str = "message") -> Seen:
    return (type_, data, last_id)


_LONG = "x" * 300
_NUL_IDS = ["\0\0", "x\0", "\0x", "x\0x", " \0"]

CASES: list[Case] = [
    # --- web-platform-tests eventsource/, restated -----------------------
    Case(
        "bom-skipped-once",
        BOM + b"data:1\n\n" + BOM + b"data:2\n\ndata:3\n\n\n",
        (m("1"), m("3")),
        source="wpt format-bom: one leading BOM is skipped; a later one starts a field name",
    ),
    Case(
        "bom-twice-at-start",
        BOM + BOM + b"data:1\n\ndata:2\n\ndata:3\n\n\n",
        (m("2"), m("3")),
        source="wpt format-bom-2: only the first of two leading BOMs is skipped",
    ),
    Case(
        "comments-between-data-lines",
        (f"data:1\r:\0\n:\r\ndata:2\n:{_LONG}\rdata:3\n:data:fail\r:{_LONG}\ndata:4\n\n").encode(),
        (m("1\n2\n3\n4"),),
        source="wpt format-comments: comments with any line end, NUL and long text",
    ),
    Case(
        "unterminated-block-discarded",
        b"retry:1000\ndata:test1\n\nid:test\ndata:test2",
        (m("test1"),),
        resent="",
        retry=1000,
        source="wpt format-data-before-final-empty-line: the last block (its id too) is dropped",
    ),
    Case(
        "data-field-forms",
        b"data:\n\ndata\ndata\n\ndata:test\n\n\n",
        (m(""), m("\n"), m("test")),
        source="wpt format-field-data: 'data:' and a bare 'data' append an empty line",
    ),
    Case(
        "event-empty-is-message",
        b"event: \ndata:data\n\n\n",
        (m("data"),),
        source="wpt format-field-event-empty: an empty type dispatches 'message'",
    ),
    Case(
        "event-type-per-block",
        b"event:test\ndata:x\n\ndata:x\n\n\n",
        (m("x", type_="test"), m("x")),
        source="wpt format-field-event: the type applies to its own block only",
    ),
    Case(
        "id-non-ascii",
        "id: \u2026\nretry: 200\ndata: hello\n\n".encode(),
        (m("hello", "\u2026"),),
        resent="\u2026",
        retry=200,
        source="wpt format-field-id: any text is an id; resent as UTF-8",
    ),
    Case(
        "id-latin-1-letter",
        "id: é\ndata: x\n\n".encode(),
        (m("x", "é"),),
        resent="é",
        source="spec: Last-Event-ID is the id as UTF-8, even for a letter Latin-1 has",
    ),
    Case(
        "id-persists",
        b"id: 1\ndata: 1\n\ndata:2\n\n",
        (m("1", "1"), m("2", "1")),
        resent="1",
        source="wpt format-field-id-3 (persists): blocks without id keep the last one",
    ),
    Case(
        "id-changes-and-persists",
        b"id: 1\ndata: 1\n\nid: 2\ndata:2\n\ndata:3\n\n",
        (m("1", "1"), m("2", "2"), m("3", "2")),
        resent="2",
        source="wpt format-field-id-3 (changes and persists)",
    ),
    Case(
        "id-reset-by-empty-value",
        b"id: 1\ndata: 1\n\nid:\ndata:2\n\ndata:3\n\n",
        (m("1", "1"), m("2"), m("3")),
        resent="",
        source="wpt format-field-id-3 (resets): 'id:' empties the id",
    ),
    Case(
        "id-reset-by-bare-name",
        b"id: 1\ndata: 1\n\nid\ndata:2\n\ndata:3\n\n",
        (m("1", "1"), m("2"), m("3")),
        resent="",
        source="wpt format-field-id-3 (resets, id without colon)",
    ),
    *[
        Case(
            f"id-with-nul-ignored-{i}",
            f"id: {value}\nretry: 200\ndata: hello\n\n".encode(),
            (m("hello"),),
            resent="",
            retry=200,
            source="wpt format-field-id-null: an id containing NUL is ignored",
        )
        for i, value in enumerate(_NUL_IDS)
    ],
    Case(
        "nul-in-data",
        b"data:\0\n\n\n",
        (m("\0"),),
        source="wpt format-null-character: NUL is data like any character",
    ),
    Case(
        "always-utf-8",
        "data:ok\u2026\n\n\n".encode(),
        (m("ok\u2026"),),
        content_type="text/event-stream;charset=windows-1252",
        source="wpt format-utf-8: the stream is UTF-8 whatever the charset parameter says",
        # Chromium aborts when the charset is not UTF-8 (it fails this WPT
        # test); our clients follow the spec.
        chromium_fails=True,
    ),
    Case(
        "retry-leading-zero-is-decimal",
        b"retry:02000\ndata:x\n\n\n",
        (m("x"),),
        retry=2000,
        source="wpt format-field-retry: digits in base ten",
    ),
    Case(
        "retry-bogus-ignored",
        b"retry:2000\nretry:1000x\ndata:x\n\n\n",
        (m("x"),),
        retry=2000,
        source="wpt format-field-retry-bogus: a value that is not all digits is ignored",
    ),
    # --- one rule each -----------------------------------------------------
    Case(
        "line-ends-cr-lf-crlf",
        b"data: a\r\rdata: b\r\n\r\ndata: c\n\ndata: d\r\n\n",
        (m("a"), m("b"), m("c"), m("d")),
        source="spec: CR LF, LF and CR each end a line",
    ),
    Case(
        "lf-then-crlf-is-a-blank-line",
        b"data: a\n\r\n",
        (m("a"),),
        source="spec: a CR LF pair right after a line end is one blank line",
    ),
    Case(
        "only-one-space-removed",
        b"data:  two\n\ndata:x\n\ndata:\tt\n\n",
        (m(" two"), m("x"), m("\tt")),
        source="spec: one U+0020 after the colon is removed, nothing else",
    ),
    Case(
        "colon-in-value-kept",
        b"data: a:b: c\n\n",
        (m("a:b: c"),),
        source="spec: the field name ends at the first colon",
    ),
    Case(
        "unknown-fields-ignored",
        b"foo: bar\nDATA: no\nData: no\ndata : no\ndata: y\n\n",
        (m("y"),),
        source="spec: field names are exact and case-sensitive; others are ignored",
    ),
    Case(
        "no-data-no-dispatch-type-reset",
        b"event: x\n\ndata: y\n\n",
        (m("y"),),
        source="spec: a block without data dispatches nothing and forgets its type",
    ),
    Case(
        "last-event-type-wins",
        b"event: a\nevent: b\ndata: z\n\n",
        (m("z", type_="b"),),
        source="spec: a later event field replaces an earlier one",
    ),
    Case(
        "id-only-block-sets-what-is-resent",
        b"data: a\n\nid: 7\n\n",
        (m("a"),),
        resent="7",
        source="spec: at every blank line the last event ID string takes the buffer's value",
    ),
    Case(
        "id-only-block-then-next-event",
        b"id: 7\n\ndata: b\n\n",
        (m("b", "7"),),
        resent="7",
        source="spec: an id-only block sets the id of the events after it",
    ),
    Case(
        "cut-off-id-line-not-resent",
        b"id: 7\n\nid: 8\n",
        (),
        resent="7",
        source="spec: an id line followed by the end of the stream changes nothing",
    ),
    Case(
        "cut-off-event-id-not-resent",
        b"id: 1\ndata: a\n\nid: 2\ndata: b",
        (m("a", "1"),),
        resent="1",
        source="spec: an event cut off by the end of the stream is not dispatched, its id not kept",
    ),
    Case(
        "lone-cr-at-end-is-a-line-end",
        b"data: a\n\ndata: b\r",
        (m("a"),),
        source="spec: a final CR ends a line, but no blank line follows",
    ),
    Case(
        "cr-then-control-character",
        b"data: a\r\tdata: b\r\x00data: c\r\r",
        (m("a"),),
        source="spec: only an LF right after a CR joins it; a tab or NUL starts the next line",
    ),
    Case(
        "long-line-crlf",
        b"data: " + b"y" * 300 + b"\r\ndata: z\r\n\r\n",
        (m("y" * 300 + "\nz"),),
        source="spec: CR LF is one line end after a long line too (cut between CR and LF)",
    ),
    Case(
        "retry-line-alone-takes-effect",
        b"retry: 1500\n",
        (),
        retry=1500,
        source="spec: retry applies when its line is parsed, no blank line needed",
    ),
    Case(
        "retry-empty-or-signed-ignored",
        b"retry:\nretry: -1\nretry: 1 0\nretry: +5\ndata: x\n\n",
        (m("x"),),
        retry=None,
        source="spec: retry needs one or more ASCII digits and nothing else",
    ),
    Case(
        "comment-blocks-dispatch-nothing",
        b": hi\n\n:\n\n: a\n: b\n\n",
        (),
        source="spec: comment lines are ignored; empty blocks dispatch nothing",
    ),
    Case(
        "trailing-empty-data-line",
        b"data: a\ndata:\n\n",
        (m("a\n"),),
        source="spec: only the one final LF of the data buffer is removed",
    ),
    Case(
        "invalid-utf-8-replaced",
        b"data: \xff\xfeA\xe2\x80\n\n",
        (m("\ufffd\ufffdA\ufffd"),),
        source="spec: bytes that are not UTF-8 become U+FFFD",
    ),
    Case(
        "multibyte-characters",
        "data: é€😀\n\n".encode(),
        (m("é€😀"),),
        source="spec: UTF-8 of any length, cut anywhere by the network",
    ),
    Case(
        "bom-only-at-the-very-start",
        b"data: 1\n\n" + BOM + b"data: 2\n\n",
        (m("1"),),
        source="spec: a BOM later in the stream is not skipped",
    ),
    Case(
        "channel-field-kept-per-event",
        b"channel: room\ndata: x\n\ndata: y\n\n",
        (m("x"), m("y")),
        channels=("room", None),
        source="flask_streaming: the channel field (EventSource ignores it)",
    ),
]


@dataclasses.dataclass(frozen=True)
class ResponseCase:
    """An answer to a client's request, and whether an EventSource opens."""

    name: str
    status: int
    content_type: str
    #: True: the connection opens and the body's events are dispatched
    opens: bool
    #: our JS source() and Python client retry it by default (documented
    #: deviation; EventSource fails the connection)
    retried_by_default: bool = False
    source: str = ""


_BODY_NOTE = "no event from the body, no reconnect"

RESPONSES: list[ResponseCase] = [
    ResponseCase("ok", 200, "text/event-stream", True, source="spec: 200 + the type"),
    ResponseCase(
        "ok-type-with-params-and-case",
        200,
        "Text/Event-Stream; charset=utf-8",
        True,
        source="spec: the MIME type's essence is compared, without case",
    ),
    ResponseCase(
        "wrong-type",
        200,
        "text/x-bogus",
        False,
        source=f"wpt format-mime-valid-bogus: {_BODY_NOTE}",
    ),
    ResponseCase(
        "type-prefix-only",
        200,
        "text/event-streamx",
        False,
        source=f"spec: the essence must be text/event-stream: {_BODY_NOTE}",
    ),
    *[
        ResponseCase(
            f"status-{code}",
            code,
            "text/event-stream",
            False,
            source=f"wpt request-status-error ({code}): {_BODY_NOTE}",
        )
        for code in (205, 210, 299, 404, 410)
    ],
    ResponseCase(
        "status-503",
        503,
        "text/event-stream",
        False,
        retried_by_default=True,
        source="wpt request-status-error (503): EventSource fails; we retry (documented)",
    ),
]


def parse(chunks: list[bytes], last_event_id: str = "") -> dict[str, Any]:
    """What the Python :class:`~flask_streaming.sse_wire.EventParser` reports
    for a stream fed in *chunks* and then ended, in the terms of the table:
    events (type, data, ``lastEventId``), channels, the last event ID string
    (``resent``), the reconnection time and the count of comment lines."""
    parser = EventParser(last_event_id)
    got = []
    for chunk in chunks:
        got.extend(parser.feed(chunk))
    parser.end()
    return {
        "events": [[e.event, e.data, e.id] for e in got],
        "channels": [e.channel for e in got],
        "resent": parser.last_event_id,
        "retry": parser.retry,
        "comments": parser.comments,
    }


def cases_server(tmp: Path, **env: str) -> GunicornServer:
    """:data:`APP` under a real gunicorn (gevent worker), its instance folder
    and log under *tmp*; *env* goes to the app (e.g. ``PING``). Use it as a
    context manager: it starts on entry and stops on exit."""
    return GunicornServer(
        APP,
        env={"PYTHONPATH": str(ROOT), "INSTANCE_PATH": str(tmp / "instance"), **env},
        cwd=str(ROOT),
        log_path=str(tmp / "server.log"),
    )
