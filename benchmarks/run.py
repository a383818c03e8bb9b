"""Benchmark flask_streaming against its peers and print a table.

Usage (from the repository root)::

    python benchmarks/run.py                 # every scenario, full sizes
    python benchmarks/run.py --quick         # smaller sizes, a smoke run
    python benchmarks/run.py --only ndjson   # one scenario (repeatable)
    python benchmarks/run.py --list          # the scenarios

One gunicorn (``-k gevent -w 1``) serves :mod:`benchmarks.apps` on a free
loopback port; ours and the peer are measured against it in the same run.
With ``taskset`` and two cores, the server runs on one core and this process
(the load client, never monkey-patched) on another. Every process started is
stopped by its pid, and the scratch folder is deleted, however the run ends.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import traceback
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import fanout as _fanout  # noqa: E402, F401  (registers fanout scenarios)
from benchmarks import scenarios as _scenarios  # noqa: E402, F401  (registers scenarios)
from benchmarks import transfers as _transfers  # noqa: E402, F401  (uploads, tus)
from benchmarks.harness import (  # noqa: E402
    SCENARIOS,
    START_TIMEOUT,
    Check,
    Context,
    Measurement,
    Result,
    cpu_plan,
    gunicorn,
    render,
    versions,
)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description="flask_streaming against its peers, same gunicorn gevent server, same run.",
    )
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this scenario (repeatable); see --list",
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    p.add_argument(
        "--repeat", type=int, default=1, help="runs per side, the median counts (default 1)"
    )
    p.add_argument(
        "--timeout", type=float, default=120.0, help="seconds one load loop may take (120)"
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = p.parse_args(argv)
    unknown = [n for n in args.only or [] if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def _failed(name: str, exc: BaseException) -> Result:
    """A row for a scenario that raised."""
    m = Measurement("ours", "-", 0.0, 0.0, "-", complete=False, note=repr(exc))
    return Result(name, ours=m, checks=[Check("scenario ran", False, repr(exc))])


def main(argv: list[str] | None = None) -> int:
    """Run the selected scenarios; exit status 1 if a correctness check failed."""
    args = parse_args(argv)
    if args.list:
        for s in SCENARIOS.values():
            print(f"{s.name:12} {s.description}")
        return 0
    selected = [SCENARIOS[n] for n in (args.only or SCENARIOS)]
    server_cpu, client_cpu = cpu_plan()
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    data_dir = Path(tempfile.mkdtemp(prefix="flask-streaming-bench-", dir="/tmp"))
    server = gunicorn(
        cpu=server_cpu,
        env={"BENCH_DATA_DIR": str(data_dir)},
        log_path=data_dir / "server.log",
    )
    ctx = Context(
        server=server,
        quick=args.quick,
        repeat=args.repeat,
        data_dir=data_dir,
        client_cpu=client_cpu,
        server_cpu=server_cpu,
        timeout=args.timeout,
    )
    results: list[Result] = []
    try:
        server.start(START_TIMEOUT)
        for s in selected:
            print(f"running {s.name}: {s.description} ...", file=sys.stderr, flush=True)
            try:
                out = s.run(ctx)
            except Exception as exc:
                traceback.print_exc()
                print(server.log_tail(), file=sys.stderr)
                out = _failed(s.name, exc)
            results.extend(out if isinstance(out, list) else [out])
    finally:
        ctx.stop_servers()
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    pinning = (
        f"server on cpu {server_cpu}, client on cpu {client_cpu} (taskset)"
        if server_cpu is not None
        else "not pinned"
    )
    header = (
        f"flask_streaming {_version('flask_streaming')} benchmarks"
        f"{' (--quick)' if args.quick else ''}: gunicorn -k gevent -w 1 unless said otherwise\n"
        f"{os.cpu_count()} cpus, {pinning}; median of {args.repeat} run(s) per side, the"
        " sides alternating which runs first; ratio = ours / the peer in the row below"
        " (higher is better for ours)\n" + "\n".join(f"  {k}: {v}" for k, v in versions().items())
    )
    print(render(results, header))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                [
                    {
                        "scenario": r.scenario,
                        "ours": vars(r.ours),
                        "peer": vars(r.peer) if r.peer else None,
                        "ratio": r.ratio,
                        "aim": r.aim,
                        "checks": [vars(c) for c in r.checks],
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    return 0 if all(c.passed for r in results for c in r.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
