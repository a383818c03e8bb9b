"""Chunked and other streaming responses: text, bytes, NDJSON, downloads and
a manual writer (:class:`ResponseWriter`).

Every helper runs its iterable in a producer greenlet (inside the request
context) and coalesces small yields into writes of up to ``buffer_size``
bytes, never holding data longer than ``flush_interval``. A failure
mid-stream aborts the connection, so the client sees a truncated body, never
a clean but silently short one.
"""

from __future__ import annotations

import base64
import os
import ssl
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from flask import Response, current_app, request, send_file, stream_with_context

from .deprecations import renamed
from .producers import pump
from .settings import get_settings
from .sse import ServerSentEvent, StreamClosedError, json_dumps
from .transport import Outbox, ResponseBody, gevent_active

_TEXT = "text/plain"  # Werkzeug adds "; charset=utf-8" to text/* mimetypes
#: Block size for reading files when the kernel's sendfile is not available.
_FILE_BLOCK = 1 << 20


def _to_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, bytearray | memoryview):
        return bytes(item)
    raise TypeError(f"a stream yields str or bytes, not {type(item).__name__}")


def _body(
    outbox: Outbox, *, flush_interval: float, producer: Any = None, on_close: Iterable[Any] = ()
) -> ResponseBody:
    return ResponseBody(
        outbox,
        app=current_app._get_current_object(),  # type: ignore[attr-defined]
        environ=request.environ,
        send_timeout=get_settings().send_timeout,
        flush_interval=flush_interval,
        producer=producer,
        on_close=on_close,
    )


def _streamed(
    iterable: Iterable[Any],
    encode: Callable[[Any], bytes],
    *,
    mimetype: str,
    headers: Mapping[str, str] | None,
    status: int,
    buffer_size: int | None,
    flush_interval: float | None,
) -> Response:
    settings = get_settings()
    interval = settings.flush_interval if flush_interval is None else flush_interval
    outbox = Outbox(high_water=buffer_size or settings.buffer_size, max_delay=interval)
    producer = pump(stream_with_context(iter(iterable)), encode)
    body = _body(outbox, flush_interval=interval, producer=producer)
    return Response(
        body, status=status, mimetype=mimetype, headers=headers, direct_passthrough=True
    )


def stream_response(
    iterable: Iterable[str | bytes],
    *,
    mimetype: str = _TEXT,
    headers: Mapping[str, str] | None = None,
    status: int = 200,
    buffer_size: int | None = None,
    flush_interval: float | None = None,
) -> Response:
    """Stream text or bytes, coalescing small yields.

    :param iterable: yields ``str`` (sent as UTF-8) or ``bytes``.
    :param buffer_size: bytes coalesced into one write at most (default
        ``STREAMING_BUFFER_SIZE``).
    :param flush_interval: the longest time (s) data waits before it is
        written (default ``STREAMING_FLUSH_INTERVAL``).
    """
    return _streamed(
        iterable,
        _to_bytes,
        mimetype=mimetype,
        headers=headers,
        status=status,
        buffer_size=buffer_size,
        flush_interval=flush_interval,
    )


def ndjson_response(
    iterable: Iterable[Any],
    *,
    headers: Mapping[str, str] | None = None,
    status: int = 200,
    buffer_size: int | None = None,
    flush_interval: float | None = None,
) -> Response:
    """Stream objects as newline-delimited JSON (``application/x-ndjson``):
    one compact JSON document per line, through the app's JSON provider."""
    dumps = json_dumps()

    def encode(obj: Any) -> bytes:
        return (dumps(obj) + "\n").encode("utf-8")

    return _streamed(
        iterable,
        encode,
        mimetype="application/x-ndjson",
        headers=headers,
        status=status,
        buffer_size=buffer_size,
        flush_interval=flush_interval,
    )


