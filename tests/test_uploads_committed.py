"""Post-commit signals (issue 14): ``segment-committed`` and
``upload-committed`` are sent after the commit, outside the session lock,
once per committed segment / completed upload; their return values never
reach the client; a raising receiver is logged and changes nothing; a marker
left by a worker that died between commit and send is sent by the next
request or the sweep. The live test kills a gunicorn worker between commit
and send."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_streaming import Streaming
from flask_streaming.signals import (
    segment_committed,
    segment_received,
    upload_committed,
    upload_completed,
)
from flask_streaming.testing import GunicornServer, http_request
from flask_streaming.uploads import get_upload_service
from flask_streaming.uploads.delivery import LEASE, Pending
from flask_streaming.uploads.storage import FileStorage

URL = "/streaming/uploads"
TUS = "/streaming/tus/"
T = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    app = Flask("committed", instance_path=str(tmp_path / "instance"))
    app.config["TESTING"] = True
    Streaming(app)
    return app


def seg(c: Any, sid: str, index: int, data: bytes, done: bool = False) -> Any:
    h = {"X-Stream-Id": sid, "X-Stream-Segment": str(index), "X-Stream-Done": str(done).lower()}
    return c.post(URL, data=data, headers=h, content_type="application/octet-stream")


class Recorder:
    """Receivers of every upload signal, in order, with what they saw."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.events: list[tuple[str, Any]] = []
        self.lock_free: list[bool] = []
        self.received_then: list[int] = []

    def pre(self, name: str) -> Callable[..., dict[str, Any]]:
        def receiver(sender: Flask, session: Any, segment: Any = None, **kw: Any) -> dict[str, Any]:
            self.events.append((name, segment.index if segment else session.id))
            return {"pre": name}

        return receiver

    def post(self, name: str) -> Callable[..., dict[str, Any]]:
        def receiver(sender: Flask, session: Any, segment: Any = None, **kw: Any) -> dict[str, Any]:
            key = (segment.index, segment.offset, segment.data) if segment else session.id
            self.events.append((name, key))
            storage = get_upload_service(self.app).storage
            lock = storage.lock(session.id, 0)
            self.lock_free.append(lock.acquire())
            lock.release()
            stored = storage.load(session.id)
            assert stored is not None
            self.received_then.append(stored.received)
            return {"post": "never sent to the client"}

        return receiver

    def __enter__(self) -> Recorder:
        self._cms = [
            segment_received.connected_to(self.pre("segment-received"), self.app),
            upload_completed.connected_to(self.pre("upload-completed"), self.app),
            segment_committed.connected_to(self.post("segment-committed"), self.app),
            upload_committed.connected_to(self.post("upload-committed"), self.app),
        ]
        for cm in self._cms:
            cm.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        for cm in reversed(self._cms):
            cm.__exit__(*exc)

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


def test_native_after_commit_outside_the_lock_once(app: Flask) -> None:
    c = app.test_client()
    sid = c.get(URL).json["streamId"]
    with Recorder(app) as rec:
        rv = seg(c, sid, 1, b"world")  # out of order: offset not known yet
        assert rv.status_code == 200 and rv.json["pre"] == "segment-received"
        assert "post" not in rv.json
        rv = seg(c, sid, 0, b"hello")
        assert seg(c, sid, 0, b"hello").json["duplicate"] is True  # a retry: nothing sent
        rv = seg(c, sid, 2, b"", done=True)
        assert rv.json["done"] is True and "post" not in rv.json
        assert seg(c, sid, 2, b"", done=True).json["duplicate"] is True
    assert rec.names() == [
        "segment-received", "segment-committed",
        "segment-received", "segment-committed",
        "upload-completed", "upload-committed",
    ]  # fmt: skip
    assert rec.events[1][1] == (1, None, b"world") and rec.events[3][1] == (0, 0, b"hello")
    assert rec.lock_free == [True, True, True], "sent outside the session lock"
    assert rec.received_then == [1, 2, 2], "sent after the commit"
    storage = get_upload_service(app).storage
    session = storage.load(sid)
    # the segments' markers were dropped by the next transaction; the
    # completion's stays, acknowledged, until the sweep drops it
    assert session is not None and [p["signal"] for p in session.pending] == ["upload-committed"]
    assert storage.acknowledged(sid, session.acks_read)[0] == {session.pending[0]["token"]}
    get_upload_service(app).cleanup()
    session = storage.load(sid)
    assert session is not None and session.pending == []
    assert storage.acknowledged(sid, session.acks_read) == (set(), session.acks_read)
    assert session.acks_read == os.path.getsize(os.path.join(storage.folder, sid, "acks.log"))


