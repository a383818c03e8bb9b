"""The reliability command: ``python -m tests.reliability`` (or ``tox -e
reliability``) runs every heavy scenario against real gunicorn gevent
servers (and a real redis-server) and prints one table.

Options: ``--quick`` runs the trimmed sizes of the normal test suite;
``--only NAME`` (repeatable) picks scenarios by name; ``--workdir DIR``
keeps the servers' logs and stores there (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from . import fuzz, streams, uploads
from .common import Result, format_table, raise_nofile

#: name -> (heavy run, quick run)
SCENARIOS: dict[str, tuple[Callable[[Path], Result], Callable[[Path], Result]]] = {
    "native-sigkill": (
        lambda w: uploads.native_sigkill(w, 60),
        lambda w: uploads.native_sigkill(w, 3),
    ),
    "tus-sigkill": (
        lambda w: uploads.tus_sigkill(w, 60),
        lambda w: uploads.tus_sigkill(w, 3),
    ),
    "reload-term": (
        lambda w: streams.reload_and_term(w, 3, subscribers=50, uploads=6),
        lambda w: streams.reload_and_term(w, 1, subscribers=5, uploads=2),
    ),
    "redis-restart": (
        lambda w: streams.redis_restart(w, 5, subscribers=20),
        lambda w: streams.redis_restart(w, 1, subscribers=3),
    ),
    "disk-full": (
        lambda w: uploads.disk_full(w, 10),
        lambda w: uploads.disk_full(w, 1),
    ),
    "stalled-upload": (
        lambda w: uploads.stalled_upload(w, 5, timeout=1.0),
        lambda w: uploads.stalled_upload(w, 1, timeout=1.0),
    ),
    "stalled-subscriber": (
        lambda w: streams.stalled_subscriber(w, 5, timeout=1.0),
        lambda w: streams.stalled_subscriber(w, 1, timeout=1.0),
    ),
    "idle-sse": (
        lambda w: streams.idle_subscribers(w, 10_000),
        lambda w: streams.idle_subscribers(w, 1_000),
    ),
    "concurrent-uploads": (
        lambda w: uploads.concurrent_uploads(w, 200, 16 << 20),
        lambda w: uploads.concurrent_uploads(w, 20, 1 << 20),
    ),
    "fuzz": (
        lambda w: fuzz.fuzz_handlers(3000),
        lambda w: fuzz.fuzz_handlers(200),
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="trimmed sizes")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), default=[])
    parser.add_argument("--workdir", help="keep logs and stores here")
    args = parser.parse_args(argv)
    nofile = raise_nofile()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="flask-streaming-reliability-"))
    print(f"open files limit {nofile}; cpus {os.cpu_count()}; workdir {workdir}", flush=True)
    results: list[Result] = []
    for name in args.only or list(SCENARIOS):
        heavy, quick = SCENARIOS[name]
        t0 = time.monotonic()
        try:
            result = (quick if args.quick else heavy)(workdir / name)
        except Exception as exc:  # a crashed scenario is a failed row, not a crash
            result = Result(name)
            result.runs = max(result.runs, 1)
            result.errors[f"scenario crashed: {type(exc).__name__}: {exc}"] += 1
        result.seconds = time.monotonic() - t0
        results.append(result)
        print(format_table([result]).splitlines()[-1], flush=True)
    print()
    print(format_table(results))
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if all(r.ok or (r.runs == 0 and r.notes) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
