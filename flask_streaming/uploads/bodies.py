"""Reading request bodies into a store: blocks, limits, checksums.

:func:`read_body` is the one place where the bytes of a native segment and
of a tus ``PATCH`` go from the request into staging. Under gunicorn it reads
the client's socket directly (:class:`SocketBody`, see there for what that
relies on and when it falls back to ``wsgi.input``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import fcntl
import hashlib
import io
import os
import socket
import sys
import time
from collections.abc import Iterator
from typing import IO, Any, cast

from werkzeug.exceptions import ClientDisconnected, HTTPException

from ..errors import (
    BadRequest,
    InsufficientStorage,
    PayloadTooLarge,
    RequestTimeout,
    StorageFailed,
    StreamingError,
)
from ..transport import gevent_active
from .segments import BLOCK_SIZE
from .storage import NO_SPLICE_ERRNOS, PipeWritable, Staging

#: Checksum algorithms a client may name (``<algorithm>=<base64 digest>``).
CHECKSUM_ALGORITHMS = ("sha256", "sha1", "md5")


def parse_checksum(value: str) -> tuple[str, bytes]:
    """Parse ``sha256=<base64>`` (``sha256 <base64>`` and a hex digest are
    accepted too) into ``(algorithm, digest)``.

    :raises BadRequest: unknown algorithm or malformed digest.
    """
    algorithm, sep, encoded = value.strip().replace(" ", "=", 1).partition("=")
    algorithm = algorithm.lower()
    if not sep or algorithm not in CHECKSUM_ALGORITHMS:
        raise BadRequest(
            "checksum must be '<algorithm>=<base64 digest>' with algorithm one of "
            + ", ".join(CHECKSUM_ALGORITHMS),
            code="bad_checksum",
        )
    size = hashlib.new(algorithm).digest_size
    encoded = encoded.strip()
    try:
        if len(encoded) == 2 * size and all(c in "0123456789abcdefABCDEF" for c in encoded):
            digest = bytes.fromhex(encoded)
        else:
            digest = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != size:
        raise BadRequest(f"malformed {algorithm} digest", code="bad_checksum")
    return algorithm, digest


#: errno values that mean "no room": ENOSPC, EDQUOT, EFBIG (a file size
#: limit, ``RLIMIT_FSIZE``).
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def storage_error(exc: OSError) -> StreamingError:
    """The client-facing error for a failed write to the store: 507 when the
    store is out of space, else 500 ``storage_error`` (nothing accepted)."""
    if exc.errno in NO_SPACE_ERRNOS:
        return InsufficientStorage("the server is out of storage space; retry later")
    return StorageFailed("the server could not store the data; send again")


#: Bytes received per disk write on the socket path (:class:`SocketBody`).
SOCKET_BUFFER = 1024 * 1024

#: ``splice(2)`` flags: move pages rather than copy them where the kernel
#: can, and never block on the pipe (an empty pipe always has room).
#: Bytes queued on the socket before a waiting splice wakes up (fewer,
#: larger moves: the wake-up is most of what a splice costs). Bytes queued
#: below it still count against ``STREAMING_BODY_TIMEOUT``: a body is
#: given up once nothing arrived for the timeout (noticed between one and
#: two timeouts after the last byte).
SPLICE_LOWAT = SOCKET_BUFFER
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)


class SpliceUnsupported(OSError):
    """The socket cannot be spliced from (the failing call moved nothing;
    earlier ones are written): copy the rest of the body through the
    process instead."""


@contextlib.contextmanager
def _body_errors() -> Iterator[None]:
    """Map what reading a body raises to the client-facing error."""
    try:
        yield
    except ClientDisconnected as exc:
        if isinstance(exc.__context__, TimeoutError):
            raise RequestTimeout("the request body stalled; the connection is closed") from exc
        raise
    except TimeoutError as exc:
        raise RequestTimeout("the request body stalled; the connection is closed") from exc
    except (HTTPException, StreamingError, SpliceUnsupported):
        raise
    except Exception as exc:  # the server's parser: bad chunk framing and the like
        raise BadRequest("the request body is malformed", code="bad_body") from exc


def read_block(body: IO[bytes], size: int) -> bytes:
    """Read up to *size* bytes of a request body; a body that stalls past
    ``STREAMING_BODY_TIMEOUT`` (a socket timeout, which Werkzeug reports as
    a disconnect) raises :class:`~flask_streaming.errors.RequestTimeout`."""
    with _body_errors():
        return body.read(size)
    raise AssertionError("unreachable")  # pragma: no cover (for mypy)


class SocketBody(io.RawIOBase):
    """A request body of known length read straight from gunicorn's client
    socket with ``recv_into`` (no copies through gunicorn's ``Body`` and
    ``Unreader`` buffers, no Werkzeug wrapper); made by :func:`request_body`.

    It relies on these parts of gunicorn's HTTP/1.1 parser (checked by
    :meth:`of`, which returns ``None`` when any is missing): ``wsgi.input``
    is a ``gunicorn.http.body.Body`` whose ``reader`` is a ``LengthReader``
    (``length``: body bytes not yet taken from the connection) over a
    ``SocketUnreader`` whose ``sock`` is ``environ["gunicorn.socket"]``; the
    unreader's ``take_buffered()`` and ``unread()``; ``Body.failed`` (set:
    gunicorn closes the connection instead of reading the next request).

    Exactness: the bytes gunicorn read ahead with the headers come first,
    at most ``length`` of them (the rest, a pipelined next request, goes
    back to the unreader); then ``recv_into`` never asks for more than the
    body's remaining bytes, and ``length`` counts down as bytes arrive, so
    gunicorn's own drain after the response skips exactly what is left if
    the view stops early (413, an error), and a keep-alive connection's
    next request starts at the right byte. A disconnect, timeout or socket
    error sets ``Body.failed``. Reads wait cooperatively under gevent (the
    socket is gevent's) and fail with ``STREAMING_BODY_TIMEOUT`` like
    ``wsgi.input`` does (the same socket timeout).
    """

    def __init__(self, body: Any, content_length: int) -> None:
        super().__init__()
        self._body = body
        self._reader = body.reader
        self._sock = body.reader.unreader.sock
        unreader = body.reader.unreader
        buffered = unreader.take_buffered()
        self._ahead = memoryview(buffered[: self._reader.length])
        if len(buffered) > len(self._ahead):
            unreader.unread(buffered[len(self._ahead) :])
        self._reader.length -= len(self._ahead)  # taken from the connection
        #: Body bytes not yet returned.
        self.remaining = content_length
        self._lowat = 1

    def _wake_at(self, lowat: int) -> None:
        """Wake a waiting :meth:`splice_into` only once *lowat* bytes are
        queued (``SO_RCVLOWAT``; Linux grows the receive buffer to match)."""
        if lowat != self._lowat:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, lowat)
            self._lowat = lowat

    def end_splice(self) -> None:
        """Undo what :meth:`splice_into` set on the socket (its wake-up
        threshold), for the connection's next request."""
        self._wake_at(1)

    @classmethod
    def of(cls, environ: dict[str, Any], content_length: int | None) -> SocketBody | None:
        """The socket reader for this request, or ``None`` to use
        ``wsgi.input``: not gunicorn's HTTP/1.1 parser (another server,
        HTTP/2), no ``Content-Length`` or a chunked body, ``wsgi.input``
        replaced by a middleware or already (partly) read, a TLS socket."""
        body_mod = sys.modules.get("gunicorn.http.body")
        unreader_mod = sys.modules.get("gunicorn.http.unreader")
        if not content_length or body_mod is None or unreader_mod is None:
            return None
        body: Any = environ.get("wsgi.input")
        sock: Any = environ.get("gunicorn.socket")
        reader: Any = getattr(body, "reader", None)
        unreader: Any = getattr(reader, "unreader", None)
        if (
            type(body) is not body_mod.Body
            or type(reader) is not body_mod.LengthReader
            or type(unreader) is not unreader_mod.SocketUnreader
            or unreader.sock is not sock
            or not hasattr(unreader, "take_buffered")
            or hasattr(sock, "getpeercert")  # TLS: bytes on the wire are not the body
            or body.failed is not False
            or body.buf.tell() != 0  # already read through wsgi.input
            or reader.length != content_length
        ):
            return None
        return cls(body, content_length)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Receive up to ``len(buffer)`` body bytes into *buffer*; 0 at
        the end of the body, or when the client closed the connection
        before it (:attr:`remaining` then tells how much is missing)."""
        view = memoryview(buffer).cast("B")
        want = min(len(view), self.remaining)
        if want <= 0:
            return 0
        if self._ahead:
            n = min(want, len(self._ahead))
            view[:n] = self._ahead[:n]
            self._ahead = self._ahead[n:]
        else:
            try:
                n = self._sock.recv_into(view[:want])
            except BaseException:
                self._body.failed = True
                raise
            if n == 0:
                self._body.failed = True
                return 0
            self._reader.length -= n
        self.remaining -= n
        return n

    def take_ahead(self) -> memoryview:
        """The body bytes gunicorn read ahead with the headers (counted as
        returned): the caller stores them before :meth:`splice_into`."""
        ahead, self._ahead = self._ahead[: self.remaining], memoryview(b"")
        self.remaining -= len(ahead)
        return ahead

    def splice_into(self, pipe: int, count: int) -> int:
        """Move up to *count* body bytes from the socket into the empty pipe
        *pipe* (its write end) with ``splice(2)``, never through this
        process's memory; waits for the client like :meth:`readinto`
        (cooperatively under gevent, up to the socket's timeout). Returns
        the bytes moved (never 0). Call :meth:`take_ahead` first.

        :raises SpliceUnsupported: nothing moved and :meth:`readinto` must
            take over: the socket cannot be spliced, there is no gevent to
            wait with, or splice(2) stops where ``recv`` would not (the end
            of the stream, or TCP urgent data: splice stops at the urgent
            mark, answering 0 on a blocking socket and ``EAGAIN`` on a
            readable non-blocking one; ``recv`` skips the urgent byte).
        :raises TimeoutError: the client sent nothing within the timeout.
        :raises OSError: the connection failed.
        """
        assert not self._ahead, "take_ahead() first"
        want = min(count, self.remaining)
        if want <= 0:
            return 0
        fd = self._sock.fileno()
        timeout = self._sock.gettimeout()
        deadline = None if timeout is None else time.monotonic() + timeout
        woken = False  # gevent reported the socket readable since the last splice
        try:
            while True:
                try:
                    n = os.splice(fd, pipe, want, flags=_SPLICE_FLAGS)
                    break
                except BlockingIOError:
                    if not gevent_active():  # a socket with a timeout: recv_into waits
                        raise SpliceUnsupported(errno.EAGAIN, "no gevent to wait with") from None
                    if woken:  # readable, yet splice stops: TCP urgent data (recv skips it)
                        raise SpliceUnsupported(errno.EAGAIN, "urgent data") from None
                except OSError as exc:
                    if exc.errno in NO_SPLICE_ERRNOS:  # nothing moved: copy instead
                        raise SpliceUnsupported(exc.errno, exc.strerror) from exc
                    raise
                self._wake_at(min(want, SPLICE_LOWAT))
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    raise TimeoutError("timed out")
                # Bytes queued below the threshold are progress too: after
                # the timeout, splice once more before giving up.
                from gevent.socket import wait_read

                try:
                    wait_read(fd, timeout=wait, timeout_exc=TimeoutError("timed out"))
                    woken = True
                except TimeoutError:
                    pass
        except SpliceUnsupported:
            raise
        except BaseException:
            self._body.failed = True
            raise
        if n == 0:  # the client closed, or (a blocking socket) TCP urgent data:
            # recv_into tells them apart (it skips an urgent byte)
            raise SpliceUnsupported(errno.ENODATA, "nothing to splice")
        self._reader.length -= n
        self.remaining -= n
        return n


def request_body(
    environ: dict[str, Any], stream: IO[bytes], content_length: int | None
) -> IO[bytes]:
    """The body to pass to :func:`read_body`: a :class:`SocketBody` under
    gunicorn when it applies, else *stream* (the request's ``wsgi.input``,
    as Werkzeug wraps it). Get *stream* first (``request.stream``): that is
    where Werkzeug refuses a ``Content-Length`` above ``MAX_CONTENT_LENGTH``."""
    fast = SocketBody.of(environ, content_length)
    return stream if fast is None else cast(IO[bytes], fast)


def read_body(
    body: IO[bytes],
    staging: Staging,
    content_length: int | None,
    limit: int,
    algorithm: str | None,
) -> bytes | None:
    """Copy *body* into *staging* in :data:`BLOCK_SIZE` reads (never the
    whole body in memory); return the *algorithm* digest when asked. A
    :class:`SocketBody` is received into two reused buffers and written from
    them (:data:`SOCKET_BUFFER` per write, under gevent in a thread while the
    next buffer arrives); bytes received before an error are written before
    the error is raised.

    :raises PayloadTooLarge: more than *limit* bytes arrive.
    :raises InsufficientStorage: the disk is full.
    :raises StorageFailed: another write error.
    :raises RequestTimeout: the body stalled past ``STREAMING_BODY_TIMEOUT``.
    """
    hasher = hashlib.new(algorithm) if algorithm else None
    if isinstance(body, SocketBody):
        _receive(body, staging, limit, hasher)
        if body.remaining:
            raise BadRequest("the body ended before Content-Length", code="incomplete_body")
        return None if hasher is None else hasher.digest()
    remaining = content_length
    while remaining is None or remaining > 0:
        want = BLOCK_SIZE if remaining is None else min(BLOCK_SIZE, remaining)
        block = read_block(body, want)
        if not block:
            break
        if staging.size + len(block) > limit:
            raise PayloadTooLarge(
                "the segment is larger than allowed", code="segment_too_large", limit=limit
            )
        if hasher is not None:
            hasher.update(block)
        _write(staging, block)
        if remaining is not None:
            remaining -= len(block)
    if remaining:
        raise BadRequest("the body ended before Content-Length", code="incomplete_body")
    return None if hasher is None else hasher.digest()


def _receive(body: SocketBody, staging: Staging, limit: int, hasher: Any) -> None:
    """:func:`read_body` for a :class:`SocketBody`. Under gevent each
    buffer's disk write runs in gevent's thread pool while the next buffer
    is received (two buffers, one write in flight: receiving and writing
    overlap); elsewhere the write is inline."""
    if (
        hasher is None
        and _SPLICE is not None
        and isinstance(staging, PipeWritable)
        and staging.size + body.remaining <= limit
    ):
        with contextlib.suppress(SpliceUnsupported):  # then copy the rest
            _splice(body, staging)
            return
    pool = _thread_pool()
    size = min(SOCKET_BUFFER, body.remaining)
    buffers = [memoryview(bytearray(size)), memoryview(bytearray(size))]
    pending: Any = None  # the write in flight (gevent AsyncResult)
    try:
        while body.remaining:
            buffer = buffers[0]
            filled, error = 0, None
            while filled < len(buffer) and body.remaining:
                try:
                    with _body_errors():
                        n = body.readinto(buffer[filled:])
                except (HTTPException, StreamingError) as exc:
                    error = exc
                    break
                if not n:
                    break
                filled += n
            if pending is not None:
                _finish_write(pending)  # staging.size is then up to date
                pending = None
            if filled:
                block = buffer[:filled]
                if staging.size + filled > limit:
                    raise PayloadTooLarge(
                        "the segment is larger than allowed", code="segment_too_large", limit=limit
                    )
                if hasher is not None:
                    hasher.update(block)
                if pool is None:
                    _write(staging, block)
                else:
                    pending = pool.spawn(staging.write, block)
                    buffers.reverse()  # receive into the other one meanwhile
            if error is not None:
                raise error
            if filled < len(buffer):  # the client closed the connection
                return
    finally:
        if pending is not None:
            _finish_write(pending)


#: ``os.splice`` where the platform has it (Linux, Python 3.10+).
_SPLICE = getattr(os, "splice", None)


def _splice(body: SocketBody, staging: PipeWritable) -> None:
    """:func:`_receive` without copying through this process: the socket's
    bytes go to a pipe and from it to the file (``splice(2)`` twice: the
    kernel copies each byte once, into the page cache). The pipes are this
    request's, :data:`SOCKET_BUFFER` large where the system allows. Under
    gevent there are two: each one's move to the file runs in gevent's
    thread pool (a disk that stalls a write stalls this request only) while
    the other fills from the socket."""
    pool = _thread_pool()
    pipes: list[tuple[int, int]] = []
    pending: Any = None  # the move to the file in flight (gevent AsyncResult)
    try:
        try:
            for _ in range(1 if pool is None else 2):
                pipes.append(os.pipe2(os.O_CLOEXEC))
        except OSError as exc:  # no descriptor left for a pipe: copy instead
            raise SpliceUnsupported(exc.errno, exc.strerror) from exc
        ahead = body.take_ahead()
        if ahead:
            _write(staging, ahead)
        capacity = min(_grow_pipe(write_end) for _, write_end in pipes)
        while body.remaining:
            read_end, write_end = pipes[0]
            with _body_errors():
                n = body.splice_into(write_end, capacity)
            if pending is not None:
                pending, finished = None, pending
                _finish_write(finished)
            if pool is None:
                try:
                    staging.write_from_pipe(read_end, n)
                except OSError as exc:
                    raise storage_error(exc) from exc
            else:
                pending = pool.spawn(staging.write_from_pipe, read_end, n)
                pipes.reverse()  # fill the other one meanwhile
    finally:
        if pending is not None:
            _finish_write(pending)
        for read_end, write_end in pipes:
            os.close(read_end)
            os.close(write_end)
        with contextlib.suppress(OSError):
            body.end_splice()


def _write(staging: Staging | PipeWritable, block: bytes | bytearray | memoryview) -> None:
    """``staging.write(block)``; a failed write raises the client-facing error."""
    try:
        staging.write(block)
    except OSError as exc:
        raise storage_error(exc) from exc


def _grow_pipe(fd: int) -> int:
    """Make the pipe *fd* hold :data:`SOCKET_BUFFER` bytes where allowed
    (``pipe-max-size``, the user's pipe pages); returns its capacity."""
    try:
        return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, SOCKET_BUFFER)
    except OSError:
        return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)


def _thread_pool() -> Any:
    """gevent's thread pool when the process runs under gevent, else ``None``."""
    if not gevent_active():
        return None
    import gevent

    return gevent.get_hub().threadpool


def _finish_write(pending: Any) -> None:
    """Wait for the write *pending*; a failed write raises the
    client-facing storage error."""
    try:
        pending.get()
    except OSError as exc:
        raise storage_error(exc) from exc


def same_bytes(a: IO[bytes], b: IO[bytes]) -> bool:
    with a, b:
        while True:
            x, y = a.read(BLOCK_SIZE), b.read(BLOCK_SIZE)
            if x != y:
                return False
            if not x:
                return True
