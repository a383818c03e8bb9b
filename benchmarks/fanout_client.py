"""The fan-out load generator: thousands of SSE subscribers in one process.

Run by :mod:`benchmarks.fanout` as a subprocess (pinned to the client core)::

    python -m benchmarks.fanout_client --port P --path /events --clients 5000 --events 20

It is a plain ``select.epoll`` loop over non-blocking sockets: no gevent, no
threads, no per-event parsing. Each read counts events with
``bytes.count(b"ts=")`` and parses one publish timestamp (the first complete
one in the read) for the publish→receive latency.

Protocol with the runner, one JSON object per line on stdout:

1. open *clients* subscribers, each held only once its response head
   (``HTTP/1.x 200`` and the headers, up to the blank line) arrived: at most
   ``--inflight`` connections are connecting or unanswered at a time (so
   the server's accept queue, ``--backlog 4096``, never overflows), from
   ``--source`` if given, else source addresses ``127.0.0.1``,
   ``127.0.0.2``, ... every ``--per-source`` connections. A connection
   refused, reset or closed before its head is opened again after a short
   pause, at most ``--retries`` times (every retry is counted and
   reported); one answered with another status, or still unanswered at
   ``--connect-timeout``, fails. Then print ``{"phase": "connected", ...}``
   (``connected``: subscribers held; ``failed``, ``errors``, ``retries``,
   ``retry_errors``). With ``--held-on sent`` (a server that sends its
   head only with the first event: Flask-SSE) a subscriber is held once its
   request is sent, and only the runner's check of the server's own count
   proves it held;
2. keep the connections open and idle (reading heartbeats) until the runner
   writes ``go`` on stdin (it measures the server's memory meanwhile; it
   writes ``go`` only if every subscriber is held);
3. send ``GET --publish`` on one more connection, read until every
   subscriber received ``--events`` events or ``--timeout`` passed, print
   ``{"phase": "done", ...}`` and exit.

Every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import heapq
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
#: A response head larger than this fails the subscriber.
MAX_HEAD = 16384
#: Default window: connections connecting or unanswered at a time.
INFLIGHT = 256
#: Connect errors after which the subscriber is opened again (bounded).
RETRYABLE = frozenset({"ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EAGAIN", "closed"})


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
        #: events counted per held subscriber (by fd)
        self.count: dict[int, int] = {}
        #: the last ``len(MARKER) - 1`` bytes of the previous read, per fd
        self.tail: dict[int, bytes] = {}
        #: fds whose TCP connect is under way
        self.connecting: set[int] = set()
        #: fds connected, ``GET`` sent, response head not complete: its bytes so far
        self.unanswered: dict[int, bytes] = {}
        #: the subscriber number (0 .. clients - 1) of each fd being opened
        self.index: dict[int, int] = {}
        #: connect attempts per subscriber number
        self.attempts: dict[int, int] = {}
        #: subscribers held: response head received
        self.connected = 0
        self.failed = 0
        self.closed = 0
        self.retries = 0
        self.errors: dict[str, int] = {}
        self.retry_errors: dict[str, int] = {}
        #: (not before, subscriber number) to open again
        self.again: list[tuple[float, int]] = []
        self.request = request_bytes(args.path)

    # -- phase 1: connect -------------------------------------------------

    @property
    def opening(self) -> int:
        """Connections connecting or unanswered: the window."""
        return len(self.connecting) + len(self.unanswered)

    def _open(self, i: int) -> None:
        a = self.args
        self.attempts[i] = self.attempts.get(i, 0) + 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        if a.source:
            s.bind((a.source, 0))
        elif a.sources > 1:
            s.bind((f"127.0.0.{1 + (i // a.per_source) % a.sources}", 0))
        rc = s.connect_ex(("127.0.0.1", a.port))
        fd = s.fileno()
        self.socks[fd] = s
        self.index[fd] = i
        if rc in (0, errno.EINPROGRESS):
            self.connecting.add(fd)
            self.ep.register(fd, select.EPOLLOUT)
        else:
            self._fail(fd, errno.errorcode.get(rc, str(rc)))

    def _drop(self, fd: int) -> int:
        """Forget and close a subscriber being opened; its number."""
        self.connecting.discard(fd)
        self.unanswered.pop(fd, None)
        s = self.socks.pop(fd)
        with contextlib.suppress(OSError, ValueError):
            self.ep.unregister(fd)
        s.close()
        return self.index.pop(fd)

    def _fail(self, fd: int, why: str) -> None:
        """The attempt on *fd* failed: open it again later (a refused,
        reset or closed connection, at most ``--retries`` times) or count
        the subscriber as failed."""
        i = self._drop(fd)
        if why in RETRYABLE and self.attempts[i] <= self.args.retries:
            self.retries += 1
            self.retry_errors[why] = self.retry_errors.get(why, 0) + 1
            pause = min(0.05 * 2 ** (self.attempts[i] - 1), 1.0)
            heapq.heappush(self.again, (time.monotonic() + pause, i))
            return
        self.failed += 1
        self.errors[why] = self.errors.get(why, 0) + 1

    def _head(self, fd: int) -> None:
        """Read the response head of an unanswered subscriber; hold it
        once the head is complete with status 200."""
        s = self.socks[fd]
        try:
            data = s.recv(RECV)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(fd, errno.errorcode.get(exc.errno or 0, "closed"))
            return
        if not data:
            self._fail(fd, "closed")
            return
        got = self.unanswered[fd] + data
        end = got.find(b"\r\n\r\n")
        if end < 0:
            if len(got) > MAX_HEAD:
                self._fail(fd, "response head too large")
            else:
                self.unanswered[fd] = got
            return
        status = got[: got.find(b"\r\n")].split(b" ", 2)
        if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or status[1] != b"200":
            self._fail(fd, "HTTP " + b" ".join(status[1:]).decode("latin-1")[:40])
            return
        del self.unanswered[fd]
        del self.index[fd]
        self.connected += 1
        body = got[end + 4 :]
        self.count[fd] = body.count(MARKER)
        self.tail[fd] = body[-(len(MARKER) - 1) :]

    def connect_all(self) -> float:
        """Open every subscriber (held: its response head arrived); return
        the seconds it took. Bounded by ``--connect-timeout``."""
        a = self.args
        t0 = time.monotonic()
        deadline = t0 + a.connect_timeout
        opened = 0
        while (self.connected + self.failed) < a.clients:
            now = time.monotonic()
            if now >= deadline:
                break
            while self.opening < a.inflight:
                if self.again and self.again[0][0] <= now:
                    self._open(heapq.heappop(self.again)[1])
                elif opened < a.clients:
                    self._open(opened)
                    opened += 1
                else:
                    break
            for fd, ev in self.ep.poll(0.05 if self.again else 0.5):
                if fd in self.connecting:
                    s = self.socks[fd]
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err or ev & (select.EPOLLERR | select.EPOLLHUP):
                        self._fail(fd, errno.errorcode.get(err, "closed"))
                        continue
                    self.connecting.discard(fd)
                    try:
                        s.send(self.request)
                    except OSError as exc:
                        self._fail(fd, errno.errorcode.get(exc.errno or 0, "closed"))
                        continue
                    self.ep.modify(fd, select.EPOLLIN)
                    if a.held_on == "sent":
                        # A server that answers only with the first event
                        # (Flask-SSE): held once asked; the runner's check of
                        # the server's own count is then the only proof.
                        del self.index[fd]
                        self.connected += 1
                        self.count[fd] = 0
                        self.tail[fd] = b""
                    else:
                        self.unanswered[fd] = b""
                elif fd in self.unanswered:
                    self._head(fd)
                elif self._read(fd, 0.0, None) < 0:
                    # A held subscriber the server let go of.
                    self._lose(fd, "closed by the server after its response head")
        for fd in list(self.connecting):
            self._drop(fd)
            self.failed += 1
            self.errors["connect timeout"] = self.errors.get("connect timeout", 0) + 1
        for fd in list(self.unanswered):
            self._drop(fd)
            self.failed += 1
            self.errors["no response head"] = self.errors.get("no response head", 0) + 1
        left = a.clients - self.connected - self.failed
        if left > 0:
            self.failed += left
            self.errors["not opened by the connect timeout"] = left
        return time.monotonic() - t0

    def _lose(self, fd: int, why: str) -> None:
        """A held subscriber closed during the connect phase: no longer held."""
        self.connected -= 1
        self.closed -= 1  # counted as a failure, not as a close after the publish
        self.failed += 1
        self.errors[why] = self.errors.get(why, 0) + 1
        del self.count[fd], self.tail[fd]
        self.socks.pop(fd).close()

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
    p.add_argument(
        "--inflight",
        type=int,
        default=INFLIGHT,
        help="connections connecting or waiting for their response head at a time",
    )
    p.add_argument(
        "--held-on",
        choices=("head", "sent"),
        default="head",
        help="a subscriber is held once its response head arrived (default), or once its"
        " request is sent (for a server that sends its head only with the first event)",
    )
    p.add_argument(
        "--retries", type=int, default=3, help="reopens per subscriber refused, reset or closed"
    )
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
                "clients": args.clients,
                "failed": load.failed,
                "errors": load.errors,
                "retries": load.retries,
                "retry_errors": load.retry_errors,
                "inflight": args.inflight,
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
