"""Tests written for mutants of ``flask_streaming/sse.py`` that survived the
``sse`` mutation slice (docs/testing.rst): the compact JSON encoder behaves
as the stdlib's and Flask's (NaN allowed, non-string keys refused), and
``sse_response`` ends with a jittered ``retry`` at shutdown whether or not
``STREAMING_RETRY`` is set."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator

import pytest
from flask import Flask

from flask_streaming import ServerSentEvent, Streaming, sse_response, sse_wire, transport
from flask_streaming.sse import json_dumps


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, [1.5, math.nan]])
def test_json_allows_nan_like_the_stdlib_and_flask(value: object) -> None:
    want = json.dumps(value, separators=(",", ":"))
    assert json_dumps()(value) == want
    app = Flask("nan")
    with app.app_context():
        assert json_dumps()(value) == want
        assert ServerSentEvent(value).encode() == f"data: {want}\n\n".encode()


@pytest.mark.parametrize("key", [(1, 2), frozenset({1})])
def test_json_refuses_keys_it_cannot_write_like_the_stdlib(key: object) -> None:
    with pytest.raises(TypeError):
        json.dumps({key: 1})
    with pytest.raises(TypeError):
        json_dumps()({key: 1})


def _retry_after_the_event(app: Flask) -> int | None:
    """Open an ``sse_response`` stream, read its first event, shut the
    worker's streams down, and return the ``retry`` sent after that event
    (``None``: none)."""

    @app.get("/s")
    def s() -> object:
        def gen() -> Iterator[str]:
            yield "a"
            for _ in range(2000):  # bounded: ends after 20 s at most
                time.sleep(0.01)
                yield from ()

        return sse_response(gen())

    r = app.test_client().get("/s", buffered=False)
    raw = b""
    try:
        chunks = iter(r.response)
        while b"data: a\n\n" not in raw:
            raw += next(chunks)
        assert transport.shutdown_streams() >= 1
        for i, chunk in enumerate(chunks):
            raw += chunk
            assert i < 400, "the stream did not end"
    finally:
        r.close()
    after = raw.split(b"data: a\n\n", 1)[1]
    found = re.search(rb"(?:^|\n)retry: ([0-9]+)\n", after)
    return int(found.group(1)) if found else None


@pytest.mark.parametrize(("configured", "low"), [(None, 3000), (9000, 9000)])
def test_sse_response_ends_with_a_jittered_retry_at_shutdown(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, configured: int | None, low: int
) -> None:
    monkeypatch.setattr(transport, "_shutting_down", False)  # restored after the test
    app = Flask("shutdown", instance_path=str(tmp_path))
    app.config["STREAMING_RETRY"] = configured
    Streaming(app)
    got = _retry_after_the_event(app)
    assert got is not None and low <= got < low + sse_wire.SHUTDOWN_RETRY_SPREAD


# --- survivors of the sse-wire slice --------------------------------------


def test_a_server_sent_events_repr_names_the_fields_that_are_set() -> None:
    assert repr(ServerSentEvent("x", event="e")) == "ServerSentEvent(data='x', event='e')"
    assert repr(ServerSentEvent(comment="hi")) == "ServerSentEvent(comment='hi')"


@pytest.mark.parametrize(
    ("item", "wire"),
    [
        ({}, b"data: {}\n\n"),  # an empty dict is data, not an event without fields
        (["data"], b'data: ["data"]\n\n'),  # a list naming a field is data too
        ({"user": 1}, b'data: {"user":1}\n\n'),  # other keys: data
        ({"data": "x", "id": "7"}, b"id: 7\ndata: x\n\n"),  # only event fields: the fields
    ],
)
def test_only_a_non_empty_mapping_of_event_fields_gives_fields(item: object, wire: bytes) -> None:
    assert sse_wire.to_event(item).encode() == wire
