"""Benchmark: tuspy uploads 1 GiB in 8 MiB chunks to our tus views, against
(a) the raw PUT-to-disk view on the same gunicorn gevent server and (b) the
reference Node.js tus server, ``@tus/server`` with ``@tus/file-store`` (from
the npm registry, installed into the gitignored ``benchmarks/node/node_modules``
by ``npm ci --prefix benchmarks/node`` when missing). Same client, same run.

``run(quick)`` returns one row per measurement plus ratio rows::

    python -m benchmarks.tus [--quick]      # from the repository root

* The client is the same for all three: ``requests`` (what tuspy uses),
  reading 8 MiB chunks of one source file from the page cache. For tus it is
  tuspy's ``Uploader`` itself; for the raw view it is ``requests.put`` of
  each 8 MiB chunk, appended to one file (the same per-request cost and
  the same 1 GiB on disk, without the protocol).
* Every server process (our gunicorn and the Node process) is pinned to
  the server core with ``taskset`` (the runner pins itself to the client
  core, which a child would otherwise inherit).
* Our server is :func:`create_app` (``PUT /raw-append`` and the
  extension's ``/streaming/tus/``) under one gevent worker, restarted
  for each measurement so that the worker's peak RSS (``VmHWM``) is that
  measurement's alone; ``os.sync()`` before each, so that none pays for the
  previous one's dirty pages.
* The stored file is checked by sha256 after every upload, the raw
  baseline's included. Rows are medians of *repeat* runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask

from benchmarks.uploads import ROOT, SEGMENT, MiB, cpus_of, kib, median_row, row
from benchmarks.uploads import create_app as _uploads_app
from flask_streaming.testing import GunicornServer, ServerProcess

NODE_DIR = Path(ROOT) / "benchmarks" / "node"
CHUNK = SEGMENT  # 8 MiB


def _source(folder: str, total: int) -> tuple[str, str]:
    """A *total*-byte file of random 8 MiB blocks and its sha256."""
    path = os.path.join(folder, "source.bin")
    block = os.urandom(CHUNK)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(total // CHUNK):
            f.write(block)
            h.update(block)
    return path, h.hexdigest()


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(MiB):
            h.update(block)
    return h.hexdigest()


def create_app() -> Flask:
    """:func:`benchmarks.uploads.create_app`: ``PUT /raw``, ``PUT
    /raw-append`` (the body appended to one file in 1 MiB reads, so that the
    baseline, like a tus upload, accumulates the whole upload on disk) and
    the extension with every route group, tus included."""
    app = _uploads_app()

    return app


# --- clients ------------------------------------------------------------------


def _tuspy(base: str, endpoint: str, source: str) -> str:
    """Upload *source* with tuspy (8 MiB chunks); the upload's URL."""
    from tusclient.client import TusClient

    with open(source, "rb") as stream:
        uploader = TusClient(base + endpoint).uploader(
            file_stream=stream, chunk_size=CHUNK, metadata={"filename": "source.bin"}
        )
        uploader.upload()
        url = uploader.url
    if not url:
        raise RuntimeError("tuspy finished without an upload URL")
    return str(url)


def _raw_put(base: str, source: str) -> None:
    """``PUT /raw-append`` of each 8 MiB chunk of *source* with ``requests``."""
    import requests

    with open(source, "rb") as f:
        while chunk := f.read(CHUNK):
            r = requests.put(base + "/raw-append", data=chunk, timeout=120)
            r.raise_for_status()


# --- servers ------------------------------------------------------------------


class NodeServer(ServerProcess):
    """``node benchmarks/node/server.cjs`` serving *folder* on a free port
    (started, waited for and stopped by pid as every test server is)."""

    def __init__(self, folder: str, cpu: int | None = None) -> None:
        super().__init__(cpu=cpu)
        self.folder = folder

    def command(self) -> list[str]:
        return ["node", str(NODE_DIR / "server.cjs"), self.folder, str(self.port)]


