"""Benchmark: the per-request cost of uploads, with small bodies: 64 KiB
native segments, tus ``PATCH`` es and raw appending ``PUT`` s (the baseline,
:func:`benchmarks.uploads.save_body`), same server, same client, same run::

    python -m benchmarks.small_requests [--n 1000] [--repeat 3] [--size 65536]
                                        [--root DIR] [--compare DIR]

With 64 KiB bodies the bytes cost little, so what is measured is the
bookkeeping of a request: the session record's reads and writes, the locks,
the segment record, the post-commit marker and its acknowledgement. The
1 GiB scenarios of ``run.py`` (``uploads``, ``tus``) measure the bytes.

* The server is :func:`benchmarks.uploads.create_app` under one gevent
  worker (:class:`~flask_streaming.testing.GunicornServer`), pinned to the
  server core with ``taskset``; this process (the client, ``http.client`` on
  one keep-alive connection, never monkey-patched) pins itself to the
  client core. A fresh server and folder per round. ``--root``: run the
  server from another checkout; ``--compare``: also serve a second
  checkout (e.g. ``git archive main`` unpacked) at the same time, the two
  taking turns batch by batch, and print the ratios of the two.
* Within a round the three kinds take turns in batches of 50 requests (the
  order reversed every other round), so that load from other processes on
  a shared machine hits all three alike. Two figures per kind: requests/s
  (wall clock) and the worker's CPU µs per request (``/proc/<pid>/stat``,
  steadier than the wall clock when the machine is shared). Medians of
  *repeat* rounds; every round's figures are printed.
* After each round the stored bytes of every kind are checked by sha256.
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

from benchmarks.harness import cpu_plan
from benchmarks.uploads import ROOT
from flask_streaming.testing import GunicornServer

TUS = {"Tus-Resumable": "1.0.0"}


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time *pid* has used (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Kinds:
    """The three kinds on one server: an appending file, a native session
    and a tus upload each, fed in batches."""

    def __init__(self, conn: http.client.HTTPConnection, body: bytes, total: int) -> None:
        self.conn, self.body = conn, body
        conn.request("GET", "/streaming/uploads")
        self.sid = json.loads(conn.getresponse().read())["streamId"]
        self.segments = 0
        created = _request(
            conn, "POST", "/streaming/tus/", {**TUS, "Upload-Length": str(total * len(body))}, b""
        )
        location = created.getheader("Location") or ""
        if "://" in location:  # an absolute URL: its path
            location = "/" + location.split("://", 1)[1].split("/", 1)[1]
        self.tus_path = location
        self.tus_offset = 0

    def raw(self, n: int) -> None:
        for _ in range(n):
            _request(self.conn, "PUT", "/raw-append", {}, self.body)

    def native(self, n: int) -> None:
        for _ in range(n):
            headers = {"X-Stream-Id": self.sid, "X-Stream-Segment": str(self.segments)}
            _request(self.conn, "POST", "/streaming/uploads", headers, self.body)
            self.segments += 1

    def tus(self, n: int) -> None:
        headers = {**TUS, "Content-Type": "application/offset+octet-stream"}
        for _ in range(n):
            headers["Upload-Offset"] = str(self.tus_offset)
            rv = _request(self.conn, "PATCH", self.tus_path, headers, self.body)
            self.tus_offset += len(self.body)
            assert rv.getheader("Upload-Offset") == str(self.tus_offset)

    def run(self, name: str, n: int) -> None:
        """*n* requests of the kind *name* (one of :data:`NAMES`)."""
        kinds = {"raw appending PUT": self.raw, "native segments": self.native}
        kinds["tus PATCH"] = self.tus
        kinds[name](n)

    def stored(self) -> dict[str, str]:
        return {
            "raw appending PUT": "raw-append.bin",
            "native segments": os.path.join("streaming-uploads", self.sid, "data"),
            "tus PATCH": os.path.join("streaming-uploads", self.tus_path.rsplit("/", 1)[1], "data"),
        }


NAMES = ("raw appending PUT", "native segments", "tus PATCH")
Figures = dict[str, dict[str, dict[str, list[float]]]]


def run(
    n: int = 1000,
    repeat: int = 3,
    size: int = 64 * 1024,
    batch: int = 50,
    roots: tuple[str, ...] = (ROOT,),
) -> Figures:
    """Per server root, per kind, per round: ``rate`` (requests/s) and
    ``cpu_us`` (the worker's CPU µs per request). One server per root (all
    up at once, all on the server core); within a round the kinds, and the
    servers, take turns in batches of *batch* requests, so that a burst of
    load from other processes hits every figure alike."""
    server_cpu, client_cpu = cpu_plan()
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    body = os.urandom(size)
    out: Figures = {root: {k: {"rate": [], "cpu_us": []} for k in NAMES} for root in roots}
    for r in range(repeat):
        servers: dict[str, GunicornServer] = {}
        folders: dict[str, str] = {}
        try:
            sides: dict[str, tuple[int, Kinds]] = {}
            for root in roots:
                folders[root] = tempfile.mkdtemp(prefix="bench-small-")
                servers[root] = server = GunicornServer(
                    "benchmarks.uploads:create_app()",
                    workers=1,
                    cpu=server_cpu,
                    env={"BENCH_UPLOAD_DIR": folders[root], "PYTHONPATH": root},
                    cwd=root,
                    ready_path="/streaming/",  # a worker answers: its pid is known
                )
                server.start()
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                (pid,) = server.worker_pids()
                sides[root] = (pid, Kinds(conn, body, n + batch))
            wall = {(root, k): 0.0 for root in roots for k in NAMES}
            cpu = dict(wall)
            for _, kinds in sides.values():
                for name in NAMES:
                    kinds.run(name, batch)  # warm-up
            for b in range(n // batch):
                names = NAMES if (r + b) % 2 == 0 else NAMES[::-1]
                order = roots if (r + b) % 2 == 0 else roots[::-1]
                for name in names:
                    for root in order:
                        pid, kinds = sides[root]
                        c, t = cpu_seconds(pid), time.perf_counter()
                        kinds.run(name, batch)
                        wall[root, name] += time.perf_counter() - t
                        cpu[root, name] += cpu_seconds(pid) - c
            done = n // batch * batch
            expected = hashlib.sha256(body * (done + batch)).digest()  # warm-up included
            for root, (_, kinds) in sides.items():
                kinds.conn.close()
                for name in NAMES:
                    out[root][name]["rate"].append(done / wall[root, name])
                    out[root][name]["cpu_us"].append(cpu[root, name] / done * 1e6)
                for name, stored in kinds.stored().items():
                    with open(os.path.join(folders[root], stored), "rb") as f:
                        if hashlib.sha256(f.read()).digest() != expected:
                            raise RuntimeError(f"{name}: the stored bytes differ from those sent")
        finally:
            for server in servers.values():
                server.stop()
            for folder in folders.values():
                shutil.rmtree(folder, ignore_errors=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.small_requests")
    p.add_argument("--n", type=int, default=1000, help="timed requests per kind and round")
    p.add_argument("--repeat", type=int, default=3, help="rounds (the median counts)")
    p.add_argument("--size", type=int, default=64 * 1024, help="bytes per request body")
    p.add_argument("--root", default=ROOT, help="the checkout the server runs (default: this one)")
    p.add_argument(
        "--compare",
        metavar="DIR",
        help="also serve this checkout (e.g. `git archive main` unpacked) at the same time,"
        " taking turns with --root batch by batch; prints --root / DIR",
    )
    args = p.parse_args()
    roots = (args.root,) if args.compare is None else (args.root, args.compare)
    out = run(args.n, args.repeat, args.size, roots=roots)
    print(
        f"{args.n} requests of {args.size} bytes per kind and server (batches of 50 taking"
        f" turns), medians of {args.repeat} round(s)"
    )
    med = {
        root: {k: {m: statistics.median(v) for m, v in d.items()} for k, d in figures.items()}
        for root, figures in out.items()
    }
    for root, figures in out.items():
        print(f"server: {root}")
        for name, d in figures.items():
            m = med[root][name]
            print(
                f"  {name:18} {m['rate']:7.0f} req/s {m['cpu_us']:7.0f} CPU µs/request   rounds"
                f" {[round(x) for x in d['rate']]} req/s, {[round(x) for x in d['cpu_us']]} µs"
            )
        base = med[root]["raw appending PUT"]
        for name in ("native segments", "tus PATCH"):
            print(
                f"  {name} / raw appending PUT: {med[root][name]['rate'] / base['rate']:.2f}x"
                f" req/s, {med[root][name]['cpu_us'] / base['cpu_us']:.2f}x CPU per request"
            )
    if args.compare is not None:
        a, b = med[args.root], med[args.compare]
        print(f"{args.root} / {args.compare}:")
        for name in NAMES:
            print(
                f"  {name:18} {a[name]['rate'] / b[name]['rate']:.2f}x req/s,"
                f" {a[name]['cpu_us'] / b[name]['cpu_us']:.2f}x CPU per request"
            )


if __name__ == "__main__":
    main()
