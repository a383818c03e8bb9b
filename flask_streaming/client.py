"""A Python client for flask_streaming servers (the ``client`` extra: httpx, tqdm).

* :func:`upload` sends a file in segments (the native protocol) or with tus
  1.0, shows a tqdm progress bar, retries each request with exponential
  backoff, and after a failure asks the server what it has and goes on from
  there. A failed upload raises :class:`UploadFailed`, whose ``resume``
  value continues it later: ``upload(path, url, resume=err.resume)``.
* :func:`events` iterates the events of an event stream, parsed exactly as
  a browser does (:class:`~flask_streaming.sse_wire.EventParser`), and
  reconnects with ``Last-Event-ID`` after the server's ``retry`` delay.

::

    from flask_streaming.client import events, upload

    final = upload("big.iso", "http://127.0.0.1:8000/streaming")
    for event in events("http://127.0.0.1:8000/streaming/events/news"):
        print(event.event, event.data)

The same from a shell: ``python -m flask_streaming upload FILE URL`` and
``python -m flask_streaming listen URL``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from .error_codes import TRANSIENT_500_CODES
from .sse_wire import EVENT_STREAM_TYPE, Event, EventParser
from .tus_version import TUS_VERSION

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "ClientError",
    "Event",
    "Retry",
    "ServerError",
    "UploadFailed",
    "events",
    "upload",
]

#: Default segment (native) or ``PATCH`` (tus) size: 8 MiB.
DEFAULT_SEGMENT_SIZE = 8 << 20
_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class ClientError(Exception):
    """Base of this module's errors."""


class ServerError(ClientError):
    """The server answered with an error that retrying will not fix.

    :ivar status: the HTTP status.
    :ivar body: the JSON error body (``{"error": code, "message": ...}``) or
        ``None``.
    """

    def __init__(self, status: int, body: Any, url: str = "") -> None:
        self.status = status
        self.body = body
        self.url = url
        message = body.get("message") if isinstance(body, dict) else None
        code = body.get("error") if isinstance(body, dict) else None
        text = f"{status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
        super().__init__(f"{url}: {text}" if url else text)

    @property
    def code(self) -> str | None:
        """The machine code of the error body, e.g. ``"missing_segments"``."""
        return self.body.get("error") if isinstance(self.body, dict) else None


class UploadFailed(ClientError):
    """An upload gave up; ``resume`` continues it (the session id for the
    native protocol, the upload URL for tus), ``None`` when nothing was
    created on the server."""

    def __init__(self, message: str, resume: str | None) -> None:
        super().__init__(message)
        self.resume = resume


class Retry:
    """Exponential backoff with jitter.

    :param retries: attempts after the first one.
    :param initial: first delay in seconds.
    :param factor: growth per attempt.
    :param maximum: longest delay in seconds.
    """

    def __init__(
        self, retries: int = 5, initial: float = 0.25, factor: float = 2.0, maximum: float = 10.0
    ) -> None:
        self.retries = retries
        self.initial = initial
        self.factor = factor
        self.maximum = maximum

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number *attempt* (0-based)."""
        base = min(self.maximum, self.initial * self.factor**attempt)
        return base / 2 + random.random() * base / 2


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _request(
    client: httpx.Client,
    method: str,
    url: str,
    retry: Retry,
    *,
    retry_conflict: bool = False,
    **kwargs: Any,
) -> httpx.Response:
    """Send a request; retry transport errors and retryable statuses.

    :raises ServerError: for any other error status.
    :raises httpx.TransportError: when the retries ran out.
    """
    import httpx

    for attempt in range(retry.retries + 1):
        last = attempt == retry.retries
        try:
            response = client.request(method, url, **kwargs)
        except httpx.TransportError:
            if last:
                raise
            time.sleep(retry.delay(attempt))
            continue
        if response.is_success:
            return response
        retryable = _retryable(response) or (
            retry_conflict
            and response.status_code == 409
            and (_json(response) or {}).get("error") == "retry"
        )
        if retryable and not last:
            after = response.headers.get("Retry-After", "")
            wait = float(after) if after.isascii() and after.isdigit() else retry.delay(attempt)
            time.sleep(min(wait, retry.maximum))
            continue
        raise ServerError(response.status_code, _json(response), url)
    raise AssertionError("unreachable")


def _retryable(response: httpx.Response) -> bool:
    """Whether sending again may help: a 500 only for a transient code
    (:data:`~flask_streaming.error_codes.TRANSIENT_500_CODES`)."""
    if response.status_code == 500:
        return (_json(response) or {}).get("error") in TRANSIENT_500_CODES
    return response.status_code in _RETRYABLE_STATUS


def upload_endpoint(url: str, protocol: str) -> str:
    """*url* as the protocol's endpoint: a bare prefix such as
    ``http://host/streaming`` gets ``/uploads`` or ``/tus/`` appended."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    last = path.rsplit("/", 1)[-1]
    if protocol == "native":
        if last != "uploads":
            path += "/uploads"
    elif last != "tus":
        path += "/tus/"
    else:
        path += "/"
    return urlunsplit(parts._replace(path=path))


