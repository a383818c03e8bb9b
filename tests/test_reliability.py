"""Trimmed runs of the reliability scenarios (the heavy ones run with
``python -m tests.reliability``, see docs/reliability.rst), plus a
fault-injecting storage that needs no live server."""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_streaming import Streaming
from flask_streaming.uploads.storage import FileStorage
from flask_streaming.uploads.views import create_upload_service

from .reliability import fuzz, streams, uploads
from .reliability.common import Result, format_table, raise_nofile


def _check(result: Result) -> None:
    print(format_table([result]))
    if result.runs == 0:
        pytest.skip("; ".join(result.notes))
    assert result.ok, format_table([result])


@pytest.fixture(autouse=True, scope="module")
def _nofile() -> None:
    raise_nofile()


@pytest.mark.live
def test_native_upload_survives_worker_sigkill(tmp_path: Path) -> None:
    _check(uploads.native_sigkill(tmp_path, 3))


@pytest.mark.live
def test_tus_upload_survives_worker_sigkill(tmp_path: Path) -> None:
    _check(uploads.tus_sigkill(tmp_path, 2))


@pytest.mark.live
@pytest.mark.redis
def test_reload_and_shutdown_lose_no_event_and_no_upload(tmp_path: Path) -> None:
    _check(streams.reload_and_term(tmp_path, 1, subscribers=4, uploads=2))


@pytest.mark.live
@pytest.mark.redis
def test_redis_killed_while_publishing_loses_no_published_event(tmp_path: Path) -> None:
    _check(streams.redis_restart(tmp_path, 1, subscribers=3))


@pytest.mark.live
def test_disk_full_gives_507_and_a_retry_succeeds(tmp_path: Path) -> None:
    _check(uploads.disk_full(tmp_path, 1))


@pytest.mark.live
def test_stalled_upload_body_is_cut_off_and_blocks_nobody(tmp_path: Path) -> None:
    _check(uploads.stalled_upload(tmp_path, 1, timeout=1.0))


@pytest.mark.live
def test_subscriber_that_stops_reading_is_cut_off(tmp_path: Path) -> None:
    _check(streams.stalled_subscriber(tmp_path, 1, timeout=1.0))


@pytest.mark.live
def test_many_idle_subscribers_and_a_broadcast(tmp_path: Path) -> None:
    _check(streams.idle_subscribers(tmp_path, 1000))


@pytest.mark.live
def test_concurrent_uploads_on_two_workers(tmp_path: Path) -> None:
    _check(uploads.concurrent_uploads(tmp_path, 20, 1 << 20))


def test_fuzzed_requests_never_get_5xx() -> None:
    _check(fuzz.fuzz_handlers(150))


class FaultyStorage(FileStorage):
    """Fails the next segment writes with a chosen errno."""

    fail: list[int]

    def stage(self, session_id: str, offset: int | None) -> Any:
        staging = super().stage(session_id, offset)
        if self.fail:
            code = self.fail.pop(0)
            real_write = staging.write

            def write(block: bytes) -> None:
                real_write(block[: len(block) // 2])
                raise OSError(code, "injected")

            staging.write = write
        return staging


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        (errno.ENOSPC, 507, "insufficient_storage"),
        (errno.EFBIG, 507, "insufficient_storage"),
        (errno.EIO, 500, "storage_error"),
    ],
)
def test_write_errors_are_json_and_leave_the_session_consistent(
    tmp_path: Path, code: int, status: int, error: str
) -> None:
    app = Flask("faulty", instance_path=str(tmp_path))
    app.config["TESTING"] = True
    Streaming(app)
    storage = FaultyStorage(str(tmp_path / "store"))
    storage.fail = []
    create_upload_service(app, storage)
    client = app.test_client()
    sid = client.post("/streaming/uploads").get_json()["streamId"]
    parts = [b"a" * 5000, b"b" * 7000, b"c" * 3000]

    def send(i: int, done: bool = False) -> Any:
        return client.post(
            "/streaming/uploads",
            data=parts[i] if i < len(parts) else b"",
            headers={"X-Stream-Id": sid, "X-Stream-Segment": str(i),
                     "X-Stream-Done": "true" if done else "false"},
        )  # fmt: skip

    assert send(0).status_code == 200
    storage.fail = [code, code]
    for i in (1, 2):  # in order (written in place) and out of order (staged)
        rv = send(i)
        assert rv.status_code == status
        assert rv.get_json()["error"] == error
    state = client.get(f"/streaming/uploads/{sid}").get_json()
    assert (state["received"], state["bytes"], state["contiguous"]) == (1, 5000, 1)
    assert send(2).status_code == 200
    assert send(1).status_code == 200
    final = send(3, done=True).get_json()
    assert final["size"] == 15000
    with open(tmp_path / "store" / sid / "data", "rb") as f:
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(b"".join(parts)).digest()
