"""Upload bodies read straight from gunicorn's socket (uploads/bodies.py
``SocketBody``), under a real gunicorn -k gevent: native segments and tus
PATCHes byte for byte with bodies around the receive buffer's size, several
requests on one keep-alive connection (pipelined: sent in one go before any
answer), a client gone mid-body, 413, and the fallbacks (chunked, TLS).

``GET /body-paths`` (tests/apps/body_app.py) tells which path read each body,
so a test cannot pass on the fallback when it means the socket path.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from flask_streaming.testing import GunicornServer
from flask_streaming.uploads.bodies import SOCKET_BUFFER

from .tls import self_signed_certificate

pytestmark = pytest.mark.live

APP = "tests.apps.body_app:create_app()"
NATIVE = "/streaming/uploads"
TUS = "/streaming/tus/"
MiB = 1 << 20
CONFIG = {"STREAMING_MAX_SEGMENT_SIZE": 3 * MiB, "STREAMING_BODY_TIMEOUT": 10}
#: Around the receive buffer and gunicorn's 8 KiB header read.
SIZES = [1, 8191, 70_000, SOCKET_BUFFER - 1, SOCKET_BUFFER, SOCKET_BUFFER + 1, 2 * MiB + 12_345]
TUS_HEADERS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}


def data(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def request(
    method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    head = {"Host": "127.0.0.1", **(headers or {})}
    if "Transfer-Encoding" not in head:
        head["Content-Length"] = str(len(body))
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    return f"{method} {path} HTTP/1.1\r\n{lines}\r\n".encode() + body


def segment(sid: str, index: int, body: bytes, done: bool = False, **extra: str) -> bytes:
    headers = {
        "X-Stream-Id": sid,
        "X-Stream-Segment": str(index),
        "X-Stream-Done": "true" if done else "false",
        "Content-Type": "application/octet-stream",
        **extra,
    }
    return request("POST", NATIVE, headers, body)


def patch(path: str, offset: int, body: bytes, **extra: str) -> bytes:
    return request("PATCH", path, {**TUS_HEADERS, "Upload-Offset": str(offset), **extra}, body)


class Wire:
    """One keep-alive connection written and read by hand, so that requests
    can be pipelined and bodies cut short."""

    def __init__(self, port: int, tls: bool = False) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        if tls:
            sock = ssl._create_unverified_context().wrap_socket(sock)
        self.sock = sock
        self.file = sock.makefile("rb")

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        line = self.file.readline()
        if not line:
            raise ConnectionError("the server closed the connection")
        status = int(line.split()[1])
        headers: dict[str, str] = {}
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self.file.read(int(headers.get("content-length", "0")))
        return status, headers, body

    def json(self, raw: bytes) -> tuple[int, Any]:
        self.send(raw)
        status, _, body = self.response()
        return status, json.loads(body)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def body_paths(port: int, tls: bool = False) -> dict[str, int]:
    w = Wire(port, tls)
    try:
        return w.json(request("GET", "/body-paths"))[1]  # type: ignore[no-any-return]
    finally:
        w.close()


def upload_info(port: int, upload_id: str) -> dict[str, Any]:
    w = Wire(port)
    try:
        status, info = w.json(request("GET", f"/upload-info/{upload_id}"))
        assert status == 200, info
        return info  # type: ignore[no-any-return]
    finally:
        w.close()


def tus_create(w: Wire, length: int) -> str:
    w.send(request("POST", TUS, {"Tus-Resumable": "1.0.0", "Upload-Length": str(length)}))
    status, headers, _ = w.response()
    assert status == 201, headers
    return urlsplit(headers["location"]).path


def new_upload(port: int, length: int) -> str:
    """A new tus upload's path, created on a connection of its own."""
    w = Wire(port)
    try:
        return tus_create(w, length)
    finally:
        w.close()


def tus_offset(port: int, path: str) -> int:
    w = Wire(port)
    try:
        w.send(request("HEAD", path, {"Tus-Resumable": "1.0.0"}))
        status, headers, _ = w.response()
        assert status == 200, headers
        return int(headers["upload-offset"])
    finally:
        w.close()


@pytest.fixture
def server(live_server: Callable[..., GunicornServer]) -> GunicornServer:
    return live_server(APP, workers=1, env={"TUS_APP_CONFIG": json.dumps(CONFIG)})


