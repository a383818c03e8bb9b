"""What every event stream of the library puts on the wire, apart from the
app's own events: the ``Content-Type``, the methods of the ``/events``
routes, and the framing of the blocks the library writes on its own.

Clients that accept only the exact type (sveltekit-sse's ``source()``)
or that POST by default (the same ``source()``) must work unmodified.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response
from httpx_sse._decoders import SSEDecoder
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_streaming import ServerSentEvent, Streaming, produce, sse_response, transport
from flask_streaming.channels import EVENTS_METHODS, EVENTS_VIEW
from flask_streaming.sse import EVENT_STREAM_TYPE, PING, PRELUDE, last_event_id
from flask_streaming.sse_wire import EventParser, jittered_retry, retry_line

# When a property fails, Hypothesis imports libcst to suggest a patch, and
# libcst trips a DeprecationWarning of mypy_extensions (see test_sse_encoder).
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)


@pytest.fixture
def app(tmp_path: Any) -> Flask:
    app = Flask("wire", instance_path=str(tmp_path))
    app.config.update(STREAMING_PING_INTERVAL=0.2, STREAMING_MAX_CONNECTIONS=2)
    Streaming(app)

    @app.get("/sse")
    def sse() -> Response:
        return sse_response(iter(["x"]))

    @app.get("/sse-own-type")
    def sse_own_type() -> Response:
        return sse_response(
            iter(["x"]), headers={"Content-Type": "text/event-stream; charset=utf-8"}
        )

    @app.get("/produce")
    def produced() -> Response:
        def start(stream: Any) -> None:
            stream.emit("x")
            stream.close()

        return produce(start)

    @app.get("/produce-own-type")
    def produced_own_type() -> Response:
        def start(stream: Any) -> None:
            stream.close()

        return produce(start, headers={"Content-Type": "text/plain"})

    return app


def first_chunk(response: Any) -> bytes:
    """The first write of a streamed test response; closes it."""
    try:
        return next(c for c in response.response if c)
    finally:
        response.close()


def open_streams(app: Flask, count: int) -> list[Any]:
    client = app.test_client()
    streams = []
    for i in range(count):
        r = client.get(f"/streaming/events/hold-{i}", buffered=False)
        next(iter(r.response))  # subscribed by now
        streams.append(r)
    return streams


# --- Content-Type: the bare type on every event stream -----------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/sse"),
        ("GET", "/produce"),
        ("GET", "/streaming/events/news"),
        ("GET", "/streaming/events?channel=a&channel=b"),
        ("POST", "/streaming/events/news"),
    ],
)
def test_every_event_stream_has_the_bare_content_type(app: Flask, method: str, url: str) -> None:
    r = app.test_client().open(url, method=method, buffered=False)
    try:
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "text/event-stream" == EVENT_STREAM_TYPE
        assert r.headers.getlist("Content-Type") == ["text/event-stream"]
    finally:
        r.close()


def test_the_refusal_stream_has_the_bare_content_type(app: Flask) -> None:
    held = open_streams(app, 2)  # STREAMING_MAX_CONNECTIONS
    try:
        r = app.test_client().get("/streaming/events/news")
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "text/event-stream"
        assert [e.event for e in EventParser().feed(r.data)] == ["stream-error"]
    finally:
        for s in held:
            s.close()


def test_the_refusal_stream_keeps_the_callers_headers(app: Flask) -> None:
    from flask_streaming import subscribe_response

    own = {"Content-Type": "text/event-stream; charset=utf-8", "X-Own": "1"}

    @app.get("/own-subscribe")
    def own_subscribe() -> Response:
        return subscribe_response(["news"], headers=own)

    held = open_streams(app, 2)  # STREAMING_MAX_CONNECTIONS: the next one is refused
    try:
        r = app.test_client().get("/own-subscribe")
    finally:
        for s in held:
            s.close()
    assert r.headers.getlist("Content-Type") == [own["Content-Type"]]
    assert r.headers["X-Own"] == "1" and r.headers["Retry-After"] == "5"
    assert [e.event for e in EventParser().feed(r.data)] == ["stream-error"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [("/sse-own-type", "text/event-stream; charset=utf-8"), ("/produce-own-type", "text/plain")],
)
def test_the_callers_content_type_wins(app: Flask, url: str, expected: str) -> None:
    r = app.test_client().get(url, buffered=False)
    try:
        assert r.headers.getlist("Content-Type") == [expected]
    finally:
        r.close()


# --- POST on the /events routes -------------------------------------------------


def test_events_routes_answer_get_and_post_only(app: Flask) -> None:
    assert set(EVENTS_METHODS) == {"GET", "POST"}
    client = app.test_client()
    r = client.put("/streaming/events/news")
    assert r.status_code == 405 and r.json is not None and r.json["error"]


def _read_events(response: Any, count: int) -> list[Any]:
    parser = EventParser()
    events: list[Any] = []
    try:
        for chunk in response.response:
            events.extend(parser.feed(chunk))
            if len(events) >= count:
                break
    finally:
        response.close()
    return events


def test_post_subscribes_like_get_and_resumes_by_last_event_id(app: Flask) -> None:
    streaming: Streaming = app.extensions["streaming"].extension
    ids = [streaming.publish("news", text) for text in ("one", "two", "three")]
    client = app.test_client()
    # sveltekit-sse POSTs a JSON body; it is ignored.
    r = client.post(
        "/streaming/events/news",
        json={"ignored": True},
        headers={"Last-Event-ID": ids[0]},
        buffered=False,
    )
    events = _read_events(r, 2)
    assert [(e.id, e.data) for e in events] == [(ids[1], "two"), (ids[2], "three")]
    assert streaming.broker(app).connections == 0
    # nothing changed on the server: the history is intact
    r = client.get("/streaming/events/news", headers={"Last-Event-ID": ids[1]}, buffered=False)
    assert [(e.id, e.data) for e in _read_events(r, 1)] == [(ids[2], "three")]


def test_post_has_the_same_authorization_as_get(app: Flask) -> None:
    streaming: Streaming = app.extensions["streaming"].extension
    asked: list[tuple[str, str]] = []

    @streaming.authorize_channel
    def allow(channel: str, action: str) -> bool:
        asked.append((channel, action))
        return channel == "open"

    client = app.test_client()
    for method in ("GET", "POST"):
        r = client.open("/streaming/events/closed", method=method)
        assert r.status_code == 403 and r.json is not None and r.json["error"] == "forbidden"
        r = client.open("/streaming/events?channel=open&channel=closed", method=method)
        assert r.status_code == 403 and r.json is not None and r.json["channel"] == "closed"
        r = client.open("/streaming/events", method=method)
        assert r.status_code == 400 and r.json is not None and r.json["error"] == "no_channel"
    assert asked.count(("closed", "subscribe")) == 4


def test_events_view_is_named_as_documented(app: Flask) -> None:
    view = app.view_functions["streaming.events"]
    assert f"{view.__module__}.{view.__name__}" == EVENTS_VIEW


def _csrf_app(tmp_path: Any, exempt: bool) -> Flask:
    from flask_wtf.csrf import CSRFProtect

    app = Flask("csrf", instance_path=str(tmp_path))
    app.config.update(SECRET_KEY="test", STREAMING_PING_INTERVAL=0.2)
    csrf = CSRFProtect(app)
    Streaming(app)
    if exempt:
        csrf.exempt(EVENTS_VIEW)  # the documented recipe
    return app


def test_post_subscription_behind_csrfprotect_needs_the_documented_exemption(
    tmp_path: Any,
) -> None:
    refused = _csrf_app(tmp_path, exempt=False).test_client().post("/streaming/events/news")
    assert refused.status_code == 400 and b"CSRF" in refused.data

    app = _csrf_app(tmp_path, exempt=True)
    client = app.test_client()
    r = client.post("/streaming/events/news", buffered=False)
    try:
        assert r.status_code == 200 and r.headers["Content-Type"] == "text/event-stream"
    finally:
        r.close()
    # the exemption is that one view: uploads stay protected
    upload = client.post("/streaming/uploads", json={"size": 1})
    assert upload.status_code == 400 and b"CSRF" in upload.data


# --- Phantom events: what the library writes on its own dispatches nothing ---
#
# Some clients dispatch an event at every blank line, data or not:
# fetch-event-source 2.0.1 (and the copy inside sveltekit-sse) always,
# httpx-sse 0.4.3 when a retry was parsed or once an id was seen. An app
# that runs JSON.parse on every event then throws. The rule: no block the
# library writes on its own (the opening comment, the heartbeat, a retry
# hint, ``: busy``) contains a blank line. A comment needs none, and a
# ``retry:`` field takes effect when its line is parsed, so it rides on the
# next event or the stream ends after it.

#: (event type, data, id) as a client hands it to the app
Seen = tuple[str, str, str]


def lines_of(raw: bytes) -> list[str]:
    """The lines of a whole stream (CRLF, LF and CR end a line); an
    unterminated last line is dropped, as at the end of a stream."""
    text = raw.decode("utf-8")
    parts = re.split(r"\r\n|\r|\n", text)
    return parts[:-1]


def every_blank_line_parser(raw: bytes) -> list[Seen]:
    """fetch-event-source 2.0.1's ``getMessages``: a new message (data, event,
    id all empty) after every blank line; a blank line hands the message
    to the app whatever it holds; comments and unknown fields ignored."""
    out: list[Seen] = []
    data: list[str] = []
    event = id_ = ""
    for line in lines_of(raw):
        if line == "":
            out.append((event or "message", "\n".join(data), id_))
            data, event, id_ = [], "", ""
            continue
        name, colon, value = line.partition(":")
        if not name:
            continue  # a comment
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            id_ = value
    return out


def httpx_sse_parser(raw: bytes) -> list[Seen]:
    """httpx-sse 0.4.3's own decoder, line by line."""
    decoder = SSEDecoder()
    out: list[Seen] = []
    for line in lines_of(raw):
        sse = decoder.decode(line)
        if sse is not None:
            out.append((sse.event, sse.data, sse.id))
    return out


