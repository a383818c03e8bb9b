"""Helpers for testing apps that use flask_streaming.

* :class:`EventParser` parses an event stream exactly as the WHATWG spec's
  "interpreting an event stream" algorithm does (BOM stripped, CR, LF and
  CRLF line ends, comments ignored, ``retry`` only when all digits, ``id``
  with NUL ignored, an event without data not dispatched).
* :class:`GunicornServer` serves an app under a real gunicorn with the gevent
  worker on a free loopback port, for live tests; the pytest plugin
  (:mod:`flask_streaming.pytest_plugin`) wraps it in the ``streaming_server``
  fixture.
* :func:`upload_segments` and :func:`upload_tus` drive an upload through the
  native protocol or tus 1.0 with a Flask test client or an ``httpx.Client``.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any


@dataclasses.dataclass
class Event:
    """One dispatched event, as a browser's ``EventSource`` would see it."""

    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None
    #: The ``channel:`` field of flask_streaming channel events (``None``
    #: without one); ``EventSource`` ignores it.
    channel: str | None = None

    def json(self) -> Any:
        import json

        return json.loads(self.data)


class EventParser:
    """An incremental, spec-exact event-stream parser.

    Feed it bytes with :meth:`feed`; it returns the events dispatched so far.
    ``retry`` is the last reconnection time set by the stream, if any;
    ``comments`` counts comment lines (heartbeats).
    """

    def __init__(self) -> None:
        self._buf = b""
        self._first = True
        self._data: list[str] = []
        self._event = ""
        self._channel: str | None = None
        self.last_event_id = ""
        self.retry: int | None = None
        self.comments = 0
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse *chunk*; return the events it completed."""
        buf = self._buf + chunk
        if self._first:
            if len(buf) < 3 and b"\xef\xbb\xbf".startswith(buf):
                self._buf = buf
                return []
            self._first = False
            if buf.startswith(b"\xef\xbb\xbf"):
                buf = buf[3:]
        if not buf:
            return []  # an empty chunk must not forget a CR that ended the last one
        if self._pending_cr and buf.startswith(b"\n"):
            buf = buf[1:]
        self._pending_cr = False
        out: list[Event] = []
        start = 0
        n = len(buf)
        i = 0
        while i < n:
            c = buf[i]
            if c == 0x0A or c == 0x0D:
                line = buf[start:i]
                if c == 0x0D:
                    if i + 1 < n:
                        if buf[i + 1] == 0x0A:
                            i += 1
                    else:
                        self._pending_cr = True
                self._line(line.decode("utf-8", "replace"), out)
                start = i + 1
            i += 1
        self._buf = buf[start:]
        return out

    def _line(self, line: str, out: list[Event]) -> None:
        if line == "":
            if self._data:
                data = "\n".join(self._data)
                event = Event(data, self._event or "message", self.last_event_id, self.retry)
                event.channel = self._channel
                out.append(event)
            self._data = []
            self._event = ""
            self._channel = None
            return
        if line.startswith(":"):
            self.comments += 1
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        elif name == "channel":
            self._channel = value


def parse_events(data: bytes | Iterable[bytes]) -> list[Event]:
    """Every event dispatched by a whole stream (bytes or an iterable of
    chunks, e.g. a Flask test response's ``response``)."""
    parser = EventParser()
    chunks = [data] if isinstance(data, bytes) else data
    events: list[Event] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20.0
) -> None:
    """Wait until something listens on 127.0.0.1:*port*.

    :raises RuntimeError: *proc* exited first, or *timeout* seconds passed.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout}s")


class GunicornServer:
    """A real gunicorn with the gevent worker, serving *app* (a gunicorn app
    spec such as ``"examples.demo:create_app()"``) on a free loopback port.

    Use as a context manager; :meth:`stop` terminates it by its own pid.

    :param workers: number of gevent worker processes.
    :param env: extra environment for the server.
    :param args: extra gunicorn command-line arguments.
    """

    def __init__(
        self,
        app: str,
        *,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
        args: Iterable[str] = (),
        cwd: str | None = None,
        log_path: str | None = None,
    ) -> None:
        self.app = app
        self.workers = workers
        self.env = dict(env or {})
        self.args = list(args)
        self.cwd = cwd
        self.log_path = log_path
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> GunicornServer:
        self.port = self.port or free_port()
        cmd = [
            sys.executable, "-m", "gunicorn",
            "-k", "gevent",
            "-w", str(self.workers),
            "-b", f"127.0.0.1:{self.port}",
            "--worker-connections", "20000",
            "--graceful-timeout", "5",
            "--timeout", "120",
            *_control_socket_off(),
            *self.args,
            self.app,
        ]  # fmt: skip
        env = {**os.environ, **self.env}
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=self.cwd, env=env, stdout=self._log, stderr=self._log)
        try:
            wait_for_port(self.port, self.proc, timeout)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"gunicorn: {exc}: {cmd}") from None
        return self

    def worker_pids(self) -> list[int]:
        """The pids of the worker processes (children of the master)."""
        if self.proc is None:
            return []
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def stop(self, timeout: float = 10.0) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.proc = None
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        self._log = None

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _control_socket_off() -> list[str]:
    """gunicorn 24+ opens a control socket at one fixed path per user; test
    servers running side by side must not share it."""
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:  # pragma: no cover
        return []
    names = {s.name for s in KNOWN_SETTINGS}
    return ["--no-control-socket"] if "control_socket_disable" in names else []


def iter_sse(response: Any) -> Iterator[Event]:
    """Iterate the events of a Flask test-client response as they arrive."""
    parser = EventParser()
    for chunk in response.response:
        yield from parser.feed(chunk)


# -- driving uploads in tests ---------------------------------------------


@dataclasses.dataclass
class UploadOutcome:
    """What :func:`upload_segments` or :func:`upload_tus` saw."""

    #: The session id (native) or the upload URL (tus).
    id: str
    #: The JSON answer to every segment (native) or nothing (tus).
    responses: list[Any]
    #: The final JSON answer (native) or ``{"offset": n}`` (tus).
    final: Any
    #: ``(status, headers)`` of every request, in order.
    statuses: list[tuple[int, dict[str, str]]] = dataclasses.field(default_factory=list)


def _send(
    client: Any, method: str, url: str, headers: Mapping[str, str], body: bytes | None
) -> tuple[int, dict[str, str], Any]:
    """One request through a Flask test client or an ``httpx.Client``."""
    if hasattr(client, "application"):  # flask.testing.FlaskClient
        rv = client.open(url, method=method, headers=dict(headers), data=body)
        payload = rv.get_json(silent=True)
        return rv.status_code, dict(rv.headers), payload
    rv = client.request(method, url, headers=dict(headers), content=body)
    try:
        payload = rv.json()
    except ValueError:
        payload = None
    return rv.status_code, dict(rv.headers), payload


def _expect(status: int, ok: Iterable[int], what: str, payload: Any) -> None:
    if status not in ok:
        raise AssertionError(f"{what}: HTTP {status}: {payload!r}")


def upload_segments(
    client: Any,
    data: bytes,
    *,
    segment_size: int = 65536,
    prefix: str = "/streaming",
    filename: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    order: Iterable[int] | None = None,
    checksum: bool = False,
    done: str = "empty",
) -> UploadOutcome:
    """Upload *data* with the native protocol: open a session, send every
    segment, complete. Raises :class:`AssertionError` on an error answer.

    :param client: a Flask test client or an ``httpx.Client`` (with
        ``base_url``, e.g. ``httpx.Client(base_url=server.url)``).
    :param order: the segment numbers in the order to send them (default
        ascending), e.g. to test out-of-order arrival.
    :param checksum: send ``X-Stream-Checksum: sha256=...``.
    :param done: ``"empty"`` completes with an empty request one past the
        last segment (svelte-stream's way); ``"last"`` marks the last
        segment itself as done.
    """
    import base64
    import hashlib
    import json

    prefix = prefix.rstrip("/")
    statuses: list[tuple[int, dict[str, str]]] = []
    body = json.dumps(
        {"filename": filename, "size": len(data), "metadata": dict(metadata or {})}
    ).encode()
    status, headers, created = _send(
        client, "POST", f"{prefix}/uploads", {"Content-Type": "application/json"}, body
    )
    statuses.append((status, headers))
    _expect(status, (200, 201), "creating the session", created)
    sid = str(created["streamId"])
    count = max(1, -(-len(data) // segment_size))
    indexes = list(order) if order is not None else list(range(count))
    responses: list[Any] = []
    final: Any = None
    for n, index in enumerate(indexes):
        chunk = data[index * segment_size : (index + 1) * segment_size]
        is_done = done == "last" and n == len(indexes) - 1
        seg_headers = {
            "X-Stream-Id": sid,
            "X-Stream-Segment": str(index),
            "X-Stream-Done": "true" if is_done else "false",
            "Content-Type": "application/octet-stream",
        }
        if checksum:
            digest = base64.b64encode(hashlib.sha256(chunk).digest()).decode()
            seg_headers["X-Stream-Checksum"] = f"sha256={digest}"
        status, headers, payload = _send(client, "POST", f"{prefix}/uploads", seg_headers, chunk)
        statuses.append((status, headers))
        _expect(status, (200,), f"segment {index}", payload)
        responses.append(payload)
        if is_done:
            final = payload
    if done != "last":
        done_headers = {"X-Stream-Id": sid, "X-Stream-Segment": str(count), "X-Stream-Done": "true"}
        status, headers, final = _send(client, "POST", f"{prefix}/uploads", done_headers, b"")
        statuses.append((status, headers))
        _expect(status, (200,), "completing", final)
    return UploadOutcome(sid, responses, final, statuses)


def upload_tus(
    client: Any,
    data: bytes,
    *,
    chunk_size: int = 65536,
    prefix: str = "/streaming",
    metadata: Mapping[str, str] | None = None,
) -> UploadOutcome:
    """Upload *data* with tus 1.0 (creation, then ``PATCH`` requests of
    *chunk_size* bytes). Raises :class:`AssertionError` on an error answer.

    :param client: a Flask test client or an ``httpx.Client`` with ``base_url``.
    :param metadata: ``Upload-Metadata`` values (base64-encoded here).
    """
    import base64
    from urllib.parse import urlsplit

    tus = {"Tus-Resumable": "1.0.0"}
    statuses: list[tuple[int, dict[str, str]]] = []
    headers = {**tus, "Upload-Length": str(len(data))}
    if metadata:
        headers["Upload-Metadata"] = ",".join(
            f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in metadata.items()
        )
    status, got, payload = _send(client, "POST", f"{prefix.rstrip('/')}/tus/", headers, b"")
    statuses.append((status, got))
    _expect(status, (201,), "creating the tus upload", payload)
    location = got.get("Location") or got.get("location") or ""
    path = urlsplit(location).path or location
    offset = 0
    while offset < len(data) or not statuses[1:]:
        chunk = data[offset : offset + chunk_size]
        patch = {
            **tus,
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
        }
        status, got, payload = _send(client, "PATCH", path, patch, chunk)
        statuses.append((status, got))
        _expect(status, (204,), f"PATCH at offset {offset}", payload)
        offset = int(got.get("Upload-Offset") or got.get("upload-offset") or 0)
        if not data:
            break
    return UploadOutcome(path, [], {"offset": offset}, statuses)
