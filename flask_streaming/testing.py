"""Helpers for testing apps that use flask_streaming.

* :func:`parse_events` parses a whole event stream with
  :class:`~flask_streaming.sse_wire.EventParser`, exactly as the WHATWG
  spec's "interpreting an event stream" algorithm does; :func:`iter_sse`
  as a test response's chunks arrive. (``flask_streaming.testing.Event``
  and ``EventParser`` are deprecated aliases of the
  :mod:`flask_streaming.sse_wire` classes.)
* :class:`GunicornServer` serves an app under a real gunicorn with the gevent
  worker on a free loopback port, for live tests; the pytest plugin
  (:mod:`flask_streaming.pytest_plugin`) wraps it in the ``streaming_server``
  fixture.
* :class:`RedisServer` runs a ``redis-server`` of your own on a loopback
  port, with no persistence or an append-only file (``appendfsync everysec``
  or ``always``); it can be killed (``SIGKILL``) and restarted on the same
  port and dir.
* :func:`free_port`, :func:`wait_for_port`, :func:`wait_for_http` and
  :func:`stop_process` (stop one process by its own pid) are the pieces both
  are made of, and :func:`http_request` sends one exact request to them;
  our own tests and benchmarks use these same helpers.
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
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Self

from . import sse_wire
from .tus_version import TUS_VERSION


def __getattr__(name: str) -> Any:
    # Deprecated aliases: the parser is part of the wire format
    # (flask_streaming.sse_wire), which the production client uses too.
    if name in ("Event", "EventParser"):
        warnings.warn(
            f"flask_streaming.testing.{name} is deprecated; import it from"
            " flask_streaming.sse_wire",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(sse_wire, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_events(data: bytes | Iterable[bytes]) -> list[sse_wire.Event]:
    """Every event dispatched by a whole stream (bytes or an iterable of
    chunks, e.g. a Flask test response's ``response``)."""
    parser = sse_wire.EventParser()
    chunks = [data] if isinstance(data, bytes) else data
    events: list[sse_wire.Event] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


# -- processes on loopback: one copy for our tests, the benchmarks and users' tests


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the OS picks it; another process may
    take it before you bind it, which on loopback in a test is rare)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(
    port: int, proc: subprocess.Popen[Any] | None = None, timeout: float = 20.0
) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:*port*.

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


def wait_for_http(
    port: int,
    path: str = "/",
    *,
    proc: subprocess.Popen[Any] | None = None,
    status: int | None = None,
    method: str = "GET",
    tls: bool = False,
    timeout: float = 20.0,
) -> None:
    """Wait until an HTTP server on 127.0.0.1:*port* answers *method* *path*
    (with *status*, or any status when ``None``). A gunicorn master listens
    before its workers have imported the app; this waits for a worker.

    :param tls: speak HTTPS (the certificate is not verified).
    :raises RuntimeError: *proc* exited first, or *timeout* seconds passed.
    """
    import http.client
    import ssl

    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        conn = (
            http.client.HTTPSConnection(
                "127.0.0.1", port, timeout=2, context=ssl._create_unverified_context()
            )
            if tls
            else http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        )
        try:
            conn.request(method, path)
            rv = conn.getresponse()
            rv.read()
            if status is None or rv.status == status:
                return
            last = f"HTTP {rv.status}"
        except (OSError, http.client.HTTPException) as exc:
            last = repr(exc)
        finally:
            conn.close()
        time.sleep(0.05)
    raise RuntimeError(f"{method} {path} on port {port}: {last} after {timeout}s")