_endpoint = upload_endpoint  # the name tests used before it was public


def _checksum(data: bytes) -> str:
    return "sha256=" + base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _open(path_or_file: str | os.PathLike[str] | IO[bytes]) -> tuple[IO[bytes], str | None, bool]:
    if isinstance(path_or_file, str | os.PathLike):
        return open(path_or_file, "rb"), os.path.basename(os.fspath(path_or_file)), True
    name = getattr(path_or_file, "name", None)
    return path_or_file, os.path.basename(name) if isinstance(name, str) else None, False


def _size(f: IO[bytes]) -> int:
    here = f.tell()
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(here)
    return size


class _Progress:
    """A tqdm bar, or nothing."""

    def __init__(self, enabled: bool, total: int, desc: str | None) -> None:
        self.bar: Any = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=True
            )

    def set(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def upload(
    path_or_file: str | os.PathLike[str] | IO[bytes],
    url: str,
    *,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    protocol: str = "native",
    progress: bool = True,
    resume: str | None = None,
    filename: str | None = None,
    content_type: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    retry: Retry | None = None,
    resumes: int = 5,
    checksum: bool = True,
    headers: Mapping[str, str] | None = None,
    client: httpx.Client | None = None,
) -> dict[str, Any]:
    """Upload a file (a path or a binary file object that can seek).

    :param url: the server's upload endpoint (``.../streaming/uploads`` or
        ``.../streaming/tus/``) or the blueprint's prefix
        (``.../streaming``), to which the endpoint is appended.
    :param segment_size: bytes per segment or ``PATCH``.
    :param protocol: ``"native"`` (segments; the final hooks' results come
        back) or ``"tus"`` (tus 1.0: creation, ``HEAD``, ``PATCH``).
    :param progress: show a tqdm progress bar on stderr.
    :param resume: continue an earlier upload: its session id (native) or
        its upload URL (tus), as in :attr:`UploadFailed.resume`.
    :param metadata: JSON metadata (native) or tus ``Upload-Metadata``
        values (str).
    :param retry: backoff of each request (default :class:`Retry`).
    :param resumes: how many times, after a request's retries ran out, to
        ask the server for the upload's state and go on.
    :param checksum: send ``X-Stream-Checksum`` with each native segment.
    :param client: an ``httpx.Client`` to use (auth, cookies, proxies).
    :returns: the final JSON answer (native: ``done``, ``size``, the final
        hooks' results) or, for tus, ``{"url", "offset", "length"}``.
    :raises UploadFailed: the upload stopped; its ``resume`` continues it.
    :raises ServerError: the server refused the upload (a 4xx answer).
    """
    import httpx

    if protocol not in ("native", "tus"):
        raise ValueError("protocol must be 'native' or 'tus'")
    if segment_size <= 0:
        raise ValueError("segment_size must be positive")
    retry = retry or Retry()
    f, name, owned = _open(path_or_file)
    own_client = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0))
    try:
        if headers:
            http.headers.update(headers)
        start = f.tell()
        size = _size(f) - start
        job = _Job(
            http, f, start, size, segment_size, retry, resumes, checksum,
            filename or name, content_type, dict(metadata or {}),
        )  # fmt: skip
        bar = _Progress(progress, size, filename or name)
        job.on_progress = bar.set
        try:
            if protocol == "native":
                return job.native(upload_endpoint(url, "native"), resume)
            return job.tus(upload_endpoint(url, "tus"), resume)
        except KeyboardInterrupt as exc:
            # Ctrl-C: say what continues the upload (None: nothing created yet).
            exc.resume = job.resume  # type: ignore[attr-defined]
            raise
        finally:
            bar.close()
    finally:
        if own_client:
            http.close()
        if owned:
            f.close()


