"""A test against a real gunicorn with the gevent worker."""

import httpx

from flask_streaming.testing import GunicornServer, parse_events


def test_clock_under_gunicorn(app_spec="quickstart:app", **server_options):
    with GunicornServer(app_spec, **server_options) as server:
        with httpx.stream("GET", server.url + "/clock", timeout=10) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            received = b""
            for chunk in response.iter_bytes():
                received += chunk
                if parse_events(received):
                    break
        (tick, *_) = parse_events(received)
        assert tick.event == "tick"
