"""The Python client and ``python -m flask_streaming`` against a real
gunicorn + gevent server; the testing helpers and the pytest plugin."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from flask import Flask

from flask_streaming import client as fs_client
from flask_streaming.client import Retry, ServerError, UploadFailed, events, upload
from flask_streaming.testing import GunicornServer, upload_segments, upload_tus
from flask_streaming.tus_version import TUS_VERSION

APP = "tests.apps.clients_app:create_app()"
ROOT = Path(__file__).resolve().parent.parent
KIB = 1024


@pytest.fixture
def server(live_server: Callable[..., GunicornServer]) -> GunicornServer:
    return live_server(APP)


def make_file(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def stored(server: GunicornServer, session_id: str) -> dict[str, Any]:
    rv: dict[str, Any] = httpx.get(f"{server.url}/recorded/{session_id}").json()
    return rv


def assert_tus_answers(server: GunicornServer) -> None:
    """The tus routes are there: ``OPTIONS`` answers with ``Tus-Version``."""
    rv = httpx.options(f"{server.url}/streaming/tus/")
    assert rv.status_code == 204 and rv.headers.get("Tus-Version") == TUS_VERSION, (
        rv.status_code,
        dict(rv.headers),
    )


# -- upload ------------------------------------------------------------------


@pytest.mark.live
def test_upload_native_with_progress_bar(
    server: GunicornServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "data.bin"
    digest = make_file(path, 3 * 1024 * KIB + 77)
    final = upload(path, server.url + "/streaming", segment_size=512 * KIB, progress=True)
    assert final["done"] is True and final["segments"] == 7
    assert final["message"].startswith("final ")  # the final hook's answer
    got = stored(server, final["streamId"])
    assert got["sha256"] == digest and got["size"] == path.stat().st_size
    err = capsys.readouterr().err
    assert "data.bin" in err and "100%" in err


@pytest.mark.live
def test_upload_survives_a_worker_killed_mid_upload(server: GunicornServer, tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    digest = make_file(path, 1024 * KIB)
    final = upload(
        path,
        server.url + "/streaming/uploads",
        segment_size=128 * KIB,
        progress=False,
        metadata={"crash_at": 3},
        retry=Retry(retries=8, initial=0.1),
    )
    assert final["done"] is True and final["segments"] == 8
    assert (tmp_path / "instance" / f"crashed-{final['streamId']}").exists(), "no crash happened"
    assert stored(server, final["streamId"])["sha256"] == digest


class StopServerAt:
    """A file whose reads stop *server* once the reader passes *offset*."""

    def __init__(self, f: IO[bytes], server: GunicornServer, offset: int) -> None:
        self.f = f
        self.server = server
        self.offset = offset
        self.name = f.name

    def read(self, n: int = -1) -> bytes:
        if self.f.tell() >= self.offset and self.server.proc is not None:
            self.server.stop()
        return self.f.read(n)

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.f.seek(pos, whence)

    def tell(self) -> int:
        return self.f.tell()


@pytest.mark.live
def test_interrupted_upload_resumes_where_the_server_stopped(
    server: GunicornServer, tmp_path: Path
) -> None:
    path = tmp_path / "data.bin"
    digest = make_file(path, 1024 * KIB)
    segment = 128 * KIB
    with open(path, "rb") as f, pytest.raises(UploadFailed) as info:
        upload(
            StopServerAt(f, server, 3 * segment),  # type: ignore[arg-type]
            server.url + "/streaming",
            segment_size=segment,
            progress=False,
            retry=Retry(retries=1, initial=0.05),
            resumes=1,
        )
    session_id = info.value.resume
    assert session_id, "the error must say how to resume"

    server.start()  # same port, same upload folder
    sent: list[str] = []
    hooks = {"request": [lambda r: sent.append(r.headers.get("X-Stream-Segment", "-"))]}
    with httpx.Client(event_hooks=hooks, timeout=30) as http:
        final = upload(
            path,
            server.url + "/streaming",
            segment_size=segment,
            progress=False,
            resume=session_id,
            client=http,
        )
    assert final["done"] is True and final["segments"] == 8
    assert stored(server, session_id)["sha256"] == digest
    # Only what the server did not have went again: segments 3.. and done.
    segments = [int(s) for s in sent if s != "-"]
    assert segments[0] == 3 and segments[-1] == 8, sent


@pytest.mark.live
def test_upload_refused_raises_server_error(server: GunicornServer, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    make_file(path, 9 * 1024 * KIB)  # the app allows 8 MiB segments
    with pytest.raises(ServerError) as info:
        upload(path, server.url + "/streaming", segment_size=9 * 1024 * KIB, progress=False)
    assert info.value.status == 413


@pytest.mark.live
def test_upload_tus(server: GunicornServer, tmp_path: Path) -> None:
    assert_tus_answers(server)
    path = tmp_path / "data.bin"
    digest = make_file(path, 700 * KIB)
    final = upload(path, server.url + "/streaming", protocol="tus", segment_size=256 * KIB,
                   progress=False)  # fmt: skip
    assert final["offset"] == 700 * KIB
    session_id = final["url"].rstrip("/").rsplit("/", 1)[-1]
    assert stored(server, session_id)["sha256"] == digest

    # Resume: a first PATCH only, then upload(resume=url) finishes it.
    with open(path, "rb") as f:
        head = f.read(100 * KIB)
    created = httpx.post(
        f"{server.url}/streaming/tus/",
        headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(700 * KIB)},
    )
    location = str(httpx.URL(server.url).join(created.headers["Location"]))
    httpx.patch(
        location,
        content=head,
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    ).raise_for_status()
    final = upload(path, server.url, protocol="tus", resume=location, progress=False)
    assert final["offset"] == 700 * KIB
    assert stored(server, location.rstrip("/").rsplit("/", 1)[-1])["sha256"] == digest


# -- events ------------------------------------------------------------------


@pytest.mark.live
def test_events_reconnect_after_restart_with_last_event_id(server: GunicornServer) -> None:
    got: list[int] = []
    pids: set[int] = set()
    for event in events(server.url + "/counter?every=0.05", timeout=10):
        payload = event.json()
        got.append(payload["n"])
        pids.add(payload["pid"])
        assert event.event == "count" and event.id == str(payload["n"])
        if len(got) == 5:
            server.stop()
            server.start()
        if len(got) == 12:
            break
    assert got == list(range(1, 13))
    assert len(pids) == 2


@pytest.mark.live
def test_events_carry_their_channel(server: GunicornServer) -> None:
    httpx.post(f"{server.url}/publish/news", json={"data": {"t": 1}, "event": "update"})
    httpx.post(f"{server.url}/publish/sport", json={"data": "goal"})
    url = f"{server.url}/streaming/events?channel=news&channel=sport"
    it = events(url, last_event_id="0", timeout=10)
    # "0" is no id of this server: the documented stream-reset comes first
    reset, first, second = next(it), next(it), next(it)
    it.close()
    assert reset.event == "stream-reset" and reset.channel is None
    assert (first.channel, first.event, first.json()) == ("news", "update", {"t": 1})
    assert (second.channel, second.event, second.data) == ("sport", "message", "goal")


@pytest.mark.live
def test_events_refused_raises(server: GunicornServer) -> None:
    with pytest.raises(ServerError) as info:
        next(events(server.url + "/streaming/events/private-x"))
    assert info.value.status == 403 and info.value.code == "forbidden"


# -- the command line --------------------------------------------------------


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flask_streaming", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.mark.live
def test_cli_upload_and_listen(server: GunicornServer, tmp_path: Path) -> None:
    path = tmp_path / "cli.bin"
    digest = make_file(path, 300 * KIB)
    rv = cli("upload", str(path), server.url + "/streaming", "--segment-size", "0.125")
    assert rv.returncode == 0, rv.stderr
    final = json.loads(rv.stdout)
    assert final["done"] is True and final["segments"] == 3
    assert stored(server, final["streamId"])["sha256"] == digest
    assert "100%" in rv.stderr  # the progress bar

    rv = cli("listen", server.url + "/counter?every=0.01", "--count", "3", "--json")
    assert rv.returncode == 0, rv.stderr
    lines = [json.loads(line) for line in rv.stdout.splitlines()]
    assert [e["id"] for e in lines] == ["1", "2", "3"]
    assert lines[0]["event"] == "count"

    rv = cli("listen", server.url + "/counter?every=0.01&limit=2", "--no-reconnect")
    assert rv.returncode == 0, rv.stderr
    assert rv.stdout.splitlines()[0].startswith("count #1: {")


@pytest.mark.live
def test_cli_errors_and_exit_codes(server: GunicornServer, tmp_path: Path) -> None:
    rv = cli("upload", str(tmp_path / "missing.bin"), server.url)
    assert rv.returncode == 4 and "cannot read" in rv.stderr

    path = tmp_path / "big.bin"
    make_file(path, 9 * 1024 * KIB)
    rv = cli("upload", str(path), server.url + "/streaming", "--segment-size", "9", "--no-progress")
    assert rv.returncode == 1 and "413" in rv.stderr, rv.stderr

    rv = cli("listen", server.url + "/streaming/events/private-x")
    assert rv.returncode == 1 and "403" in rv.stderr

    unused = GunicornServer(APP).url.replace(":0", ":9")  # port 9 (discard): nothing listens
    rv = cli("listen", unused + "/x")
    assert rv.returncode == 3 and "cannot reach" in rv.stderr

    rv = cli("upload", str(path), "not a url", "--no-progress")
    assert rv.returncode in (2, 3) and "error" in rv.stderr

    rv = cli("frobnicate")
    assert rv.returncode == 2


def test_endpoint_from_prefix() -> None:
    endpoint = fs_client._endpoint
    assert endpoint("http://h/streaming", "native") == "http://h/streaming/uploads"
    assert endpoint("http://h/streaming/uploads", "native") == "http://h/streaming/uploads"
    assert endpoint("http://h/streaming/", "tus") == "http://h/streaming/tus/"
    assert endpoint("http://h/streaming/tus", "tus") == "http://h/streaming/tus/"


# -- testing helpers -----------------------------------------------------------


def test_upload_segments_helper_with_flask_test_client(app: Flask, client: Any) -> None:
    data = os.urandom(200 * KIB)
    outcome = upload_segments(
        client, data, segment_size=64 * KIB, order=[3, 1, 0, 2], checksum=True
    )
    assert [r["segment"] for r in outcome.responses] == [3, 1, 0, 2]
    assert outcome.final["done"] is True and outcome.final["segments"] == 4
    from flask_streaming import get_upload_service

    with app.app_context():
        session = get_upload_service().status(outcome.id)
        with session.open() as f:
            assert f.read() == data

    last = upload_segments(client, b"abc", segment_size=2, done="last")
    assert last.final["done"] is True and last.final["segments"] == 2
    with pytest.raises(AssertionError, match="HTTP 4"):
        upload_segments(client, b"x", prefix="/nowhere")


def test_upload_tus_helper_with_flask_test_client(client: Any) -> None:
    rv = client.options("/streaming/tus/")
    assert rv.status_code == 204 and rv.headers["Tus-Version"] == TUS_VERSION
    data = os.urandom(150 * KIB)
    outcome = upload_tus(client, data, chunk_size=64 * KIB, metadata={"filename": "a.bin"})
    assert outcome.final == {"offset": len(data)}
    assert [s for s, _ in outcome.statuses] == [201, 204, 204, 204]


@pytest.mark.live
def test_upload_segments_helper_with_httpx(server: GunicornServer) -> None:
    data = os.urandom(100 * KIB)
    with httpx.Client(base_url=server.url) as http:
        outcome = upload_segments(http, data, segment_size=40 * KIB)
    assert outcome.final["segments"] == 3
    assert stored(server, outcome.id)["sha256"] == hashlib.sha256(data).hexdigest()


# -- the pytest plugin ---------------------------------------------------------

PLUGIN_TEST = """
import sys

import httpx


def test_served_by_gunicorn_gevent(streaming_server):
    assert "gevent" not in sys.modules, "the plugin imported gevent into pytest"
    server = streaming_server()
    rv = httpx.get(server.url + "/streaming/")
    assert rv.status_code == 200 and rv.json()["name"] == "flask_streaming"
    assert rv.headers["server"].startswith("gunicorn")
    pid = server.worker_pids()
    assert pid, "no gevent worker"
    with open(f"/proc/{pid[0]}/cmdline", "rb") as f:
        assert b"gunicorn" in f.read()


def test_bad_app_reports_the_log(streaming_server):
    import pytest
    with pytest.raises(RuntimeError, match="gunicorn.log"):
        streaming_server("no_such_module:app")
"""


@pytest.mark.live
def test_pytest_plugin_entry_point(tmp_path: Path) -> None:
    (tmp_path / "test_plugin_use.py").write_text(textwrap.dedent(PLUGIN_TEST))
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nstreaming_app = tests.apps.clients_app:create_app()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rv = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert rv.returncode == 0, rv.stdout + rv.stderr
    assert "2 passed" in rv.stdout