def spec_parser(raw: bytes) -> tuple[list[Seen], int | None]:
    parser = EventParser()
    events = parser.feed(raw)
    return [(e.event, e.data, e.id) for e in events], parser.retry


def assert_no_phantom(raw: bytes, app_events: list[tuple[str, str]]) -> None:
    """Every client sees exactly the app's (and the documented control)
    events, in order, and nothing else (a phantom would be an extra empty
    ``message``): the spec parser, the every-blank-line parser, httpx-sse."""
    spec, _ = spec_parser(raw)
    assert [(t, d) for t, d, _ in spec] == app_events
    for parse in (every_blank_line_parser, httpx_sse_parser):
        seen = [(t, d) for t, d, _ in parse(raw)]
        assert seen == app_events, f"{parse.__name__} on {raw!r}"


LIBRARY_BLOCKS: list[tuple[str, bytes]] = [
    ("opening comment", PRELUDE),
    ("heartbeat", PING),
    ("retry line", retry_line(2500)),
    ("jittered retry", jittered_retry(3000)),
    ("busy", b": busy\n"),
]


@pytest.mark.parametrize(("name", "block"), LIBRARY_BLOCKS, ids=[n for n, _ in LIBRARY_BLOCKS])
def test_library_blocks_are_lines_without_a_blank_line(name: str, block: bytes) -> None:
    assert block.endswith(b"\n") and not block.startswith(b"\n")
    assert b"\n\n" not in block and b"\r" not in block
    # one whole line each: a comment or a retry field
    assert re.fullmatch(rb"(: [a-z ]+|retry: [0-9]+)\n", block)


