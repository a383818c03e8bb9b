"""What the reliability scenarios share: the result row, servers, raw HTTP,
an SSE subscriber that resumes by ``Last-Event-ID``, an upload client that
resumes after any failure."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import json
import resource
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask_streaming.sse_wire import EventParser
from flask_streaming.testing import GunicornServer, http_request

ROOT = Path(__file__).resolve().parent.parent.parent
APP = "tests.apps.reliability_app:create_app()"
UPLOADS = "/streaming/uploads"


@dataclasses.dataclass
class Result:
    """One row of the reliability table."""

    scenario: str
    runs: int = 0
    passed: int = 0
    lost_bytes: int = 0
    lost_events: int = 0
    errors: Counter[str] = dataclasses.field(default_factory=Counter)
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.runs > 0
            and self.passed == self.runs
            and not self.lost_bytes
            and (not self.lost_events)
        )

    def errors_text(self) -> str:
        return ", ".join(f"{k} x{v}" for k, v in sorted(self.errors.items())) or "-"


def format_table(results: list[Result]) -> str:
    head = ("scenario", "runs", "passed", "lost bytes/events", "errors seen", "s", "figures")
    rows = [
        (
            r.scenario,
            str(r.runs),
            str(r.passed),
            f"{r.lost_bytes}/{r.lost_events}",
            r.errors_text(),
            f"{r.seconds:.1f}",
            "; ".join(r.notes),
        )
        for r in results
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit (children,
    such as gunicorn, inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@contextlib.contextmanager
def gunicorn(
    workdir: Path, *, workers: int = 1, env: dict[str, str] | None = None, port: int = 0
) -> Iterator[GunicornServer]:
    """A reliability-app server; stopped by its pid at the end."""
    workdir.mkdir(parents=True, exist_ok=True)
    full_env = {"PYTHONPATH": str(ROOT), "INSTANCE_PATH": str(workdir / "instance")}
    full_env.update(env or {})
    server = GunicornServer(
        APP, workers=workers, env=full_env, cwd=str(ROOT), log_path=str(workdir / "server.log")
    )
    server.port = port
    server.start()
    try:
        yield server
    finally:
        server.stop()


def request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, Any, dict[str, str]]:
    """One request on a fresh connection: status, JSON (or raw bytes), headers."""
    status, got, data = http_request(port, method, path, body, headers, timeout=timeout)
    try:
        parsed: Any = json.loads(data) if data else None
    except ValueError:
        parsed = data
    return status, parsed, {k.lower(): v for k, v in got.items()}


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return True
        time.sleep(interval)
    return False


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


class ResumingSubscriber(threading.Thread):
    """Subscribes to ``/streaming/events/<channel>`` over a raw socket and,
    whenever the stream ends or the server is away, reconnects with the
    ``Last-Event-ID`` it last saw. Records every event (id, data)."""

    def __init__(self, port: int, channel: str, *, deadline: float = 120.0) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.channel = channel
        self.events: list[tuple[int, str]] = []
        self.resets = 0
        self.connects = 0
        self.opened = threading.Event()
        self.last_id = ""
        self._halt = threading.Event()
        self._deadline = time.monotonic() + deadline
        self._sock: socket.socket | None = None

    def run(self) -> None:
        while not self._halt.is_set() and time.monotonic() < self._deadline:
            with contextlib.suppress(OSError):
                self._once()
            if not self._halt.is_set():
                time.sleep(0.2)

    def _once(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self._sock = sock
        try:
            head = f"GET /streaming/events/{self.channel} HTTP/1.1\r\nHost: x\r\n"
            if self.last_id:
                head += f"Last-Event-ID: {self.last_id}\r\n"
            sock.sendall((head + "\r\n").encode())
            sock.settimeout(1.0)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
            status = buf.split(b" ", 2)[1]
            if status != b"200":
                time.sleep(0.3)
                return
            self.connects += 1
            self.opened.set()
            rest = _dechunker(buf.split(b"\r\n\r\n", 1)[1])
            parser = EventParser()
            data = rest.send(None)
            while not self._halt.is_set():
                for event in parser.feed(data):
                    if event.event == "stream-reset":
                        self.resets += 1
                    elif event.event == "message":
                        self.events.append((int(event.id.rsplit("-", 1)[-1]), event.data))
                        self.last_id = event.id
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    data = b""
                    continue
                if not chunk:
                    return
                data = rest.send(chunk)
        finally:
            self._sock = None
            sock.close()

    def ids(self) -> list[int]:
        return [i for i, _ in self.events]

    def stop(self) -> None:
        self._halt.set()
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.join(5)


def _dechunker(initial: bytes) -> Any:
    """A coroutine: send raw bytes of a chunked body, get the payload bytes."""

    def gen() -> Any:
        buf = initial
        out = b""
        while True:
            while True:
                line_end = buf.find(b"\r\n")
                if line_end < 0:
                    break
                size = int(buf[:line_end].split(b";")[0] or b"0", 16)
                if len(buf) < line_end + 2 + size + 2:
                    break
                out += buf[line_end + 2 : line_end + 2 + size]
                buf = buf[line_end + 2 + size + 2 :]
            more = yield out
            out = b""
            buf += more

    g = gen()
    return g


class Publisher(threading.Thread):
    """Publishes numbered events over HTTP every *interval* seconds; keeps
    the ids of those the server acknowledged (published successfully)."""

    def __init__(self, port: int, channel: str, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.channel = channel
        self.interval = interval
        self.ok: list[int] = []
        self.failed = 0
        self.errors: Counter[str] = Counter()
        self._halt = threading.Event()
        self.n = 0

    def run(self) -> None:
        while not self._halt.is_set():
            self.n += 1
            try:
                status, body, _ = request(
                    self.port, "POST", f"/publish/{self.channel}?data=e{self.n}", timeout=5
                )
                if status == 200:
                    self.ok.append(int(body["id"].rsplit("-", 1)[-1]))
                else:
                    self.failed += 1
                    self.errors[f"publish {status}"] += 1
            except OSError as exc:
                self.failed += 1
                self.errors[f"publish {type(exc).__name__}"] += 1
            time.sleep(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


class Uploader:
    """A native segmented upload that survives anything: on any failure it
    asks the session's status and resends from the first missing segment
    (identical retries are acknowledged as duplicates)."""

    def __init__(self, port: int, data: bytes, segment_size: int, *, pace: float = 0.0) -> None:
        self.port = port
        self.data = data
        self.segments = [data[i : i + segment_size] for i in range(0, len(data), segment_size)]
        self.pace = pace
        self.sid = ""
        self.errors: Counter[str] = Counter()
        self.final: dict[str, Any] | None = None

    def _call(self, *args: Any, **kwargs: Any) -> tuple[int, Any, dict[str, str]]:
        try:
            return request(self.port, *args, **kwargs)
        except (OSError, http.client.HTTPException) as exc:
            self.errors[type(exc).__name__] += 1
            return 0, None, {}

    def create(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            status, body, _ = self._call(
                "POST", UPLOADS, json.dumps({"size": len(self.data)}).encode(),
                {"Content-Type": "application/json"},
            )  # fmt: skip
            if status == 201:
                self.sid = body["streamId"]
                return
            if status:
                self.errors[f"create {status}"] += 1
            time.sleep(0.1)
        raise TimeoutError("could not open a session")

    def send(self, index: int, *, done: bool = False) -> int:
        headers = {
            "X-Stream-Id": self.sid,
            "X-Stream-Segment": str(index),
            "X-Stream-Done": "true" if done else "false",
            "Content-Type": "application/octet-stream",
        }
        body = b"" if index >= len(self.segments) else self.segments[index]
        status, rv, _ = self._call("POST", UPLOADS, body, headers)
        if status and status != 200:
            self.errors[f"segment {status}"] += 1
        if status == 200 and done:
            self.final = rv
        if self.pace:
            time.sleep(self.pace)
        return status

    def run(self, timeout: float = 60.0) -> bool:
        """Upload (resuming as needed) and complete; ``True`` when done."""
        deadline = time.monotonic() + timeout
        start = 0
        if not self.sid:
            self.create(deadline)
        else:
            status, body, _ = self._call("GET", f"{UPLOADS}/{self.sid}")
            start = body["contiguous"] if status == 200 else 0
        while time.monotonic() < deadline:
            i = start
            while i < len(self.segments) and self.send(i) == 200:
                i += 1
            if i == len(self.segments) and self.send(len(self.segments), done=True) == 200:
                return True
            time.sleep(0.1)
            status, body, _ = self._call("GET", f"{UPLOADS}/{self.sid}")
            start = body["contiguous"] if status == 200 else start
        return False

    def verified(self, folder: Path | None = None) -> bool:
        """The final hook's sha256 (and the stored file's, when *folder* is
        the upload store) equal the source's."""
        want = sha256(self.data)
        if self.final is None or self.final.get("sha256") != want:
            return False
        return folder is None or file_sha256(folder / self.sid / "data") == want