def node_ready() -> str | None:
    """``None`` when the Node server can run, else why not (after trying
    ``npm ci --prefix benchmarks/node`` once)."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_DIR / "node_modules" / "@tus" / "server").exists():
        if shutil.which("npm") is None:
            return "npm is not installed"
        done = subprocess.run(
            ["npm", "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "--loglevel=error"],
            capture_output=True,
            timeout=300,
        )
        if done.returncode != 0:
            return f"npm ci failed: {done.stderr.decode(errors='replace')[-300:]}"
    return None


# --- measurements ---------------------------------------------------------------


def _row(name: str, total: int, seconds: float, base: int, peak: int) -> dict[str, Any]:
    return row("tus", name, total, seconds, base, peak)


def _ours(
    name: str, source: str, digest: str, total: int, cpu: int | None = None
) -> dict[str, Any]:
    """One measurement on our gunicorn server: ``raw`` or ``tus``."""
    folder = tempfile.mkdtemp(prefix="bench-tus-")
    server = GunicornServer(
        "benchmarks.tus:create_app()",
        workers=1,
        cpu=cpu,
        env={"BENCH_UPLOAD_DIR": folder, "PYTHONPATH": ROOT},
        cwd=ROOT,
    )
    os.sync()
    try:
        server.start()
        import requests

        requests.options(server.url + "/streaming/tus/", timeout=10)  # warm the worker
        (pid,) = server.worker_pids()
        base = kib(pid, "VmRSS")
        cpus = cpus_of(pid)
        t = time.perf_counter()
        if name == "raw":
            _raw_put(server.url, source)
        else:
            url = _tuspy(server.url, "/streaming/tus/", source)
        seconds = time.perf_counter() - t
        peak = kib(pid, "VmHWM")
        row = _row(
            "raw PUT appending, 8 MiB requests" if name == "raw" else "ours: tus, tuspy 8 MiB",
            total,
            seconds,
            base,
            peak,
        )
        row["server_cpus"] = cpus
        if name == "tus":
            data = os.path.join(folder, "streaming-uploads", url.rsplit("/", 1)[1], "data")
        else:
            data = os.path.join(folder, "raw-append.bin")
        row["check"] = _file_sha256(data) == digest
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return row


def _node(source: str, digest: str, total: int, cpu: int | None = None) -> dict[str, Any]:
    """One measurement on ``@tus/server`` + ``@tus/file-store``."""
    folder = tempfile.mkdtemp(prefix="bench-tus-node-")
    server = NodeServer(folder, cpu)
    os.sync()
    try:
        server.start()
        pid = server.pid
        assert pid is not None
        import requests

        requests.options(server.url + "/files", timeout=10)
        base = kib(pid, "VmRSS")
        cpus = cpus_of(pid)
        t = time.perf_counter()
        url = _tuspy(server.url, "/files", source)
        seconds = time.perf_counter() - t
        peak = kib(pid, "VmHWM")
        row = _row("peer: @tus/server + file-store", total, seconds, base, peak)
        row["server_cpus"] = cpus
        row["check"] = _file_sha256(os.path.join(folder, url.rsplit("/", 1)[1])) == digest
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return row


def run(quick: bool = False, repeat: int = 3, cpu: int | None = None) -> list[dict[str, Any]]:
    """Measure the three uploads (1 GiB; *quick*: 256 MiB), each *repeat*
    times, alternating the order; rows are medians. *cpu*: the server core."""
    total = (256 if quick else 1024) * MiB
    skip_node = node_ready()
    work = tempfile.mkdtemp(prefix="bench-tus-src-")
    try:
        source, digest = _source(work, total)
        measures: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("raw", lambda: _ours("raw", source, digest, total, cpu)),
            ("tus", lambda: _ours("tus", source, digest, total, cpu)),
        ]
        if skip_node is None:
            measures.append(("node", lambda: _node(source, digest, total, cpu)))
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k, _ in measures}
        for r in range(repeat):
            for key, measure in measures[:: 1 if r % 2 == 0 else -1]:  # alternate the order
                runs[key].append(measure())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {k: median_row(v) for k, v in runs.items()}
    rows = [best[k] for k, _ in measures]
    ours = best["tus"]
    rows.append(
        {
            "scenario": "tus",
            "name": "ours tus / raw PUT appending, 8 MiB requests",
            "ratio": round(ours["mb_s"] / best["raw"]["mb_s"], 3),
            "aim": ">= 1.1x",
        }
    )
    if "node" in best:
        rows.append(
            {
                "scenario": "tus",
                "name": "ours tus / @tus/server",
                "ratio": round(ours["mb_s"] / best["node"]["mb_s"], 3),
                "aim": ">= 1.1x",
            }
        )
    else:
        rows.append({"scenario": "tus", "name": "@tus/server", "skipped": skip_node})
    return rows


if __name__ == "__main__":
    import sys

    for out in run(quick="--quick" in sys.argv, repeat=1 if "--quick" in sys.argv else 3):
        print(out)
