"""Prometheus metrics (issue 15): ``STREAMING_METRICS`` serves
``{prefix}/metrics``; off by default, loopback-only without a hook, not
wrapped by ``view_decorators`` nor CORS; under gunicorn with 2 workers and
``PROMETHEUS_MULTIPROC_DIR`` a scrape, parsed by ``prometheus_client.parser``,
shows the app's numbers whichever worker answers."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask, abort, request
from prometheus_client.parser import text_string_to_metric_families

from flask_streaming import Streaming, sse_response
from flask_streaming.client import upload
from flask_streaming.testing import GunicornServer

ROOT = Path(__file__).resolve().parents[1]
APP = "tests.apps.prod_app:create_app()"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of an exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        abort(401)

    return wrapped


def make_app(tmp_path: Path, **options: Any) -> tuple[Flask, Streaming]:
    app = Flask("metricstest", instance_path=str(tmp_path / "instance"))
    streaming = Streaming(app, view_decorators=[login_required], **options)
    return app, streaming


def test_off_by_default(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path)
    assert app.test_client().get("/streaming/metrics").status_code in (401, 404)
    assert "flask_streaming_metrics" not in app.view_functions


def test_loopback_only_without_a_hook(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, metrics=True, cors_origins="https://a.test")
    client = app.test_client()
    # Not wrapped by view_decorators (login_required would answer 401), no CORS.
    r = client.get("/streaming/metrics", headers={"Origin": "https://a.test"})
    assert r.status_code == 200
    assert r.mimetype == "text/plain"
    assert "Access-Control-Allow-Origin" not in r.headers
    assert any(f.name == "flask_streaming_events_published" for f in
               text_string_to_metric_families(r.get_data(as_text=True)))  # fmt: skip
    for address in ("::1", "127.0.0.2"):
        assert (
            client.get("/streaming/metrics", environ_base={"REMOTE_ADDR": address}).status_code
            == 200
        )
    r = client.get("/streaming/metrics", environ_base={"REMOTE_ADDR": "203.0.113.5"})
    assert r.status_code == 403 and r.get_json()["error"] == "forbidden"


def test_the_hook_decides(tmp_path: Path) -> None:
    app, streaming = make_app(tmp_path, metrics=True)

    @streaming.authorize_metrics
    def token() -> bool:
        return request.headers.get("Authorization") == "Bearer s3cret"

    client = app.test_client()
    outside = {"REMOTE_ADDR": "203.0.113.5"}
    assert client.get("/streaming/metrics", environ_base=outside).status_code == 403
    assert client.get("/streaming/metrics").status_code == 403  # loopback is no pass either
    r = client.get(
        "/streaming/metrics", environ_base=outside, headers={"Authorization": "Bearer s3cret"}
    )
    assert r.status_code == 200


def test_in_process_counts(tmp_path: Path) -> None:
    app, streaming = make_app(tmp_path, metrics=True)

    @app.get("/sse")
    def sse() -> Any:
        return sse_response(iter(["a", "b"]))

    client = app.test_client()

    def scrape() -> dict[Any, float]:
        return samples(client.get("/streaming/metrics").get_data(as_text=True))

    before = scrape()
    with app.app_context():
        streaming.publish("room", 1)
    client.get("/sse").close()
    after = scrape()
    key = ("flask_streaming_events_published_total", ())
    assert after[key] - before.get(key, 0) == 1
    closed = ("flask_streaming_streams_closed_total", (("reason", "complete"),))
    assert after[closed] - before.get(closed, 0) == 1


def test_slow_consumer_disconnects_are_counted(tmp_path: Path) -> None:
    app, streaming = make_app(tmp_path, metrics=True, max_queue=2)

    @app.get("/sub")
    def sub() -> Any:
        from flask_streaming import subscribe_response

        return subscribe_response(["slow"])

    client = app.test_client()
    key = ("flask_streaming_slow_consumer_disconnects_total", ())
    before = samples(client.get("/streaming/metrics").get_data(as_text=True)).get(key, 0)
    r = client.get("/sub", buffered=False)
    it = iter(r.response)
    next(it)  # subscribed
    with app.app_context():
        for n in range(6):  # never read: the subscriber falls behind
            streaming.publish("slow", n)
    rest = b"".join(it)
    r.close()
    assert b"slow" in rest  # the slow-consumer notice
    after = samples(client.get("/streaming/metrics").get_data(as_text=True))[key]
    assert after - before == 1


@pytest.fixture
def multiproc(tmp_path: Path) -> Path:
    folder = tmp_path / "prom"
    folder.mkdir()
    return folder


def test_two_workers_one_scrape(
    live_server: Callable[..., GunicornServer],
    redis_server: Any,
    multiproc: Path,
    tmp_path: Path,
) -> None:
    # Numbers of an earlier run: the shipped conf empties the folder at start.
    subprocess.run(
        [sys.executable, "-c", "from flask_streaming import metrics;"
         " metrics.EVENTS_PUBLISHED.inc(1000)"],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}, check=True, cwd=ROOT,
    )  # fmt: skip
    assert list(multiproc.glob("*.db"))
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "STREAMING_METRICS": "true",
        "STREAMING_BROKER_URL": redis_server.url,
        "STREAMING_PING_INTERVAL": "0.5",
    }
    server = live_server(
        APP, workers=2, env=env, args=["-c", str(ROOT / "examples" / "gunicorn.conf.py")]
    )
    pids: set[int] = set()
    for _ in range(40):  # a fresh connection each: both workers take some
        r = httpx.post(f"{server.url}/publish/room", headers={"Connection": "close"}, timeout=10)
        pids.add(r.json()["pid"])
        if len(pids) == 2 and _ >= 19:
            break
    published = _ + 1
    assert len(pids) == 2, "the publishes did not reach both workers"

    path = tmp_path / "up.bin"
    path.write_bytes(b"z" * 2500)
    upload(path, f"{server.url}/streaming", segment_size=1000)
    upload(path, f"{server.url}/streaming", segment_size=1000, protocol="tus", progress=False)

    foreign = {"Last-Event-ID": "0000000000-7"}  # from another generation: a reset
    url = f"{server.url}/streaming/events/room"
    with httpx.stream("GET", url, headers=foreign, timeout=10) as stream:
        raw = stream.iter_raw()  # kept: a dropped iterator closes the stream
        seen = b""
        while b"stream-reset" not in seen:
            seen += next(raw)
        delivered = "flask_streaming_events_delivered_total", ()
        before = samples(httpx.get(f"{server.url}/streaming/metrics", timeout=10).text)
        # One more event: delivered live to the open stream (on whichever worker).
        r = httpx.post(f"{server.url}/publish/room", timeout=10).json()
        published += 1
        while f"id: {r['id']}".encode() not in seen:
            seen += next(raw)
        after = samples(httpx.get(f"{server.url}/streaming/metrics", timeout=10).text)
        assert after[delivered] - before[delivered] == 1
        scrapes = []
        for _ in range(6):
            r = httpx.get(
                f"{server.url}/streaming/metrics", headers={"Connection": "close"}, timeout=10
            )
            assert r.status_code == 200
            assert r.headers["Content-Type"].startswith("text/plain; version=")
            scrapes.append(samples(r.text))
    for got in scrapes:
        assert got[("flask_streaming_events_published_total", ())] == published
        assert got[("flask_streaming_open_streams", (("kind", "channel"),))] == 1
        assert got[("flask_streaming_segments_received_total", ())] == 6  # 3 native, 3 tus
        assert got[("flask_streaming_bytes_received_total", ())] == 5000
        patch = ("flask_streaming_upload_requests_total",
                 (("method", "PATCH"), ("protocol", "tus"), ("status", "204")))  # fmt: skip
        assert got[patch] == 3
        seg = ("flask_streaming_upload_requests_total",
               (("method", "POST"), ("protocol", "native"), ("status", "200")))  # fmt: skip
        assert got[seg] >= 3
        hook = ("flask_streaming_hook_duration_seconds_count",
                (("hook", "segment-received"), ("outcome", "ok")))  # fmt: skip
        assert got[hook] == 6
        assert got[("flask_streaming_upload_sessions_open", ())] == 0
        assert got[("flask_streaming_events_delivered_total", ())] >= 1
        resets = [
            v for (name, _), v in got.items() if name == "flask_streaming_stream_resets_sent_total"
        ]
        assert resets == [1]
    assert len(list(multiproc.glob("*.db"))) >= 2  # both workers wrote
