"""Benchmark: the per-request cost of uploads, with small bodies. Requests
per second for *n* 64 KiB native segments, *n* 64 KiB tus ``PATCH`` es and
*n* 64 KiB raw appending ``PUT`` s (the baseline: :func:`benchmarks.uploads.save_body`),
same server, same client, same run::

    python -m benchmarks.small_requests [--n 1000] [--repeat 3] [--size 65536]

With 64 KiB bodies the bytes cost little, so the rate is the per-request
bookkeeping: the session record's reads and writes, the locks, the segment
record, the post-commit marker and its acknowledgement. The 1 GiB scenarios
of ``run.py`` (``uploads``, ``tus``) measure the bytes.

* The server is :func:`benchmarks.uploads.create_app` under one gevent
  worker (:class:`~flask_streaming.testing.GunicornServer`), pinned to the
  server core with ``taskset``; this process (the client, ``http.client`` on
  one keep-alive connection, never monkey-patched) pins itself to the
  client core. A fresh server and folder per round.
* Each round runs the three kinds in turn (the order reversed every other
  round), each after a warm-up of 50 requests; rates are medians of
  *repeat* rounds and every round's figure is printed. Compare the ratios,
  not the rates, across runs: other processes share the machine.
* After each kind the stored bytes are checked (size and sha256).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

from benchmarks.harness import cpu_plan
from benchmarks.uploads import ROOT
from flask_streaming.testing import GunicornServer

TUS = {"Tus-Resumable": "1.0.0"}
Kind = Callable[[http.client.HTTPConnection, bytes, int], str]


def _request(
    conn: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str], body: bytes
) -> http.client.HTTPResponse:
    conn.putrequest(method, path)
    for k, v in {**headers, "Content-Length": str(len(body))}.items():
        conn.putheader(k, v)
    conn.endheaders()
    if body:
        conn.send(body)
    rv = conn.getresponse()
    data = rv.read()
    if rv.status >= 300:
        raise RuntimeError(f"{method} {path}: {rv.status} {data[:300]!r}")
    return rv


def raw(conn: http.client.HTTPConnection, body: bytes, n: int) -> str:
    """*n* ``PUT /raw-append``; the file they went to."""
    for _ in range(n):
        _request(conn, "PUT", "/raw-append", {}, body)
    return "raw-append.bin"


def native(conn: http.client.HTTPConnection, body: bytes, n: int) -> str:
    """A session and *n* segments (not completed); its data file."""
    conn.request("GET", "/streaming/uploads")
    sid = json.loads(conn.getresponse().read())["streamId"]
    for i in range(n):
        headers = {"X-Stream-Id": sid, "X-Stream-Segment": str(i)}
        _request(conn, "POST", "/streaming/uploads", headers, body)
    return os.path.join("streaming-uploads", sid, "data")


def tus(conn: http.client.HTTPConnection, body: bytes, n: int) -> str:
    """A tus upload of *n* bodies' length and *n* ``PATCH`` es; its data file."""
    created = _request(
        conn, "POST", "/streaming/tus/", {**TUS, "Upload-Length": str(n * len(body))}, b""
    )
    location = created.getheader("Location") or ""
    path = "/" + location.split("://", 1)[-1].split("/", 1)[1] if "://" in location else location
    headers = {**TUS, "Content-Type": "application/offset+octet-stream"}
    for i in range(n):
        rv = _request(conn, "PATCH", path, {**headers, "Upload-Offset": str(i * len(body))}, body)
        assert rv.getheader("Upload-Offset") == str((i + 1) * len(body))
    return os.path.join("streaming-uploads", path.rsplit("/", 1)[1], "data")


KINDS: dict[str, Kind] = {
    "raw appending PUT": raw,
    "native segments": native,
    "tus PATCH": tus,
}


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def run(n: int = 1000, repeat: int = 3, size: int = 64 * 1024) -> dict[str, list[float]]:
    """Requests/s of each kind, one list of *repeat* rounds per kind."""
    server_cpu, client_cpu = cpu_plan()
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    body = os.urandom(size)
    expected = hashlib.sha256(body * n).hexdigest()
    rates: dict[str, list[float]] = {name: [] for name in KINDS}
    for r in range(repeat):
        folder = tempfile.mkdtemp(prefix="bench-small-")
        server = GunicornServer(
            "benchmarks.uploads:create_app()",
            workers=1,
            cpu=server_cpu,
            env={"BENCH_UPLOAD_DIR": folder, "PYTHONPATH": ROOT},
            cwd=ROOT,
        )
        try:
            server.start()
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            conn.request("GET", "/streaming/")
            conn.getresponse().read()
            names = list(KINDS) if r % 2 == 0 else list(KINDS)[::-1]
            for name in names:
                KINDS[name](conn, body, 50)  # warm-up (its own file, session or upload)
                if name == "raw appending PUT":
                    os.unlink(os.path.join(folder, "raw-append.bin"))
                t = time.perf_counter()
                stored = KINDS[name](conn, body, n)
                rates[name].append(n / (time.perf_counter() - t))
                if _sha256(os.path.join(folder, stored)) != expected:
                    raise RuntimeError(f"{name}: the stored bytes differ from those sent")
            conn.close()
        finally:
            server.stop()
            shutil.rmtree(folder, ignore_errors=True)
    return rates


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.small_requests")
    p.add_argument("--n", type=int, default=1000, help="timed requests per kind and round")
    p.add_argument("--repeat", type=int, default=3, help="rounds (the median counts)")
    p.add_argument("--size", type=int, default=64 * 1024, help="bytes per request body")
    args = p.parse_args()
    rates = run(args.n, args.repeat, args.size)
    medians = {name: statistics.median(v) for name, v in rates.items()}
    print(f"{args.n} requests of {args.size} bytes per kind, median of {args.repeat} round(s)")
    for name, v in rates.items():
        print(f"  {name:20} {medians[name]:8.0f} req/s   rounds {[round(x) for x in v]}")
    base = medians["raw appending PUT"]
    for name in ("native segments", "tus PATCH"):
        print(f"  {name} / raw appending PUT: {medians[name] / base:.2f}x")


if __name__ == "__main__":
    main()