def test_native_segments_byte_identical(server: GunicornServer) -> None:
    parts = [data(i, n) for i, n in enumerate(SIZES)]
    w = Wire(server.port)
    try:
        sid = w.json(request("GET", NATIVE))[1]["streamId"]
        for i, part in enumerate(parts[:-1]):
            extra = {}
            if i == 3:  # a checksum computed over the received bytes
                digest = base64.b64encode(hashlib.sha256(part).digest()).decode()
                extra["X-Stream-Checksum"] = f"sha256={digest}"
            status, body = w.json(segment(sid, i, part, **extra))
            assert status == 200 and body["size"] == len(part), body
        wrong = base64.b64encode(hashlib.sha256(parts[-1] + b"x").digest()).decode()
        bad = segment(
            sid, len(parts) - 1, parts[-1], True, **{"X-Stream-Checksum": f"sha256={wrong}"}
        )
        status, body = w.json(bad)
        assert status == 400 and body["error"] == "checksum_mismatch", body
        status, final = w.json(segment(sid, len(parts) - 1, parts[-1], done=True))
        assert status == 200, final
    finally:
        w.close()
    assert final["done"] is True and final["size"] == sum(SIZES)
    assert final["sha256"] == sha(b"".join(parts))
    # all but the two with a checksum (hashed on the way) are spliced
    assert body_paths(server.port) == {
        "socket": len(parts) + 1,
        "stream": 0,
        "spliced": len(parts) - 1,
    }


def test_tus_patches_byte_identical(server: GunicornServer) -> None:
    parts = [data(10 + i, n) for i, n in enumerate(SIZES)]
    w = Wire(server.port)
    try:
        path = tus_create(w, sum(SIZES))
        offset = 0
        for i, part in enumerate(parts):
            extra = {}
            if i == 4:  # Upload-Checksum: staged apart, verified, then appended
                extra["Upload-Checksum"] = (
                    "sha1 " + base64.b64encode(hashlib.sha1(part).digest()).decode()
                )
            w.send(patch(path, offset, part, **extra))
            status, headers, _ = w.response()
            offset += len(part)
            assert status == 204 and int(headers["upload-offset"]) == offset, headers
    finally:
        w.close()
    info = upload_info(server.port, path.rsplit("/", 1)[1])
    assert info["data_sha256"] == sha(b"".join(parts))
    assert body_paths(server.port) == {"socket": len(parts), "stream": 0, "spliced": len(parts) - 1}


def test_pipelined_requests_stay_intact(server: GunicornServer) -> None:
    """Every request sent before the first answer: the bytes gunicorn read
    ahead with one request's headers hold the next requests too."""
    sizes = [100, 5000, 70_000, MiB + 3, 7]
    parts = [data(20 + i, n) for i, n in enumerate(sizes)]
    w = Wire(server.port)
    try:
        sid = w.json(request("GET", NATIVE))[1]["streamId"]
        path = tus_create(w, sum(sizes))
        native = [segment(sid, i, p, done=i == len(parts) - 1) for i, p in enumerate(parts)]
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        tus = [patch(path, o, p) for o, p in zip(offsets, parts, strict=True)]
        wire = b"".join([*native, *tus, request("GET", "/body-paths")])
        sender = threading.Thread(target=w.send, args=(wire,))
        sender.start()
        answers = [w.response() for _ in range(len(native) + len(tus) + 1)]
        sender.join(20)
    finally:
        w.close()
    for status, _, body in answers[: len(native)]:
        assert status == 200, body
    final = json.loads(answers[len(native) - 1][2])
    assert final["done"] is True and final["sha256"] == sha(b"".join(parts))
    for (status, headers, _), end in zip(
        answers[len(native) : -1], [*offsets[1:], sum(sizes)], strict=True
    ):
        assert status == 204 and int(headers["upload-offset"]) == end, headers
    assert json.loads(answers[-1][2]) == {
        "socket": 2 * len(parts),
        "stream": 0,
        "spliced": 2 * len(parts),
    }
    assert upload_info(server.port, path.rsplit("/", 1)[1])["data_sha256"] == sha(b"".join(parts))