def test_tus_after_commit_once_and_not_for_a_partial(app: Flask) -> None:
    c = app.test_client()
    with Recorder(app) as rec:
        url = c.post(TUS, headers={**T, "Upload-Length": "10"}).headers["Location"]
        h = {**T, "Content-Type": OCTETS}
        assert c.patch(url, data=b"hello", headers={**h, "Upload-Offset": "0"}).status_code == 204
        assert c.patch(url, data=b"", headers={**h, "Upload-Offset": "5"}).status_code == 204
        assert c.patch(url, data=b"world", headers={**h, "Upload-Offset": "5"}).status_code == 204
        assert c.patch(url, data=b"", headers={**h, "Upload-Offset": "10"}).status_code == 204
        part = c.post(TUS, headers={**T, "Upload-Length": "3", "Upload-Concat": "partial"})
        purl = part.headers["Location"]
        assert c.patch(purl, data=b"abc", headers={**h, "Upload-Offset": "0"}).status_code == 204
        final = c.post(TUS, headers={**T, "Upload-Concat": f"final;{purl}"})
        assert final.status_code == 201
    committed = [e for e in rec.events if e[0].endswith("-committed")]
    assert committed[:3] == [
        ("segment-committed", (0, 0, b"hello")),
        ("segment-committed", (1, 5, b"world")),
        ("upload-committed", url.rsplit("/", 1)[1]),
    ]
    # the partial: its range, no upload-committed; the final: one
    assert committed[3:] == [
        ("segment-committed", (0, 0, b"abc")),
        ("upload-committed", final.headers["Location"].rsplit("/", 1)[1]),
    ]
    assert all(rec.lock_free)


