"""Segmented upload sessions through Flask's test client: the protocol,
the hooks, the storage and every error case (always 4xx JSON, never 500)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import EnvironBuilder, run_wsgi_app

from flask_streaming import Streaming
from flask_streaming.cli import streaming_cli
from flask_streaming.errors import BadRequest
from flask_streaming.signals import (
    segment_received,
    upload_aborted,
    upload_completed,
    upload_created,
    upload_expired,
)
from flask_streaming.uploads import get_upload_service
from flask_streaming.uploads.locks import FileLock

URL = "/streaming/uploads"


def make_app(tmp_path: Path, **config: Any) -> tuple[Flask, Streaming]:
    app = Flask("uploads_test", instance_path=str(tmp_path / "instance"))
    app.config["TESTING"] = True
    app.config.update({f"STREAMING_{k.upper()}": v for k, v in config.items()})
    return app, Streaming(app)


@pytest.fixture
def up(tmp_path: Path) -> Flask:
    return make_app(tmp_path)[0]


def start(client: Any) -> str:
    rv = client.get(URL)
    assert rv.status_code == 200, rv.json
    sid: str = rv.json["streamId"]
    return sid


def send(
    client: Any,
    sid: str,
    index: Any,
    data: bytes | Iterator[bytes] = b"",
    done: Any = "false",
    svelte: bool = False,
    **headers: str,
) -> Any:
    p = "X-Svelte-Stream-" if svelte else "X-Stream-"
    h = {f"{p}Id": sid, f"{p}Segment": str(index), f"{p}Done": str(done), **headers}
    return client.post(URL, data=data, headers=h, content_type="application/octet-stream")


def assert_error(rv: Any, status: int, code: str) -> dict[str, Any]:
    assert rv.status_code == status, (rv.status_code, rv.get_data(as_text=True))
    assert rv.is_json and rv.json["error"] == code, rv.json
    assert rv.json["message"]
    body: dict[str, Any] = rv.json
    return body


def status(client: Any, sid: str) -> dict[str, Any]:
    rv = client.get(f"{URL}/{sid}")
    assert rv.status_code == 200, rv.json
    body: dict[str, Any] = rv.json
    return body


# -- the protocol ------------------------------------------------------------


def test_get_opens_a_session_with_an_unguessable_id(up: Flask) -> None:
    c = up.test_client()
    ids = {start(c) for _ in range(3)}
    assert len(ids) == 3
    for sid in ids:
        assert len(sid) == 22 and all(ch.isalnum() or ch in "-_" for ch in sid)


def test_post_json_opens_a_session_with_its_url(up: Flask) -> None:
    c = up.test_client()
    rv = c.post(URL, json={"filename": "../../etc/passwd", "size": 3, "metadata": {"a": 1}})
    assert rv.status_code == 201
    assert rv.headers["Location"] == rv.json["url"] == f"{URL}/{rv.json['streamId']}"
    assert rv.json["filename"] == "../../etc/passwd" and rv.json["length"] == 3
    assert not Path(up.instance_path, "etc").exists()
    assert c.post(URL).status_code == 201  # no body at all


def test_svelte_stream_flow_with_partial_and_final_hooks(up: Flask) -> None:
    def partial(app: Flask, session: Any, segment: Any, **kw: Any) -> dict[str, Any]:
        return {"message": f"partial {session.id} {segment.index} ({len(segment.data)} bytes)"}

    def final(app: Flask, session: Any, **kw: Any) -> dict[str, Any]:
        with session.open() as f:
            return {"message": f"final {session.id} ({len(f.read())} bytes)", "path": session.path}

    c = up.test_client()
    sid = start(c)
    chunks = [os.urandom(1000 + i) for i in range(4)]
    with segment_received.connected_to(partial, up), upload_completed.connected_to(final, up):
        for i, chunk in enumerate(chunks):
            rv = send(c, sid, i, chunk, svelte=True)
            assert rv.status_code == 200
            assert rv.json["message"] == f"partial {sid} {i} ({len(chunk)} bytes)"
            assert rv.json["offset"] == sum(map(len, chunks[:i]))
        rv = send(c, sid, len(chunks), b"", done="true", svelte=True)
    assert rv.status_code == 200, rv.json
    whole = b"".join(chunks)
    assert rv.json["done"] is True and rv.json["segments"] == 4 and rv.json["size"] == len(whole)
    assert rv.json["message"] == f"final {sid} ({len(whole)} bytes)"
    assert Path(rv.json["path"]).read_bytes() == whole
    assert status(c, sid)["state"] == "completed"


def test_non_empty_done_is_the_last_segment(up: Flask) -> None:
    c = up.test_client()
    sid = start(c)
    assert send(c, sid, 0, b"ab").status_code == 200
    rv = send(c, sid, 1, b"cd", done="TRUE")
    assert rv.json["done"] is True and rv.json["segments"] == 2 and rv.json["size"] == 4
    assert rv.json["segment"] == 1  # the partial part is in the final response too


def test_empty_upload(up: Flask) -> None:
    c = up.test_client()
    sid = start(c)
    rv = send(c, sid, 0, b"", done="true")
    assert rv.status_code == 200 and rv.json["segments"] == 0 and rv.json["size"] == 0


def test_out_of_order_retries_and_conflicts(up: Flask) -> None:
    calls: list[int] = []

    def count(app: Flask, session: Any, segment: Any, **kw: Any) -> dict[str, Any]:
        calls.append(segment.index)
        return {"n": len(calls)}

    c = up.test_client()
    sid = start(c)
    parts = [os.urandom(3000) for _ in range(5)]
    with segment_received.connected_to(count, up):
        for i in (3, 1, 4, 0, 2):
            assert send(c, sid, i, parts[i]).status_code == 200
        rv = send(c, sid, 1, parts[1])  # identical retry: acknowledged, no second signal
        assert rv.status_code == 200 and rv.json["duplicate"] is True and rv.json["n"] == 2
        assert_error(send(c, sid, 1, b"x" * 3000), 409, "segment_conflict")
        assert_error(send(c, sid, 0, parts[0][:-1]), 409, "segment_conflict")
        assert calls == [3, 1, 4, 0, 2]
        assert status(c, sid)["contiguous"] == 5
        rv = send(c, sid, 5, done="true")
        assert rv.status_code == 200
        # after completion: a retry is still recognised, a different body is not
        assert send(c, sid, 4, parts[4]).json["duplicate"] is True
        assert_error(send(c, sid, 4, b"y" * 3000), 409, "segment_conflict")
        assert_error(send(c, sid, 7, b"late"), 409, "upload_completed")
        assert send(c, sid, 5, done="true").json["duplicate"] is True
        assert_error(send(c, sid, 3, done="true"), 409, "upload_completed")
    data = Path(get_upload_service(up).storage.data_path(sid) or "").read_bytes()
    assert hashlib.sha256(data).digest() == hashlib.sha256(b"".join(parts)).digest()
    assert calls == [3, 1, 4, 0, 2]


def test_missing_segments_at_done_then_resume(up: Flask) -> None:
    c = up.test_client()
    sid = start(c)
    for i in (0, 2, 5):
        send(c, sid, i, bytes([i]) * 10)
    body = assert_error(send(c, sid, 6, done="true"), 409, "missing_segments")
    assert body["missing"] == [1, 3, 4]
    for i in (1, 3, 4):
        send(c, sid, i, bytes([i]) * 10)
    rv = send(c, sid, 6, done="true")
    assert rv.status_code == 200 and rv.json["size"] == 60
    body = assert_error(send(c, start(c), 0, b"x", done="maybe"), 400, "bad_done")


def test_segments_beyond_the_end_and_size_mismatch(up: Flask) -> None:
    c = up.test_client()
    sid = start(c)
    send(c, sid, 0, b"a")
    send(c, sid, 2, b"c")
    assert_error(send(c, sid, 1, done="true"), 409, "segments_beyond_end")
    sid = c.post(URL, json={"size": 5}).json["streamId"]
    send(c, sid, 0, b"abc")
    assert_error(send(c, sid, 1, done="true"), 409, "size_mismatch")


def test_status_and_abort(up: Flask) -> None:
    events: list[str] = []
    c = up.test_client()
    sid = start(c)
    send(c, sid, 0, b"hello")
    st = status(c, sid)
    assert st["received"] == 1 and st["bytes"] == 5 and st["state"] == "open"
    assert st["expiresAt"] > time.time()
    with upload_aborted.connected_to(lambda app, session, **kw: events.append(session.id), up):
        rv = c.delete(f"{URL}/{sid}")
    assert rv.status_code == 200 and rv.json["state"] == "aborted" and events == [sid]
    assert_error(c.get(f"{URL}/{sid}"), 404, "unknown_session")
    assert not Path(up.instance_path, "streaming-uploads", sid).exists()
    assert_error(c.delete(f"{URL}/{sid}"), 404, "unknown_session")


def test_segment_to_session_url(up: Flask) -> None:
    c = up.test_client()
    sid = c.post(URL).json["streamId"]
    rv = c.post(f"{URL}/{sid}", data=b"abc", headers={"X-Stream-Segment": "0"})
    assert rv.status_code == 200 and rv.json["size"] == 3


# -- malformed input ---------------------------------------------------------


@pytest.mark.parametrize("index", ["-1", "abc", "1.5", "", "99999999999", "+1", "10000"])
def test_bad_segment_numbers(up: Flask, index: str) -> None:
    c = up.test_client()
    assert_error(send(c, start(c), index, b"x"), 400, "bad_segment")


def test_malformed_requests(up: Flask) -> None:
    c = up.test_client()
    rv = c.post(URL, data=b"x", headers={"X-Stream-Segment": "0"})
    assert_error(rv, 400, "missing_stream_id")
    rv = c.post(URL, data=b"x", headers={"X-Stream-Id": start(c)})
    assert_error(rv, 400, "bad_segment")
    assert_error(c.post(URL, data=b"{", content_type="application/json"), 400, "bad_json")
    assert_error(c.post(URL, json=[1]), 400, "bad_json")
    assert_error(c.post(URL, json={"metadata": 3}), 400, "bad_metadata")
    assert_error(c.post(URL, json={"size": -1}), 400, "bad_size")
    assert_error(c.post(URL, json={"size": "1"}), 400, "bad_size")
    assert_error(c.post(URL, json={"filename": 3}), 400, "bad_request")
    assert_error(c.post(URL, data=b" " * 70000), 413, "payload_too_large")
    assert_error(send(c, "nope", 0, b"x"), 404, "unknown_session")
    assert_error(send(c, "../../etc", 0, b"x"), 404, "unknown_session")
    assert c.get(f"{URL}/..%2F..%2Fetc").status_code == 404
    assert_error(c.put(URL), 405, "method_not_allowed")


def test_checksums(up: Flask) -> None:
    c = up.test_client()
    sid = start(c)
    data = os.urandom(5000)
    good = "sha256=" + base64.b64encode(hashlib.sha256(data).digest()).decode()
    rv = send(c, sid, 0, data, **{"X-Stream-Checksum": good})
    assert rv.status_code == 200
    md5 = "md5=" + hashlib.md5(b"other").hexdigest()
    rv = send(c, sid, 1, data, **{"X-Stream-Checksum": md5})
    body = assert_error(rv, 400, "checksum_mismatch")
    assert body["segment"] == 1
    assert status(c, sid)["received"] == 1  # discarded
    for bad in ("crc32=AAAA", "sha256=not-base64!", "sha256=" + "A" * 10, "sha256"):
        assert_error(send(c, sid, 1, data, **{"X-Stream-Checksum": bad}), 400, "bad_checksum")
    assert (
        send(
            c,
            sid,
            1,
            data,
            **{
                "X-Stream-Checksum": "sha1 "
                + base64.b64encode(hashlib.sha1(data).digest()).decode()
            },
        ).status_code
        == 200
    )


def test_size_limits(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, max_segment_size=1000, max_upload_size=2500, max_segments=4)
    c = app.test_client()
    sid = start(c)
    body = assert_error(send(c, sid, 0, b"x" * 1001), 413, "segment_too_large")
    assert body["limit"] == 1000

    builder = EnvironBuilder(
        path=URL, method="POST", headers={"X-Stream-Id": sid, "X-Stream-Segment": "0"}
    )
    environ = builder.get_environ()  # no Content-Length (a chunked body): checked while reading
    environ.pop("CONTENT_LENGTH", None)
    environ.update({"wsgi.input": io.BytesIO(b"y" * 1500), "wsgi.input_terminated": True})
    body_iter, status_line, headers = run_wsgi_app(app.wsgi_app, environ, buffered=True)
    assert status_line.startswith("413") and headers["Content-Type"] == "application/json"
    assert json.loads(b"".join(body_iter))["error"] == "segment_too_large"
    assert status(c, sid)["received"] == 0
    for i in range(2):
        assert send(c, sid, i, b"z" * 1000).status_code == 200
    assert_error(send(c, sid, 2, b"z" * 600), 413, "payload_too_large")
    assert_error(send(c, sid, 4, b"z"), 400, "bad_segment")
    assert send(c, sid, 2, b"z" * 500, done="true").json["size"] == 2500
    assert_error(c.post(URL, json={"size": 2501}), 413, "payload_too_large")
    assert os.listdir(Path(app.instance_path, "streaming-uploads", sid, "tmp")) == []


def test_expiry_is_lazy_and_sends_the_signal_once(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, session_timeout=0.3)
    expired: list[str] = []
    c = app.test_client()
    sid = start(c)
    send(c, sid, 0, b"data")
    time.sleep(0.4)
    with upload_expired.connected_to(lambda app, session, **kw: expired.append(session.id), app):
        assert_error(send(c, sid, 1, b"more"), 410, "session_expired")
        assert_error(c.get(f"{URL}/{sid}"), 404, "unknown_session")
    assert expired == [sid]
    assert not Path(app.instance_path, "streaming-uploads", sid).exists()


def test_per_client_session_limit(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, max_sessions_per_client=2)
    c = app.test_client()
    a, b = start(c), start(c)
    body = assert_error(c.get(URL), 429, "too_many_sessions")
    assert body["limit"] == 2
    other = app.test_client()
    rv = other.get(URL, environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert rv.status_code == 200
    send(c, a, 0, b"", done="true")  # completed: no longer open
    c.delete(f"{URL}/{b}")
    assert c.get(URL).status_code == 200


# -- hooks -------------------------------------------------------------------


def test_results_merge_in_connection_order_and_created_signal(up: Flask) -> None:
    created: list[str] = []

    def first(app: Flask, **kw: Any) -> dict[str, Any]:
        return {"a": 1, "who": "first"}

    def second(app: Flask, **kw: Any) -> dict[str, Any]:
        return {"b": 2, "who": "second"}

    def nothing(app: Flask, **kw: Any) -> None:
        return None

    c = up.test_client()
    with upload_created.connected_to(lambda app, session, **kw: created.append(session.id), up):
        sid = start(c)
    assert created == [sid]
    with (
        segment_received.connected_to(first, up),
        segment_received.connected_to(nothing, up),
        segment_received.connected_to(second, up),
    ):
        rv = send(c, sid, 0, b"x")
    assert rv.json["a"] == 1 and rv.json["b"] == 2 and rv.json["who"] == "second"


def test_a_refusing_receiver_discards_the_segment(up: Flask) -> None:
    def refuse(app: Flask, session: Any, segment: Any, **kw: Any) -> None:
        if segment.data != b"RIFF":
            raise BadRequest("not audio", code="not_audio")

    c = up.test_client()
    sid = start(c)
    with segment_received.connected_to(refuse, up):
        assert_error(send(c, sid, 0, b"text"), 400, "not_audio")
        assert status(c, sid)["received"] == 0
        assert send(c, sid, 0, b"RIFF").status_code == 200


def test_a_failing_receiver_gives_hook_failed_and_runs_again(up: Flask) -> None:
    calls: list[int] = []

    def flaky(app: Flask, session: Any, segment: Any, **kw: Any) -> dict[str, Any]:
        calls.append(segment.index)
        if len(calls) == 1:
            raise RuntimeError("transcriber down")
        return {"text": "ok"}

    def bad_value(app: Flask, **kw: Any) -> str:
        return "not a dict"

    c = up.test_client()
    sid = start(c)
    with segment_received.connected_to(flaky, up):
        body = assert_error(send(c, sid, 5, b"late"), 500, "hook_failed")
        assert body["hook"] == "segment-received"
        assert status(c, sid)["received"] == 0
        assert send(c, sid, 5, b"late").json["text"] == "ok"
        assert send(c, sid, 5, b"late").json["duplicate"] is True
    assert calls == [5, 5]
    with upload_completed.connected_to(bad_value, up):
        assert_error(send(c, sid, 0, b"", done="true"), 409, "segments_beyond_end")
        for i in range(5):
            send(c, sid, i, b"x")
        # Not a dict: a server bug, a final (not transient) 500.
        assert_error(send(c, sid, 6, done="true"), 500, "hook_result_invalid")
    assert status(c, sid)["state"] == "open"  # the completion did not count
    assert send(c, sid, 6, done="true").json["size"] == 9


def test_authorization_hook(tmp_path: Path) -> None:
    app, streaming = make_app(tmp_path)
    allowed = {"create", "append", "status"}
    seen: list[tuple[str, bool]] = []

    @streaming.authorize_upload
    def check(action: str, session: Any) -> bool:
        seen.append((action, session is None))
        return action in allowed

    c = app.test_client()
    sid = start(c)
    assert send(c, sid, 0, b"x").status_code == 200
    body = assert_error(send(c, sid, 1, done="true"), 403, "forbidden")
    assert body["action"] == "complete"
    assert_error(c.delete(f"{URL}/{sid}"), 403, "forbidden")
    allowed.clear()
    assert_error(c.get(URL), 403, "forbidden")
    assert_error(send(c, sid, 1, b"y"), 403, "forbidden")
    assert_error(c.get(f"{URL}/{sid}"), 403, "forbidden")
    assert ("create", True) in seen and ("append", False) in seen


# -- storage, locks, service, CLI ----------------------------------------------


def test_file_lock_excludes_objects_and_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "lock")
    a, b = FileLock(path), FileLock(path)
    assert a.acquire(0)
    assert not b.acquire(0)  # same process, another open file description
    t = time.monotonic()
    assert not b.acquire(0.05) and time.monotonic() - t >= 0.05
    a.release()
    code = (
        "import sys; from flask_streaming.uploads.locks import FileLock; "
        "sys.exit(0 if not FileLock(sys.argv[1]).acquire(0) else 3)"
    )
    with a:
        assert subprocess.run([sys.executable, "-c", code, path]).returncode == 0
    assert b.acquire(0)
    b.release()


def test_append_range_for_tus(up: Flask) -> None:
    with up.test_request_context():
        service = get_upload_service(up)
        session = service.create(protocol="tus", length=10)
        r = service.append_range(session.id, 0, io.BytesIO(b"hello"), content_length=5)
        assert r.segment.offset == 0 and r.segment.end == 5 and r.segment.data == b"hello"
        with pytest.raises(Exception, match="offset"):
            service.append_range(session.id, 3, io.BytesIO(b"x"))
        r = service.append_range(session.id, 5, io.BytesIO(b"world"))
        assert r.completion is not None and r.session.completed
        with r.session.open() as f:
            assert f.read() == b"helloworld"


def test_cli_sessions_and_cleanup(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, session_timeout=0.2)
    c = app.test_client()
    sid = start(c)
    runner = app.test_cli_runner()
    out = runner.invoke(streaming_cli, ["sessions"]).output
    assert sid in out and "open" in out
    time.sleep(0.3)
    assert "expired" in runner.invoke(streaming_cli, ["sessions"]).output
    expired: list[str] = []
    with upload_expired.connected_to(lambda app, session, **kw: expired.append(session.id), app):
        out = runner.invoke(streaming_cli, ["cleanup"]).output
    assert f"removed {sid}" in out and expired == [sid]
    assert "no upload sessions" in runner.invoke(streaming_cli, ["sessions"]).output


_GEVENT_LOCK_SCRIPT = """
from gevent import monkey; monkey.patch_all()
import sys, time, gevent
from flask_streaming.uploads.locks import FileLock
path = sys.argv[1]
ticks = []
def holder():
    with FileLock(path):
        gevent.sleep(0.3)
def waiter():
    gevent.sleep(0.01)
    t = time.monotonic()
    with FileLock(path, timeout=5):
        ticks.append(("waited", time.monotonic() - t))
def ticker():
    for _ in range(20):
        ticks.append("tick")
        gevent.sleep(0.01)
gevent.joinall([gevent.spawn(holder), gevent.spawn(waiter), gevent.spawn(ticker)])
waited = [t for t in ticks if t != "tick"]
print(ticks.index(waited[0]), waited[0][1])
"""


def test_file_lock_waits_without_blocking_the_gevent_hub(tmp_path: Path) -> None:
    # In a child process (this one is never monkey-patched): while one
    # greenlet holds the lock, another waits for it and a third keeps running.
    out = subprocess.run(
        [sys.executable, "-c", _GEVENT_LOCK_SCRIPT, str(tmp_path / "lock")],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.split()  # fmt: skip
    ticks_while_waiting, waited = int(out[0]), float(out[1])
    assert ticks_while_waiting == 20  # the hub ran the ticker the whole time
    assert 0.2 < waited < 2