def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    *,
    timeout: float = 30.0,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request to 127.0.0.1:*port* on a fresh connection, closed
    afterwards, with exactly *headers* and *body* (no client library in
    between): the status, the response headers and the body.

    :param timeout: seconds for connecting and for each read.
    """
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        rv = conn.getresponse()
        return rv.status, dict(rv.headers), rv.read()
    finally:
        conn.close()


def stop_process(
    proc: subprocess.Popen[Any] | None, *, timeout: float = 10.0, kill: bool = False
) -> int | None:
    """Stop *proc* by its own pid and reap it: ``SIGTERM`` (or ``SIGKILL``
    at once with *kill*), then ``SIGKILL`` if it has not exited after
    *timeout* seconds. Safe on ``None`` and on a process that already
    exited. Never signals anything but *proc*.

    :returns: the exit status (negative: the signal), ``None`` for ``None``.
    """
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class ServerProcess:
    """A server subprocess on a loopback port: the base of
    :class:`GunicornServer` and :class:`RedisServer` (and of the benchmarks'
    uvicorn and nginx peers). Subclasses give :meth:`command`.

    :param port: the port; ``0`` picks a free one at the first :meth:`start`
        and keeps it for every later start (a restart reuses it).
    :param cpu: pin the process to this core with ``taskset`` (``None``: not
        pinned).
    :param nofile: run it under ``ulimit -n nofile`` (``None``: inherited).
    :param env: extra environment variables.
    :param cwd: its working directory.
    :param log_path: append its stdout and stderr there (``None``: discarded).
    """

    def __init__(
        self,
        *,
        port: int = 0,
        cpu: int | None = None,
        nofile: int | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.port = port
        self.cpu = cpu
        self.nofile = nofile
        self.env = dict(env or {})
        self.cwd = cwd
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The pid of the running process (``None`` when not running)."""
        return self.proc.pid if self.proc is not None else None

    def command(self) -> list[str]:
        """The server's command line (without ``taskset``/``ulimit``)."""
        raise NotImplementedError

    def full_command(self) -> list[str]:
        """:meth:`command` under ``taskset -c cpu`` and ``ulimit -n nofile``
        when those are set (``exec``: the pid stays the server's)."""
        cmd = self.command()
        if self.cpu is not None:
            cmd = ["taskset", "-c", str(self.cpu), *cmd]
        if self.nofile is not None:
            cmd = ["sh", "-c", 'ulimit -n "$0" && exec "$@"', str(self.nofile), *cmd]
        return cmd

    def wait_ready(self, timeout: float) -> None:
        """Wait until the server serves (default: its port accepts)."""
        wait_for_port(self.port, self.proc, timeout)

    def start(self, timeout: float = 20.0) -> Self:
        """Start the server and wait until it is ready.

        :raises RuntimeError: it exited or was not ready within *timeout*
            seconds (it is stopped; the message ends with its log's tail).
        """
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{type(self).__name__} on port {self.port} is already running")
        self.port = self.port or free_port()
        cmd = self.full_command()
        env = {**os.environ, **self.env}
        if self.log_path is not None:
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    cmd, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT
                )
        else:
            self.proc = subprocess.Popen(
                cmd, cwd=self.cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        try:
            self.wait_ready(timeout)
        except RuntimeError as exc:
            self.stop()
            tail = self.log_tail()
            where = f"\n--- {self.log_path} ---\n{tail}" if self.log_path else ""
            raise RuntimeError(f"{type(self).__name__}: {exc}: {cmd}{where}") from None
        return self

    def stop(self, timeout: float = 10.0, *, kill: bool = False) -> None:
        """Stop it by its pid (:func:`stop_process`); ``kill=True`` sends
        ``SIGKILL`` at once, as a crash would. :meth:`start` may follow."""
        proc, self.proc = self.proc, None
        stop_process(proc, timeout=timeout, kill=kill)

    def log_tail(self, lines: int = 30) -> str:
        """The last *lines* lines of its log (``""`` without one)."""
        if self.log_path is None:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class GunicornServer(ServerProcess):
    """A real gunicorn with the gevent worker, serving *app* (a gunicorn app
    spec such as ``"examples.demo:create_app()"``) on a loopback port.

    Use as a context manager, or :meth:`start` / :meth:`stop` (by its own
    pid; :meth:`start` again serves on the same port).

    :param workers: number of gevent worker processes.
    :param args: extra gunicorn command-line arguments.
    :param ready_path: when set, :meth:`start` waits until a worker answers
        ``GET ready_path`` (with *ready_status*, or any status when that is
        ``None``), not just until the master listens.
    :param timeout: gunicorn's worker ``--timeout`` in seconds.

    The other parameters are :class:`ServerProcess`'s.
    """

    def __init__(
        self,
        app: str,
        *,
        workers: int = 1,
        args: Iterable[str] = (),
        ready_path: str | None = None,
        ready_status: int | None = None,
        timeout: int = 120,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.workers = workers
        self.args = list(args)
        self.ready_path = ready_path
        self.ready_status = ready_status
        self.timeout = timeout

    @property
    def tls(self) -> bool:
        """Whether it serves HTTPS (``--certfile`` among its arguments)."""
        return any(a == "--certfile" or a.startswith("--certfile=") for a in self.args)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (``https://`` with :attr:`tls`)."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """``python -m gunicorn -k gevent ...`` for this server."""
        return [
            sys.executable, "-m", "gunicorn",
            "-k", "gevent",
            "-w", str(self.workers),
            "-b", f"127.0.0.1:{self.port}",
            "--worker-connections", "20000",
            "--graceful-timeout", "5",
            "--timeout", str(self.timeout),
            *_control_socket_off(),
            *self.args,
            self.app,
        ]  # fmt: skip

    def wait_ready(self, timeout: float) -> None:
        """Wait for the port, then (with *ready_path*) for a worker's answer."""
        deadline = time.monotonic() + timeout
        wait_for_port(self.port, self.proc, timeout)
        if self.ready_path is not None:
            wait_for_http(
                self.port,
                self.ready_path,
                proc=self.proc,
                status=self.ready_status,
                tls=self.tls,
                timeout=max(deadline - time.monotonic(), 1.0),
            )

    def worker_pids(self) -> list[int]:
        """The pids of the worker processes (children of the master)."""
        return [] if self.proc is None else child_pids(self.proc.pid)


def child_pids(pid: int) -> list[int]:
    """The child processes of *pid* (Linux ``/proc``; ``[]`` elsewhere)."""
    pids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return pids


def _control_socket_off() -> list[str]:
    """gunicorn 24+ opens a control socket at one fixed path per user; test
    servers running side by side must not share it."""
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:  # pragma: no cover
        return []
    names = {s.name for s in KNOWN_SETTINGS}
    return ["--no-control-socket"] if "control_socket_disable" in names else []


#: :class:`RedisServer` persistence modes: no persistence, ``appendonly yes``
#: with ``appendfsync everysec`` (Redis's recommended default: up to about a
#: second of acknowledged writes lost on a crash), and ``appendonly yes`` with
#: ``appendfsync always`` (every write on disk before the reply).
REDIS_PERSISTENCE = ("none", "everysec", "always")


class RedisServer(ServerProcess):
    """A ``redis-server`` of your own on a loopback port, for tests that
    must crash and restart Redis.

    ::

        rs = RedisServer(tmp_path / "redis", persistence="always").start()
        ...  # use rs.url
        rs.kill()      # SIGKILL: a crash, nothing flushed on the way out
        rs.restart()   # same port, same dir: reloads the append-only file
        rs.restart(kill=True)  # both at once
        rs.stop()      # SIGTERM, then SIGKILL after 10 s

    :param dir: its working directory (the append-only file lives there),
        created if missing; kept across :meth:`kill` and :meth:`restart`.
    :param persistence: one of :data:`REDIS_PERSISTENCE`: ``"none"`` (no
        RDB snapshots, no AOF), ``"everysec"`` or ``"always"`` (AOF with
        that ``appendfsync``). RDB snapshots are always off.
    :param maxclients: Redis ``maxclients`` (``None``: Redis's default).

    The other parameters are :class:`ServerProcess`'s (``port=0`` picks a
    free port once; every restart reuses it).
    """

    def __init__(
        self,
        dir: str | os.PathLike[str],
        *,
        persistence: str = "none",
        maxclients: int | None = None,
        **kwargs: Any,
    ) -> None:
        if persistence not in REDIS_PERSISTENCE:
            raise ValueError(f"persistence must be one of {REDIS_PERSISTENCE}, not {persistence!r}")
        super().__init__(**kwargs)
        self.dir = os.fspath(dir)
        self.persistence = persistence
        self.maxclients = maxclients

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        """``redis-server`` with this server's port, dir and persistence."""
        aof = self.persistence != "none"
        cmd = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", self.dir, "--save", "",
            "--appendonly", "yes" if aof else "no",
            "--appendfsync", self.persistence if aof else "everysec",
        ]  # fmt: skip
        if self.maxclients is not None:
            cmd += ["--maxclients", str(self.maxclients)]
        return cmd

    def start(self, timeout: float = 20.0) -> Self:
        """Create :attr:`dir` if needed, start Redis, wait for ``PONG``."""
        os.makedirs(self.dir, exist_ok=True)
        return super().start(timeout)

    def wait_ready(self, timeout: float) -> None:
        """Wait until Redis answers ``PING`` with ``PONG`` (after loading
        its append-only file, which may take a moment after a crash)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    answer = s.recv(64)
                if answer.startswith(b"+PONG"):
                    return
                last = answer.decode("ascii", "replace").strip()  # -LOADING while loading
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port}: {last} after {timeout}s")

    def kill(self) -> None:
        """``SIGKILL`` it, as a crash would (no shutdown save, no final
        fsync), and reap it. :meth:`restart` or :meth:`start` may follow."""
        self.stop(kill=True)

    def restart(self, timeout: float = 20.0, *, kill: bool = False) -> Self:
        """Stop it if it runs (``SIGTERM``; ``SIGKILL`` with *kill*, as a
        crash would), then start it again on the same port and dir."""
        self.stop(kill=kill)
        return self.start(timeout)


def iter_sse(response: Any) -> Iterator[sse_wire.Event]:
    """Iterate the events of a Flask test-client response as they arrive."""
    parser = sse_wire.EventParser()
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

    tus = {"Tus-Resumable": TUS_VERSION}
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
