"""The app behind tests/test_uploads_socket_body.py: :mod:`tests.apps.tus_app`
(native and tus uploads, ``GET /upload-info/<id>``, ``upload-completed``
returning the sha256) plus ``GET /body-paths``: how many upload bodies this
worker read from the socket (:class:`~flask_streaming.uploads.bodies.SocketBody`),
how many of those were spliced to the file (``splice(2)``, no checksum asked)
and how many went through ``wsgi.input``, so that a test knows which path ran;
a request with ``X-Replace-Input: 1`` has its ``wsgi.input`` replaced by a
``BytesIO`` of its body (what a middleware may do); ``POST /fail-writes``
with ``{"errno": N, "after": K}`` makes the upload store's K+1-th next body
write (``write`` or ``write_from_pipe``) fail with ``OSError(N)`` (once),
from whichever thread writes, before it writes anything; ``POST
/refuse-splice`` with ``{"refused": ["socket"|"file", ...]}`` makes
``splice(2)`` from a socket or to a file fail with ``EINVAL`` (what a
socket or file system that cannot splice answers); ``POST /slow-writes``
with ``{"seconds": S, "count": K}`` makes the next K moves from a pipe to
a file block their thread for S seconds first (a stalling disk).

Serve it with one worker (the counts are per process).
"""

from __future__ import annotations

import errno as errno_module
import io
import os
import stat
from typing import Any

from flask import Flask, request
from gevent.monkey import get_original

from flask_streaming.uploads import bodies
from flask_streaming.uploads.storage import FileStaging
from tests.apps import tus_app

blocking_sleep = get_original("time", "sleep")


def create_app() -> Flask:
    app = tus_app.create_app()
    counts = {"socket": 0, "stream": 0, "spliced": 0}
    choose = bodies.SocketBody.of.__func__  # type: ignore[attr-defined]
    take_ahead = bodies.SocketBody.take_ahead

    def spliced(self: bodies.SocketBody) -> memoryview:
        counts["spliced"] += 1  # called once by every body that is spliced
        return take_ahead(self)

    bodies.SocketBody.take_ahead = spliced  # type: ignore[method-assign]

    def counted(cls: type, environ: dict[str, Any], content_length: int | None) -> Any:
        fast = choose(cls, environ, content_length)
        counts["stream" if fast is None else "socket"] += 1
        return fast

    bodies.SocketBody.of = classmethod(counted)  # type: ignore[assignment,method-assign]

    inner = app.wsgi_app

    def replace_input(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("HTTP_X_REPLACE_INPUT"):
            size = int(environ.get("CONTENT_LENGTH") or 0)
            environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(size))
        return inner(environ, start_response)

    app.wsgi_app = replace_input  # type: ignore[method-assign]

    failing: dict[str, int] = {}
    write, write_from_pipe = FileStaging.write, FileStaging.write_from_pipe

    def fail_now() -> None:
        if failing:
            if failing["after"] == 0:
                code = failing.pop("errno")
                failing.clear()
                raise OSError(code, os.strerror(code))
            failing["after"] -= 1

    def faulty_write(self: FileStaging, block: Any) -> None:
        fail_now()
        write(self, block)

    slow: dict[str, float] = {}

    def faulty_write_from_pipe(self: FileStaging, pipe: int, count: int) -> None:
        fail_now()
        if slow.get("count", 0) > 0:
            slow["count"] -= 1
            blocking_sleep(slow["seconds"])  # a disk that stalls: blocks the thread
        write_from_pipe(self, pipe, count)

    FileStaging.write = faulty_write  # type: ignore[method-assign]
    FileStaging.write_from_pipe = faulty_write_from_pipe  # type: ignore[method-assign]

    refused: set[str] = set()
    splice = os.splice

    def refusing_splice(src: int, dst: int, count: int, *args: Any, **kwargs: Any) -> int:
        if ("socket" in refused and stat.S_ISSOCK(os.fstat(src).st_mode)) or (
            "file" in refused and stat.S_ISREG(os.fstat(dst).st_mode)
        ):
            raise OSError(errno_module.EINVAL, os.strerror(errno_module.EINVAL))
        return splice(src, dst, count, *args, **kwargs)

    os.splice = refusing_splice

    @app.post("/refuse-splice")
    def refuse_splice() -> dict[str, list[str]]:
        refused.clear()
        refused.update(request.get_json()["refused"])
        return {"refused": sorted(refused)}

    @app.post("/slow-writes")
    def slow_writes() -> dict[str, float]:
        body = request.get_json()
        slow.update(seconds=float(body["seconds"]), count=int(body["count"]))
        return slow

    @app.post("/fail-writes")
    def fail_writes() -> dict[str, int]:
        body = request.get_json()
        failing.update(errno=int(body.get("errno", errno_module.EIO)), after=int(body["after"]))
        return failing

    @app.get("/body-paths")
    def body_paths() -> dict[str, int]:
        return counts

    return app
