"""Shared fixtures: an app factory, live gunicorn servers, a real redis-server.

The servers are :mod:`flask_streaming.testing`'s (the same helpers users'
tests and our benchmarks use): live servers are real gunicorn processes with
the gevent worker on a free loopback port, and Redis is a real
``redis-server``; each is stopped by its own pid when the test ends. The
pytest process itself is never monkey-patched.

In CI (``$CI`` set) a skipped test fails the run unless it is on
``tests/skip_allowlist.txt`` (see :mod:`tests.ci_skips`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_streaming import Streaming
from flask_streaming.testing import GunicornServer, RedisServer
from tests.ci_skips import pytest_addoption, pytest_configure  # noqa: F401  (hooks)

ROOT = Path(__file__).resolve().parent.parent
REDIS_MISSING = "redis-server is not installed (apt-get install redis-server; scripts/test does)"


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    """A bare app with the extension, its instance folder under tmp_path."""
    app = Flask("testapp", instance_path=str(tmp_path / "instance"))
    app.config["TESTING"] = True
    Streaming(app)
    return app


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


@pytest.fixture
def live_server(
    streaming_server: Callable[..., GunicornServer], tmp_path: Path
) -> Callable[..., GunicornServer]:
    """The shipped ``streaming_server`` fixture (flask_streaming.pytest_plugin)
    with the server's log at ``tmp_path / "server.log"``:
    ``live_server("tests.apps.sse:create_app()", workers=1, env={})``."""

    def start(app: str, **kwargs: Any) -> GunicornServer:
        kwargs.setdefault("log_path", str(tmp_path / "server.log"))
        return streaming_server(app, **kwargs)

    return start


def _persistence(kwargs: dict[str, Any]) -> None:
    """``appendonly=True`` (the old keyword) means ``persistence="always"``."""
    if "appendonly" in kwargs:
        kwargs.setdefault("persistence", "always" if kwargs.pop("appendonly") else "none")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for the whole session (no persistence)."""
    if shutil.which("redis-server") is None:
        pytest.skip(REDIS_MISSING)
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Factory for a redis-server a test may kill and restart:
    ``redis_factory(persistence="everysec")`` returns a started
    :class:`~flask_streaming.testing.RedisServer` (``.kill()``,
    ``.restart()``, ``.stop()``, ``.url``); all are killed at the end."""
    if shutil.which("redis-server") is None:
        pytest.skip(REDIS_MISSING)
    servers: list[RedisServer] = []

    def make(**kwargs: Any) -> RedisServer:
        _persistence(kwargs)
        kwargs.setdefault("log_path", str(tmp_path / f"redis{len(servers)}.log"))
        server = RedisServer(tmp_path / f"redis{len(servers)}", **kwargs)
        servers.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in servers:
            server.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for the browser tests of one module (tests/browser.py)."""
    from tests.browser import chromium

    with chromium() as b:
        yield b


@pytest.fixture
def client_page(browser: Any, server: GunicornServer) -> Iterator[Any]:
    """The ``/client-page`` of the module's ``server`` (a test app that
    serves the JS client and sets ``window.ready``), loaded and ready."""
    from tests.browser import client_page

    with client_page(browser, server.url) as page:
        yield page


def pytest_report_header() -> str:
    chromium = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else "missing"
    return f"chromium: {chromium}; redis-server: {shutil.which('redis-server') or 'missing'}"


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the one Playwright driver the browser tests shared (tests/browser.py)."""
    from tests.browser import stop_playwright

    stop_playwright()
