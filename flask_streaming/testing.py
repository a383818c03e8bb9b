"""Helpers for testing apps that use flask_streaming.

* :class:`EventParser` parses an event stream exactly as the WHATWG spec's
  "interpreting an event stream" algorithm does (BOM stripped, CR, LF and
  CRLF line ends, comments ignored, ``retry`` only when all digits, ``id``
  with NUL ignored, an event without data not dispatched).
* :class:`GunicornServer` serves an app under a real gunicorn with the gevent
  worker on a free loopback port, for live tests.
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
                out.append(Event(data, self._event or "message", self.last_event_id, self.retry))
            self._data = []
            self._event = ""
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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}: {cmd}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gunicorn did not listen on {self.port} within {timeout}s")

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
