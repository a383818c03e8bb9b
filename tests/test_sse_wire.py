"""What every event stream of the library puts on the wire, apart from the
app's own events: the ``Content-Type``, the methods of the ``/events``
routes, and the framing of the blocks the library writes on its own.

Clients that accept only the exact type (sveltekit-sse's ``source()``)
or that POST by default (the same ``source()``) must work unmodified.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, Response

from flask_streaming import Streaming, produce, sse_response
from flask_streaming.channels import EVENTS_METHODS, EVENTS_VIEW
from flask_streaming.sse import EVENT_STREAM_TYPE
from flask_streaming.testing import EventParser


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


def test_post_subscribes_like_get_and_resumes_by_last_event_id(app: Flask) -> None:
    streaming: Streaming = app.extensions["streaming"].extension
    for text in ("one", "two", "three"):
        streaming.publish("news", text)
    client = app.test_client()
    # sveltekit-sse POSTs a JSON body; it is ignored.
    r = client.post(
        "/streaming/events/news",
        json={"ignored": True},
        headers={"Last-Event-ID": "1"},
        buffered=False,
    )
    parser = EventParser()
    try:
        events = []
        for chunk in r.response:
            events.extend(parser.feed(chunk))
            if len(events) >= 2:
                break
        assert [(e.id, e.data) for e in events] == [("2", "two"), ("3", "three")]
    finally:
        r.close()
    assert streaming.broker(app).connections == 0
    # nothing changed on the server: the history is intact
    r = client.get("/streaming/events/news", headers={"Last-Event-ID": "0"}, buffered=False)
    parser = EventParser()
    try:
        events = []
        for chunk in r.response:
            events.extend(parser.feed(chunk))
            if len(events) >= 3:
                break
        assert [e.data for e in events] == ["one", "two", "three"]
    finally:
        r.close()


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
