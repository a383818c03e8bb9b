"""Clear errors (issue 15): an extension never ``init_app``-ed, a Redis that
is down or hangs (``BrokerUnavailable``, bounded socket timeouts), hook
results through the app's JSON provider, non-transient 500s the clients do
not retry, and one traceback per failing stream with the connection still
aborted."""

from __future__ import annotations

import contextlib
import datetime
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask

from flask_streaming import BrokerUnavailable, Streaming, StreamingError
from flask_streaming.brokers import redis as redis_broker
from flask_streaming.client import ServerError, upload
from flask_streaming.errors import TRANSIENT_500_CODES
from flask_streaming.testing import GunicornServer, free_port
from tests.apps.prod_app import WHEN

APP = "tests.apps.prod_app:create_app()"
ROOT = Path(__file__).resolve().parents[1]


def make_app(tmp_path: Path, **options: Any) -> tuple[Flask, Streaming]:
    app = Flask("prodtest", instance_path=str(tmp_path / "instance"))
    streaming = Streaming(app, **options)

    @app.post("/publish")
    def publish() -> dict[str, str]:
        return {"id": streaming.publish("room", {"n": 1})}

    return app, streaming


# -- never init_app-ed ---------------------------------------------------------------


def test_publish_without_init_app_says_to_call_it(tmp_path: Path) -> None:
    streaming = Streaming()
    with pytest.raises(RuntimeError, match=r"call streaming\.init_app\(app\)"):
        streaming.publish("room", "hi")  # outside any app context
    app = Flask("other", instance_path=str(tmp_path))
    with app.app_context(), pytest.raises(RuntimeError, match=r"init_app\(app\)"):
        streaming.publish("room", "hi")  # inside an app it was never registered with
    with pytest.raises(RuntimeError, match=r"'other'.*init_app"):
        streaming.broker(app)


def test_publish_on_an_app_of_another_instance_says_to_call_init_app(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path)
    mine = Streaming()
    with app.app_context(), pytest.raises(RuntimeError, match="not registered with app"):
        mine.publish("room", "hi")


# -- Redis down or hanging ---------------------------------------------------------------


def test_publish_with_redis_down_raises_broker_unavailable(tmp_path: Path) -> None:
    app, streaming = make_app(tmp_path, broker_url=f"redis://127.0.0.1:{free_port()}/0")
    with app.app_context(), pytest.raises(BrokerUnavailable) as info:
        streaming.publish("room", "hi")
    assert isinstance(info.value, StreamingError)
    assert info.value.status == 503 and info.value.code == "broker_unavailable"
    # A view of the app that publishes: JSON 503 with Retry-After, not an HTML 500.
    r = app.test_client().post("/publish")
    assert r.status_code == 503
    assert r.get_json()["error"] == "broker_unavailable"
    assert r.headers["Retry-After"].isdigit()


def test_end_streams_with_redis_down_raises_broker_unavailable(tmp_path: Path) -> None:
    app, streaming = make_app(tmp_path, broker_url=f"redis://127.0.0.1:{free_port()}/0")
    with app.app_context(), pytest.raises(BrokerUnavailable):
        streaming.end_streams(["room"])


def test_app_handler_for_broker_unavailable_wins(tmp_path: Path) -> None:
    app = Flask("own", instance_path=str(tmp_path))
    app.register_error_handler(BrokerUnavailable, lambda exc: ("later", 503))
    streaming = Streaming(app, broker_url=f"redis://127.0.0.1:{free_port()}/0")

    @app.post("/p")
    def p() -> str:
        return streaming.publish("room", 1)

    assert app.test_client().post("/p").data == b"later"
    # ... and one set after init_app too.
    app, _ = make_app(tmp_path)
    app.register_error_handler(BrokerUnavailable, lambda exc: ("after", 503))

    @app.post("/q")
    def q() -> str:
        raise BrokerUnavailable()

    assert app.test_client().post("/q").data == b"after"


def test_publish_after_redis_stopped(tmp_path: Path, redis_factory: Callable[..., Any]) -> None:
    server = redis_factory()
    app, streaming = make_app(tmp_path, broker_url=server.url)
    with app.app_context():
        assert streaming.publish("room", "one")
        server.stop()
        with pytest.raises(BrokerUnavailable):
            streaming.publish("room", "two")


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A real listening socket that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def test_hanging_redis_does_not_block_publish(tmp_path: Path) -> None:
    with silent_server() as port:
        url = f"redis://127.0.0.1:{port}/0?socket_timeout=0.5"
        app, streaming = make_app(tmp_path, broker_url=url)
        result: list[BaseException | str] = []

        def run() -> None:
            with app.app_context():
                try:
                    result.append(streaming.publish("room", "hi"))
                except BaseException as exc:
                    result.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(60)  # a bound for the test, not a speed claim
        assert not thread.is_alive(), "publish() still blocked on a silent Redis"
        assert isinstance(result[0], BrokerUnavailable)
        assert isinstance(result[0].__cause__, redis_broker.redis.TimeoutError)


