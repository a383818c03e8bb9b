"""Benchmark: a segmented upload (8 MiB segments) against a raw streaming
PUT-to-disk view, on the same gunicorn gevent server, same client, same run.

``run(quick)`` returns one row per measurement plus a ratio row::

    python -c "from benchmarks.uploads import run; print(run(quick=True))"

The server is ``benchmarks.uploads:create_app()`` under
:class:`~flask_streaming.testing.GunicornServer` with one gevent worker,
pinned to the server core (``taskset``; the runner pins itself to the
client core, and a child would inherit that core), restarted for each
measurement so that the worker's peak RSS (``VmHWM``)
belongs to that measurement alone, after an ``os.sync()`` so that no
measurement pays for the previous one's dirty pages (page-cache writeback
throttling dominates both views: ``os.write`` is most of the server's time).
The client is ``http.client`` sending 1 MiB slices of one random 8 MiB
buffer on one keep-alive connection. After each measurement (not timed) the
stored bytes are checked by sha256, not only by size.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import tempfile
import time
from typing import Any

from flask import Flask, request

from flask_streaming import Streaming
from flask_streaming.testing import GunicornServer

MiB = 1 << 20
SEGMENT = 8 * MiB
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def create_app() -> Flask:
    """Native uploads (no hooks) and ``PUT /raw``: 1 MiB reads to a file."""
    app = Flask(__name__, instance_path=os.environ["BENCH_UPLOAD_DIR"])
    Streaming(app, max_upload_size=None, max_segment_size=64 * MiB)

    @app.put("/raw")
    def raw() -> dict[str, int]:
        return save_body(os.path.join(app.instance_path, "raw.bin"), "wb")

    @app.put("/raw-append")
    def raw_append() -> dict[str, int]:
        return save_body(os.path.join(app.instance_path, "raw-append.bin"), "ab")

    return app


def save_body(path: str, mode: str) -> dict[str, int]:
    """The raw baseline: the request body to *path* in 1 MiB reads."""
    size = 0
    with open(path, mode) as f:
        while block := request.stream.read(MiB):
            f.write(block)
            size += len(block)
    return {"size": size}


def kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def cpus_of(pid: int) -> str:
    """The cores *pid* may run on (``Cpus_allowed_list``), e.g. ``"0"``."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Cpus_allowed_list:"):
                return line.split()[1]
    return "?"


def _send(conn: http.client.HTTPConnection, buf: memoryview, size: int) -> None:
    sent = 0
    while sent < size:
        n = min(MiB, size - sent)
        start = sent % len(buf)
        conn.send(buf[start : start + n])
        sent += n


def _request(
    conn: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str],
    buf: memoryview, size: int,
) -> dict[str, Any]:  # fmt: skip
    conn.putrequest(method, path)
    for k, v in {**headers, "Content-Length": str(size)}.items():
        conn.putheader(k, v)
    conn.endheaders()
    _send(conn, buf, size)
    rv = conn.getresponse()
    body: dict[str, Any] = json.loads(rv.read())
    if rv.status >= 300:
        raise RuntimeError(f"{method} {path}: {rv.status} {body}")
    return body


def _raw(conn: http.client.HTTPConnection, buf: memoryview, total: int) -> str:
    """One PUT of *total* bytes; the stored file (relative to the folder)."""
    assert _request(conn, "PUT", "/raw", {}, buf, total)["size"] == total
    return "raw.bin"


