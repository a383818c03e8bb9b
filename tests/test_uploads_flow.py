"""The upload core's data flow (issue 14, the redesign): one request flows
one way, view → body into staging (no session lock) → one short locked
transaction (load once, check, commit once) → signals → response. These
tests count what one request does to the store, and check that the package
has no import cycles."""

from __future__ import annotations

import ast
import collections
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

import flask_streaming
from flask_streaming import Streaming
from flask_streaming.testing import http_request
from flask_streaming.uploads import get_upload_service
from flask_streaming.uploads.locks import FileLock
from flask_streaming.uploads.storage import FileStorage

T = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"


class Counts(collections.Counter[str]):
    pass


def _counting(counts: Counts, name: str, fn: Any) -> Any:
    def counted(*args: Any, **kwargs: Any) -> Any:
        counts[name] += 1
        return fn(*args, **kwargs)

    return counted


@pytest.fixture
def counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Counts]]:
    """A test client and a counter of record reads and writes and session
    lock acquisitions."""
    app = Flask("flow", instance_path=str(tmp_path / "instance"))
    app.config["TESTING"] = True
    Streaming(app)
    counts = Counts()
    load, save, acquire = FileStorage.load, FileStorage.save, FileLock.acquire

    def counted_load(self: FileStorage, session_id: str) -> Any:
        counts["record reads"] += 1
        return load(self, session_id)

    def counted_save(self: FileStorage, session: Any) -> None:
        counts["record writes"] += 1
        save(self, session)

    def counted_acquire(self: FileLock, timeout: float | None = None) -> bool:
        counts["lock " + Path(self.path).name] += 1
        return acquire(self, timeout)

    loads = json.loads

    def counted_loads(*args: Any, **kwargs: Any) -> Any:
        counts["json reads"] += 1
        return loads(*args, **kwargs)

    real_open, real_replace = os.open, os.replace

    def counted_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT and not os.path.lexists(path):
            counts["files created"] += 1  # the costliest call (ext4: ~0.2 ms here)
        return real_open(path, flags, *args, **kwargs)

    def counted_replace(*args: Any, **kwargs: Any) -> None:
        counts["renames"] += 1
        real_replace(*args, **kwargs)

    for name in ("mkdir", "listdir", "unlink"):
        monkeypatch.setattr(os, name, _counting(counts, name, getattr(os, name)))
    monkeypatch.setattr(os, "open", counted_open)
    monkeypatch.setattr(os, "replace", counted_replace)
    monkeypatch.setattr(FileStorage, "load", counted_load)
    monkeypatch.setattr(FileStorage, "save", counted_save)
    monkeypatch.setattr(FileLock, "acquire", counted_acquire)
    monkeypatch.setattr("flask_streaming.uploads.storage.json.loads", counted_loads)
    yield app.test_client(), counts


def test_one_tus_patch_reads_the_record_twice_and_locks_once(counted: tuple[Any, Counts]) -> None:
    c, counts = counted
    url = c.post("/streaming/tus/", headers={**T, "Upload-Defer-Length": "1"}).headers["Location"]
    h = {**T, "Content-Type": OCTETS}
    for offset, extra in ((0, {}), (5, {"Upload-Length": "15"}), (10, {})):
        counts.clear()
        rv = c.patch(url, data=b"x" * 5, headers={**h, "Upload-Offset": str(offset), **extra})
        assert rv.status_code == 204
        # before the redesign: 3 record reads (5 with Upload-Length), 2 (3)
        # session locks, 1 (2) record writes
        assert counts["record reads"] == 2, counts  # authorize + the transaction
        assert counts["json reads"] == 2, counts
        assert counts["lock lock"] == 1 and counts["lock append.lock"] == 1, counts
        assert counts["record writes"] == 1, counts
        # after the first (which makes the lock files and acks.log): the
        # record's temporary file only; before: also one file per post-commit
        # acknowledgement (mkdir + create, then listdir + unlink by the next
        # commit); now a line appended to acks.log
        if offset:
            assert counts["files created"] == 1 and counts["renames"] == 1, counts
            assert counts["mkdir"] == counts["listdir"] == counts["unlink"] == 0, counts


def test_one_native_segment_reads_the_record_twice_and_locks_once(
    counted: tuple[Any, Counts],
) -> None:
    c, counts = counted
    sid = c.get("/streaming/uploads").json["streamId"]
    for index, done in ((0, "false"), (1, "false"), (2, "true")):  # the last one completes too
        counts.clear()
        h = {"X-Stream-Id": sid, "X-Stream-Segment": str(index), "X-Stream-Done": done}
        assert c.post("/streaming/uploads", data=b"abc", headers=h).status_code == 200
        # before the redesign a segment with done took 2 transactions, 4 record reads
        assert counts["record reads"] == 2, counts
        assert counts["lock lock"] == 1, counts
        assert counts["record writes"] == 1, counts
        if index == 1:  # the segment's record and the session record (before: 3)
            assert counts["files created"] == 2 and counts["renames"] == 2, counts
            assert counts["mkdir"] == counts["listdir"] == counts["unlink"] == 0, counts


