"""A cheap HTTP/1.1 load client over raw sockets, for the benchmark runner.

It reads with large ``recv_into`` calls and counts items by a marker with
``bytearray.count``: no per-event parsing in Python, so the client stays far
faster than the server it measures. It never imports gevent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import socket
import time


@dataclasses.dataclass
class Fetched:
    """What :func:`fetch` saw of one response.

    Times are seconds since the request was sent. ``body_bytes`` counts the
    bytes on the wire after the headers (chunk framing included).
    """

    status: int
    headers: dict[str, str]
    body_bytes: int
    count: int
    t_headers: float
    t_first: float | None
    elapsed: float
    complete: bool
    body: bytes
    tail: bytes
    #: sha256 (hex) of the payload, chunk framing removed (``digest=True``).
    sha256: str = ""

    @property
    def chunked(self) -> bool:
        """The body used chunked transfer coding."""
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    @property
    def clean_end(self) -> bool:
        """The body ended as the server meant it to: the last chunk of a
        chunked body, or exactly ``Content-Length`` bytes."""
        if not self.complete:
            return False
        if self.chunked:
            return self.tail.endswith(b"0\r\n\r\n")
        length = self.headers.get("content-length")
        return length is None or int(length) == self.body_bytes


class Dechunker:
    """Feeds the payload of an HTTP/1.1 chunked body (RFC 9112 §7.1, chunk
    extensions and trailers ignored) into a sha256, incrementally."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self._buf = bytearray()
        self._left = 0  # payload bytes left in the current chunk
        self._crlf = False  # the CRLF after a chunk's payload is due
        self.done = False

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Account for *data*, the next bytes of the chunked body."""
        view = memoryview(data)
        while len(view) and not self.done:
            if self._left:
                n = min(self._left, len(view))
                self.hash.update(view[:n])
                self._left -= n
                view = view[n:]
                if not self._left:
                    self._crlf = True
                continue
            self._buf += view
            view = view[len(view) :]
            while not self.done:
                if self._crlf:
                    if len(self._buf) < 2:
                        break
                    del self._buf[:2]
                    self._crlf = False
                end = self._buf.find(b"\r\n")
                if end < 0:
                    break
                size = int(bytes(self._buf[:end]).split(b";", 1)[0], 16)
                del self._buf[: end + 2]
                if size == 0:
                    self.done = True
                    break
                n = min(size, len(self._buf))
                self.hash.update(self._buf[:n])
                del self._buf[:n]
                self._left = size - n
                if self._left:
                    break
                self._crlf = True


RECV_SIZE = 1 << 20
#: The byte bound of :func:`fetch` unless a caller asks for more.
DEFAULT_MAX_BYTES = 64 << 20


def fetch(
    port: int,
    path: str,
    *,
    marker: bytes = b"",
    max_count: int | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
    keep_body: bool = False,
    digest: bool = False,
) -> Fetched:
    """GET *path* from 127.0.0.1:*port* over a raw socket and read the body
    cheaply: large ``recv_into`` calls, *marker* occurrences counted with
    ``bytearray.count`` (no per-item parsing).

    The loop is bounded by count and time: it stops at EOF, once *max_count*
    markers or *max_bytes* body bytes (64 MiB unless given) arrived, or after
    *timeout* seconds (then ``complete`` is ``False``).

    :param marker: bytes that occur once per item (``b"data: "`` for SSE);
        ``t_first`` is when the first one arrived (the first body byte if no
        marker is given).
    :param keep_body: keep the whole body (for small correctness checks).
    :param digest: compute :attr:`Fetched.sha256` of the payload (chunk
        framing removed) while reading; for the same-output checks made
        before a paired view is timed, not in a timed run.
    """
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    m = len(marker)
    buf = bytearray(RECV_SIZE)
    count = body_bytes = 0
    carry = b""
    tail = b""
    kept = bytearray()
    t_headers = 0.0
    t_first: float | None = None
    complete = False
    status = 0
    resp_headers: dict[str, str] = {}
    dechunker: Dechunker | None = None
    plain = hashlib.sha256()

    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        t0 = time.perf_counter()
        deadline = t0 + timeout
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            sock.settimeout(max(deadline - time.perf_counter(), 0.001))
            got = sock.recv(65536)
            if not got:
                raise ConnectionError(f"connection closed before headers: {head!r}")
            head += got
        t_headers = time.perf_counter() - t0
        raw_head, _, first = head.partition(b"\r\n\r\n")
        status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        for line in header_lines:
            name, _, value = line.partition(":")
            resp_headers[name.strip().lower()] = value.strip()
        if digest and "chunked" in resp_headers.get("transfer-encoding", "").lower():
            dechunker = Dechunker()

        def take(data: bytes | bytearray, n: int) -> bool:
            """Account for *n* new body bytes in *data*; ``True`` to stop."""
            nonlocal count, body_bytes, carry, tail, t_first
            body_bytes += n
            if digest:
                if dechunker is not None:
                    dechunker.feed(memoryview(data)[:n])
                else:
                    plain.update(memoryview(data)[:n])
            if keep_body:
                kept.extend(data[:n])
            if m:
                if carry:
                    count += (carry + bytes(data[: min(n, m - 1)])).count(marker)
                count += data.count(marker, 0, n)
                if m > 1:
                    carry = (carry + bytes(data[max(0, n - m + 1) : n]))[-(m - 1) :]
                if t_first is None and count:
                    t_first = time.perf_counter() - t0
            elif t_first is None and n:
                t_first = time.perf_counter() - t0
            tail = (tail + bytes(data[max(0, n - 16) : n]))[-16:]
            return (max_count is not None and count >= max_count) or (
                max_bytes is not None and body_bytes >= max_bytes
            )

        stop = take(first, len(first)) if first else False
        while not stop:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                n = sock.recv_into(buf)
            except TimeoutError:
                break
            if n == 0:
                complete = True
                break
            stop = take(buf, n)
        else:
            complete = True
        elapsed = time.perf_counter() - t0
    finally:
        sock.close()
    return Fetched(
        status=status,
        headers=resp_headers,
        body_bytes=body_bytes,
        count=count,
        t_headers=t_headers,
        t_first=t_first,
        elapsed=elapsed,
        complete=complete,
        body=bytes(kept),
        tail=tail,
        sha256=((dechunker.hash if dechunker is not None else plain).hexdigest() if digest else ""),
    )
