"""The demo in production shape (issue 15): ``STREAMING_*`` environment
variables are its config, so the documented ``WORKERS=2
STREAMING_BROKER_URL=redis://...`` recipe carries chat messages across
workers."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from flask_streaming.settings import get_settings
from flask_streaming.testing import GunicornServer

ROOT = Path(__file__).resolve().parents[1]


def test_demo_reads_streaming_keys_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from examples.demo import create_app

    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("STREAMING_BROKER_URL", "redis://127.0.0.1:6390/2")
    monkeypatch.setenv("STREAMING_PING_INTERVAL", "5s")
    settings = get_settings(create_app())
    assert settings.broker_url == "redis://127.0.0.1:6390/2"
    assert settings.ping_interval == 5.0
    # The argument still wins.
    assert get_settings(create_app({"STREAMING_PING_INTERVAL": 7})).ping_interval == 7.0


def test_documented_two_worker_recipe_carries_chat_across_workers(
    live_server: Callable[..., GunicornServer], redis_server: Any
) -> None:
    readme = (ROOT / "examples" / "README.md").read_text()
    assert "WORKERS=2 STREAMING_BROKER_URL=redis://" in readme
    server = live_server(
        "examples.demo:create_app()",
        workers=2,
        env={"STREAMING_BROKER_URL": redis_server.url, "WORKERS": "2"},
        args=["-c", str(ROOT / "examples" / "gunicorn.conf.py")],
    )
    login = httpx.post(server.url + "/chat/login", json={"name": "ann"}, timeout=10)
    cookies = dict(login.cookies)
    joined = httpx.post(server.url + "/chat/rooms/general/join", cookies=cookies, timeout=10)
    assert joined.status_code == 200, joined.text
    sent = [f"message {n}" for n in range(12)]
    with (
        httpx.Client(timeout=15, cookies=cookies) as sub,
        sub.stream("GET", server.url + "/streaming/events/chat-general") as stream,
    ):
        raw = stream.iter_raw()
        seen = next(raw)
        assert seen.startswith(b":"), seen  # subscribed (not refused)
        for text in sent:  # a fresh connection each: both workers take some
            r = httpx.post(
                f"{server.url}/chat/rooms/general/messages",
                json={"text": text},
                cookies=cookies,
                headers={"Connection": "close"},
                timeout=10,
            )
            assert r.status_code == 200, r.text
        while not all(t.encode() in seen for t in sent):
            seen += next(raw, b"<END>")  # the client's read timeout bounds the wait
            assert not seen.endswith(b"<END>"), seen
    log = Path(server.log_path or "").read_text()
    assert "memory://" not in log  # no multi-worker warning
    assert os.environ.get("STREAMING_BROKER_URL") is None
