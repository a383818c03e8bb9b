"""One request served by gunicorn's own request parser, request loop
(``AsyncWorker.handle_request``, what its gevent worker runs for each
request) and response object, on a real loopback TCP connection, in a
greenlet of this process: the harness of the write-through and parked-stream
tests (tests/test_write_through.py, tests/test_parked.py)."""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import gevent
import gevent.socket
import gevent.ssl
from gunicorn.config import Config
from gunicorn.glogging import Logger
from gunicorn.http.parser import RequestParser
from gunicorn.http.wsgi import Response
from gunicorn.workers.base_async import AsyncWorker

from flask_streaming.transport import Outbox, ResponseBody

PRELUDE = b": hi\n"
WAIT = 5.0


class Served:
    """One request served by gunicorn's objects in a greenlet; the client
    end is :attr:`client` (a gevent socket)."""

    def __init__(
        self,
        *,
        version: str = "1.1",
        wrap: Callable[[Iterable[bytes]], Iterable[bytes]] | None = None,
        direct: bool = True,
        rcvbuf: int = 0,
        ping: float | None = None,
        status: str = "200 OK",
        headers: Iterable[tuple[str, str]] = (),
        tls: tuple[Path, Path] | None = None,
        park_after: float = 0.0,
        send_timeout: float = 0.0,
    ) -> None:
        listener = gevent.socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        self.client = gevent.socket.socket()
        if rcvbuf:
            self.client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.client.connect(listener.getsockname())
        self.conn, addr = listener.accept()
        listener.close()
        if tls is not None:  # as gunicorn's --certfile/--keyfile wrap it
            server_ctx = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server_ctx.load_cert_chain(*tls)
            client_ctx = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            client_ctx.check_hostname, client_ctx.verify_mode = False, ssl.CERT_NONE
            client = gevent.spawn(client_ctx.wrap_socket, self.client)
            self.conn = server_ctx.wrap_socket(self.conn, server_side=True)
            self.client = client.get(timeout=WAIT)
        self.client.sendall(f"GET /events HTTP/{version}\r\nHost: x\r\n\r\n".encode())
        cfg = Config()
        req = next(iter(RequestParser(cfg, self.conn, addr)))
        self.outbox = Outbox(green=True)
        self.body: ResponseBody | None = None
        self.environ: dict[str, Any] = {}

        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            self.environ = environ
            self.body = ResponseBody(
                self.outbox,
                environ=environ,
                prelude=PRELUDE,
                ping=ping,
                ping_bytes=b":\n",
                park_after=park_after,
                send_timeout=send_timeout,
            )
            if not direct:
                self.body._resp = None  # the writer's path only
            start_response(status, [("Content-Type", "text/event-stream"), *headers])
            return wrap(self.body) if wrap else self.body

        # gunicorn's request loop, on a worker with only what it uses
        worker = AsyncWorker.__new__(AsyncWorker)
        worker.cfg, worker.log, worker.wsgi = cfg, Logger(cfg), app
        worker.nr, worker.max_requests, worker.alive = 0, 1 << 30, True
        self.greenlet = gevent.spawn(self._serve, worker, req, addr)
        self.raw = b""

    @property
    def resp(self) -> Any:
        """gunicorn's response object (found as the body finds it)."""
        cells = self.environ["wsgi.early_hints"].__closure__
        return next(c.cell_contents for c in cells if type(c.cell_contents) is Response)

    def _serve(self, worker: AsyncWorker, req: Any, addr: Any) -> None:
        try:
            worker.handle_request("127.0.0.1:0", req, self.conn, addr)
        except StopIteration:
            pass
        finally:
            self.conn.close()

    def idle(self) -> None:
        """Let the writer reach its idle wait."""
        for _ in range(100):
            gevent.sleep(0.01)
            if not self.outbox.size and not self.outbox.tail:
                gevent.sleep(0.01)
                return
        raise AssertionError("the writer did not go idle")

    def read_until(self, n: int) -> bytes:
        """Read until *n* raw bytes arrived (or the connection ended)."""
        with gevent.Timeout(WAIT):
            while len(self.raw) < n:
                data = self.client.recv(65536)
                if not data:
                    break
                self.raw += data
        return self.raw

    def finish(self) -> bytes:
        """End the stream and read the whole response."""
        self.outbox.finish()
        with gevent.Timeout(WAIT):
            while data := self.client.recv(65536):
                self.raw += data
            self.greenlet.join()
        self.client.close()
        return self.raw


def split_response(raw: bytes) -> tuple[bytes, bytes]:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, raw[:200]
    return head, rest


def dechunk(data: bytes) -> tuple[bytes, list[int]]:
    """Decode an HTTP/1.1 chunked body strictly (it must end with the last
    chunk); return the body and the chunk sizes."""
    out, sizes, pos = [], [], 0
    while True:
        m = re.compile(rb"([0-9A-F]+)\r\n").match(data, pos)
        assert m, f"no chunk size line at {pos}: {data[pos : pos + 40]!r}"
        size = int(m.group(1), 16)
        pos = m.end()
        if size == 0:
            assert data[pos:] == b"\r\n", data[pos:]
            return b"".join(out), sizes
        out.append(data[pos : pos + size])
        assert data[pos + size : pos + size + 2] == b"\r\n", f"chunk of {size} not closed"
        sizes.append(size)
        pos += size + 2


EVENTS = [b"data: one\n\n", "data: \u00e9t\u00e9 \u2603\n\n".encode(), b"id: 7\ndata: x\n\n"]


def put_while_idle(served: Served, events: Iterable[bytes]) -> None:
    for ev in events:
        served.idle()
        assert served.outbox.put(ev)
