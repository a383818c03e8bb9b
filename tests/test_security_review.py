"""A second, fresh-eyed probe of issue 18's hardening (security-review), each
finding against a real gunicorn with the gevent worker on loopback serving
tests/apps/security_app.py. The probes that held are listed in
/work/notes/security-review.md; the ones here broke before their fix."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flask_streaming.testing import GunicornServer
from tests.test_security_live import (
    TUS,
    call,
    error,
    serve,
    store,
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
    in place of a session's ``acks`` folder (files appeared elsewhere); the
    upload itself still succeeds."""
    port = serve(live_server).port
    url = tus_create(port, "alice", 10)
    assert tus_patch(port, "alice", url, 0, b"01234")[0] == 204
    victim = tmp_path / "victim"
    victim.mkdir()
    acks = store(tmp_path) / url.rsplit("/", 1)[1] / "acks"
    if acks.exists():
        for p in acks.iterdir():
            p.unlink()
        acks.rmdir()
    acks.symlink_to(victim)
    status, _, body = tus_patch(port, "alice", url, 5, b"56789")
    assert status == 204, body
    assert list(victim.iterdir()) == []
    status, h, _ = call(port, "HEAD", url, headers={"X-User": "alice"})
    assert status == 200 and h["Upload-Offset"] == "10"


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
