"""Hostile clients against spliced upload bodies (uploads/bodies.py
``SocketBody.splice_into``: socket → pipe → file, ``SO_RCVLOWAT`` while
waiting) under a real gunicorn -k gevent: bodies cut at the interesting
points, a reset connection, a trickle then a stall (the documented bound),
pipelined requests split at random points with checksummed and plain bodies
mixed, a splice refused mid-body, a file size limit hit mid-splice, a unix
socket bind, real ``curl -T`` (``Expect: 100-continue``), HTTP/1.0, many
concurrent uploads, and a second writer from another worker.

Every test checks the same invariants: the bytes stored are byte-identical,
the offset is exactly what arrived, errors are JSON 4xx/5xx, the connection
carries the next request when it is kept.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flask_streaming.testing import GunicornServer

from .test_uploads_socket_body import (
    APP,
    CONFIG,
    NATIVE,
    MiB,
    Wire,
    body_paths,
    data,
    new_upload,
    patch,
    request,
    segment,
    sha,
    tus_create,
    tus_offset,
    upload_info,
)

pytestmark = pytest.mark.live


def b64(raw: bytes) -> str:
    return base64.b64encode(hashlib.sha256(raw).digest()).decode()


def serve(
    live_server: Callable[..., GunicornServer], workers: int = 1, **config: Any
) -> GunicornServer:
    env = {"TUS_APP_CONFIG": json.dumps({**CONFIG, **config})}
    return live_server(APP, workers=workers, env=env)


@pytest.fixture
def server(live_server: Callable[..., GunicornServer]) -> GunicornServer:
    return serve(live_server)


def wait_offset(port: int, path: str, expected: int) -> int:
    """The tus offset once the server has finished with a cut request."""
    deadline = time.monotonic() + 10
    while (offset := tus_offset(port, path)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return offset


def upload_sha(port: int, path: str) -> str:
    return upload_info(port, path.rsplit("/", 1)[1])["data_sha256"]  # type: ignore[no-any-return]


#: Body bytes sent before the cut: inside gunicorn's read-ahead (sent with
#: the headers), one byte short of / at / one past the 1 MiB splice
#: threshold, and one byte short of the whole body.
CUTS = [1, 8000, MiB - 1, MiB, MiB + 1, 2 * MiB + 2]


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_a_body_cut_anywhere_keeps_exactly_what_arrived(
    server: GunicornServer, reset: bool
) -> None:
    """The client goes away (FIN, or RST with bytes still queued below the
    wake-up threshold): the tus offset is exactly the bytes sent, and the
    upload resumes from it byte-identical."""
    whole = data(200, 2 * MiB + 3)
    for cut in CUTS:
        w = Wire(server.port)
        path = tus_create(w, len(whole))
        raw = patch(path, 0, whole)
        w.send(raw[: len(raw) - len(whole) + cut])
        time.sleep(0.1)  # the bytes are in the server's receive queue
        if reset:
            w.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        w.close()
        assert wait_offset(server.port, path, cut) == cut, cut
        w = Wire(server.port)
        try:
            w.send(patch(path, cut, whole[cut:]))
            status, headers, _ = w.response()
        finally:
            w.close()
        assert status == 204 and int(headers["upload-offset"]) == len(whole), (cut, headers)
        assert upload_sha(server.port, path) == sha(whole), cut


def test_a_trickle_then_a_stall_is_408_within_two_timeouts(
    live_server: Callable[..., GunicornServer],
) -> None:
    """Pieces 0.6 s apart (each below the 1 MiB threshold, each within the
    1 s timeout) are progress; once they stop the body is given up between
    one and two timeouts after the last byte (settings.py), and what
    arrived is kept."""
    server = serve(live_server, STREAMING_BODY_TIMEOUT=1)
    whole = data(201, MiB)
    sent = 0
    w = Wire(server.port)
    try:
        path = tus_create(w, len(whole))
        raw = patch(path, 0, whole)
        w.send(raw[: -len(whole)])
        for _ in range(4):
            time.sleep(0.6)
            w.send(whole[sent : sent + 3000])
            sent += 3000
        last = time.monotonic()
        status, _, body = w.response()
        waited = time.monotonic() - last
    finally:
        w.close()
    assert status == 408 and json.loads(body)["error"] == "body_timeout", body
    assert 0.9 <= waited <= 2.5, waited
    assert tus_offset(server.port, path) == sent


def send_slowly(w: Wire, pieces: list[bytes], rng: random.Random) -> None:
    for piece in pieces:
        w.send(piece)
        if rng.random() < 0.3:
            time.sleep(rng.random() * 0.1)


def test_pipelined_requests_split_anywhere(server: GunicornServer) -> None:
    """tus PATCHes and native segments, with and without a checksum, sent
    as one byte stream cut at random points with random pauses (a body's end
    and the next request's head share a write): every answer and every byte
    right."""
    for trial in range(3):
        rng = random.Random(trial)
        sizes = [rng.choice([1, 8191, MiB - 1, MiB, MiB + 1, rng.randrange(1, 2 * MiB)])]
        sizes += [rng.randrange(1, 2 * MiB) for _ in range(3)]
        parts = [data(210 + 10 * trial + i, n) for i, n in enumerate(sizes)]
        w = Wire(server.port)
        try:
            path = tus_create(w, sum(sizes))
            sid = w.json(request("GET", NATIVE))[1]["streamId"]
            stream, offset = b"", 0
            for i, part in enumerate(parts):
                tus_extra = {"Upload-Checksum": f"sha256 {b64(part)}"} if i % 2 else {}
                native_extra = {} if i % 2 else {"X-Stream-Checksum": f"sha256={b64(part)}"}
                stream += patch(path, offset, part, **tus_extra)
                stream += segment(sid, i, part, done=i == len(parts) - 1, **native_extra)
                offset += len(part)
            cuts = sorted(rng.sample(range(1, len(stream)), 12))
            pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]

            sender = threading.Thread(target=send_slowly, args=(w, pieces, rng))
            sender.start()
            offset = 0
            final: dict[str, Any] = {}
            for part in parts:
                offset += len(part)
                status, headers, raw = w.response()
                assert status == 204 and int(headers["upload-offset"]) == offset, raw
                status, _, raw = w.response()
                assert status == 200, raw
                final = json.loads(raw)
            sender.join()
        finally:
            w.close()
        assert final["done"] is True and final["sha256"] == sha(b"".join(parts)), final
        assert upload_sha(server.port, path) == sha(b"".join(parts))
    assert body_paths(server.port)["spliced"] > 0


@pytest.mark.parametrize("refused", ["socket", "file"])
def test_a_splice_refused_mid_body_continues_by_copying(
    server: GunicornServer, refused: str
) -> None:
    """Splicing stops working while a body is half spliced: the rest is
    copied from where splicing stopped, byte-identical, and the same
    connection splices the next body."""
    whole = data(220, 3 * MiB + 11)

    def arm(what: list[str]) -> None:
        w = Wire(server.port)
        try:
            raw = json.dumps({"refused": what}).encode()
            headers = {"Content-Type": "application/json"}
            assert w.json(request("POST", "/refuse-splice", headers, raw))[0] == 200
        finally:
            w.close()

    w = Wire(server.port)
    try:
        path = tus_create(w, len(whole))
        raw = patch(path, 0, whole)
        w.send(raw[: -2 * MiB])
        time.sleep(0.2)  # the first MiB is spliced
        arm([refused])
        try:
            w.send(raw[-2 * MiB :])
            status, headers, _ = w.response()
        finally:
            arm([])
        assert status == 204 and int(headers["upload-offset"]) == len(whole), headers
        sid = w.json(request("GET", NATIVE))[1]["streamId"]
        status, final = w.json(segment(sid, 0, whole[: 2 * MiB], done=True))
        assert status == 200 and final["sha256"] == sha(whole[: 2 * MiB]), final
    finally:
        w.close()
    assert upload_sha(server.port, path) == sha(whole)


def test_a_file_size_limit_mid_splice_counts_what_was_written(server: GunicornServer) -> None:
    """``RLIMIT_FSIZE`` in the worker: the kernel writes a splice short,
    then refuses (``EFBIG``): 507 JSON, the offset is exactly the bytes the
    file took, the pipelined next request is answered, and the upload
    resumes byte-identical once the limit is lifted."""
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    limit = MiB + 12_345
    workers = subprocess.run(
        ["pgrep", "-P", str(server.pid)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(workers) == 1, workers
    whole = data(230, 3 * MiB)
    w = Wire(server.port)
    try:
        path = tus_create(w, len(whole))
        subprocess.run(["prlimit", f"--fsize={limit}:unlimited", "--pid", workers[0]], check=True)
        try:
            w.send(patch(path, 0, whole) + request("GET", "/body-paths"))
            status, _, raw = w.response()
            assert status == 507 and json.loads(raw)["error"] == "insufficient_storage", raw
            status, _, raw = w.response()
            assert status == 200 and json.loads(raw)["spliced"] == 1, raw
        finally:
            subprocess.run(["prlimit", "--fsize=unlimited", "--pid", workers[0]], check=True)
    finally:
        w.close()
    assert tus_offset(server.port, path) == limit
    w = Wire(server.port)
    try:
        w.send(patch(path, limit, whole[limit:]))
        status, headers, _ = w.response()
    finally:
        w.close()
    assert status == 204 and int(headers["upload-offset"]) == len(whole), headers
    assert upload_sha(server.port, path) == sha(whole)


class UnixWire(Wire):
    """A :class:`Wire` over an AF_UNIX connection."""

    def __init__(self, path: str) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(20)
        sock.connect(path)
        self.sock = sock
        self.file = sock.makefile("rb")


def test_a_unix_socket_bind(live_server: Callable[..., GunicornServer], tmp_path: Path) -> None:
    """gunicorn bound to ``unix:/path`` too: spliced bodies, pipelined
    requests after them, and a stall (408) over an AF_UNIX connection."""
    bind = str(tmp_path / "g.sock")
    env = {"TUS_APP_CONFIG": json.dumps({**CONFIG, "STREAMING_BODY_TIMEOUT": 1})}
    server = live_server(APP, workers=1, args=["-b", f"unix:{bind}"], env=env)
    parts = [data(240 + i, n) for i, n in enumerate([MiB + 1, 5, MiB - 1, 2 * MiB + 3])]
    w = UnixWire(bind)
    try:
        path = tus_create(w, sum(map(len, parts)))
        stream, offset = b"", 0
        for part in parts:
            stream += patch(path, offset, part)
            offset += len(part)
        w.send(stream)
        offset = 0
        for part in parts:
            offset += len(part)
            status, headers, _ = w.response()
            assert status == 204 and int(headers["upload-offset"]) == offset, headers
        stalled = tus_create(w, 2 * MiB)
        w.send(patch(stalled, 0, data(245, 2 * MiB))[:-MiB])
        status, _, raw = w.response()
        assert status == 408 and json.loads(raw)["error"] == "body_timeout", raw
    finally:
        w.close()
    assert upload_sha(server.port, path) == sha(b"".join(parts))
    assert tus_offset(server.port, stalled) == MiB


def test_curl_expect_100_continue(server: GunicornServer, tmp_path: Path) -> None:
    """Real curl -T (``Expect: 100-continue`` for large bodies: the body
    arrives after the server's 100): a tus PATCH, a native segment exactly
    at the limit (spliced) and one byte over it (413 JSON, unread)."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    whole = data(250, 3 * MiB)
    source = tmp_path / "body.bin"
    source.write_bytes(whole)
    w = Wire(server.port)
    try:
        path = tus_create(w, len(whole))
        sid = w.json(request("GET", NATIVE))[1]["streamId"]
    finally:
        w.close()
    url = f"http://127.0.0.1:{server.port}"
    common = ["curl", "-sS", "-T", str(source), "-w", "\n%{http_code}", "--max-time", "30"]
    tus = subprocess.run(
        [
            *common,
            *["-X", "PATCH", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0"],
            *["-H", "Content-Type: application/offset+octet-stream", "-v", url + path],
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "100 Continue" in tus.stderr and tus.stdout.endswith("204"), tus.stderr
    assert upload_sha(server.port, path) == sha(whole)

    def native(index: int, body: Path) -> tuple[int, Any]:
        done = subprocess.run(
            [
                *common[:3],
                str(body),
                *common[4:],
                *["-X", "POST", "-H", f"X-Stream-Id: {sid}", "-H", f"X-Stream-Segment: {index}"],
                *["-H", "Content-Type: application/octet-stream", url + NATIVE],
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        text, _, code = done.stdout.rpartition("\n")
        return int(code), json.loads(text)

    status, body = native(0, source)  # CONFIG's limit is exactly 3 MiB
    assert status == 200 and body["size"] == len(whole), body
    over = tmp_path / "over.bin"
    over.write_bytes(whole + b"x")
    status, body = native(1, over)
    assert status == 413 and body["error"] == "segment_too_large", body


def test_http_1_0(server: GunicornServer) -> None:
    """An HTTP/1.0 PATCH is spliced and answered, then the connection closes."""
    whole = data(260, 2 * MiB + 1)
    path = new_upload(server.port, len(whole))
    w = Wire(server.port)
    try:
        w.send(patch(path, 0, whole).replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        status, headers, _ = w.response()
        assert status == 204 and int(headers["upload-offset"]) == len(whole), headers
        assert w.sock.recv(1) == b""
    finally:
        w.close()
    assert upload_sha(server.port, path) == sha(whole)


def test_many_concurrent_spliced_uploads(live_server: Callable[..., GunicornServer]) -> None:
    """40 uploads at once over two workers, each body arriving in pieces
    (each holds a pipe while it waits): all 204, all byte-identical."""
    server = serve(live_server, workers=2, STREAMING_MAX_SESSIONS_PER_CLIENT=1000)
    whole = data(270, 3 * MiB + 5)
    w = Wire(server.port)
    try:
        paths = [tus_create(w, len(whole)) for _ in range(40)]
    finally:
        w.close()
    answers: dict[str, Any] = {}

    def upload(path: str) -> None:
        c = Wire(server.port)
        try:
            raw = patch(path, 0, whole)
            for start in range(0, len(raw), 512 * 1024):
                c.send(raw[start : start + 512 * 1024])
                time.sleep(0.02)
            answers[path] = c.response()[:2]
        except OSError as exc:
            answers[path] = exc
        finally:
            c.close()

    threads = [threading.Thread(target=upload, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for path in paths:
        answer = answers.get(path)
        assert isinstance(answer, tuple) and answer[0] == 204, answer
        assert int(answer[1]["upload-offset"]) == len(whole), answer
        assert upload_sha(server.port, path) == sha(whole)


def test_a_second_writer_while_a_spliced_body_waits(
    live_server: Callable[..., GunicornServer],
) -> None:
    """While one PATCH waits mid-body (spliced, below the threshold), other
    PATCHes of the same upload, whichever worker gets them, are 423 at once;
    the first then finishes byte-identical."""
    server = serve(live_server, workers=2)
    whole = data(280, 3 * MiB)
    path = new_upload(server.port, len(whole))
    first = Wire(server.port)
    try:
        raw = patch(path, 0, whole)
        first.send(raw[: -2 * MiB])
        time.sleep(0.3)
        for _ in range(4):
            other = Wire(server.port)
            try:
                started = time.monotonic()
                other.send(patch(path, 0, whole))
                status, _, body = other.response()
            finally:
                other.close()
            assert status == 423 and json.loads(body)["error"] == "upload_locked", body
            assert time.monotonic() - started < 2
        first.send(raw[-2 * MiB :])
        status, headers, _ = first.response()
    finally:
        first.close()
    assert status == 204 and int(headers["upload-offset"]) == len(whole), headers
    assert upload_sha(server.port, path) == sha(whole)


@pytest.mark.parametrize("worker", ["gevent", "sync"])
def test_tcp_urgent_data_in_a_spliced_body(
    live_server: Callable[..., GunicornServer], worker: str
) -> None:
    """A byte sent with ``MSG_OOB`` (TCP urgent data) mid-body is out of
    band: ``recv`` skips it, so the copying path stores the body intact.
    ``splice(2)`` stops at the urgent mark instead: on gevent's non-blocking
    socket it answers ``EAGAIN`` while the socket polls readable (the
    worker spins at full CPU until the body timeout, forever with
    ``STREAMING_BODY_TIMEOUT=0``, then 408); on a blocking socket (sync,
    gthread) it answers 0, taken for a closed connection (400
    ``incomplete_body``). Expected: the same as the copying path."""
    args = [] if worker == "gevent" else ["-k", worker]
    env = {"TUS_APP_CONFIG": json.dumps({**CONFIG, "STREAMING_BODY_TIMEOUT": 3})}
    server = live_server(APP, workers=1, args=args, env=env)
    whole = data(290, 2 * MiB)
    # one connection per request: sync workers close each
    path = new_upload(server.port, len(whole))
    w = Wire(server.port)
    try:
        raw = patch(path, 0, whole)
        head = len(raw) - len(whole)
        w.send(raw[: head + 1000])
        time.sleep(0.2)  # the server waits in splice_into
        w.sock.send(b"U", socket.MSG_OOB)
        time.sleep(0.1)
        w.send(raw[head + 1000 :])
        started = time.monotonic()
        status, headers, body = w.response()
        elapsed = time.monotonic() - started
    finally:
        w.close()
    assert status == 204 and int(headers["upload-offset"]) == len(whole), (status, body)
    assert elapsed < 2, elapsed
    assert upload_sha(server.port, path) == sha(whole)
