"""A pytest plugin (entry point ``pytest11``): serve your app under a real
gunicorn with the gevent worker on a free loopback port.

::

    def test_events(streaming_server):
        server = streaming_server("myapp:create_app()")
        with httpx.stream("GET", server.url + "/streaming/events/news") as r:
            ...

Set a default app once in the pytest configuration and call
``streaming_server()`` without arguments::

    [pytest]
    streaming_app = myapp:create_app()

The server runs from the rootdir (so your package imports), with
``INSTANCE_PATH`` set to a fresh folder under the test's ``tmp_path`` and its
log in ``tmp_path / "gunicorn.log"`` (its tail is in the error when it does
not start). It is stopped by its own pid when the test ends.

The plugin never imports gevent into the pytest process, let alone
monkey-patches it: only the gunicorn subprocess runs gevent. It imports
:mod:`flask_streaming.testing` only when the fixture is used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .testing import GunicornServer


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "streaming_app",
        "gunicorn app spec that streaming_server() serves by default, e.g. 'myapp:create_app()'",
        default="",
    )


@pytest.fixture
def streaming_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., GunicornServer]]:
    """Factory: ``streaming_server(app=None, *, workers=1, env=None,
    args=(), cwd=None, log_path=None, ...)`` (the keywords are those of
    :class:`~flask_streaming.testing.GunicornServer`) starts ``gunicorn -k
    gevent`` serving *app* (a gunicorn app spec; default: the
    ``streaming_app`` ini value), waits until a worker answers, and returns
    the running :class:`~flask_streaming.testing.GunicornServer` (``.url``,
    ``.port``, ``.stop()``, ``.start()`` again on the same port). Every
    server started is stopped at the end of the test."""
    from .testing import GunicornServer

    servers: list[GunicornServer] = []
    root = str(request.config.rootpath)
    default_app = str(request.config.getini("streaming_app") or "")

    def start(app: str | None = None, **kwargs: Any) -> GunicornServer:
        spec = app or default_app
        if not spec:
            raise pytest.UsageError(
                "streaming_server() needs an app spec (or set streaming_app in the pytest ini)"
            )
        kwargs.setdefault("cwd", root)
        kwargs.setdefault("log_path", str(tmp_path / "gunicorn.log"))
        # The master listens before a worker has imported the app (and exits
        # if none can): wait for a worker's answer, whatever its status.
        kwargs.setdefault("ready_path", "/")
        pythonpath = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        env = {"PYTHONPATH": pythonpath, "INSTANCE_PATH": str(tmp_path / "instance")}
        env.update(kwargs.pop("env", None) or {})
        server = GunicornServer(spec, env=env, **kwargs)
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
