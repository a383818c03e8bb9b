"""The fan-out load generator: thousands of SSE subscribers in one process.

Run by :mod:`benchmarks.fanout` as a subprocess (pinned to the client core)::

    python -m benchmarks.fanout_client --port P --path /events --clients 5000 --events 20

It is a plain ``select.epoll`` loop over non-blocking sockets: no gevent, no
threads, no per-event parsing. Each read counts events with
``bytes.count(b"ts=")`` and parses one publish timestamp (the first complete
one in the read) for the publish→receive latency.

Protocol with the runner, one JSON object per line on stdout:

1. connect *clients* sockets (at most ``--inflight`` connects at a time,
   from ``--source`` if given, else source addresses ``127.0.0.1``,
   ``127.0.0.2``, ... every ``--per-source`` connections), send each its
   ``GET``, then print
   ``{"phase": "connected", ...}``;
2. keep the connections open and idle (reading heartbeats) until the runner
   writes ``go`` on stdin (it measures the server's memory meanwhile);
3. send ``GET --publish`` on one more connection, read until every
   subscriber received ``--events`` events or ``--timeout`` passed, print
   ``{"phase": "done", ...}`` and exit.

Every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import resource
import select
import socket
import sys
import time
from typing import Any

MARKER = b"ts="
RECV = 65536
#: Bytes after the marker that hold the timestamp (``12345678.123456 ``).
TS_WIDTH = 24


def raise_nofile(want: int) -> int:
    """Raise the soft ``RLIMIT_NOFILE`` towards *want* (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def emit(obj: dict[str, Any]) -> None:
    """One JSON line to the runner."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The *q* quantile (0..1) of an ascending list, nearest rank."""
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def request_bytes(path: str) -> bytes:
    """A minimal HTTP/1.1 ``GET``."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
        "Cache-Control: no-cache\r\n\r\n"
    ).encode("latin-1")


class Load:
    """The subscribers' sockets and their counters, indexed by file descriptor."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ep = select.epoll()
        self.socks: dict[int, socket.socket] = {}
        #: events counted per subscriber (by fd)
        self.count: dict[int, int] = {}
        #: the last ``len(MARKER) - 1`` bytes of the previous read, per fd
        self.tail: dict[int, bytes] = {}
        self.connecting: set[int] = set()
        self.connected = 0
        self.failed = 0
        self.closed = 0
        self.errors: dict[str, int] = {}
        self.request = request_bytes(args.path)

    # -- phase 1: connect -------------------------------------------------

    def _open(self, i: int) -> None:
        a = self.args
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        if a.source:
            s.bind((a.source, 0))
        elif a.sources > 1:
            s.bind((f"127.0.0.{1 + (i // a.per_source) % a.sources}", 0))
        rc = s.connect_ex(("127.0.0.1", a.port))
        fd = s.fileno()
        self.socks[fd] = s
        if rc in (0, errno.EINPROGRESS):
            self.connecting.add(fd)
            self.ep.register(fd, select.EPOLLOUT)
        else:
            self._fail(fd, errno.errorcode.get(rc, str(rc)))

    def _fail(self, fd: int, why: str) -> None:
        self.failed += 1
        self.errors[why] = self.errors.get(why, 0) + 1
        self.connecting.discard(fd)
        s = self.socks.pop(fd)
        with contextlib.suppress(OSError, ValueError):
            self.ep.unregister(fd)
        s.close()

    def connect_all(self) -> float:
        """Open every subscriber; return the seconds it took."""
        a = self.args
        t0 = time.monotonic()
        deadline = t0 + a.connect_timeout
        opened = 0
        while (self.connected + self.failed) < a.clients and time.monotonic() < deadline:
            while opened < a.clients and len(self.connecting) < a.inflight:
                self._open(opened)
                opened += 1
            for fd, ev in self.ep.poll(0.5):
                if fd in self.connecting:
                    s = self.socks[fd]
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err or ev & (select.EPOLLERR | select.EPOLLHUP):
                        self._fail(fd, errno.errorcode.get(err, "hup"))
                        continue
                    self.connecting.discard(fd)
                    s.send(self.request)
                    self.count[fd] = 0
                    self.tail[fd] = b""
                    self.connected += 1
                    self.ep.modify(fd, select.EPOLLIN)
                else:
                    self._read(fd, 0.0, None)
        for fd in list(self.connecting):
            self._fail(fd, "connect timeout")
        return time.monotonic() - t0

    # -- reading ----------------------------------------------------------

    def _read(self, fd: int, now: float, samples: list[float] | None) -> int:
        """Read once from *fd*; return how many events arrived (-1: the
        server closed the connection)."""
        try:
            data = self.socks[fd].recv(RECV)
        except BlockingIOError:
            return 0
        except OSError:
            data = b""
        if not data:
            self.closed += 1
            self.ep.unregister(fd)
            return -1
        tail = self.tail[fd]
        joined = tail + data if tail else data
        n = joined.count(MARKER)
        self.tail[fd] = data[-(len(MARKER) - 1) :]
        if n:
            self.count[fd] += n
            if samples is not None:
                i = joined.find(MARKER) + len(MARKER)
                end = joined.find(b" ", i, i + TS_WIDTH)
                if end > 0:
                    with contextlib.suppress(ValueError):
                        samples.append(now - float(joined[i:end]))
        return n

    # -- phase 2: idle until "go", then the publish ------------------------

    def wait_go(self) -> bool:
        """Keep the subscribers open (reading heartbeats) until the runner
        writes a line on stdin; ``False`` if it closed stdin or timed out."""
        stdin = sys.stdin.fileno()
        self.ep.register(stdin, select.EPOLLIN)
        deadline = time.monotonic() + self.args.idle_timeout
        try:
            while time.monotonic() < deadline:
                for fd, _ in self.ep.poll(0.5):
                    if fd == stdin:
                        line = sys.stdin.readline()
                        return line.strip() == "go"
                    self._read(fd, 0.0, None)
            return False
        finally:
            self.ep.unregister(stdin)

    def run_publish(self) -> dict[str, Any]:
        """Trigger the publish and read until every subscriber has its events."""
        a = self.args
        want = a.events
        before = sum(self.count.values())
        pub = socket.create_connection(("127.0.0.1", a.port), timeout=10)
        pub.setblocking(False)
        pfd = pub.fileno()
        presp = bytearray()
        t_go = time.monotonic()
        pub.send(
            f"GET {a.publish} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        self.ep.register(pfd, select.EPOLLIN)
        samples: list[float] = []
        live = {fd for fd in self.count if self.count[fd] < want}
        done = len(self.count) - len(live)
        t_last = t_go
        deadline = t_go + a.timeout
        monotonic = time.monotonic
        read = self._read
        count = self.count
        pub_open = True
        while (live or pub_open) and monotonic() < deadline:
            for fd, _ in self.ep.poll(0.2):
                if fd == pfd:
                    got = pub.recv(RECV)
                    if got:
                        presp += got
                    else:
                        pub_open = False
                        self.ep.unregister(pfd)
                    continue
                now = monotonic()
                n = read(fd, now, samples)
                if n > 0 and fd in live and count[fd] >= want:
                    live.discard(fd)
                    done += 1
                    t_last = now
                    self.ep.unregister(fd)
                elif n < 0:
                    live.discard(fd)
            if not live and pub_open and monotonic() - t_last > 5:
                break
        pub.close()
        received = sum(self.count.values()) - before
        samples.sort()
        head, _, body = bytes(presp).partition(b"\r\n\r\n")
        try:
            published = json.loads(body[body.find(b"{") :])
        except ValueError:
            published = {"error": head[:200].decode("latin-1")}
        return {
            "phase": "done",
            "received": received,
            "complete": done,
            "subscribers": len(self.count),
            "closed": self.closed,
            "t_go": t_go,
            "t_last": t_last,
            "published": published,
            "samples": len(samples),
            "p50": percentile(samples, 0.50),
            "p99": percentile(samples, 0.99),
            "max": samples[-1] if samples else None,
        }

    def close(self) -> None:
        """Close every socket."""
        for s in self.socks.values():
            s.close()
        self.ep.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.fanout_client")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True, help="the subscription URL path")
    p.add_argument("--publish", required=True, help="the URL path that publishes")
    p.add_argument("--clients", type=int, default=5000)
    p.add_argument("--events", type=int, default=20, help="events each subscriber waits for")
    p.add_argument("--inflight", type=int, default=256, help="concurrent connects")
    p.add_argument("--sources", type=int, default=1, help="127.0.0.x source addresses")
    p.add_argument("--per-source", type=int, default=25_000)
    p.add_argument(
        "--source",
        default="",
        help="one loopback source address for every subscriber (e.g. a fresh 127.x.y.z"
        " per run, so that the last run's TIME_WAIT ports never collide)",
    )
    p.add_argument("--connect-timeout", type=float, default=60.0)
    p.add_argument("--idle-timeout", type=float, default=120.0)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds the publish phase may take")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Connect, wait for ``go``, measure, report."""
    args = parse_args(argv)
    if not args.source and args.clients > args.per_source * args.sources:
        args.sources = -(-args.clients // args.per_source)
    limit = raise_nofile(args.clients + 64)
    load = Load(args)
    try:
        seconds = load.connect_all()
        emit(
            {
                "phase": "connected",
                "connected": load.connected,
                "failed": load.failed,
                "errors": load.errors,
                "seconds": seconds,
                "nofile": limit,
            }
        )
        if not load.wait_go():
            emit({"phase": "aborted"})
            return 1
        emit(load.run_publish())
    finally:
        load.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
