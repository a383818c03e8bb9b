"""The adversarial probe's findings (issue 18), each against a real gunicorn
with the gevent worker on loopback, serving tests/apps/security_app.py:
users (``X-User``) who may write and read only their own uploads, and see
everyone's progress (``status``)."""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flask_streaming.settings import Settings
from flask_streaming.testing import GunicornServer, http_request

pytestmark = pytest.mark.live

APP = "tests.apps.security_app:create_app()"
TUS = "/streaming/tus/"
UPLOADS = "/streaming/uploads"
KiB = 1 << 10


def call(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    tus: bool = True,
) -> tuple[int, dict[str, str], bytes]:
    h = {"Tus-Resumable": "1.0.0"} if tus else {}
    return http_request(port, method, path, body, {**h, **(headers or {})})


def error(body: bytes) -> str:
    return str(json.loads(body)["error"])


def meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def tus_create(port: int, user: str, length: int, *, partial: bool = False) -> str:
    headers = {"X-User": user, "Upload-Length": str(length), "Upload-Metadata": meta(owner=user)}
    if partial:
        headers["Upload-Concat"] = "partial"
    status, h, body = call(port, "POST", TUS, headers=headers)
    assert status == 201, (status, body)
    return path_of(h["Location"])


def path_of(location: str) -> str:
    return "/" + location.split("/", 3)[3] if location.startswith("http") else location


