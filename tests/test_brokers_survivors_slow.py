"""A slow test written for mutants of the ``brokers`` mutation slice that
survived the suite (docs/testing.rst, "Mutation testing"): it waits out the
listener's 10 s deadline, so it is a file of its own, last in the slice's
tests (a mutant killed by a faster test never waits for it). Redis is a
real redis-server; between it and the broker, a real TCP relay that passes
every byte but the answer to one ``SUBSCRIBE`` (a fault a test cannot
otherwise cause in a real Redis)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from flask_streaming.brokers.redis import RedisBroker
from flask_streaming.testing import RedisServer

from .resume_support import Conn


class SwallowFirstSubscribe:
    """A TCP relay to *upstream* (``host, port``) that passes everything
    both ways, except on the first connection that sends ``SUBSCRIBE``:
    from then on Redis's answers on that connection are dropped, so it
    never sees its subscription confirmed. Later connections pass."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.swallowed_at: float | None = None
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets += [client, server]
            hold = threading.Event()
            threading.Thread(target=self._up, args=(client, server, hold), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, hold), daemon=True).start()

    def _up(self, src: socket.socket, dst: socket.socket, hold: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if b"\r\nSUBSCRIBE\r\n" in data:
                    with self._lock:
                        if self.swallowed_at is None:
                            self.swallowed_at = time.monotonic()
                            hold.set()
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _down(self, src: socket.socket, dst: socket.socket, hold: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not hold.is_set():
                    dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        with self._lock:
            for s in self._sockets:
                s.close()


@pytest.fixture
def relay(redis_server: RedisServer) -> Iterator[SwallowFirstSubscribe]:
    r = SwallowFirstSubscribe(("127.0.0.1", redis_server.port))
    try:
        yield r
    finally:
        r.close()


def test_a_listener_whose_subscribe_is_never_confirmed_gives_up_after_10_s(
    relay: SwallowFirstSubscribe, caplog: pytest.LogCaptureFixture
) -> None:
    """``time.monotonic() + 10`` made ``** 10``, and ``time.monotonic() >
    deadline`` made ``==``, in ``RedisBroker._listen``: a listener whose
    ``SUBSCRIBE`` Redis never confirmed waited for the confirmation forever
    (its subscribers got no event again) instead of giving up after 10 s and
    subscribing again on a new connection."""
    broker = RedisBroker(f"redis://127.0.0.1:{relay.port}/0", prefix=f"slow-{time.monotonic_ns()}")
    conn = Conn(broker, ["room"])
    try:
        event_id = broker.publish("room", "hello")  # a pooled connection: it passes
        deadline = time.monotonic() + 20
        while broker.reconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert relay.swallowed_at is not None, "the listener sent no SUBSCRIBE"
        assert broker.reconnects == 1, "the listener never gave up its SUBSCRIBE"
        waited = time.monotonic() - relay.swallowed_at
        assert 9.5 <= waited <= 13, f"the listener gave up after {waited:.1f} s"
        assert "Redis did not confirm SUBSCRIBE" in caplog.text
        # the second SUBSCRIBE is confirmed: the listener catches up
        assert [e.id for e in conn.wait_for(1, timeout=10)] == [event_id]
        assert broker.reconnects == 1
    finally:
        conn.close()
        broker.close()
