"""A second, fresh-eyed probe of issue 18's hardening (security-review), each
finding against a real gunicorn with the gevent worker on loopback serving
tests/apps/security_app.py: each of these broke before its fix."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flask_streaming.testing import GunicornServer
from tests.test_security_live import (
    TUS,
    call,
    error,
    final,
    path_of,
    serve,
    store,
    stored_bytes,
    tus_create,
    tus_patch,
)

pytestmark = pytest.mark.live


def test_a_malformed_partial_url_is_a_400(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    """An ``Upload-Concat`` URL that ``urlsplit`` cannot read (an unclosed
    IPv6 literal) was a 500."""
    port = serve(live_server).port
    part = tus_create(port, "alice", 1, partial=True)
    for urls in ("http://[::1/x", f"http://[::1{part}", f"{part} http://[/x"):
        status, _, body = call(
            port, "POST", TUS, headers={"X-User": "alice", "Upload-Concat": "final;" + urls}
        )
        assert status == 400 and error(body) == "bad_concat", (urls, status, body)
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_a_planted_acks_link_is_not_followed(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    """The post-commit acknowledgements were created through a link planted
    in place of a session's ``acks`` folder (files appeared elsewhere); they
    are now lines of ``acks.log``: a link planted in its place (or as the
    ``acks`` folder an older version used) is neither written nor read nor
    emptied through, and the upload itself still succeeds."""
    port = serve(live_server).port
    url = tus_create(port, "alice", 15)
    assert tus_patch(port, "alice", url, 0, b"01234")[0] == 204
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "file").write_bytes(b"keep")
    (victim / "0123456789abcdef").touch()  # a token's name, for the old folder
    folder = store(tmp_path) / url.rsplit("/", 1)[1]
    (folder / "acks.log").unlink()
    (folder / "acks.log").symlink_to(victim / "file")
    (folder / "acks").symlink_to(victim)
    for offset, data in ((5, b"56789"), (10, b"abcde")):
        status, _, body = tus_patch(port, "alice", url, offset, data)
        assert status == 204, body
    assert sorted(p.name for p in victim.iterdir()) == ["0123456789abcdef", "file"]
    assert (victim / "file").read_bytes() == b"keep"
    status, h, _ = call(port, "HEAD", url, headers={"X-User": "alice"})
    assert status == 200 and h["Upload-Offset"] == "15"


def _open_stream(port: int, user: str, channel: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(
        f"GET /streaming/events/{channel} HTTP/1.1\r\nHost: x\r\nX-User: {user}\r\n\r\n".encode()
    )
    return s


def _ended(s: socket.socket, seconds: float) -> bool:
    """Whether the chunked stream on *s* ends (its last chunk) within *seconds*."""
    s.settimeout(0.2)
    seen = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            return True
        seen += chunk
        if b"\r\n0\r\n\r\n" in seen:
            return True
    return False


def test_end_streams_with_one_channel_name(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    """``end_streams("news")`` (a string, not a list) ended nothing: it was
    read as the channels ``n``, ``e``, ``w``, ``s``."""
    port = serve(live_server).port
    news, other = _open_stream(port, "bob", "news"), _open_stream(port, "bob", "sports")
    try:
        time.sleep(0.5)  # both streams registered
        status, _, _ = call(
            port, "POST", "/admin/end-streams", json.dumps({"channels": "news"}).encode(),
            {"Content-Type": "application/json"}, tus=False,
        )  # fmt: skip
        assert status == 204
        assert _ended(news, 10)
        assert not _ended(other, 1)
    finally:
        news.close()
        other.close()


def test_a_repeated_final_request_answers_the_same_final_upload(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    """A client whose ``201`` was lost (a proxy that timed out while a big
    final upload was assembled) retries the same ``POST`` — tus-js-client
    does, and retries ``409`` until it gives up: the retry was ``409
    partial_used`` for good, although the server held the whole file. The
    same partials in the same order now answer the same final upload,
    storing nothing new; any other list is still ``409``."""
    port = serve(live_server).port
    a, b, c = (tus_create(port, "alice", 4, partial=True) for _ in range(3))
    for url, data in ((a, b"aaaa"), (b, b"bbbb"), (c, b"cccc")):
        assert tus_patch(port, "alice", url, 0, data)[0] == 204
    status, h, _ = final(port, "alice", [a, b])
    assert status == 201
    first = path_of(h["Location"])
    for _ in range(3):  # the retries (absolute URLs too, as tus-js-client resolves them)
        status, h, body = final(port, "alice", [f"http://127.0.0.1:{port}{a}", b])
        assert status == 201 and path_of(h["Location"]) == first, body
    assert stored_bytes(tmp_path) == 3 * 4 + 8
    for urls in ([b, a], [a], [a, b, c], [c, a, b]):  # not a repeat
        status, _, body = final(port, "alice", urls)
        assert status == 409 and error(body) == "partial_used", (urls, body)
    status, _, body = call(port, "GET", first, headers={"X-User": "alice"})
    assert status == 200 and body == b"aaaabbbb"
    status, _, body = final(port, "bob", [a, b])  # a repeat still needs read on each part
    assert status == 403
    assert call(port, "DELETE", first, headers={"X-User": "alice"})[0] == 204
    status, _, body = final(port, "alice", [a, b])  # that final upload is gone
    assert status == 409 and error(body) == "partial_used"
    assert final(port, "alice", [c])[0] == 201  # c was never claimed by the refusals


def test_a_retried_segment_near_the_upload_limit_is_a_duplicate(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    """A native segment sent again (its response was lost) once the session
    held close to ``STREAMING_MAX_UPLOAD_SIZE`` was ``413``, counted as new
    bytes before being recognised as a duplicate: the client's retry failed
    an upload the server had accepted. It is the duplicate it is (and one
    with other bytes is ``409 segment_conflict``, not ``413``)."""
    port = serve(live_server, STREAMING_MAX_UPLOAD_SIZE=1000).port
    created = json.dumps({"size": 1000, "metadata": {"owner": "alice"}}).encode()
    status, _, body = call(
        port, "POST", "/streaming/uploads", created,
        {"X-User": "alice", "Content-Type": "application/json"}, tus=False,
    )  # fmt: skip
    assert status == 201, body
    url = json.loads(body)["url"]

    def segment(index: int, data: bytes, done: str = "false") -> tuple[int, dict[str, object]]:
        headers = {"X-User": "alice", "X-Stream-Segment": str(index), "X-Stream-Done": done}
        status, _, body = call(port, "POST", url, data, headers, tus=False)
        return status, json.loads(body)

    for index, data, duplicate in (
        (0, b"a" * 600, False),
        (0, b"a" * 600, True),  # the retry: 600 + 600 > 1000, yet nothing new
        (1, b"b" * 400, False),
        (1, b"b" * 400, True),
        (0, b"a" * 600, True),
    ):
        status, got = segment(index, data)
        assert status == 200 and got["duplicate"] is duplicate, (index, got)
    status, got = segment(0, b"c" * 600)
    assert status == 409 and got["error"] == "segment_conflict", got
    status, got = segment(2, b"", "true")
    assert status == 200 and got["size"] == 1000, got


def test_control_messages_from_other_senders_are_read_safely(
    live_server: Callable[..., GunicornServer], redis_server: Any, tmp_path: Path
) -> None:
    """The control channel is plain JSON on Redis pub/sub, so senders other
    than RedisPublisher (another language, redis-cli) write it too. One
    channel name as a string ended nothing (read letter by letter), and a
    ``channels`` that is not a list made the worker's one Redis listener
    fail and reconnect (a traceback per message). Now: a string is one
    channel, anything else is ignored with a warning, and the listener
    goes on delivering events."""
    import redis

    prefix = tmp_path.name
    config = {"STREAMING_BROKER_URL": redis_server.url, "STREAMING_REDIS_PREFIX": prefix}
    port = serve(live_server, **config).port
    news = _open_stream(port, "bob", "news")
    try:
        time.sleep(0.5)
        r = redis.Redis.from_url(redis_server.url)
        for bad in (5, {"a": 1}, [1, ["x"]]):
            r.publish(f"{prefix}:control", json.dumps({"op": "end_streams", "channels": bad}))
        assert not _ended(news, 1)
        r.publish(f"{prefix}:control", json.dumps({"op": "end_streams", "channels": "news"}))
        assert _ended(news, 10)
        r.close()
    finally:
        news.close()
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log and "listener failed" not in log, log[-2000:]


def test_the_configured_store_folder_may_be_a_link(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    """``STREAMING_UPLOAD_FOLDER`` pointing at a symbolic link (a volume
    mounted elsewhere: ``/srv/app/uploads -> /mnt/data``) made every upload
    request ``500 storage_error`` "send again" (a transient error by its
    code, so clients retried): the refusal of planted links also refused the
    operator's own. The
    configured folder is resolved once (links planted *inside* it: see
    test_security_live and test_a_planted_acks_link_is_not_followed)."""
    real = tmp_path / "volume"
    real.mkdir(mode=0o700)
    (tmp_path / "uploads").symlink_to(real)
    port = serve(live_server, STREAMING_UPLOAD_FOLDER=str(tmp_path / "uploads")).port
    status, _, body = call(port, "POST", "/streaming/uploads", b"", {"X-User": "a"}, tus=False)
    assert status == 201, body
    url = tus_create(port, "alice", 3)
    assert tus_patch(port, "alice", url, 0, b"abc")[0] == 204
    assert (real / url.rsplit("/", 1)[1] / "data").read_bytes() == b"abc"


@pytest.mark.browser
def test_tus_js_client_retries_a_final_upload_whose_201_was_lost(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    """The real tus-js-client (parallelUploads) in Debian's Chromium: the
    first answer to its final ``POST`` is lost (its ``onAfterResponse``
    throws once, as a dropped connection would), so it resumes its partial
    uploads and sends the same final ``POST`` again. That retry was ``409
    partial_used`` (retried until tus-js-client gave up, although the
    server held the file); now it gets the same final upload."""
    from tests.apps.tus_app import TUS_DIST
    from tests.browser import chromium, new_page
    from tests.test_tus_browser import MiB, check

    if not (TUS_DIST / "tus.min.js").exists():
        pytest.skip("tus-js-client is not installed in tests/js: npm ci --prefix tests/js")
    server = live_server("tests.apps.tus_app:create_app()", workers=2)
    size = 2 * MiB + 333
    with chromium() as browser, new_page(browser, timeout_ms=60_000) as page:
        page.goto(server.url + "/tus-page")
        page.wait_for_function("typeof tus !== 'undefined' && tus.isSupported")
        url, lost = page.evaluate(
            """async ([seed, size]) => {
              let finals = 0;
              const url = await window.uploadBlob(seed, size, {
                parallelUploads: 2,
                chunkSize: 1048576,
                onAfterResponse: (req, res) => {
                  const concat = req.getHeader("Upload-Concat") || "";
                  if (req.getMethod() === "POST" && concat.startsWith("final") && finals++ === 0) {
                    const lost = new Error("the answer to the final upload was lost");
                    lost.originalRequest = req;  // as tus-js-client's own network errors
                    throw lost;
                  }
                },
              });
              return [url, finals];
            }""",
            [5, size],
        )
    assert lost == 2  # the lost answer, then the retry's
    info, records = check(server, tmp_path, url, 5, size)
    assert info["concat"] == "final"
    created = [r["id"] for r in records if r["signal"] == "upload-created"]
    assert len(created) == 3  # two partial uploads and ONE final upload


def _stream_status(port: int, forwarded_for: str | None) -> tuple[int, socket.socket]:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    xff = f"X-Forwarded-For: {forwarded_for}\r\n" if forwarded_for else ""
    s.sendall(f"GET /streaming/events/news HTTP/1.1\r\nHost: x\r\n{xff}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return int(head[9:12]), s


@pytest.mark.parametrize("proxy_fix", [0, 1])
def test_the_per_client_stream_limit_behind_a_proxy(
    live_server: Callable[..., GunicornServer], tmp_path: Path, proxy_fix: int
) -> None:
    """docs/security.rst: behind a proxy, ``ProxyFix`` makes the per-client
    stream limit count browsers, not the proxy; without it
    ``X-Forwarded-For`` is ignored (a client cannot claim an address)."""
    port = serve(live_server, STREAMING_MAX_CONNECTIONS_PER_CLIENT=2, PROXY_FIX=proxy_fix).port
    held: list[socket.socket] = []
    try:
        statuses = []
        for xff in ("10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.3"):
            status, s = _stream_status(port, xff)
            statuses.append(status)
            held.append(s)
        if proxy_fix:  # each browser its own quota
            assert statuses == [200, 200, 429, 200, 200]
        else:  # one address (the proxy's, here loopback) whatever the header says
            assert statuses == [200, 200, 429, 429, 429]
    finally:
        for s in held:
            s.close()


def test_a_custom_view_may_name_its_user_with_an_int(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    """``subscribe_response(user=7)`` (a database id) was kept as the int
    7 while ``end_streams(user=7)`` arrives as ``"7"``: the stream never
    ended. Users are compared as strings on both sides."""
    port = serve(live_server).port
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(b"GET /custom/news HTTP/1.1\r\nHost: x\r\nX-User-Id: 7\r\n\r\n")
        time.sleep(0.5)
        status, _, _ = call(
            port, "POST", "/admin/end-streams", json.dumps({"user": 7}).encode(),
            {"Content-Type": "application/json"}, tus=False,
        )  # fmt: skip
        assert status == 204
        assert _ended(s, 10)
    finally:
        s.close()