def test_the_stream_opening_is_a_comment_and_a_retry_line(app: Flask) -> None:
    @app.get("/retry")
    def with_retry() -> Response:
        return sse_response(iter(["x"]), retry=1500)

    first = first_chunk(app.test_client().get("/retry", buffered=False))
    assert first == b": stream opened\nretry: 1500\n"


app_event = st.builds(
    lambda data, event, id_: ServerSentEvent(data, event=event, id=id_),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8),
    st.none() | st.sampled_from(["tick", "stream-error"]),
    st.none() | st.sampled_from(["1", "2", "é"]),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([b for _, b in LIBRARY_BLOCKS]),
            st.integers(0, 10_000).map(retry_line),
            app_event,
        ),
        max_size=12,
    ),
    st.sampled_from([b"", b"data: cut off"]),
)
def test_library_blocks_anywhere_between_events_dispatch_nothing(
    items: list[bytes | ServerSentEvent], tail: bytes
) -> None:
    """Library blocks at any event boundary, in any number and order: every
    client sees the app's events and nothing else, and the last retry line
    takes effect for the spec parser (even when the stream ends after it)."""
    raw = b"".join(i.encode() if isinstance(i, ServerSentEvent) else i for i in items) + tail
    app_only = b"".join(i.encode() for i in items if isinstance(i, ServerSentEvent))
    expected = [(t, d) for t, d, _ in spec_parser(app_only)[0]]
    assert len(expected) == sum(isinstance(i, ServerSentEvent) for i in items)
    assert_no_phantom(raw, expected)
    retries = [int(i[7:]) for i in items if isinstance(i, bytes) and i.startswith(b"retry:")]
    assert spec_parser(raw)[1] == (retries[-1] if retries else None)


