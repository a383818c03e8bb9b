"""Resources are released whatever wraps the body (issue 15): with the real
Flask-Compress set to compress ``text/event-stream`` and with an
``after_request`` hook that replaces the body, clients that leave give back
their subscription, quota slot and producer; event streams are never held
back by compression; no ``Content-Encoding: identity``;
``Cache-Control: no-transform``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask, Response

from flask_streaming import Streaming, sse_response
from flask_streaming.testing import GunicornServer

APP = "tests.apps.prod_app:create_app()"
ENV = {"STREAMING_MAX_CONNECTIONS_PER_CLIENT": "3", "STREAMING_PING_INTERVAL": "0.2"}


def stats(server: GunicornServer) -> dict[str, int]:
    return httpx.get(server.url + "/stats", timeout=10).json()  # type: ignore[no-any-return]


def wait_for_stats(server: GunicornServer, want: dict[str, int], bound: float = 15.0) -> None:
    deadline = time.monotonic() + bound
    while (got := stats(server)) != want and time.monotonic() < deadline:
        time.sleep(0.1)
    assert got == want


def read_until(raw: Iterator[bytes], marker: bytes, bound: float = 10.0) -> bytes:
    """Raw bytes (no decoding) of one response's ``iter_raw()`` until
    *marker*; fails after *bound* seconds."""
    seen = b""
    deadline = time.monotonic() + bound
    for chunk in raw:
        seen += chunk
        if marker in seen:
            return seen
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"{marker!r} never arrived; got {seen[:200]!r}")


@pytest.mark.parametrize("wrapper", ["compress", "compress-first", "generator"])
def test_clients_that_leave_are_released_and_events_are_not_held_back(
    live_server: Callable[..., GunicornServer], wrapper: str
) -> None:
    server = live_server(APP, env={**ENV, "BODY_WRAPPER": wrapper})
    headers = {"Accept-Encoding": "deflate, gzip, br, zstd"}
    timeout = httpx.Timeout(10.0)
    for _round in range(2):  # the quota (3) would refuse the second round if slots leaked
        with httpx.Client(timeout=timeout) as http:
            streams = [
                http.stream("GET", server.url + "/streaming/events/room", headers=headers)
                for _ in range(3)
            ]
            responses = [s.__enter__() for s in streams]
            raws = [r.iter_raw() for r in responses]
            try:
                for r, raw in zip(responses, raws, strict=True):
                    assert r.status_code == 200
                    assert "Content-Encoding" not in r.headers or wrapper == "generator"
                    assert r.headers.get("Content-Encoding") != "identity"
                    assert "no-transform" in r.headers["Cache-Control"]
                    read_until(raw, b": stream opened\n")
                wait_for_stats(server, {"connections": 3, "clients": 3, "subscribers": 3})
                published = http.post(f"{server.url}/publish/room").json()["id"]
                for raw in raws:
                    # Not held back: the event arrives while the stream is open.
                    read_until(raw, f"id: {published}\n".encode())
            finally:
                for s in streams:
                    s.__exit__(None, None, None)
        wait_for_stats(server, {"connections": 0, "clients": 0, "subscribers": 0})


def test_only_event_streams_are_given_back_their_body(tmp_path: Path) -> None:
    from flask_compress import Compress

    app = Flask("compressed", instance_path=str(tmp_path))
    app.config["COMPRESS_MIMETYPES"] = ["text/event-stream", "application/json"]
    Streaming(app)
    Compress(app)

    @app.get("/big.json")
    def big() -> dict[str, str]:
        return {"x": "y" * 5000}

    @app.get("/sse")
    def sse() -> Response:
        return sse_response(iter(["a", "b"]))

    client = app.test_client()
    r = client.get("/big.json", headers={"Accept-Encoding": "deflate"})
    assert r.headers["Content-Encoding"] == "deflate"
    r = client.get("/sse", headers={"Accept-Encoding": "deflate"})
    assert "Content-Encoding" not in r.headers
    assert b"data: b\n\n" in r.data