def test_a_raising_receiver_is_logged_and_changes_nothing(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    c = app.test_client()
    sid = c.get(URL).json["streamId"]
    seen: list[int] = []

    def broken(sender: Flask, **kw: Any) -> None:
        raise RuntimeError("side effect failed")

    def after(sender: Flask, segment: Any, **kw: Any) -> None:
        seen.append(segment.index)

    with (
        caplog.at_level(logging.ERROR),
        segment_committed.connected_to(broken, app),
        segment_committed.connected_to(after, app),
        upload_committed.connected_to(broken, app),
    ):
        rv = seg(c, sid, 0, b"hello")
        assert rv.status_code == 200 and rv.json["duplicate"] is False
        rv = seg(c, sid, 1, b"", done=True)
        assert rv.status_code == 200 and rv.json["done"] is True and rv.json["size"] == 5
    assert seen == [0], "the other receivers still ran"
    assert "a segment-committed receiver failed" in caplog.text
    assert "a upload-committed receiver failed" in caplog.text
    session = get_upload_service(app).storage.load(sid)
    assert session is not None and session.completed


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _orphan(app: Flask, sid: str, entry: Pending) -> None:
    """Leave *entry* in the record as if its owner died before sending."""
    storage = get_upload_service(app).storage
    session = storage.load(sid)
    assert session is not None
    session.pending.append(entry.to_record())
    storage.save(session)


def test_a_marker_left_by_a_dead_worker_is_sent_by_the_next_request(app: Flask) -> None:
    c = app.test_client()
    sid = c.get(URL).json["streamId"]
    assert seg(c, sid, 0, b"hello").status_code == 200
    orphan = Pending.new("segment-committed")
    orphan.segment = {"index": 0, "offset": 0, "size": 5, "checksum": None}
    orphan.owner = orphan.owner.rsplit(":", 1)[0] + f":{_dead_pid()}"
    alive = Pending.new("segment-committed")  # owned by this (live) process: never taken over
    alive.segment = dict(orphan.segment)
    _orphan(app, sid, orphan)
    _orphan(app, sid, alive)
    with Recorder(app) as rec:
        assert seg(c, sid, 1, b"world").status_code == 200
    assert [e for e in rec.events if e[0] == "segment-committed"] == [
        ("segment-committed", (0, 0, b"hello")),  # the orphan, sent again
        ("segment-committed", (1, 5, b"world")),
    ]
    with Recorder(app) as rec:
        assert seg(c, sid, 2, b"!").status_code == 200
    assert rec.names() == ["segment-received", "segment-committed"], "sent once, then dropped"
    storage = get_upload_service(app).storage
    session = storage.load(sid)
    assert session is not None
    acked = storage.acknowledged(sid)[0]  # from the start of the log
    unsent = [p["token"] for p in session.pending if p["token"] not in acked]
    assert unsent == [alive.token], "the orphan is gone; the live owner's marker waits"


def test_the_sweep_sends_markers_of_completed_uploads(app: Flask) -> None:
    c = app.test_client()
    sid = c.get(URL).json["streamId"]
    assert seg(c, sid, 0, b"hello", done=True).json["done"] is True
    dead = Pending.new("upload-committed")
    dead.owner = dead.owner.rsplit(":", 1)[0] + f":{_dead_pid()}"
    remote = Pending.new("upload-committed")
    remote.owner = "another-host:1"
    remote_old = Pending.new("upload-committed")
    remote_old.owner, remote_old.at = "another-host:1", time.time() - LEASE - 1
    for entry in (dead, remote, remote_old):
        _orphan(app, sid, entry)
    runner = app.test_cli_runner()
    from flask_streaming.cli import streaming_cli

    with Recorder(app) as rec:
        assert runner.invoke(streaming_cli, ["cleanup", "--dry-run"]).exit_code == 0
        assert rec.events == [], "a dry run sends nothing"
        runner.invoke(streaming_cli, ["cleanup"])
        runner.invoke(streaming_cli, ["cleanup"])
    assert rec.events == [("upload-committed", sid), ("upload-committed", sid)]
    session = get_upload_service(app).storage.load(sid)
    assert session is not None and [p["token"] for p in session.pending] == [remote.token]


# -- live: a worker killed between commit and send -------------------------------
def _call(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    status, _, data = http_request(port, method, path, body, headers)
    return status, json.loads(data or b"null")


@pytest.mark.live
def test_a_worker_killed_between_commit_and_send(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    server = live_server("tests.apps.tus_app:create_app()", workers=2)
    sid = _call(server.port, "GET", URL)[1]["streamId"]
    parts = [os.urandom(100_000) for _ in range(3)]

    def send(i: int, done: bool = False) -> tuple[int, Any]:
        h = {"X-Stream-Id": sid, "X-Stream-Segment": str(i), "X-Stream-Done": str(done).lower()}
        return _call(server.port, "POST", URL, parts[i] if i < 3 else b"", h)

    (tmp_path / "instance" / "die-once").touch()
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        send(0)  # committed, then the worker died in the segment-committed receiver
    assert not (tmp_path / "instance" / "die-once").exists()
    status, body = send(0)  # the client's retry: a duplicate, nothing new committed
    assert status == 200 and body["duplicate"] is True
    for i in (1, 2):
        assert send(i)[0] == 200
    status, final = send(3, done=True)
    assert status == 200 and final["sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()
    lines = (tmp_path / "instance" / "signals.log").read_text().splitlines()
    records = [r for r in map(json.loads, lines) if r["id"] == sid]
    committed = Counter(r["index"] for r in records if r["signal"] == "segment-committed")
    assert committed == Counter({0: 1, 1: 1, 2: 1}), "segment 0's signal was sent later, once"
    assert [r["signal"] for r in records].count("upload-committed") == 1


# -- acknowledgements: an append-only log read with a cursor ----------------------
def _marked(app: Flask) -> tuple[FileStorage, str, str]:
    """A native session with one segment committed and a receiver that
    ran: its record holds the segment's marker, acknowledged in the log."""
    c = app.test_client()
    sid = c.get(URL).json["streamId"]
    with segment_committed.connected_to(lambda sender, **kw: None, app):
        assert seg(c, sid, 0, b"hello").status_code == 200
    storage = get_upload_service(app).storage
    assert isinstance(storage, FileStorage)
    session = storage.load(sid)
    assert session is not None and len(session.pending) == 1
    return storage, sid, session.pending[0]["token"]


def test_acknowledgements_are_lines_of_one_log_read_past_by_a_cursor(app: Flask) -> None:
    storage, sid, token = _marked(app)
    log = os.path.join(storage.folder, sid, "acks.log")
    assert Path(log).read_bytes() == f"{token}\n".encode(), "one line, no file per signal"
    assert not os.path.exists(os.path.join(storage.folder, sid, "acks"))
    assert storage.acknowledged(sid) == ({token}, 17)
    assert storage.acknowledged(sid, 17) == (set(), 17)
    # a line being written (or left half-written by a killed worker) is not
    # read past; the next whole line is read, with its token
    with open(log, "ab") as f:
        f.write(b"0123")
    assert storage.acknowledged(sid, 17) == (set(), 17)
    other = "89abcdef01234567"
    storage.acknowledge(sid, other)
    assert storage.acknowledged(sid, 17) == ({other}, 17 + 4 + 17)
    with pytest.raises(ValueError):
        storage.acknowledge(sid, "../x\n")
    # the next commit drops the marker and keeps where it read to (its
    # own segment's note comes after, once the lock is released)
    c = app.test_client()
    read_to = os.path.getsize(log)
    with segment_committed.connected_to(lambda sender, **kw: None, app):
        assert seg(c, sid, 1, b"world").status_code == 200
    session = storage.load(sid)
    assert session is not None and session.acks_read == read_to
    assert [p["segment"]["index"] for p in session.pending] == [1], "0 acknowledged: dropped"
    assert storage.acknowledged(sid, read_to) == ({session.pending[0]["token"]}, read_to + 17)


def test_a_note_after_the_cursor_is_never_lost(app: Flask) -> None:
    """The log is never cut: a note appended after a commit read it (its
    marker still in the record) is read by the next commit."""
    storage, sid, _token = _marked(app)
    c = app.test_client()
    seen: list[int] = []
    with segment_committed.connected_to(lambda s, segment, **kw: seen.append(segment.index), app):
        # this commit reads the log: segment 0's marker goes, segment 1's stays
        assert seg(c, sid, 1, b"world").status_code == 200
        session = storage.load(sid)
        assert session is not None and len(session.pending) == 1
        cursor = session.acks_read
        assert seg(c, sid, 2, b"!").status_code == 200
    session = storage.load(sid)
    assert session is not None and session.acks_read > cursor
    assert [p["segment"]["index"] for p in session.pending] == [2]
    assert seen == [1, 2], "each sent once"


def test_acknowledgements_left_as_files_by_an_older_version_count(app: Flask) -> None:
    """Upgrading with markers in flight: an ``acks/<token>`` file written by
    the previous version still drops its marker (no second signal), and is
    removed; a link planted in its place is not followed."""
    storage, sid, token = _marked(app)
    folder = os.path.join(storage.folder, sid)
    os.unlink(os.path.join(folder, "acks.log"))  # as the older version left it
    session = storage.load(sid)
    assert session is not None
    session.acks_read = 0
    storage.save(session)
    os.mkdir(os.path.join(folder, "acks"))
    open(os.path.join(folder, "acks", token), "wb").close()
    c = app.test_client()
    with Recorder(app) as rec:
        assert seg(c, sid, 1, b"world").status_code == 200
    assert [e[1][0] for e in rec.events if e[0] == "segment-committed"] == [1]
    session = storage.load(sid)
    assert session is not None and [p["segment"]["index"] for p in session.pending] == [1]
    assert os.listdir(os.path.join(folder, "acks")) == [], "forgotten once dropped"


def test_a_link_planted_as_the_old_acks_folder_is_not_followed(app: Flask, tmp_path: Path) -> None:
    storage, sid, token = _marked(app)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / token).touch()
    folder = Path(storage.folder, sid)
    (folder / "acks.log").unlink()
    session = storage.load(sid)
    assert session is not None
    session.acks_read = 0
    storage.save(session)
    (folder / "acks").symlink_to(victim)
    assert storage.acknowledged(sid) == (set(), 0)
    storage.forget_acknowledged(sid, [token])
    assert (victim / token).exists()


def test_a_long_log_is_read_whole(app: Flask) -> None:
    """More notes than one read holds (64 KiB): every one is read."""
    storage, sid, token = _marked(app)
    tokens = {f"{i:016x}" for i in range(5000)}
    for t in sorted(tokens):
        storage.acknowledge(sid, t)
    assert storage.acknowledged(sid) == (tokens | {token}, 17 * 5001)
    assert storage.acknowledged(sid, 17 * 4000) == (
        {f"{i:016x}" for i in range(3999, 5000)},
        17 * 5001,
    )
