"""Let no one in: authorization hooks, injection, CORS, per-client quotas."""

from __future__ import annotations

import errno
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request

from flask_streaming import ServerSentEvent, Streaming, download_response, get_upload_service
from flask_streaming.errors import BadRequest
from flask_streaming.uploads.service import ORPHAN_GRACE, UPLOAD_ACTIONS
from flask_streaming.uploads.storage import FileStorage
from flask_streaming.uploads.views import create_upload_service


@pytest.fixture
def guarded(tmp_path: Path) -> tuple[Flask, Any]:
    """Uploads owned by the ``X-User`` that created them; channels
    ``private-<user>`` only for that user."""
    app = Flask("guarded", instance_path=str(tmp_path))
    app.config.update(TESTING=True, STREAMING_MAX_CONNECTIONS_PER_CLIENT=1)
    streaming = Streaming(app)

    @streaming.authorize_upload
    def owner_only(action: str, session: Any) -> bool:
        user = request.headers.get("X-User")
        if action == "create":
            return bool(user)
        return session is not None and session.metadata.get("owner") == user

    @streaming.authorize_channel
    def own_channel(channel: str, action: str) -> bool:
        if channel.startswith("private-"):
            return channel == f"private-{request.headers.get('X-User')}"
        return True

    return app, app.test_client()


def _create(client: Any, user: str) -> str:
    rv = client.post("/streaming/uploads", json={"metadata": {"owner": user}},
                     headers={"X-User": user})  # fmt: skip
    assert rv.status_code == 201
    return str(rv.get_json()["streamId"])


def test_a_denied_user_cannot_touch_another_users_session(guarded: tuple[Flask, Any]) -> None:
    _, client = guarded
    sid = _create(client, "alice")
    seg = {"X-Stream-Id": sid, "X-Stream-Segment": "0"}
    rv = client.post("/streaming/uploads", data=b"a", headers={**seg, "X-User": "alice"})
    assert rv.status_code == 200
    for method, path, headers, body in (
        ("POST", "/streaming/uploads", {**seg, "X-Stream-Segment": "1"}, b"evil"),
        ("POST", f"/streaming/uploads/{sid}", {"X-Stream-Segment": "1"}, b"evil"),
        ("POST", "/streaming/uploads", {**seg, "X-Stream-Segment": "1", "X-Stream-Done": "true"},
         b""),
        ("GET", f"/streaming/uploads/{sid}", {}, b""),
        ("DELETE", f"/streaming/uploads/{sid}", {}, b""),
    ):  # fmt: skip
        for user in ("mallory", None):
            h = dict(headers)
            if user:
                h["X-User"] = user
            rv = client.open(path, method=method, headers=h, data=body)
            assert rv.status_code == 403, (method, path, user, rv.get_json())
            assert rv.get_json()["error"] == "forbidden"
    rv = client.get(f"/streaming/uploads/{sid}", headers={"X-User": "alice"})
    assert (rv.get_json()["received"], rv.get_json()["bytes"]) == (1, 1)


def test_a_denied_user_cannot_subscribe_to_a_private_channel(guarded: tuple[Flask, Any]) -> None:
    _, client = guarded
    for url in (
        "/streaming/events/private-alice",
        "/streaming/events?channel=public&channel=private-alice",
    ):
        rv = client.get(url, headers={"X-User": "mallory"})
        assert rv.status_code == 403 and rv.get_json()["error"] == "forbidden"
    rv = client.get("/streaming/events/private-alice", headers={"X-User": "alice"})
    assert rv.status_code == 200
    rv.close()


def test_the_default_refuses_private_channels(client: Any) -> None:
    rv = client.get("/streaming/events/private-anything")
    assert rv.status_code == 403


def test_per_client_stream_quota_is_429_with_retry_after(guarded: tuple[Flask, Any]) -> None:
    app, client = guarded
    first = client.get("/streaming/events/news")
    next(iter(first.response))  # the stream started: it counts now
    try:
        rv = client.get("/streaming/events/news")
        assert rv.status_code == 429
        assert rv.headers["Retry-After"] == "5"
        assert rv.get_json()["error"] == "too_many_connections"
        other = client.get("/streaming/events/news", environ_base={"REMOTE_ADDR": "10.0.0.2"})
        assert other.status_code == 200
        other.close()
    finally:
        first.close()
    again = client.get("/streaming/events/news")
    assert again.status_code == 200  # the slot came back on close
    again.close()
    assert app.extensions["streaming"].broker.clients == {}