def read_all(response: Any, limit: int = 400) -> bytes:
    """Every byte of a streamed test response (bounded); closes it."""
    out = b""
    try:
        for i, chunk in enumerate(response.response):
            out += chunk
            assert i < limit, "the stream did not end"
    finally:
        response.close()
    return out


def test_sse_response_idle_after_an_id_sends_heartbeats_but_no_phantom(app: Flask) -> None:
    @app.get("/idle")
    def idle() -> Response:
        def gen() -> Iterator[Any]:
            yield {"data": "a", "id": "1"}
            time.sleep(0.7)  # > 3 ping intervals
            yield "b"

        return sse_response(gen(), ping=0.2, retry=1500)

    raw = read_all(app.test_client().get("/idle", buffered=False))
    assert raw.count(PING) >= 2
    assert_no_phantom(raw, [("message", "a"), ("message", "b")])
    assert spec_parser(raw)[1] == 1500


def test_produce_idle_after_an_id_sends_heartbeats_but_no_phantom(app: Flask) -> None:
    @app.get("/produce-idle")
    def produce_idle() -> Response:
        def start(stream: Any) -> None:
            stream.emit("a", id="1", event="tick")
            time.sleep(0.7)
            stream.emit("b")
            stream.close()

        return produce(start, ping=0.2, retry=1500)

    raw = read_all(app.test_client().get("/produce-idle", buffered=False))
    assert raw.count(PING) >= 2
    assert_no_phantom(raw, [("tick", "a"), ("message", "b")])


def test_channel_stream_idle_after_an_id_sends_heartbeats_but_no_phantom(app: Flask) -> None:
    streaming: Streaming = app.extensions["streaming"].extension
    r = app.test_client().get("/streaming/events/news", buffered=False)
    raw = b""
    try:
        chunks = iter(r.response)
        raw += next(chunks)  # subscribed
        streaming.publish("news", "a")
        while raw.count(PING) < 3:  # STREAMING_PING_INTERVAL is 0.2 s
            raw += next(chunks)
        streaming.publish("news", "b", event="tick")
        while b"data: b" not in raw:
            raw += next(chunks)
    finally:
        r.close()
    assert_no_phantom(raw, [("message", "a"), ("tick", "b")])
    assert spec_parser(raw)[1] == 3000


