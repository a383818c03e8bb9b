"""tus under a real gunicorn with gevent workers, driven by the real tuspy
client: uploads interrupted mid-way (a cut connection, a server restart, a
worker killed with SIGKILL) resume and end byte-identical, with and without
``Upload-Checksum``; a PATCH on an upload another worker is writing gets
423 at once."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flask_streaming.testing import GunicornServer, http_request

pytestmark = pytest.mark.live

tusclient = pytest.importorskip("tusclient.client", reason="tuspy is not installed")

APP = "tests.apps.tus_app:create_app()"
TUS = "/streaming/tus/"
KiB, MiB = 1 << 10, 1 << 20


def request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    return http_request(port, method, path, body, {"Tus-Resumable": "1.0.0", **(headers or {})})


def offset(port: int, url: str) -> int:
    status, headers, _ = request(port, "HEAD", url_path(url))
    assert status == 200, status
    return int(headers["Upload-Offset"])


def url_path(url: str) -> str:
    return "/" + url.split("/", 3)[3] if url.startswith("http") else url


def info(port: int, url: str) -> dict[str, Any]:
    upload_id = url.rstrip("/").rsplit("/", 1)[1]
    status, _, body = request(port, "GET", f"/upload-info/{upload_id}")
    assert status == 200
    result: dict[str, Any] = json.loads(body)
    return result


def signals(tmp_path: Path, url: str) -> list[dict[str, Any]]:
    upload_id = url.rstrip("/").rsplit("/", 1)[1]
    lines = (tmp_path / "instance" / "signals.log").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["id"] == upload_id]


def check_hooks(records: list[dict[str, Any]], size: int, sha256: str) -> None:
    """One created, contiguous ranges 0..size, one completed with the sha256;
    after it, exactly one upload-committed, and one segment-committed per
    kept range."""
    committed = [r for r in records if r["signal"].endswith("-committed")]
    records = [r for r in records if not r["signal"].endswith("-committed")]
    assert [r["size"] for r in committed if r["signal"] == "upload-committed"] == [size]
    kept = sorted((r["offset"], r["end"]) for r in committed if r["signal"] == "segment-committed")
    assert [end for _, end in kept] == [start for start, _ in kept[1:]] + [size]
    assert kept[0][0] == 0
    kinds = [r["signal"] for r in records]
    assert kinds[0] == "upload-created" and kinds.count("upload-created") == 1
    assert kinds.count("upload-completed") == 1 and kinds[-1] == "upload-completed"
    ranges = [r for r in records if r["signal"] == "segment-received"]
    # A range whose commit a killed worker never finished may be reported
    # twice (its hook ran, then the client resent it): the kept ones chain.
    ends: dict[int, int] = {}
    for r in ranges:
        ends[r["offset"]] = r["end"]
    at = 0
    while at in ends and at < size:
        at = ends[at]
    assert at == size
    assert records[-1]["sha256"] == sha256 and records[-1]["size"] == size


_STREAMS: list[Any] = []


def uploader(server: GunicornServer, path: Path, **options: Any) -> Any:
    """A tuspy uploader of *path*, given as a stream that the test closes
    (given a path, tuspy leaves files open)."""
    stream = path.open("rb")
    _STREAMS.append(stream)
    client = tusclient.TusClient(server.url + TUS)
    chunk_size = options.pop("chunk_size", 512 * KiB)
    metadata = {"filename": path.name}
    return client.uploader(file_stream=stream, chunk_size=chunk_size, metadata=metadata, **options)


@pytest.fixture(autouse=True)
def _close_streams() -> Iterator[None]:
    yield
    while _STREAMS:
        _STREAMS.pop().close()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.bin"
    path.write_bytes(os.urandom(6 * MiB + 12345))
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("checksum", [False, True], ids=["plain", "upload_checksum"])
def test_tuspy_resumes_after_a_cut_connection(
    live_server: Callable[..., GunicornServer], tmp_path: Path, source: Path, checksum: bool
) -> None:
    server = live_server(APP, workers=2)
    first = uploader(server, source, upload_checksum=checksum)
    first.upload(stop_at=2 * MiB)
    assert offset(server.port, first.url) == 2 * MiB

    # A PATCH of 1 MiB whose connection is cut after 300 KiB.
    data = source.read_bytes()
    sent = 300 * KiB
    headers = [
        f"PATCH {url_path(first.url)} HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        "Tus-Resumable: 1.0.0",
        "Content-Type: application/offset+octet-stream",
        f"Upload-Offset: {2 * MiB}",
        f"Content-Length: {MiB}",
    ]
    if checksum:
        digest = hashlib.sha1(data[2 * MiB : 3 * MiB]).digest()
        headers.append(f"Upload-Checksum: sha1 {base64.b64encode(digest).decode()}")
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(("\r\n".join(headers) + "\r\n\r\n").encode() + data[2 * MiB : 2 * MiB + sent])
    # Every byte that reached the server is kept, unless the chunk was
    # checksummed (then it is discarded: it could not be verified).
    expected = 2 * MiB if checksum else 2 * MiB + sent
    deadline = time.monotonic() + 10
    while offset(server.port, first.url) != expected:
        assert time.monotonic() < deadline, f"offset stayed {offset(server.port, first.url)}"
        time.sleep(0.05)

    # Until the worker that read the cut PATCH sees the end of its body, the
    # upload is still locked and a PATCH is answered 423 (with a checksum the
    # offset never moves, so nothing above waits for that): the resumed
    # client retries as tus clients do on 423.
    resumed = uploader(
        server, source, upload_checksum=checksum, url=first.url, retries=20, retry_delay=0.1
    )
    assert resumed.offset == expected
    resumed.upload()
    got = info(server.port, first.url)
    assert got["state"] == "completed" and got["offset"] == source.stat().st_size
    assert got["data_sha256"] == sha256_of(source)
    assert got["results"]["sha256"] == sha256_of(source)
    assert got["filename"] == "source.bin"
    check_hooks(signals(tmp_path, first.url), source.stat().st_size, sha256_of(source))


@pytest.mark.parametrize("checksum", [False, True], ids=["plain", "upload_checksum"])
@pytest.mark.parametrize("how", ["restart", "kill-worker"])
def test_tuspy_resumes_after_the_server_goes_away(
    live_server: Callable[..., GunicornServer],
    tmp_path: Path,
    source: Path,
    checksum: bool,
    how: str,
) -> None:
    # Each PATCH's hook sleeps 50 ms, so the upload takes seconds.
    server = live_server(APP, workers=1, env={"TUS_SLOW_SECONDS": "0.05"})
    up = uploader(
        server, source, upload_checksum=checksum, chunk_size=256 * KiB, retries=40, retry_delay=0.25
    )
    up.set_url(up.create_url())
    up.offset = 0
    errors: list[BaseException] = []

    def run() -> None:
        try:
            up.upload()
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while offset(server.port, up.url) < 2 * MiB:
        assert time.monotonic() < deadline and thread.is_alive(), errors
        time.sleep(0.02)
    before = server.worker_pids()
    if how == "restart":
        server.stop()
        time.sleep(0.5)
        server.start()
    else:  # SIGKILL: mid-PATCH, its hook sleeping; the master forks a new worker
        os.kill(before[0], signal.SIGKILL)
    thread.join(60)
    assert not thread.is_alive(), "tuspy did not finish"
    assert errors == []
    assert server.worker_pids() != before
    got = info(server.port, up.url)
    assert got["state"] == "completed" and got["data_sha256"] == sha256_of(source)
    check_hooks(signals(tmp_path, up.url), source.stat().st_size, sha256_of(source))


def _pinned(port: int) -> tuple[socket.socket, int]:
    """A keep-alive socket and the pid of the worker serving it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
    _, _, body = _read_response(s)
    return s, json.loads(body)["pid"]