def tus_patch(
    port: int, user: str | None, url: str, offset: int, data: bytes
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
    if user:
        headers["X-User"] = user
    return call(port, "PATCH", url, data, headers)


def final(port: int, user: str, urls: list[str]) -> tuple[int, dict[str, str], bytes]:
    headers = {
        "X-User": user,
        "Upload-Concat": "final;" + " ".join(urls),
        "Upload-Metadata": meta(owner=user),
    }
    return call(port, "POST", TUS, headers=headers)


def store(tmp_path: Path) -> Path:
    return tmp_path / "instance" / "streaming-uploads"


def stored_bytes(tmp_path: Path) -> int:
    return sum(p.stat().st_size for p in store(tmp_path).rglob("data") if p.is_file())


def session_dirs(tmp_path: Path) -> list[Path]:
    return [p for p in store(tmp_path).iterdir() if not p.name.startswith(".")]


def authz(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "instance" / "authz.log"
    return [json.loads(line) for line in path.read_text().splitlines()]


def serve(live_server: Callable[..., GunicornServer], **config: Any) -> GunicornServer:
    return live_server(APP, env={"SECURITY_APP_CONFIG": json.dumps(config)})


# -- 1. concatenation cannot fill the disk -------------------------------------


def test_a_partial_serves_one_final_upload_once(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    port = serve(live_server).port
    data = os.urandom(32 * KiB)
    part = tus_create(port, "alice", len(data), partial=True)
    assert tus_patch(port, "alice", part, 0, data)[0] == 204
    # The probe: the partial listed 200 times, 25 times over.
    for _ in range(25):
        status, _, body = final(port, "alice", [part] * 200)
        assert status == 400 and error(body) == "partial_listed_twice"
    assert len(session_dirs(tmp_path)) == 1
    status, h, body = final(port, "alice", [part])
    assert status == 201, body
    other = tus_create(port, "alice", 0, partial=True)
    for urls in ([part, other], [other, part], [part, part]):  # a second final upload
        status, _, body = final(port, "alice", urls)
        assert status in (400, 409) and error(body) in ("partial_used", "partial_listed_twice")
    for _ in range(25):  # the same request again: the same final upload, nothing stored
        status, again, body = final(port, "alice", [part])
        assert status == 201 and again["Location"] == h["Location"], body
    # What is stored: the partial and the one final upload made of it.
    assert stored_bytes(tmp_path) == 2 * len(data)
    assert len(session_dirs(tmp_path)) == 3  # with the empty partial


def test_a_final_waiting_for_its_partial_claims_it_too(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    port = serve(live_server).port
    part = tus_create(port, "alice", 5, partial=True)
    status, h, _ = final(port, "alice", [part])  # concatenation-unfinished
    assert status == 201
    other = tus_create(port, "alice", 0, partial=True)
    status, _, body = final(port, "alice", [other, part])
    assert status == 409 and error(body) == "partial_used"
    status, again, _ = final(port, "alice", [part])  # a repeat: the same one
    assert status == 201 and again["Location"] == h["Location"]
    assert tus_patch(port, "alice", part, 0, b"hello")[0] == 204
    status, h, _ = call(port, "HEAD", path_of(h["Location"]), headers={"X-User": "a"})
    assert status == 200 and h["Upload-Offset"] == "5"


def test_finished_uploads_count_against_the_per_client_bound(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    port = serve(live_server, STREAMING_MAX_UPLOADS_PER_CLIENT=3).port
    for _ in range(3):  # Upload-Length: 0 finishes at once; still counted
        url = tus_create(port, "alice", 0)
        status, h, _ = call(port, "HEAD", url, headers={"X-User": "alice"})
        assert h["Upload-Offset"] == "0" and "Upload-Expires" not in h  # finished
    status, h, body = call(port, "POST", TUS, headers={"X-User": "alice", "Upload-Length": "0"})
    assert status == 429 and error(body) == "too_many_uploads"
    assert json.loads(body)["limit"] == 3
    status, _, body = call(port, "POST", UPLOADS, b"", {"X-User": "alice"}, tus=False)
    assert status == 429 and error(body) == "too_many_uploads"
    # Aborting one frees its place.
    status, _, _ = call(port, "DELETE", url, headers={"X-User": "alice"})
    assert status == 204
    assert call(port, "POST", TUS, headers={"X-User": "alice", "Upload-Length": "0"})[0] == 201


# -- 2. nested JSON --------------------------------------------------------------


@pytest.mark.parametrize("depth", [5000, 900, 17])
def test_deeply_nested_json_is_400_and_leaves_nothing(
    live_server: Callable[..., GunicornServer], tmp_path: Path, depth: int
) -> None:
    port = serve(live_server).port
    nested = "[" * depth + "]" * depth
    for body in (nested, '{"metadata": {"a": ' + nested + "}}"):
        status, _, raw = call(
            port,
            "POST",
            UPLOADS,
            body.encode(),
            {"X-User": "alice", "Content-Type": "application/json"},
            tus=False,
        )
        assert status == 400 and error(raw) == "too_deep", raw[:200]
    assert session_dirs(tmp_path) == []
    assert "Traceback" not in (tmp_path / "server.log").read_text()
    ok = '{"metadata": {"owner": "alice", "tags": [[["a"]]]}}'
    status, _, raw = call(
        port, "POST", UPLOADS, ok.encode(), {"X-User": "alice", "Content-Type": "application/json"},
        tus=False,
    )  # fmt: skip
    assert status == 201, raw


# -- 3. concatenation needs ``read`` on every partial ----------------------------


def test_concatenation_asks_read_for_every_partial(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    port = serve(live_server).port
    secret = b"alice's secret bytes"
    part = tus_create(port, "alice", len(secret), partial=True)
    assert tus_patch(port, "alice", part, 0, secret)[0] == 204
    status, _, _ = call(port, "HEAD", part, headers={"X-User": "mallory"})
    assert status == 200  # status (progress) is shared with the team
    assert tus_patch(port, "mallory", part, len(secret), b"x")[0] == 403
    own = tus_create(port, "mallory", 3, partial=True)
    assert tus_patch(port, "mallory", own, 0, b"mal")[0] == 204
    for urls in ([part], [own, part]):
        status, _, body = final(port, "mallory", urls)
        assert status == 403 and error(body) == "forbidden", body
    part_id = part.rsplit("/", 1)[1]
    asked = [r for r in authz(tmp_path) if r["id"] == part_id and r["user"] == "mallory"]
    assert {"action": "read", "user": "mallory", "id": part_id, "allowed": False} in asked
    # Nothing of alice's reached a store of mallory's, and her partial is unused.
    assert sum(secret in p.read_bytes() for p in store(tmp_path).rglob("data")) == 1
    assert final(port, "mallory", [own])[0] == 201
    assert final(port, "alice", [part])[0] == 201


# -- 4. authorization before anything that tells state ---------------------------


def test_authorization_comes_before_any_state(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    port = serve(live_server).port
    url = tus_create(port, "alice", 10)
    assert tus_patch(port, "alice", url, 0, b"12345")[0] == 204
    part = tus_create(port, "alice", 1, partial=True)
    status, h, _ = final(port, "alice", [part])
    final_url = path_of(h["Location"])
    native = json.loads(
        call(port, "POST", UPLOADS, b'{"metadata": {"owner": "alice"}}',
             {"X-User": "alice", "Content-Type": "application/json"}, tus=False)[2]
    )["streamId"]  # fmt: skip
    for user in ("mallory", None):
        h = {"X-User": user} if user else {}
        for target, offset in ((url, 42), (url, 5), (final_url, 0)):
            status, _, body = tus_patch(port, user, target, offset, b"x")
            assert status == 403 and error(body) == "forbidden", (target, offset, body)
        # A native id on tus routes, a tus id on native routes: still 403.
        for method in ("PATCH", "DELETE"):
            status, _, body = call(
                port, method, f"{TUS}{native}", b"x",
                {**h, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
            )  # fmt: skip
            assert status == 403, (method, body)
        tus_id = url.rsplit("/", 1)[1]
        status, _, body = call(
            port, "POST", f"{UPLOADS}/{tus_id}", b"x", {**h, "X-Stream-Segment": "0"}, tus=False
        )
        assert status == 403, body
    # The owner gets the real answers.
    status, _, body = tus_patch(port, "alice", url, 42, b"x")
    assert status == 409 and json.loads(body)["offset"] == 5
    status, _, body = tus_patch(port, "alice", final_url, 0, b"x")
    assert status == 403 and error(body) == "final_upload"
    status, _, _ = call(
        port,
        "PATCH",
        f"{TUS}{native}",
        b"x",
        {
            "X-User": "alice",
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert status == 404  # cross-protocol ids: a native session is no tus upload
    status, _, _ = call(
        port, "POST", f"{UPLOADS}/{url.rsplit('/', 1)[1]}", b"x",
        {"X-User": "alice", "X-Stream-Segment": "0"}, tus=False,
    )  # fmt: skip
    assert status == 404  # ... and a tus upload takes no segments


# -- 5. safe methods are safe ----------------------------------------------------


def test_head_creates_nothing_and_the_json_body_must_be_json(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    port = serve(live_server).port
    status, h, _ = call(port, "HEAD", UPLOADS, headers={"X-User": "alice"}, tus=False)
    assert status == 405 and "HEAD" not in h["Allow"]
    assert session_dirs(tmp_path) == []
    body = b'{"metadata": {"owner": "alice"}}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        status, _, raw = call(
            port, "POST", UPLOADS, body, {"X-User": "alice", "Content-Type": content_type},
            tus=False,
        )  # fmt: skip
        assert status == 415 and error(raw) == "unsupported_media_type", content_type
    assert session_dirs(tmp_path) == []
    for content_type, data in (("application/json", body), ("text/plain", b"")):
        status, _, raw = call(
            port, "POST", UPLOADS, data, {"X-User": "alice", "Content-Type": content_type},
            tus=False,
        )  # fmt: skip
        assert status == 201, raw
    # GET creation stays: svelte-stream's wire format.
    status, _, raw = call(port, "GET", UPLOADS, headers={"X-User": "alice"}, tus=False)
    assert status == 200 and "streamId" in json.loads(raw)
    assert len(session_dirs(tmp_path)) == 3


# -- 6. files on disk ------------------------------------------------------------


def test_the_store_is_owner_only(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    port = serve(live_server).port
    url = tus_create(port, "alice", 6)
    assert tus_patch(port, "alice", url, 0, b"abc")[0] == 204
    sid = json.loads(
        call(port, "POST", UPLOADS, b'{"metadata": {"owner": "alice"}}',
             {"X-User": "alice", "Content-Type": "application/json"}, tus=False)[2]
    )["streamId"]  # fmt: skip
    seg = {"X-User": "alice", "X-Stream-Segment": "1"}
    status, _, raw = call(port, "POST", f"{UPLOADS}/{sid}", b"out of order", seg, tus=False)
    assert status == 200, raw
    paths = [store(tmp_path), *store(tmp_path).rglob("*")]
    assert len(paths) > 10
    for path in paths:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode & 0o077 == 0, (path, oct(mode))
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_a_planted_link_is_not_followed(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    port = serve(live_server).port
    url = tus_create(port, "alice", 6)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    data = store(tmp_path) / url.rsplit("/", 1)[1] / "data"
    data.unlink()
    data.symlink_to(victim)
    status, _, body = tus_patch(port, "alice", url, 0, b"evil!!")
    assert status >= 400 and "error" in json.loads(body)
    assert victim.read_bytes() == b"precious"


# -- 7. one address cannot take a worker's connections ---------------------------


def _open_stream(port: int, source: str, channel: str = "news") -> tuple[socket.socket, bytes]:
    """Open ``GET /streaming/events/<channel>`` from *source*; return the
    socket and the response head."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    s.sendall(f"GET /streaming/events/{channel} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return s, head


def test_the_default_per_client_stream_limit(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    limit = Settings().max_connections_per_client
    assert 100 < limit <= 256  # above a browser's HTTP/2 streams, well below a worker's
    port = serve(live_server).port
    held: list[socket.socket] = []
    try:
        for _ in range(limit):
            s, head = _open_stream(port, "127.0.0.1")
            held.append(s)
            assert head.startswith(b"HTTP/1.1 200"), head
        s, head = _open_stream(port, "127.0.0.1")
        held.append(s)
        assert head.startswith(b"HTTP/1.1 429") and b"Retry-After: 5" in head, head
        s, head = _open_stream(port, "127.0.0.2")  # another client still gets in
        held.append(s)
        assert head.startswith(b"HTTP/1.1 200"), head
    finally:
        for s in held:
            s.close()


def test_finals_racing_for_one_partial_one_wins(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    port = live_server(APP, workers=2).port
    wins = 0
    for _ in range(3):  # bounded: 3 rounds of 12 simultaneous finals
        part = tus_create(port, "alice", 4, partial=True)
        assert tus_patch(port, "alice", part, 0, b"abcd")[0] == 204
        barrier = threading.Barrier(12)
        results: list[tuple[int, str | None]] = []

        def race(
            part: str = part,
            barrier: threading.Barrier = barrier,
            results: list[tuple[int, str | None]] = results,
        ) -> None:
            barrier.wait(10)
            status, h, _ = final(port, "alice", [part])
            results.append((status, h.get("Location")))

        threads = [threading.Thread(target=race) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        # One final upload: the winner, and the same request repeated after
        # it (201, same Location); those that lost the claim race: 409.
        assert len(results) == 12 and {s for s, _ in results} <= {201, 409}, results
        assert len({loc for s, loc in results if s == 201}) == 1, results
        wins += 1
    assert wins == 3
    assert stored_bytes(tmp_path) == 3 * 2 * 4


def test_a_planted_link_is_not_served_by_tus_get(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    port = serve(live_server).port
    url = tus_create(port, "alice", 6)
    assert tus_patch(port, "alice", url, 0, b"upload")[0] == 204
    status, _, body = call(port, "GET", url, headers={"X-User": "alice"})
    assert status == 200 and body == b"upload"
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    data = store(tmp_path) / url.rsplit("/", 1)[1] / "data"
    data.unlink()
    data.symlink_to(victim)
    status, _, body = call(port, "GET", url, headers={"X-User": "alice"})
    assert status >= 400 and b"precious" not in body and "error" in json.loads(body)
