"""Writes straight to the socket (:meth:`ResponseBody.write_through`), with
gunicorn's own request parser, request loop (``AsyncWorker.handle_request``,
what its gevent worker runs for each request) and response object, on a real
loopback TCP connection, in a greenlet of this process.

The invariants: the client receives exactly the bytes, in the framing, that
the writer would have sent (HTTP/1.1 chunked, HTTP/1.0 as they are); a write
that goes out half-way keeps its rest ahead of everything put after it; the
server's byte count (its access log) matches the body; nothing goes straight
out while a middleware between the server and the body changes the bytes.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.socket
import gevent.ssl
import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger
from gunicorn.http.parser import RequestParser
from gunicorn.http.wsgi import Response
from gunicorn.workers.base_async import AsyncWorker

from flask_streaming.transport import Outbox, ResponseBody
from tests.tls import self_signed_certificate

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
                self.outbox, environ=environ, prelude=PRELUDE, ping=ping, ping_bytes=b":\n"
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


def test_idle_writes_go_straight_out_with_the_same_bytes_and_framing() -> None:
    direct, queued = Served(), Served(direct=False)
    for served in (direct, queued):
        served.read_until(1)
        put_while_idle(served, EVENTS)
    # the direct path was taken: nothing queued, the writer never woke
    assert direct.outbox.direct_at > 0 and queued.outbox.direct_at < 0
    raws = [s.finish() for s in (direct, queued)]
    (head_d, body_d), (head_q, body_q) = (split_response(r) for r in raws)
    undated = [re.sub(rb"\r\nDate: [^\r]*", b"", h) for h in (head_d, head_q)]
    assert undated[0] == undated[1] and b"Transfer-Encoding: chunked" in head_d
    assert body_d == body_q  # same chunks, byte for byte
    decoded, sizes = dechunk(body_d)
    assert decoded == PRELUDE + b"".join(EVENTS)
    assert sizes == [len(PRELUDE), *map(len, EVENTS)]
    # the server counts the bytes written around it (its access log's size)
    assert direct.resp.sent == queued.resp.sent == len(decoded)


def test_http_1_0_writes_go_out_unframed() -> None:
    served = Served(version="1.0")
    served.read_until(1)
    put_while_idle(served, EVENTS)
    assert served.outbox.direct_at > 0
    head, body = split_response(served.finish())
    assert b"chunked" not in head
    assert body == PRELUDE + b"".join(EVENTS)


def test_a_write_that_goes_out_half_way_keeps_its_rest_first() -> None:
    served = Served(rcvbuf=4096)
    served.read_until(1)
    served.idle()
    big = b"data: " + b"x" * (4 << 20) + b"\n\n"
    after = [b"data: after-1\n\n", b"data: after-2\n\n"]
    assert served.outbox.put(big)
    assert served.outbox.tail, "the client's buffer took the whole event"
    assert served.outbox.direct is None and served.outbox.size == 0
    # the client reads a little, so the socket has room again: what comes
    # next must still wait for the rest of the big event
    served.read_until(len(served.raw) + 65536)
    assert served.outbox.put(after[0])
    assert served.outbox.size == len(after[0])
    served.read_until(len(served.raw) + 65536)
    assert served.outbox.put(after[1])
    _, body = split_response(served.finish())
    decoded, _ = dechunk(body)
    assert decoded == PRELUDE + big + b"".join(after)
    assert served.resp.sent == len(decoded)


def uppercase(body: Iterable[bytes]) -> Iterator[bytes]:
    """A middleware that changes the bytes but not their length."""
    for chunk in body:
        yield chunk.upper()


def test_nothing_goes_straight_out_around_a_middleware_that_holds_bytes_back() -> None:
    def one_behind(body: Iterable[bytes]) -> Iterator[bytes]:
        held = b""
        for chunk in body:
            if held:
                yield held
            held = chunk
        yield held

    served = Served(wrap=one_behind)
    served.read_until(0)
    put_while_idle(served, EVENTS)
    assert served.outbox.direct_at < 0
    _, body = split_response(served.finish())
    assert dechunk(body)[0] == PRELUDE + b"".join(EVENTS)


def test_a_client_gone_during_a_direct_write_ends_the_stream() -> None:
    served = Served()
    served.read_until(1)
    served.idle()
    linger = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # on, 0 s
    served.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    served.client.close()  # RST
    gevent.sleep(0.05)
    assert served.outbox.put(b"data: x\n\n") is False  # the stream ended
    assert served.outbox.put(b"data: y\n\n") is False
    with gevent.Timeout(WAIT):
        served.greenlet.join()
    assert served.outbox.gone and served.body is not None and served.body.closed


def test_heartbeat_counts_from_the_last_write_straight_out() -> None:
    served = Served(ping=0.3)
    served.read_until(1)
    served.idle()
    for _ in range(4):  # data every 0.1 s: no heartbeat is due
        gevent.sleep(0.1)
        served.outbox.put(b"data: x\n\n")
    gevent.sleep(0.15)
    n = len(served.read_until(0))
    assert b":\n" not in served.raw[: n - 5].split(b"\r\n\r\n", 1)[1]
    gevent.sleep(0.3)  # then idle past the interval: one heartbeat
    _, body = split_response(served.finish())
    decoded, _ = dechunk(body)
    assert decoded.startswith(PRELUDE + b"data: x\n\n" * 4 + b":\n")


def test_nothing_goes_straight_out_around_a_middleware_that_changes_bytes() -> None:
    served = Served(wrap=uppercase)  # same lengths: only the loop check sees it
    served.read_until(1)
    put_while_idle(served, EVENTS)
    assert served.outbox.direct_at < 0
    _, body = split_response(served.finish())
    assert dechunk(body)[0] == (PRELUDE + b"".join(EVENTS)).upper()
    assert served.resp.sent == len(dechunk(body)[0])


def test_nothing_goes_straight_out_past_a_content_length() -> None:
    length = len(PRELUDE) + len(EVENTS[0])
    served = Served(headers=[("Content-Length", str(length))])
    served.read_until(1)
    put_while_idle(served, EVENTS)
    assert served.outbox.direct_at < 0
    head, body = split_response(served.finish())
    assert b"chunked" not in head
    assert body == (PRELUDE + EVENTS[0])  # gunicorn's cut, nothing after it


def test_nothing_goes_straight_out_on_a_response_without_a_body() -> None:
    served = Served(status="204 No Content")
    served.read_until(1)
    put_while_idle(served, EVENTS)
    assert served.outbox.direct_at < 0
    head, body = split_response(served.finish())
    assert head.startswith(b"HTTP/1.1 204") and body == b""


def fill_socket(served: Served) -> bytes:
    """Fill the server's socket buffers with whole chunks (an SSE comment
    each), written beside the body as a direct write would; return their
    decoded bytes."""
    raw, chunk, filled = served.conn._sock, b"2\r\n:\n\r\n", []
    for _ in range(1 << 20):
        try:
            sent = raw.send(chunk)
        except BlockingIOError:
            return b"".join(filled)
        filled.append(b":\n")
        while sent < len(chunk):  # rare: complete it once the client reads
            served.read_until(len(served.raw) + 1)
            with contextlib.suppress(BlockingIOError):
                sent += raw.send(chunk[sent:])
    raise AssertionError("the socket never filled")


def test_a_write_the_socket_refuses_is_queued_and_keeps_its_place() -> None:
    served = Served(rcvbuf=4096)
    served.read_until(1)
    served.idle()
    pad = fill_socket(served)
    first, second = b"data: first\n\n", b"data: second\n\n"
    assert served.outbox.put(first)
    assert served.outbox.size == len(first)  # refused: queued for the writer
    # room again, before the writer runs (no switch: one read of what the
    # client holds): the next one must queue behind
    served.raw += served.client._sock.recv(1 << 20)
    assert served.outbox.put(second)
    assert served.outbox.size == len(first) + len(second)
    _, body = split_response(served.finish())
    assert dechunk(body)[0] == PRELUDE + pad + first + second


def test_nothing_goes_straight_out_on_a_tls_socket(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl binary")
    served = Served(tls=self_signed_certificate(openssl, tmp_path, "localhost"))
    served.read_until(1)
    put_while_idle(served, EVENTS)
    assert served.outbox.direct_at < 0
    _, body = split_response(served.finish())
    assert dechunk(body)[0] == PRELUDE + b"".join(EVENTS)


def test_a_burst_goes_out_in_one_write_after_the_first() -> None:
    """Puts in a row (a publisher's burst, no switch between them): the
    first goes straight out, the rest are queued and the writer sends them
    as one chunk, not one ``send`` per event."""
    served = Served()
    served.read_until(1)
    served.idle()
    burst = [b"data: %d\n\n" % i for i in range(20)]
    for ev in burst:
        assert served.outbox.put(ev)
    assert served.outbox.size == sum(map(len, burst[1:]))  # queued behind the first
    _, body = split_response(served.finish())
    decoded, sizes = dechunk(body)
    assert decoded == PRELUDE + b"".join(burst)
    assert sizes == [len(PRELUDE), len(burst[0]), sum(map(len, burst[1:]))]
    assert served.outbox.direct_at > 0