def chunked_response(
    chunks: Iterable[Any],
    *,
    encoding: str = "utf-8",
    mimetype: str | None = None,
    headers: Mapping[str, str] | None = None,
    status: int = 200,
) -> Response:
    """Send each chunk as one write (the server frames it as one HTTP chunk).

    :param chunks: ``str``, ``bytes``, or objects (sent as compact JSON).
    :param encoding: ``"utf-8"`` sends the bytes as they are; ``"base64"``
        and ``"hex"`` send each chunk encoded on a line of its own.
    """
    dumps = json_dumps()
    if encoding not in ("utf-8", "base64", "hex"):
        raise ValueError(f"encoding must be 'utf-8', 'base64' or 'hex', not {encoding!r}")

    def encode(chunk: Any) -> bytes:
        raw = chunk if isinstance(chunk, str | bytes) else dumps(chunk)
        data = _to_bytes(raw)
        if encoding == "base64":
            return base64.b64encode(data) + b"\n"
        if encoding == "hex":
            return data.hex().encode("ascii") + b"\n"
        return data

    outbox = Outbox(high_water=1)
    producer = pump(stream_with_context(iter(chunks)), encode)
    body = _body(outbox, flush_interval=0.0, producer=producer)
    return Response(
        body,
        status=status,
        mimetype=mimetype or _TEXT,
        headers=headers,
        direct_passthrough=True,
    )


def safe_filename(name: str) -> str:
    """*name* with control characters and path separators replaced, so that
    it can go into a header and never names a path.

    :meta private:
    """
    cleaned = "".join(
        "_" if unicodedata.category(c)[0] == "C" or c in "/\\" else c for c in str(name)
    )
    return cleaned.strip().lstrip(".") or "download"


def content_disposition(filename: str, *, as_attachment: bool = True) -> str:
    """A ``Content-Disposition`` value (`RFC 6266
    <https://www.rfc-editor.org/rfc/rfc6266>`_): a quoted ASCII ``filename``
    and, for non-ASCII names, ``filename*=UTF-8''...``."""
    from werkzeug.http import dump_options_header

    name = safe_filename(filename)
    kind = "attachment" if as_attachment else "inline"
    try:
        name.encode("ascii")
    except UnicodeEncodeError:
        simple = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
        quoted = quote(name, safe="!#$&+^`|~")
        return dump_options_header(
            kind, {"filename": simple or "download", "filename*": f"UTF-8''{quoted}"}
        )
    return dump_options_header(kind, {"filename": name})


class _FileBody:
    """The body of a file download: the kernel's ``sendfile`` straight to the
    client socket under gunicorn's gevent worker (waiting on the socket with
    gevent), large blocks elsewhere."""

    def __init__(self, path: str, offset: int, length: int, environ: dict[str, Any]) -> None:
        self.path, self.offset, self.length, self.environ = path, offset, length, environ

    def __iter__(self) -> Iterator[bytes]:
        sock = self.environ.get("gunicorn.socket")
        with open(self.path, "rb") as f:
            if sock is not None and gevent_active() and not isinstance(sock, ssl.SSLSocket):
                yield b""  # the server sends the status line and headers
                self._sendfile(f.fileno(), sock.fileno())
                return
            f.seek(self.offset)
            left = self.length
            while left > 0:
                block = f.read(min(_FILE_BLOCK, left))
                if not block:
                    raise OSError(f"{self.path} shrank while being sent")
                left -= len(block)
                yield block

    def _sendfile(self, in_fd: int, out_fd: int) -> None:
        from gevent.socket import wait_write

        offset, left = self.offset, self.length
        while left > 0:
            try:
                sent = os.sendfile(out_fd, in_fd, offset, min(left, 1 << 30))
            except BlockingIOError:
                wait_write(out_fd)
                continue
            if sent == 0:
                raise OSError(f"{self.path} shrank while being sent")
            offset += sent
            left -= sent