def _read_response(s: socket.socket) -> tuple[str, dict[str, str], bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, "connection closed"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    size = int(headers.get("content-length", "0"))
    while len(rest) < size:
        rest += s.recv(65536)
    return lines[0], headers, rest


def test_423_for_a_patch_while_another_worker_writes(
    live_server: Callable[..., GunicornServer],
) -> None:
    server = live_server(APP, workers=2)
    socks: dict[int, socket.socket] = {}
    spare: list[socket.socket] = []
    deadline = time.monotonic() + 20
    while len(socks) < 2:
        assert time.monotonic() < deadline, "could not reach both workers"
        s, pid = _pinned(server.port)
        if pid in socks:
            spare.append(s)
        else:
            socks[pid] = s
    try:
        (pid_a, a), (pid_b, b) = socks.items()
        _, headers, _ = request(server.port, "POST", TUS, headers={"Upload-Length": str(MiB)})
        path = headers["Location"]
        body = os.urandom(MiB)

        def patch(length: int) -> bytes:
            return (
                f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                "Content-Type: application/offset+octet-stream\r\n"
                f"Upload-Offset: 0\r\nContent-Length: {length}\r\n\r\n"
            ).encode()

        a.sendall(patch(MiB) + body[: 100 * KiB])  # worker A is writing ...
        time.sleep(0.3)
        started = time.monotonic()
        b.sendall(patch(5) + b"hello")  # ... and B is asked to write too
        status_line, b_headers, b_body = _read_response(b)
        assert " 423 " in status_line, (status_line, b_body)
        assert time.monotonic() - started < 2.0
        assert json.loads(b_body)["error"] == "upload_locked"
        assert b_headers["tus-resumable"] == "1.0.0"
        a.sendall(body[100 * KiB :])  # A finishes
        status_line, a_headers, _ = _read_response(a)
        assert " 204 " in status_line and a_headers["upload-offset"] == str(MiB)
        assert pid_a != pid_b
    finally:
        for s in [*socks.values(), *spare]:
            s.close()