def _raw_segments(conn: http.client.HTTPConnection, buf: memoryview, total: int) -> str:
    """8 MiB PUTs appended to one file: the same bytes on disk as the
    segmented upload (a baseline that overwrote one 8 MiB file would never
    hold more than 8 MiB of dirty pages, and measure the page cache, not
    the upload path)."""
    for _ in range(total // SEGMENT):
        assert _request(conn, "PUT", "/raw-append", {}, buf, SEGMENT)["size"] == SEGMENT
    return "raw-append.bin"


def _segmented(conn: http.client.HTTPConnection, buf: memoryview, total: int) -> str:
    conn.request("GET", "/streaming/uploads")
    sid = json.loads(conn.getresponse().read())["streamId"]
    n = total // SEGMENT
    for i in range(n):
        headers = {"X-Stream-Id": sid, "X-Stream-Segment": str(i)}
        _request(conn, "POST", "/streaming/uploads", headers, buf, SEGMENT)
    done = {"X-Stream-Id": sid, "X-Stream-Segment": str(n), "X-Stream-Done": "true"}
    final = _request(conn, "POST", "/streaming/uploads", done, buf, 0)
    assert final["size"] == total and final["segments"] == n, final
    return os.path.join("streaming-uploads", sid, "data")


def _expected_sha256(buf: memoryview, size: int) -> str:
    """The sha256 of *size* bytes of *buf* repeated (what the client sent)."""
    h = hashlib.sha256()
    for start in range(0, size, len(buf)):
        h.update(buf[: min(len(buf), size - start)])
    return h.hexdigest()


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(MiB):
            h.update(block)
    return h.hexdigest()


def _measure(
    name: str, fn: Any, total: int, buf: memoryview, cpu: int | None = None
) -> dict[str, Any]:
    folder = tempfile.mkdtemp(prefix="bench-uploads-")
    server = GunicornServer(
        "benchmarks.uploads:create_app()",
        workers=1,
        cpu=cpu,
        env={"BENCH_UPLOAD_DIR": folder, "PYTHONPATH": ROOT},
        cwd=ROOT,
    )
    os.sync()  # start with no dirty pages of the previous measurement
    try:
        server.start()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        conn.request("GET", "/streaming/")  # warm the worker (imports, first request)
        conn.getresponse().read()
        (pid,) = server.worker_pids()
        base = kib(pid, "VmRSS")
        cpus = cpus_of(pid)
        t = time.perf_counter()
        stored = fn(conn, buf, total)
        seconds = time.perf_counter() - t
        peak = kib(pid, "VmHWM")
        conn.close()
        result = row("uploads", name, total, seconds, base, peak)
        result["server_cpus"] = cpus
        result["check"] = file_sha256(os.path.join(folder, stored)) == _expected_sha256(buf, total)
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return result


def row(
    scenario: str, name: str, total: int, seconds: float, base: int, peak: int
) -> dict[str, Any]:
    """One measurement: *total* bytes in *seconds*; RSS (KiB) before and at peak."""
    return {
        "scenario": scenario,
        "name": name,
        "bytes": total,
        "seconds": round(seconds, 3),
        "mb_s": round(total / seconds / 1e6, 1),
        "peak_rss_mib": round(peak / 1024, 1),
        "rss_growth_mib": round((peak - base) / 1024, 1),
    }


#: (name, client) pairs measured. The raw view in 8 MiB requests isolates
#: the per-byte cost from gunicorn's per-request one (a single 1 GiB body is
#: slower to read than 128 bodies of 8 MiB on gunicorn 23-27).
SCENARIOS = (
    ("raw PUT to disk", _raw),
    ("raw PUT appending, 8 MiB requests", _raw_segments),
    ("segmented 8 MiB", _segmented),
)


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run by throughput (the lower middle one for an even
    count), with every run's MB/s in ``runs`` and every check and-ed."""
    ranked = sorted(rows, key=lambda r: r["mb_s"])
    mid = dict(ranked[(len(ranked) - 1) // 2])
    mid["runs"] = [r["mb_s"] for r in rows]
    if any("check" in r for r in rows):
        mid["check"] = all(r.get("check", False) for r in rows)
    mid["rss_growth_mib"] = max(r["rss_growth_mib"] for r in rows)  # the worst run's
    mid["server_cpus"] = ",".join(sorted({r.get("server_cpus", "?") for r in rows}))
    return mid


def run(quick: bool = False, repeat: int = 3, cpu: int | None = None) -> list[dict[str, Any]]:
    """Measure the three uploads (1 GiB; *quick*: 256 MiB), each *repeat*
    times, alternating the order; rows are medians. *cpu*: the server core."""
    total = (256 if quick else 1024) * MiB
    buf = memoryview(os.urandom(SEGMENT))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in SCENARIOS}
    for r in range(repeat):
        for name, fn in SCENARIOS[:: 1 if r % 2 == 0 else -1]:  # alternate the order
            runs[name].append(_measure(name, fn, total, buf, cpu))
    raw, many, seg = (median_row(runs[name]) for name, _ in SCENARIOS)
    faster = max(raw, many, key=lambda r: r["mb_s"])
    ratios = [
        {
            "scenario": "uploads",
            "name": f"segmented / {faster['name']} (the faster raw baseline)",
            "ratio": round(seg["mb_s"] / faster["mb_s"], 3),
            "aim": ">= 1.2x, RSS growth <= 64 MiB",
        }
    ]
    return [raw, many, seg, *ratios]


if __name__ == "__main__":
    import sys

    for measured in run(quick="--quick" in sys.argv, repeat=1 if "--quick" in sys.argv else 3):
        print(measured)
