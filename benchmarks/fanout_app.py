"""Ours in the fan-out benchmark: flask_streaming's ``/streaming/events/<channel>``
route, fed by ``Streaming.publish``.

Served by gunicorn with the gevent worker (see :mod:`benchmarks.fanout`)::

    python -m gunicorn -k gevent -w 1 benchmarks.fanout_app:app

``$BENCH_BROKER_URL`` picks the broker (default ``memory://``). With
several workers (Redis mode), ``$BENCH_STATS_DIR`` names a folder where each
worker keeps its subscriber count in a file named by its pid (rewritten
within 0.1 s of a change), so that ``/stats`` answers for all workers.
"""

from __future__ import annotations

import os
from pathlib import Path

import gevent
from flask import Flask, request

from benchmarks.fanout_common import CHANNEL, payload, publish_run
from flask_streaming import Streaming

app = Flask(__name__)
app.config["STREAMING_BROKER_URL"] = os.environ.get("BENCH_BROKER_URL", "memory://")
app.config["STREAMING_MAX_CONNECTIONS"] = int(os.environ.get("BENCH_MAX_CONNECTIONS", "19000"))
# The load generator is one client address (or a few): no per-client limit.
app.config["STREAMING_MAX_CONNECTIONS_PER_CLIENT"] = 0
if "BENCH_PARK_AFTER" in os.environ:  # diagnostics: 0 keeps idle streams unparked
    app.config["STREAMING_PARK_AFTER"] = float(os.environ["BENCH_PARK_AFTER"])
if "BENCH_SEND_TIMEOUT" in os.environ:  # diagnostics: 0 turns the send guard off
    app.config["STREAMING_SEND_TIMEOUT"] = float(os.environ["BENCH_SEND_TIMEOUT"])
streaming = Streaming(app)
STATS_DIR = os.environ.get("BENCH_STATS_DIR")


def _report_connections(folder: Path) -> None:
    """Keep this worker's subscriber count in ``folder/<pid>`` (a greenlet;
    no Redis connection of its own, so ``connected_clients`` stays ours)."""
    path, tmp = folder / str(os.getpid()), folder / f".{os.getpid()}"
    last = -1
    while True:
        n = streaming.broker(app).connections
        if n != last:
            tmp.write_text(str(n))
            tmp.replace(path)
            last = n
        gevent.sleep(0.1)


if STATS_DIR:
    gevent.spawn(_report_connections, Path(STATS_DIR))


@app.get("/health")
def health() -> str:
    """Readiness probe: the worker imported the app."""
    return "ok"


@app.get("/stats")
def stats() -> dict[str, int]:
    """This worker's pid and how many subscribers it holds (with
    ``$BENCH_STATS_DIR``: all workers together, and how many reported)."""
    if not STATS_DIR:
        return {"pid": os.getpid(), "subscribers": streaming.broker(app).connections}
    counts = [int(f.read_text() or 0) for f in Path(STATS_DIR).iterdir() if f.name.isdigit()]
    return {"pid": os.getpid(), "subscribers": sum(counts), "workers": len(counts)}


@app.get("/publish")
def publish() -> dict[str, float]:
    """Publish ``n`` events on the benchmark channel, as a burst or paced
    at ``rate`` events/s; answer with the first and last publish times."""
    return publish_run(
        request.args, lambda seq: streaming.publish(CHANNEL, payload(seq)), gevent.sleep
    )


if os.environ.get("BENCH_TRACEMALLOC"):
    import tracemalloc

    tracemalloc.start(int(os.environ["BENCH_TRACEMALLOC"]))
    _marks: list[tracemalloc.Snapshot] = []

    @app.get("/tracemalloc")
    def trace() -> dict[str, list[str]]:
        """Diagnostics (only with ``$BENCH_TRACEMALLOC``): ``?mark`` takes a
        baseline snapshot; without it, the top allocations since the mark."""
        snap = tracemalloc.take_snapshot()
        if "mark" in request.args or not _marks:
            _marks[:] = [snap]
            return {"top": []}
        stats = snap.compare_to(_marks[0], "traceback")[:12]
        return {
            "top": [
                f"{s.size_diff / 1024:.0f} KiB {s.count_diff}\n" + "\n".join(s.traceback.format())
                for s in stats
            ]
        }