def test_redis_connections_have_bounded_socket_timeouts(tmp_path: Path) -> None:
    app, streaming = make_app(tmp_path, broker_url=f"redis://127.0.0.1:{free_port()}/0")
    kwargs = streaming.broker(app).redis.connection_pool.connection_kwargs  # type: ignore[attr-defined]
    assert kwargs["socket_timeout"] == redis_broker.SOCKET_TIMEOUT
    assert kwargs["socket_connect_timeout"] == redis_broker.SOCKET_TIMEOUT
    assert 0 < redis_broker.SOCKET_TIMEOUT <= 30


def test_events_route_with_redis_down_is_a_retry_stream_not_a_500(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, broker_url=f"redis://127.0.0.1:{free_port()}/0")
    with app.test_client().get("/streaming/events/room", headers={"Last-Event-ID": "3"}) as r:
        assert r.status_code == 200
        assert r.mimetype == "text/event-stream"
        assert b"retry:" in r.data


# -- hook results through the app's JSON provider, non-transient 500s ---------------------


@pytest.fixture
def server(live_server: Callable[..., GunicornServer]) -> GunicornServer:
    return live_server(APP)


def test_hook_returning_a_datetime_works(server: GunicornServer, tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 3000)
    final = upload(path, f"{server.url}/streaming", segment_size=1000)
    assert final["done"] is True
    sid = final["streamId"]
    # The segment's JSON answer carries the hook's datetime as Flask's
    # provider writes it; a retry of the same segment gets the stored value.
    again = httpx.post(
        f"{server.url}/streaming/uploads",
        headers={"X-Stream-Id": sid, "X-Stream-Segment": "0"},
        content=b"x" * 1000,
    )
    assert again.status_code == 200, again.text
    assert again.json()["at"] == "Mon, 30 Nov 2026 12:00:00 GMT"
    assert WHEN.strftime("%a, %d %b %Y %H:%M:%S GMT") == again.json()["at"]


def test_unserialisable_hook_result_is_a_final_500_naming_the_receiver(
    server: GunicornServer, tmp_path: Path
) -> None:
    path = tmp_path / "b.bin"
    path.write_bytes(b"y" * 2000)
    with pytest.raises(ServerError) as info:
        upload(path, f"{server.url}/streaming", segment_size=1000, metadata={"bad_result": True})
    assert info.value.status == 500
    assert info.value.body["error"] == "hook_result_invalid"
    assert "hook_result_invalid" not in TRANSIENT_500_CODES
    # Not retried: the hook ran once.
    assert httpx.get(f"{server.url}/hook-calls").json()["n"] == 1
    server.stop()
    log = Path(server.log_path or "").read_text()
    assert "segment-received receiver" in log or "receiver <function" in log
    assert "stamp" in log


def test_transient_codes_are_the_same_in_the_js_client() -> None:
    js = (ROOT / "flask_streaming" / "static" / "flask-streaming.js").read_text()
    line = next(x for x in js.splitlines() if x.startswith("const TRANSIENT_500_CODES"))
    assert set(json.loads(line[line.index("[") : line.rindex("]") + 1])) == TRANSIENT_500_CODES


# -- one traceback per failing stream ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "marker"), [("/failing", b"data: two"), ("/failing-chunked", b"two\n")]
)
def test_failing_stream_logs_one_traceback_with_method_and_path_and_is_truncated(
    server: GunicornServer, path: str, marker: bytes
) -> None:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    raw.sendall(f"GET {path}?token=secret HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        chunk = raw.recv(65536)
        if not chunk:
            break
        data += chunk
    raw.close()
    assert marker in data
    if path == "/failing":
        assert b"event: stream-error" in data
    assert not data.endswith(b"0\r\n\r\n"), "a failed chunked response must look truncated"
    server.stop()
    log = Path(server.log_path or "").read_text()
    assert log.count("Traceback") == 1, log
    assert f"the stream's source raised (GET {path})" in log
    assert "secret" not in log
    assert "Error handling request" not in log


def test_datetime_result_in_process(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path)
    from flask_streaming.signals import segment_received

    @segment_received.connect_via(app)
    def when(sender: Flask, **kw: Any) -> dict[str, Any]:
        return {"when": datetime.date(2026, 1, 2)}

    client = app.test_client()
    sid = client.get("/streaming/uploads").get_json()["streamId"]
    r = client.post(
        "/streaming/uploads",
        headers={"X-Stream-Id": sid, "X-Stream-Segment": "0"},
        data=b"abc",
    )
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["when"] == "Fri, 02 Jan 2026 00:00:00 GMT"


@pytest.mark.browser
def test_js_client_does_not_retry_a_non_transient_500(server: GunicornServer) -> None:
    from tests.browser import chromium, new_page

    with chromium() as browser, new_page(browser) as page:
        page.goto(server.url + "/client-test")
        page.wait_for_function("window.ready === true")
        got = page.evaluate(
            """async () => {
              const client = new fs.StreamingClient('/streaming/uploads', {},
                                                    {retries: 3, initial: 20});
              const blob = new Blob([new Uint8Array(3000)]);
              try {
                await client.upload(blob, {segmentSize: 1000, metadata: {bad_result: true}});
                return {ok: true};
              } catch (e) {
                return {status: e.status, code: e.body?.error};
              }
            }"""
        )
    assert got == {"status": 500, "code": "hook_result_invalid"}
    assert httpx.get(f"{server.url}/hook-calls").json()["n"] == 1