def test_a_client_gone_mid_body(server: GunicornServer) -> None:
    """tus keeps exactly the bytes that arrived; a native segment cut short
    is not recorded; both resume byte-identical."""
    whole = data(30, 3 * MiB)
    sent = SOCKET_BUFFER + MiB // 2 + 7
    w = Wire(server.port)
    path = tus_create(w, len(whole))
    w.send(patch(path, 0, whole)[: -len(whole) + sent])
    time.sleep(0.5)
    w.close()
    deadline = time.monotonic() + 15
    while (offset := tus_offset(server.port, path)) != sent and time.monotonic() < deadline:
        time.sleep(0.2)
    assert offset == sent
    w = Wire(server.port)
    try:
        w.send(patch(path, offset, whole[offset:]))
        status, headers, _ = w.response()
        assert status == 204 and int(headers["upload-offset"]) == len(whole), headers
        sid = w.json(request("GET", NATIVE))[1]["streamId"]
        assert w.json(segment(sid, 0, whole[:MiB]))[0] == 200
    finally:
        w.close()
    assert upload_info(server.port, path.rsplit("/", 1)[1])["data_sha256"] == sha(whole)
    cut = Wire(server.port)
    cut.send(segment(sid, 1, whole[MiB:])[:-MiB])
    time.sleep(0.5)
    cut.close()
    w = Wire(server.port)
    try:
        status, st = w.json(request("GET", f"{NATIVE}/{sid}"))
        assert status == 200 and st["received"] == 1 and st["bytes"] == MiB, st
        status, final = w.json(segment(sid, 1, whole[MiB:], done=True))
        assert status == 200 and final["sha256"] == sha(whole), final
    finally:
        w.close()


def test_content_length_over_the_limit_is_413(server: GunicornServer) -> None:
    w = Wire(server.port)
    try:
        sid = w.json(request("GET", NATIVE))[1]["streamId"]
        big = data(40, 3 * MiB + 1)
        status, body = w.json(segment(sid, 0, big)[: -len(big) + 65536])  # answered unread
        assert status == 413 and body["error"] == "segment_too_large", body
    finally:
        w.close()
    w = Wire(server.port)
    try:
        path = tus_create(w, 1000)
        w.send(patch(path, 0, data(41, 2000)))
        status, headers, raw = w.response()
        assert status == 413 and headers["content-type"].startswith("application/json"), raw
        assert tus_offset(server.port, path) == 0
        # the connection, if kept, carries the next request correctly
        try:
            w.send(patch(path, 0, data(42, 1000)))
            status, headers, _ = w.response()
        except ConnectionError:
            pass
        else:
            assert status == 204 and headers["upload-offset"] == "1000", headers
    finally:
        w.close()
    w = Wire(server.port)
    try:
        status, st = w.json(request("GET", f"{NATIVE}/{sid}"))
    finally:
        w.close()
    assert status == 200 and st["received"] == 0, st


@pytest.mark.parametrize("checked", [False, True], ids=["spliced", "copied"])
@pytest.mark.parametrize(
    ("code", "status", "error"), [(28, 507, "insufficient_storage"), (5, 500, "storage_error")]
)
def test_a_failed_write_is_json_and_the_upload_resumes(
    server: GunicornServer, code: int, status: int, error: str, checked: bool
) -> None:
    """The second disk write fails: a splice from the pipe, or (a checksum
    asked, so the bytes pass through the process) a write in gevent's
    thread pool while the next buffer arrives. Same JSON error, nothing
    half-recorded, and the upload resumes from what was written."""
    whole = data(80, 2 * SOCKET_BUFFER + 5)
    native, tus = {}, {}
    if checked:
        digest = base64.b64encode(hashlib.sha256(whole).digest()).decode()
        native, tus = (
            {"X-Stream-Checksum": f"sha256={digest}"},
            {"Upload-Checksum": f"sha256 {digest}"},
        )
    arm = json.dumps({"errno": code, "after": 1}).encode()
    w = Wire(server.port)
    try:
        sid = w.json(request("GET", NATIVE))[1]["streamId"]
        assert (
            w.json(request("POST", "/fail-writes", {"Content-Type": "application/json"}, arm))[0]
            == 200
        )
        status_, body = w.json(segment(sid, 0, whole, **native))
        assert status_ == status and body["error"] == error, body
    finally:
        w.close()
    w = Wire(server.port)
    try:
        status_, st = w.json(request("GET", f"{NATIVE}/{sid}"))
        assert status_ == 200 and st["received"] == 0, st
        status_, final = w.json(segment(sid, 0, whole, done=True, **native))
        assert status_ == 200 and final["sha256"] == sha(whole), final
        path = tus_create(w, len(whole))
        assert (
            w.json(request("POST", "/fail-writes", {"Content-Type": "application/json"}, arm))[0]
            == 200
        )
        w.send(patch(path, 0, whole, **tus))
        status_, _, raw = w.response()
        assert status_ == status and json.loads(raw)["error"] == error, raw
    finally:
        w.close()
    offset = tus_offset(server.port, path)
    if checked:  # a checksummed PATCH is all or nothing (tus checksum extension)
        assert offset == 0, offset
    else:  # what the first splice moved stays; the failed one's bytes do not count
        assert 0 < offset < len(whole), offset
    w = Wire(server.port)
    try:
        w.send(patch(path, offset, whole[offset:]))
        status_, headers, _ = w.response()
        assert status_ == 204, headers
    finally:
        w.close()
    assert upload_info(server.port, path.rsplit("/", 1)[1])["data_sha256"] == sha(whole)
    spliced = body_paths(server.port)["spliced"]
    assert spliced == (1 if checked else 4), spliced  # the resuming PATCH has no checksum