def download_response(
    source: Iterable[str | bytes] | str | os.PathLike[str],
    *,
    filename: str,
    mimetype: str | None = None,
    as_attachment: bool = True,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A file download with a correct ``Content-Disposition``.

    :param source: a path (``str`` or :class:`os.PathLike`): Flask's
        :func:`~flask.send_file` does the headers, conditional requests and
        ``Range`` (`RFC 9110 <https://www.rfc-editor.org/rfc/rfc9110>`_,
        sections 13 and 14), and the body goes out through the kernel's
        ``sendfile`` under gevent. Or an iterable of ``str``/``bytes`` streamed as is.
    :param filename: the name the browser saves as (any text: control
        characters and path separators are replaced).
    """
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        rv = send_file(
            path,
            mimetype=mimetype,
            as_attachment=as_attachment,
            download_name=safe_filename(filename),
            conditional=True,
        )
        if request.method != "HEAD" and rv.status_code in (200, 206):
            size = os.path.getsize(path)
            start, stop = 0, size
            if rv.status_code == 206 and rv.content_range is not None:
                start = rv.content_range.start or 0
                stop = rv.content_range.stop or size
            old = rv.response
            if hasattr(old, "close"):
                old.close()
            rv.response = _FileBody(path, start, stop - start, request.environ)
            rv.direct_passthrough = True
        if headers:
            rv.headers.update(headers)
        return rv
    rv = stream_response(source, mimetype=mimetype or "application/octet-stream", headers=headers)
    rv.headers["Content-Disposition"] = content_disposition(filename, as_attachment=as_attachment)
    return rv


class ResponseWriter:
    """A manual writer of one streaming response: write from the view or
    from any greenlet, return :attr:`response` from the view.

    Writes are buffered until the response starts and coalesced like
    :func:`stream_response`. Every ``write*`` returns ``None`` or, once the
    client left or the writer was closed, a
    :class:`~flask_streaming.StreamClosedError`: it returns the error
    instead of raising it, as sveltekit-sse's ``emit()`` does, so a producer
    loop checks the result (or :attr:`closed`) and stops.

    Named ``ResponseStream`` in 0.1; that name still works and warns
    (:exc:`DeprecationWarning`).

    :param mimetype: the response's content type.
    :param on_close: called once when the stream ends, however it ends.
    """

    def __init__(
        self,
        *,
        mimetype: str = _TEXT,
        headers: Mapping[str, str] | None = None,
        status: int = 200,
        buffer_size: int | None = None,
        flush_interval: float | None = None,
        on_close: Callable[[], Any] | None = None,
    ) -> None:
        settings = get_settings()
        self._outbox = Outbox(high_water=buffer_size or settings.buffer_size)
        self._dumps = json_dumps()
        interval = settings.flush_interval if flush_interval is None else flush_interval
        body = _body(self._outbox, flush_interval=interval, on_close=[on_close] if on_close else [])
        #: the :class:`~flask.Response` to return from the view.
        self.response = Response(
            body, status=status, mimetype=mimetype, headers=headers, direct_passthrough=True
        )

    @property
    def closed(self) -> bool:
        """``True`` once nothing written now would be sent."""
        return not self._outbox.open

    def _put(self, data: bytes, flush: bool = False) -> StreamClosedError | None:
        if self._outbox.put(data, flush=flush):
            return None
        return StreamClosedError("the stream is closed")

    def write(self, data: str | bytes) -> StreamClosedError | None:
        """Write text (as UTF-8) or bytes."""
        return self._put(_to_bytes(data))

    def write_chunk(self, obj: Any) -> StreamClosedError | None:
        """Write *obj* as one line of compact JSON."""
        return self._put((self._dumps(obj) + "\n").encode("utf-8"))

    def write_sse(
        self, data: Any, *, event: str | None = None, id: str | int | None = None
    ) -> StreamClosedError | None:
        """Write one Server-Sent Event (sent at once)."""
        raw = ServerSentEvent(data, event=event, id=id).encode(self._dumps)
        return self._put(raw, flush=True)

    def close(self) -> None:
        """End the response after what was written."""
        self._outbox.finish("closed")


# Old names: typed aliases for type checkers, a warning at run time.
if TYPE_CHECKING:
    ResponseStream = ResponseWriter
else:
    __getattr__ = renamed(__name__, {"ResponseStream": "ResponseWriter"})
