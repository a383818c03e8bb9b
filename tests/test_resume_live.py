"""The resume model (tests/test_resume_model.py) end to end: gunicorn with
the gevent worker, 2 workers, on a real redis-server, over HTTP. The
in-process run exercises the listener's thread path; this one the gevent
listener production runs. Smaller: each step costs HTTP round trips."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flask_streaming.testing import GunicornServer, RedisServer

from .resume_support import HttpConn
from .test_resume_model import HISTORY, MAX_QUEUE, ResumeModel, run

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.live, pytest.mark.redis]


class HttpPublisher:
    """``publish()`` through the app's ``POST /publish/<channel>`` (any worker)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30)

    def publish(self, channel: str, data: Any) -> str:
        r = self.http.post(f"/publish/{channel}", json={"data": data})
        r.raise_for_status()
        event_id: str = r.json()["id"]
        return event_id

    def close(self) -> None:
        self.http.close()


@pytest.fixture(params=["always", "none"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[RedisServer, str]]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    rs = RedisServer(tmp_path / "redis", persistence=request.param).start()
    env = {
        "PYTHONPATH": str(ROOT),
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "BROKER_URL": rs.url,
        "HISTORY": str(HISTORY),
        "HISTORY_TTL": "2",
        "MAX_QUEUE": str(MAX_QUEUE),
        "PING": "0.2",
    }
    server = GunicornServer(
        "tests.apps.channels_app:create_app()", workers=2, env=env, cwd=str(ROOT),
        log_path=str(tmp_path / "server.log"),
    )  # fmt: skip
    try:
        server.start()
        yield rs, server.url
    finally:
        server.stop()
        rs.kill()


def test_resume_contract_end_to_end(served: tuple[RedisServer, str]) -> None:
    rs, url = served

    class Live(ResumeModel):
        kind = "live"
        ttl = 2.0
        redis = rs

        def make_broker(self) -> Any:
            self.prefix = "flask_streaming"  # the app's
            return HttpPublisher(url)

        def connect(self, channels: list[str], last_id: str | None) -> Any:
            return HttpConn(url, channels, last_id)

    run(Live, 2, 10)
