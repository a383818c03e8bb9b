"""Writes straight to the socket (:meth:`ResponseBody.write_through`), with
gunicorn's own request parser, request loop (``AsyncWorker.handle_request``,
what its gevent worker runs for each request) and response object, on a real
loopback TCP connection, in a greenlet of this process (tests/served.py).

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
from collections.abc import Iterable, Iterator
from pathlib import Path

import gevent
import pytest

from tests.served import EVENTS, PRELUDE, WAIT, Served, dechunk, put_while_idle, split_response
from tests.tls import self_signed_certificate


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