def test_per_client_upload_session_quota(tmp_path: Path) -> None:
    app = Flask("quota", instance_path=str(tmp_path))
    app.config.update(TESTING=True, STREAMING_MAX_SESSIONS_PER_CLIENT=3)
    Streaming(app)
    client = app.test_client()
    for _ in range(3):
        assert client.get("/streaming/uploads").status_code == 200
    rv = client.get("/streaming/uploads")
    assert rv.status_code == 429 and rv.get_json()["error"] == "too_many_sessions"
    rv = client.post("/streaming/uploads", environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert rv.status_code == 201


@pytest.mark.parametrize("field", ["event", "id", "comment"])
@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\nb", "a\x00b", "\n"])
def test_sse_field_injection_is_impossible(field: str, bad: str) -> None:
    with pytest.raises(ValueError):
        ServerSentEvent("x", **{field: bad})


def test_published_events_cannot_inject_fields(app: Flask) -> None:
    streaming = app.extensions["streaming"].extension
    with pytest.raises(ValueError):
        streaming.publish("room", "x", event="message\ndata: injected")
    raw = ServerSentEvent("line\r\nevent: evil\n\nid: 9").encode()
    assert b"\nevent: evil" not in raw.replace(b"data: event: evil", b"")
    assert raw.count(b"\n\n") == 1 and raw.endswith(b"\n\n")


@pytest.mark.parametrize(
    ("name", "expected"),
    [('a"b.txt', 'a"b.txt'),
     ("a\r\nSet-Cookie: x=1.txt", "a__Set-Cookie: x=1.txt"),
     ("a\nb", "a_b"),
     ("a\x00b", "a_b"),
     ("../../etc/passwd", "_.._etc_passwd"),
     ("é€\r\n.bin", "é€__.bin"),
     ('x"; filename*=UTF-8\'\'evil.exe', 'x"; filename*=UTF-8\'\'evil.exe'),
     ("report.pdf", "report.pdf")],
)  # fmt: skip
def test_content_disposition_injection_is_impossible(app: Flask, name: str, expected: str) -> None:
    """The header, parsed as Werkzeug parses it (RFC 6266 / RFC 8187:
    ``filename*`` wins over ``filename``, as in browsers), names exactly the
    sanitised file: no injected parameter or header, no path."""
    from werkzeug.http import parse_options_header

    with app.test_request_context():
        rv = download_response(iter([b"x"]), filename=name)
        value = rv.headers["Content-Disposition"]
        rv.close()
    assert "\r" not in value and "\n" not in value and "\x00" not in value
    disposition, params = parse_options_header(value)
    assert disposition == "attachment"
    assert params == {"filename": expected}
    assert "/" not in params["filename"] and "\\" not in params["filename"]


def test_cors_is_closed_by_default(client: Any) -> None:
    evil = {"Origin": "https://evil.example"}
    for rv in (
        client.get("/streaming/uploads", headers=evil),
        client.options("/streaming/uploads", headers={
            **evil, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-Stream-Id"}),
        client.options("/streaming/tus/",
                       headers={**evil, "Access-Control-Request-Method": "POST"}),
    ):  # fmt: skip
        assert not any(k.lower().startswith("access-control-") for k, _ in rv.headers)


# -- the upload store: atomic creation, orphans, nesting (issue 18) ------------


class _RecordFails(FileStorage):
    """A real store whose disk is full for one kind of record: session
    records of uploads whose metadata says ``fail``."""

    def _write_json(self, path: str, value: Any) -> None:
        if path.endswith("session.json") and value.get("metadata", {}).get("fail"):
            raise OSError(errno.ENOSPC, "No space left on device")
        super()._write_json(path, value)


def test_session_creation_is_atomic_and_cleanup_removes_orphans(tmp_path: Path) -> None:
    app = Flask("atomic", instance_path=str(tmp_path))
    app.config["TESTING"] = True
    Streaming(app)
    folder = tmp_path / "store"
    service = create_upload_service(app, _RecordFails(str(folder)))
    client = app.test_client()
    for _ in range(3):
        rv = client.post("/streaming/uploads", json={"metadata": {"fail": True}})
        assert rv.status_code == 507 and rv.get_json()["error"] == "insufficient_storage"
    assert sorted(p.name for p in folder.iterdir()) == [".clients", ".trash"]
    live = client.post("/streaming/uploads", json={}).get_json()["streamId"]
    # Debris of older versions and of workers killed mid-way.
    old = time.time() - ORPHAN_GRACE - 10
    orphans = [folder / ("A" * 22), folder / f".new-{'B' * 22}", folder / ".trash" / "C.1"]
    for path in orphans:
        (path / "segments").mkdir(parents=True)
        (path / "data").write_bytes(b"x" * 100)
        os.utime(path, (old, old))
    fresh = folder / ("D" * 22)  # maybe being made right now: kept
    fresh.mkdir()
    service.cleanup()
    assert [p.exists() for p in orphans] == [False, False, False]
    assert fresh.exists() and (folder / live / "session.json").exists()
    assert service.get(live).id == live


def test_metadata_nesting_is_bounded_for_python_callers_too(app: Flask) -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    with app.test_request_context():
        service = get_upload_service()
        for value in (deep, {"a": [[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]}):
            with pytest.raises(BadRequest) as info:
                service.create(metadata={"v": value})
            assert info.value.code == "too_deep"
        assert service.create(metadata={"v": [[["ok"]]]}).metadata == {"v": [[["ok"]]]}


def test_the_security_guide_lists_every_upload_action() -> None:
    """docs/security.rst's action table is UPLOAD_ACTIONS, no more, no less."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "security.rst").read_text()
    table = text.split("Upload authorization actions", 1)[1].split("Without a hook", 1)[0]
    listed = re.findall(r"^   \* - ``([a-z]+)``$", table, re.M)
    assert listed == list(UPLOAD_ACTIONS)


def test_revocation_registry_follows_open_streams(app: Flask) -> None:
    """Each open channel stream is in the registry with its user, ended
    ones leave nothing behind; end_streams ends only what it names."""
    from tests.test_channels import Stream

    state = app.extensions["streaming"]
    streaming = state.extension

    @streaming.stream_user
    def user() -> str | None:
        return request.headers.get("X-User")

    client = app.test_client()
    bob = Stream(client, "/streaming/events/news", headers={"X-User": "bob"})
    alice = Stream(client, "/streaming/events/news", headers={"X-User": "alice"})
    assert sorted(str(g.user) for g in state.streams.guards) == ["alice", "bob"]
    streaming.end_streams(user="bob")
    bob.read_to_end()
    assert b"retry: " in bob.raw and not alice.ended
    assert [g.user for g in state.streams.guards] == ["alice"]
    streaming.end_streams(["sports"])
    assert [g.user for g in state.streams.guards] == ["alice"]
    alice.close()
    bob.close()
    assert state.streams.guards == set()
    assert streaming.broker().connections == 0


def test_a_shared_store_folder_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = tmp_path / "old-store"
    old.mkdir(mode=0o755)
    old.chmod(0o755)
    with caplog.at_level("WARNING", logger="flask_streaming"):
        FileStorage(str(old))
    assert "accessible to other users" in caplog.text
    assert (old.stat().st_mode & 0o777) == 0o755  # left as it was
    caplog.clear()
    with caplog.at_level("WARNING", logger="flask_streaming"):
        FileStorage(str(tmp_path / "new-store"))
    assert caplog.text == ""
    assert ((tmp_path / "new-store").stat().st_mode & 0o777) == 0o700


def test_an_ended_stream_resumes_from_its_position(app: Flask) -> None:
    """A stream that received nothing yet is ended at its position: its
    reconnect (with the id the end marked) gets what was published since."""
    from tests.test_channels import Stream

    streaming = app.extensions["streaming"].extension
    client = app.test_client()
    streaming.publish("news", "before")
    quiet = Stream(client, "/streaming/events/news")
    streaming.end_streams(["news"])
    quiet.read_to_end()
    streaming.publish("news", "meanwhile")
    ids = [line[4:] for line in quiet.raw.decode().splitlines() if line.startswith("id: ")]
    assert len(ids) == 1 and quiet.events == []  # an id-only mark, no event
    again = Stream(client, "/streaming/events/news", headers={"Last-Event-ID": ids[0]})
    assert [e.data for e in again.read(1)] == ["meanwhile"]
    again.close()
    quiet.close()