def test_the_transaction_loads_once_and_commits_once(tmp_path: Path) -> None:
    app = Flask("flow", instance_path=str(tmp_path / "instance"))
    Streaming(app)
    with app.test_request_context():
        service = get_upload_service(app)
        session = service.create(protocol="tus", length=3)
        with service.transaction(session.id) as tx:
            tx.session.offset = 2
        assert service.get(session.id).offset == 0, "no commit: nothing saved"
        with pytest.raises(RuntimeError), service.transaction(session.id) as tx:
            tx.session.offset = 2
            raise RuntimeError
        assert service.get(session.id).offset == 0
        with service.transaction(session.id) as tx:
            tx.session.offset = 2
            tx.commit()
        assert service.get(session.id).offset == 2


# -- no import cycles -------------------------------------------------------------
PACKAGE = Path(flask_streaming.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> set[str]:
    """Modules of the package *module* imports: at run time, in functions,
    and for type checking alike (a cycle hidden behind ``TYPE_CHECKING`` is
    still a cycle of the design)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(max(node.level - 1, 0)):
                base = base.rpartition(".")[0]
            target = (
                (base + "." + node.module if node.module else base)
                if node.level
                else (node.module or "")
            )
            if not target.startswith("flask_streaming"):
                continue
            for alias in node.names:  # "from . import x" imports the submodule x
                sub = f"{target}.{alias.name}"
                out.add(
                    sub if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists() else target
                )
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("flask_streaming")}
    out.discard(module)
    return out


def test_no_import_cycles_in_the_package() -> None:
    graph = {_module(p): _imports(p, _module(p)) for p in PACKAGE.rglob("*.py")}
    # a package's __init__ re-exporting its submodules is not a cycle of theirs
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                cycles.append([*stack[stack.index(t) :], t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    upload_cycles = [c for c in cycles if any(".uploads" in m for m in c)]
    assert upload_cycles == [], upload_cycles


def test_protocol_modules_use_no_private_names_of_the_service() -> None:
    for name in ("native.py", "ranges.py", "tus_concat.py", "tus.py", "views.py", "delivery.py"):
        tree = ast.parse((PACKAGE / "uploads" / name).read_text())
        private = [
            ast.unparse(n)
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute)
            and n.attr.startswith("_")
            and not n.attr.startswith("__")
            and isinstance(n.value, ast.Name)
            and n.value.id in ("service", "self.service")
        ]
        assert private == [], (name, private)


# -- a stalled body holds no session lock (live) -----------------------------------
@pytest.mark.live
def test_a_stalled_body_does_not_block_the_session(live_server: Any, tmp_path: Path) -> None:
    import http.client
    import socket
    import time

    config = json.dumps({"STREAMING_UPLOAD_LOCK_TIMEOUT": 2, "STREAMING_BODY_TIMEOUT": 60})
    server = live_server(
        "tests.apps.tus_app:create_app()", workers=1, env={"TUS_APP_CONFIG": config}
    )

    def call(method: str, path: str, body: bytes = b"", **headers: str) -> tuple[int, Any]:
        status, _, data = http_request(server.port, method, path, body, headers)
        return status, data

    def stall(request_head: str) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(request_head.encode() + b"x" * 100)  # 100 of the announced bytes
        return s

    status, body = call("GET", "/streaming/uploads")
    sid = json.loads(body)["streamId"]
    native = stall(
        f"POST /streaming/uploads HTTP/1.1\r\nHost: x\r\nX-Stream-Id: {sid}\r\n"
        "X-Stream-Segment: 1\r\nContent-Length: 100000\r\n\r\n"
    )
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", "/streaming/tus/", headers={**T, "Upload-Length": "100000"})
    rv = conn.getresponse()
    rv.read()
    path = rv.getheader("Location") or ""
    path = "/" + path.split("/", 3)[3] if "://" in path else path
    conn.close()
    tus = stall(
        f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
        f"Upload-Offset: 0\r\nContent-Type: {OCTETS}\r\nContent-Length: 100000\r\n\r\n"
    )
    try:
        time.sleep(0.5)  # both bodies are being received, and stall
        h = {"X-Stream-Id": sid, "X-Stream-Segment": "0", "X-Stream-Done": "false"}
        status, body = call("POST", "/streaming/uploads", b"first", **h)
        assert status == 200, body  # its commit took the session lock: free
        status, body = call("DELETE", path, **T)  # a transaction on the tus upload
        assert status == 204, body
    finally:
        native.close()
        tus.close()