def test_chunked_bodies_use_wsgi_input(server: GunicornServer) -> None:
    parts = [data(50, MiB + 5), data(51, 3000)]
    w = Wire(server.port)
    try:
        sid = w.json(request("GET", NATIVE))[1]["streamId"]
        for i, part in enumerate(parts):
            pieces = [part[:1000], part[1000:]]
            chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
            raw = segment(sid, i, b"", done=i == 1)
            head = raw.replace(b"Content-Length: 0\r\n", b"Transfer-Encoding: chunked\r\n")
            status, body = w.json(head + chunked)
            assert status == 200, body
    finally:
        w.close()
    assert body["sha256"] == sha(b"".join(parts))
    assert body_paths(server.port) == {"socket": 0, "stream": 2, "spliced": 0}


def test_a_replaced_wsgi_input_is_used(server: GunicornServer) -> None:
    parts = [data(55, SOCKET_BUFFER + 1), data(56, 10)]
    w = Wire(server.port)
    try:
        sid = w.json(request("GET", NATIVE))[1]["streamId"]
        for i, part in enumerate(parts):
            raw = segment(sid, i, part, done=i == 1, **{"X-Replace-Input": "1"})
            status, body = w.json(raw)
            assert status == 200, body
    finally:
        w.close()
    assert body["sha256"] == sha(b"".join(parts))
    assert body_paths(server.port) == {"socket": 0, "stream": 2, "spliced": 0}


