"""Tests of your own app's streams with flask_streaming.testing."""

from flask import Flask

from flask_streaming import Streaming, sse_response
from flask_streaming.testing import iter_sse, parse_events

app = Flask(__name__)
Streaming(app)


@app.get("/numbers")
def numbers():
    return sse_response({"event": "n", "data": i} for i in range(3))


def test_a_finite_stream():
    response = app.test_client().get("/numbers")
    events = parse_events(response.data)  # spec-exact, as EventSource sees them
    assert [(e.event, e.json()) for e in events] == [("n", 0), ("n", 1), ("n", 2)]


def test_read_a_stream_as_it_arrives():
    response = app.test_client().get("/numbers", buffered=False)
    try:
        first = next(iter_sse(response))  # stops reading after one event
        assert first.data == "0"
    finally:
        response.close()  # the server side sees a disconnect