def test_refusal_stream_has_no_phantom(app: Flask) -> None:
    held = open_streams(app, 2)
    try:
        raw = read_all(app.test_client().get("/streaming/events/news", buffered=False))
    finally:
        for s in held:
            s.close()
    assert raw.startswith(b": busy\nretry: ")
    busy = '{"message":"Too many connections; retrying later."}'
    assert_no_phantom(raw, [("stream-error", busy)])
    assert 3000 <= (spec_parser(raw)[1] or 0) < 8000


def test_shutdown_retry_has_no_phantom(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "_shutting_down", False)  # restored after the test
    streaming: Streaming = app.extensions["streaming"].extension
    r = app.test_client().get("/streaming/events/news", buffered=False)
    try:
        chunks = iter(r.response)
        raw = next(chunks)
        streaming.publish("news", "a")
        while b"data: a" not in raw:
            raw += next(chunks)
        assert transport.shutdown_streams() == 1
        raw += b"".join(chunks)  # ends by itself
        # a stream that opens while the worker shuts down ends at once
        late = read_all(app.test_client().get("/streaming/events/news", buffered=False))
    finally:
        r.close()
    assert_no_phantom(raw, [("message", "a")])
    assert 3000 <= (spec_parser(raw)[1] or 0) < 8000
    assert raw.endswith(b"\n") and re.search(rb"\nretry: [0-9]+\n$", raw)
    assert_no_phantom(late, [])
    assert 3000 <= (spec_parser(late)[1] or 0) < 8000


def test_slow_consumer_cut_off_has_no_phantom(tmp_path: Any) -> None:
    app = Flask("slow", instance_path=str(tmp_path))
    app.config.update(STREAMING_PING_INTERVAL=30, STREAMING_MAX_QUEUE=3)
    streaming = Streaming(app)
    r = app.test_client().get("/streaming/events/fast", buffered=False)
    chunks = iter(r.response)
    raw = next(chunks)
    for i in range(6):  # read nothing meanwhile: cut off at the 4th
        streaming.publish("fast", i)
    raw += read_all(r)
    seen = spec_parser(raw)[0]
    assert seen[-1][0] == "stream-error"
    assert_no_phantom(raw, [(t, d) for t, d, _ in seen])
    assert 3000 <= (spec_parser(raw)[1] or 0) < 8000


def test_broker_unavailable_retry_has_no_phantom(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = app.extensions["streaming"].extension.broker(app)

    def unavailable(*args: Any) -> Any:
        raise ConnectionError("broker down")

    monkeypatch.setattr(broker, "replay", unavailable)
    r = app.test_client().get(
        "/streaming/events/news", headers={"Last-Event-ID": "3"}, buffered=False
    )
    raw = read_all(r)
    assert re.fullmatch(rb": stream opened\nretry: 3000\nretry: [0-9]+\n", raw), raw
    assert_no_phantom(raw, [])
    assert 3000 <= (spec_parser(raw)[1] or 0) < 8000


# --- reading Last-Event-ID -----------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"HTTP_LAST_EVENT_ID": "42"}, "42"),
        # what a WSGI server hands over for the UTF-8 bytes of "…" and "é"
        ({"HTTP_LAST_EVENT_ID": "\u2026é".encode().decode("latin-1")}, "\u2026é"),
        ({"HTTP_LAST_EVENT_ID": "\xff"}, "\ufffd"),  # not UTF-8
        ({"HTTP_LAST_EVENT_ID": "\u2026"}, "\u2026"),  # a str no server would send: as is
    ],
)
def test_last_event_id_reads_the_header_as_utf_8(
    app: Flask, environ: dict[str, str], expected: str | None
) -> None:
    with app.test_request_context("/", environ_overrides=environ):
        assert last_event_id() == expected