def test_tls_uses_wsgi_input(live_server: Callable[..., GunicornServer], tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    assert openssl is not None, "openssl is needed for a test certificate"
    cert, key = self_signed_certificate(openssl, tmp_path, "127.0.0.1")
    server = live_server(APP, args=["--certfile", str(cert), "--keyfile", str(key)])
    parts = [data(60, SOCKET_BUFFER + 1), data(61, 9000)]
    w = Wire(server.port, tls=True)
    try:
        sid = w.json(request("GET", NATIVE))[1]["streamId"]
        for i, part in enumerate(parts):
            status, body = w.json(segment(sid, i, part, done=i == 1))
            assert status == 200, body
    finally:
        w.close()
    assert body["sha256"] == sha(b"".join(parts))
    assert body_paths(server.port, tls=True) == {"socket": 0, "stream": 2, "spliced": 0}


def test_a_stalled_body_is_408_and_keeps_what_arrived(
    live_server: Callable[..., GunicornServer],
) -> None:
    config = {**CONFIG, "STREAMING_BODY_TIMEOUT": 1}
    server = live_server(APP, workers=1, env={"TUS_APP_CONFIG": json.dumps(config)})
    whole = data(70, 2 * MiB)
    sent = SOCKET_BUFFER + 4321  # one full buffer, then part of the next
    w = Wire(server.port)
    try:
        path = tus_create(w, len(whole))
        w.send(patch(path, 0, whole)[: -len(whole) + sent])
        status, _, body = w.response()  # the server gives up after 1 s
    finally:
        w.close()
    assert status == 408 and json.loads(body)["error"] == "body_timeout", body
    assert tus_offset(server.port, path) == sent
    assert body_paths(server.port) == {"socket": 1, "stream": 0, "spliced": 1}


def test_a_slow_body_is_not_a_stalled_one(live_server: Callable[..., GunicornServer]) -> None:
    """A spliced body wakes the server only once a large block is queued
    (``SO_RCVLOWAT``); a client sending a trickle, each piece well within
    ``STREAMING_BODY_TIMEOUT`` but the whole far past it, still succeeds."""
    config = {**CONFIG, "STREAMING_BODY_TIMEOUT": 1}
    server = live_server(APP, workers=1, env={"TUS_APP_CONFIG": json.dumps(config)})
    whole = data(90, 25 * 8000)
    w = Wire(server.port)
    try:
        path = tus_create(w, len(whole))
        raw = patch(path, 0, whole)
        head = raw[: -len(whole)]
        w.send(head)
        for start in range(0, len(whole), 8000):  # 25 pieces, 0.1 s apart: 2.5 s
            time.sleep(0.1)
            w.send(whole[start : start + 8000])
        status, headers, body = w.response()
    finally:
        w.close()
    assert status == 204 and int(headers["upload-offset"]) == len(whole), body
    assert body_paths(server.port) == {"socket": 1, "stream": 0, "spliced": 1}


def test_the_connection_serves_a_later_request_after_a_spliced_body(
    server: GunicornServer,
) -> None:
    """The wake-up threshold set for a spliced body is undone: the next
    request on the keep-alive connection, sent a moment later and far
    smaller than the threshold, is answered."""
    w = Wire(server.port)
    try:
        path = tus_create(w, 2 * MiB)
        raw = patch(path, 0, data(91, 2 * MiB))
        w.send(raw[:-MiB])
        time.sleep(0.3)  # the server waits for the last MiB with a 1 MiB threshold
        w.send(raw[-MiB:])
        status, headers, _ = w.response()
        assert status == 204 and headers["upload-offset"] == str(2 * MiB), headers
        time.sleep(0.3)  # the next request is not already queued
        status, paths = w.json(request("GET", "/body-paths"))
    finally:
        w.close()
    assert status == 200 and paths["spliced"] == 1, paths


@pytest.mark.parametrize("refused", ["socket", "file"])
def test_a_refused_splice_falls_back_to_copying(server: GunicornServer, refused: str) -> None:
    """A socket or a file system that cannot splice (``EINVAL``): the body
    is copied through the process instead, byte for byte, on both protocols."""
    parts = [data(95, SOCKET_BUFFER + 7), data(96, 3000)]
    whole = data(97, 2 * MiB + 1)
    w = Wire(server.port)
    try:
        arm = json.dumps({"refused": [refused]}).encode()
        assert (
            w.json(request("POST", "/refuse-splice", {"Content-Type": "application/json"}, arm))[0]
            == 200
        )
        sid = w.json(request("GET", NATIVE))[1]["streamId"]
        for i, part in enumerate(parts):
            status, body = w.json(segment(sid, i, part, done=i == 1))
            assert status == 200, body
        path = tus_create(w, len(whole))
        w.send(patch(path, 0, whole))
        status, headers, _ = w.response()
        assert status == 204 and int(headers["upload-offset"]) == len(whole), headers
    finally:
        w.close()
    assert body["sha256"] == sha(b"".join(parts))
    assert upload_info(server.port, path.rsplit("/", 1)[1])["data_sha256"] == sha(whole)


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_other_gunicorn_workers_splice(
    live_server: Callable[..., GunicornServer], worker: str
) -> None:
    """Without gevent the socket blocks: the spliced body waits in the
    kernel and arrives intact."""
    server = live_server(
        APP, workers=1, args=["-k", worker], env={"TUS_APP_CONFIG": json.dumps(CONFIG)}
    )
    whole = data(98, 2 * MiB + 3)
    # one connection per request: sync workers close each
    path = new_upload(server.port, len(whole))
    w = Wire(server.port)
    try:
        raw = patch(path, 0, whole)
        w.send(raw[:-MiB])
        time.sleep(0.3)  # the worker waits for the rest
        w.send(raw[-MiB:])
        status, headers, _ = w.response()
    finally:
        w.close()
    assert status == 204 and int(headers["upload-offset"]) == len(whole), headers
    assert upload_info(server.port, path.rsplit("/", 1)[1])["data_sha256"] == sha(whole)
    assert body_paths(server.port) == {"socket": 1, "stream": 0, "spliced": 1}


def test_a_stalling_disk_stalls_only_its_own_request(server: GunicornServer) -> None:
    """Spliced bytes reach the file in gevent's thread pool: while one
    upload's write is stuck for 3 s, the same worker answers others."""
    whole = data(99, 2 * MiB)
    w = Wire(server.port)
    try:
        arm = json.dumps({"seconds": 3, "count": 1}).encode()
        assert (
            w.json(request("POST", "/slow-writes", {"Content-Type": "application/json"}, arm))[0]
            == 200
        )
        path = tus_create(w, len(whole))
        w.send(patch(path, 0, whole))
        time.sleep(0.5)  # the PATCH's first write is stuck by now
        started = time.monotonic()
        paths = body_paths(server.port)  # another connection, the same (only) worker
        answered = time.monotonic() - started
        status, headers, _ = w.response()
    finally:
        w.close()
    assert paths["spliced"] == 1 and answered < 2.0, (paths, answered)
    assert status == 204 and int(headers["upload-offset"]) == len(whole), headers
