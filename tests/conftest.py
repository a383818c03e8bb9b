"""Shared fixtures: an app factory, live gunicorn servers, a real redis-server.

Live servers are real gunicorn processes with the gevent worker on a free
loopback port; each is stopped by its own pid when the test ends. The pytest
process itself is never monkey-patched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_streaming import Streaming
from flask_streaming.testing import GunicornServer, free_port

ROOT = Path(__file__).resolve().parent.parent


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
def live_server(tmp_path: Path) -> Iterator[Callable[..., GunicornServer]]:
    """Factory: ``live_server("tests.apps.sse:create_app()", workers=1, env={})``
    starts gunicorn -k gevent from the repository root; all are stopped at
    the end of the test. The server's log is ``server.log`` in tmp_path."""
    servers: list[GunicornServer] = []

    def start(app: str, **kwargs: Any) -> GunicornServer:
        kwargs.setdefault("cwd", str(ROOT))
        kwargs.setdefault("log_path", str(tmp_path / "server.log"))
        env = {"PYTHONPATH": str(ROOT), "INSTANCE_PATH": str(tmp_path / "instance")}
        env.update(kwargs.pop("env", {}))
        server = GunicornServer(app, env=env, **kwargs)
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


class RedisServer:
    """A redis-server of the test session's own, on a free port."""

    def __init__(self, workdir: Path, *, appendonly: bool = False) -> None:
        self.workdir = workdir
        self.appendonly = appendonly
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--dir", str(self.workdir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for the whole session (skips when not installed)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Factory for a redis-server a test may kill and restart."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    servers: list[RedisServer] = []

    def make(**kwargs: Any) -> RedisServer:
        server = RedisServer(tmp_path / f"redis{len(servers)}", **kwargs)
        servers.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in servers:
            server.stop(kill=True)


def pytest_report_header() -> str:
    chromium = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else "missing"
    return f"chromium: {chromium}; redis-server: {shutil.which('redis-server') or 'missing'}"