class _Job:
    """One upload: the file, the HTTP client and the bookkeeping."""

    def __init__(
        self,
        http: httpx.Client,
        f: IO[bytes],
        start: int,
        size: int,
        segment_size: int,
        retry: Retry,
        resumes: int,
        checksum: bool,
        filename: str | None,
        content_type: str | None,
        metadata: dict[str, Any],
    ) -> None:
        self.http = http
        self.f = f
        self.start = start
        self.size = size
        self.segment_size = segment_size
        self.retry = retry
        self.resumes = resumes
        self.checksum = checksum
        self.filename = filename
        self.content_type = content_type
        self.metadata = metadata
        self.on_progress: Any = None
        #: what continues this upload: the session id (native) or the
        #: upload URL (tus), once known
        self.resume: str | None = None
        #: how many segments / PATCH requests were sent (tests look at it)
        self.requests = 0

    def read(self, offset: int, length: int) -> bytes:
        self.f.seek(self.start + offset)
        return self.f.read(length)

    def progress(self, done: int) -> None:
        if self.on_progress is not None:
            self.on_progress(min(done, self.size))

    # -- native segments ---------------------------------------------------

    def native(self, endpoint: str, resume: str | None) -> dict[str, Any]:
        import httpx

        count = max(1, -(-self.size // self.segment_size))
        sid = self.resume = resume
        try:
            if sid is None:
                body = {
                    "filename": self.filename,
                    "content_type": self.content_type,
                    "size": self.size,
                    "metadata": self.metadata,
                }
                created = _request(self.http, "POST", endpoint, self.retry, json=body)
                sid = self.resume = str(created.json()["streamId"])
                index = 0
            else:
                index = self._contiguous(endpoint, sid, count)
        except httpx.TransportError as exc:
            raise UploadFailed(f"cannot reach the server: {exc}", sid) from exc
        resumes = self.resumes
        todo: list[int] = []
        while True:
            try:
                self.progress(index * self.segment_size)
                while todo:
                    self._segment(endpoint, sid, todo[0])
                    todo.pop(0)
                while index < count:
                    self._segment(endpoint, sid, index)
                    index += 1
                    self.progress(index * self.segment_size)
                done = {"X-Stream-Id": sid, "X-Stream-Segment": str(count), "X-Stream-Done": "true"}
                final = _request(self.http, "POST", endpoint, self.retry, headers=done, content=b"")
                rv: dict[str, Any] = final.json()
                self.progress(self.size)
                return rv
            except ServerError as exc:
                missing = exc.body.get("missing") if isinstance(exc.body, dict) else None
                if exc.code == "missing_segments" and missing and resumes > 0:
                    resumes -= 1
                    todo = [int(i) for i in missing]
                    continue
                raise
            except httpx.TransportError as exc:
                resumes = self._resume_after(exc, sid, resumes)
                index = self._probe(sid, lambda: self._contiguous(endpoint, sid, count))

    def _resume_after(self, exc: Exception, upload: str, resumes: int) -> int:
        """After a network failure: give up (:class:`UploadFailed` naming
        *upload*, so it can be resumed later) or wait and spend one resume."""
        if resumes <= 0:
            raise UploadFailed(f"upload {upload} interrupted: {exc}", upload) from exc
        resumes -= 1
        time.sleep(self.retry.delay(self.resumes - resumes))
        return resumes

    def _probe(self, upload: str, ask: Callable[[], int]) -> int:
        """Ask the server where *upload* stands; a network failure gives up."""
        import httpx

        try:
            return ask()
        except httpx.TransportError as exc:
            raise UploadFailed(f"upload {upload} interrupted: {exc}", upload) from exc

    def _contiguous(self, endpoint: str, sid: str, count: int) -> int:
        status = _request(self.http, "GET", f"{endpoint.rstrip('/')}/{sid}", self.retry).json()
        return min(int(status.get("contiguous", 0)), count)

    def _segment(self, endpoint: str, sid: str, index: int) -> dict[str, Any]:
        data = self.read(index * self.segment_size, self.segment_size)
        headers = {
            "X-Stream-Id": sid,
            "X-Stream-Segment": str(index),
            "X-Stream-Done": "false",
            "Content-Type": "application/octet-stream",
        }
        if self.checksum:
            headers["X-Stream-Checksum"] = _checksum(data)
        self.requests += 1
        response = _request(
            self.http,
            "POST",
            endpoint,
            self.retry,
            retry_conflict=True,
            headers=headers,
            content=data,
        )
        rv: dict[str, Any] = response.json()
        return rv

    # -- tus 1.0 -------------------------------------------------------------

    def tus(self, endpoint: str, resume: str | None) -> dict[str, Any]:
        import httpx

        location = self.resume = resume
        try:
            if location is None:
                location = self._tus_create(endpoint)
                offset = 0
            else:
                offset = self._tus_offset(location)
            self.resume = location
        except httpx.TransportError as exc:
            raise UploadFailed(f"cannot reach the server: {exc}", location) from exc
        resumes = self.resumes
        while True:
            try:
                while offset < self.size or (self.requests == 0 and self.size == 0):
                    self.progress(offset)
                    data = self.read(offset, self.segment_size)
                    self.requests += 1
                    response = _request(
                        self.http, "PATCH", location, self.retry,
                        headers={
                            "Tus-Resumable": TUS_VERSION,
                            "Upload-Offset": str(offset),
                            "Content-Type": "application/offset+octet-stream",
                        },
                        content=data,
                    )  # fmt: skip
                    offset = int(response.headers["Upload-Offset"])
                    if self.size == 0:
                        break
                self.progress(offset)
                return {"url": location, "offset": offset, "length": self.size}
            except ServerError as exc:
                if exc.status == 409 and resumes > 0:  # offset mismatch: ask again
                    resumes -= 1
                    offset = self._tus_offset(location)
                    continue
                raise
            except httpx.TransportError as exc:
                resumes = self._resume_after(exc, location, resumes)
                offset = self._probe(location, lambda: self._tus_offset(location))

    def _tus_create(self, endpoint: str) -> str:
        meta = dict(self.metadata)
        if self.filename:
            meta.setdefault("filename", self.filename)
        if self.content_type:
            meta.setdefault("filetype", self.content_type)
        encoded = ",".join(
            f"{key} {base64.b64encode(str(value).encode()).decode('ascii')}"
            for key, value in meta.items()
        )
        headers = {"Tus-Resumable": TUS_VERSION, "Upload-Length": str(self.size)}
        if encoded:
            headers["Upload-Metadata"] = encoded
        response = _request(self.http, "POST", endpoint, self.retry, headers=headers, content=b"")
        location = response.headers.get("Location")
        if not location:
            raise ServerError(response.status_code, {"message": "no Location header"}, endpoint)
        return str(response.url.join(location))

    def _tus_offset(self, location: str) -> int:
        response = _request(
            self.http, "HEAD", location, self.retry, headers={"Tus-Resumable": TUS_VERSION}
        )
        return int(response.headers["Upload-Offset"])


def is_event_stream(content_type: str) -> bool:
    """``True`` when a ``Content-Type`` value's MIME type (its essence,
    parameters ignored, compared without case) is ``text/event-stream``,
    as the WHATWG ``EventSource`` checks it."""
    return content_type.split(";", 1)[0].strip().lower() == EVENT_STREAM_TYPE


def events(
    url: str,
    *,
    last_event_id: str | None = None,
    reconnect: bool = True,
    retry: float = 3.0,
    max_failures: int | None = 10,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
    client: httpx.Client | None = None,
    retry_on_status: bool = True,
) -> Iterator[Event]:
    """Iterate the events of the event stream at *url*, parsed as a browser
    parses them (``channel`` set for flask_streaming channel events).

    With *reconnect*, a stream that ends or breaks is opened again after the
    server's ``retry`` (default *retry* seconds; doubled for every failure
    in a row) with ``Last-Event-ID`` (the last event ID string, as UTF-8),
    so no event is missed that the server can replay. A ``204`` answer ends
    the iteration. Any other answer than a ``200`` with the
    ``text/event-stream`` type raises :class:`ServerError`, as an
    ``EventSource`` fails the connection; except that 408, 425, 429, 500,
    502, 503 and 504, which a restarting server or its proxy sends, are
    retried like a broken connection (*retry_on_status*; ``False`` raises
    :class:`ServerError` for those too, exactly as ``EventSource`` fails).
    A failure to connect the first time raises (a wrong URL fails fast).

    :param last_event_id: resume after this id.
    :param max_failures: failures in a row before giving up (``None``: never).
    :param timeout: read timeout in seconds (``None``: wait for ever; the
        server's heartbeats keep the connection alive).
    :raises ServerError: the server refused the stream.
    :raises httpx.TransportError: the server stayed unreachable.
    """
    import httpx

    own_client = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0))
    last_id = last_event_id or ""
    delay = retry
    failures = 0
    connected = False
    try:
        while True:
            base = httpx.Headers({"Accept": EVENT_STREAM_TYPE, "Cache-Control": "no-cache"})
            base.update(headers or {})
            request_headers = list(base.raw)
            if last_id:
                # The last event ID string encoded as UTF-8 (WHATWG), as
                # browsers send it: an id may be any text.
                request_headers = [h for h in request_headers if h[0].lower() != b"last-event-id"]
                request_headers.append((b"Last-Event-ID", last_id.encode("utf-8")))
            # The parser's id buffer starts with what we resend, so events
            # without an id field keep it, as in a browser.
            parser = EventParser(last_id)
            try:
                with http.stream("GET", url, headers=request_headers) as response:
                    if response.status_code == 204:
                        return
                    kind = response.headers.get("content-type", "")
                    if response.status_code != 200 or not is_event_stream(kind):
                        response.read()
                        if retry_on_status and response.status_code in _RETRYABLE_STATUS:
                            raise httpx.TransportError(f"{response.status_code} from {url}")
                        raise ServerError(response.status_code, _json(response), url)
                    failures = 0
                    connected = True
                    for chunk in response.iter_bytes():
                        yield from parser.feed(chunk)
                        if parser.retry is not None:
                            delay = parser.retry / 1000
            except httpx.TransportError:
                failures += 1
                if (
                    not reconnect
                    or not connected
                    or (max_failures is not None and failures > max_failures)
                ):
                    raise
            # What is resent: the last event ID string, set at every blank
            # line (an id-only block too), never by an id: line of a block
            # cut off by the end of the stream (resuming must replay it).
            parser.end()
            last_id = parser.last_event_id
            if parser.retry is not None:
                delay = parser.retry / 1000
            if not reconnect:
                return
            time.sleep(min(60.0, delay * 2 ** max(0, failures - 1)))
    finally:
        if own_client:
            with contextlib.suppress(Exception):
                http.close()
