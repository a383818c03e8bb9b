"""The machinery of ``benchmarks/run.py``: the scenario registry, a gunicorn
server, the scenario context, and the result table (the load client is
:mod:`benchmarks.client`).

Adding a scenario (later issues: channels fan-out, uploads, tus) is one
decorated function in a module that ``run.py`` imports::

    @scenario("fanout", "one publish reaching 2,000 SSE subscribers")
    def fanout(ctx: Context) -> Result:
        ...
        return Result("fanout", ours=..., peer=..., aim=2.0)

A scenario gets a :class:`Context` (the shared server, ``quick`` sizes, a
scratch folder, ``start_server`` for servers of its own) and returns one
:class:`Result` or a list of them. Every load loop must be bounded by a
count *and* a deadline: :func:`benchmarks.client.fetch` takes both.

This module never imports gevent: the runner process is not monkey-patched.
Load clients that need gevent run as subprocesses (``ctx.client_cmd``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from flask_streaming.testing import GunicornServer

ROOT = Path(__file__).resolve().parent.parent
#: Seconds a benchmark server may take to answer its first ``/health``.
START_TIMEOUT = 30.0

# --- Registry -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One registered benchmark."""

    name: str
    description: str
    run: Callable[[Context], Result | list[Result]]


#: Every registered scenario, in registration (= run) order.
SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str, description: str
) -> Callable[[Callable[[Context], Result | list[Result]]], Callable[[Context], Any]]:
    """Register the decorated function as the scenario *name*."""

    def register(fn: Callable[[Context], Result | list[Result]]) -> Callable[[Context], Any]:
        if name in SCENARIOS:
            raise ValueError(f"scenario {name!r} registered twice")
        SCENARIOS[name] = Scenario(name, description, fn)
        return fn

    return register


# --- Results ------------------------------------------------------------------


@dataclasses.dataclass
class Measurement:
    """One implementation's run of a scenario.

    :param impl: who was measured (``"ours: sse_response"``).
    :param size: what was moved (``"300,000 events"``).
    :param seconds: wall time from sending the request to the last byte.
    :param rate: the scenario's figure of merit (higher is better).
    :param unit: the unit of :attr:`rate` (``"events/s"``).
    :param ttfb: seconds until the first data (not just headers) arrived.
    :param complete: the whole body arrived before the deadline.
    """

    impl: str
    size: str
    seconds: float
    rate: float
    unit: str
    ttfb: float | None = None
    complete: bool = True
    note: str = ""
    #: the peer could not run here (``note`` says why): no figure, no ratio.
    skipped: bool = False
    #: every run's rate, in run order (the row shows their median).
    rates: tuple[float, ...] = ()


@dataclasses.dataclass
class Check:
    """A correctness check made during a scenario (not a speed aim)."""

    name: str
    passed: bool
    detail: str = ""


@dataclasses.dataclass
class Result:
    """What a scenario reports: our measurement, the peer's, the aimed ratio."""

    scenario: str
    ours: Measurement
    peer: Measurement | None = None
    #: the ratio (ours / peer) the issue aims at, if any.
    aim: float | None = None
    checks: list[Check] = dataclasses.field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        """Our rate divided by the peer's (``None`` when the peer skipped)."""
        if self.peer is None or self.peer.skipped or not self.peer.rate:
            return None
        return self.ours.rate / self.peer.rate


def skipped(impl: str, why: str, unit: str = "-") -> Measurement:
    """The row of a peer that could not run here, with the reason."""
    return Measurement(impl + " (SKIPPED)", "-", 0.0, 0.0, unit, note=why, skipped=True)


def median(measurements: Sequence[Measurement]) -> Measurement:
    """The median run of repeated runs (by rate; the lower middle one for
    an even count), carrying every run's rate in :attr:`Measurement.rates`.
    An incomplete run makes the row incomplete: its first incomplete run is
    shown instead."""
    rates = tuple(m.rate for m in measurements)
    broken = [m for m in measurements if not m.complete]
    if broken:
        return dataclasses.replace(broken[0], rates=rates)
    ranked = sorted(measurements, key=lambda m: m.rate)
    return dataclasses.replace(ranked[(len(ranked) - 1) // 2], rates=rates)


def alternate(
    repeat: int, run_ours: Callable[[], Measurement], run_peer: Callable[[], Measurement]
) -> tuple[Measurement, Measurement]:
    """Run both sides *repeat* times, alternating which runs first (ours
    first in odd rounds, the peer first in even ones), and return the
    :func:`median` of each."""
    ours: list[Measurement] = []
    peer: list[Measurement] = []
    for i in range(repeat):
        if i % 2 == 0:
            ours.append(run_ours())
            peer.append(run_peer())
        else:
            peer.append(run_peer())
            ours.append(run_ours())
    return median(ours), median(peer)


# --- Server -------------------------------------------------------------------


def cpu_plan() -> tuple[int | None, int | None]:
    """(server cpu, client cpu): two different cores when ``taskset`` exists
    and this process may run on at least two; else ``(None, None)``."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None, None
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return None, None
    return cpus[0], cpus[1]


def gunicorn(
    app: str = "benchmarks.apps:app",
    *,
    workers: int = 1,
    cpu: int | None = None,
    nofile: int | None = None,
    env: dict[str, str] | None = None,
    args: Iterable[str] = (),
    log_path: Path,
) -> GunicornServer:
    """A :class:`flask_streaming.testing.GunicornServer` (``-k gevent``) for
    a benchmark: run from the repository root, optionally pinned to core
    *cpu* and under ``ulimit -n nofile``, ready once a worker answers
    ``GET /health`` with 200 (every benchmark app has that route). Not
    started; the caller stops it (by its pid)."""
    return GunicornServer(
        app,
        workers=workers,
        cpu=cpu,
        nofile=nofile,
        env={"PYTHONPATH": str(ROOT), **(env or {})},
        args=args,
        cwd=str(ROOT),
        log_path=str(log_path),
        ready_path="/health",
        ready_status=200,
        timeout=300,
    )


# --- Versions -------------------------------------------------------------------


def _dist(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _command_output(cmd: list[str]) -> str:
    """The first line of *cmd*'s output (stdout or stderr), or why not."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc.__class__.__name__})"
    text = (out.stdout.strip() or out.stderr.strip()).splitlines()
    return text[0] if text else "?"


def versions() -> dict[str, str]:
    """What ran, for the table's header: ours and every peer, the servers,
    Python, and each server's event loop. gevent's loop is asked of a
    subprocess (this process never imports gevent)."""
    import platform

    py = [sys.executable, "-c"]
    gevent_loop = _command_output(
        [*py, "import gevent; l = type(gevent.get_hub().loop); print(l.__module__)"]
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    nchan = _command_output(["dpkg-query", "-W", "-f=${Version}", "libnginx-mod-nchan"])
    return {
        "Python": f"{platform.python_version()} ({platform.python_implementation()})",
        "flask_streaming": _dist("flask_streaming"),
        "Flask": _dist("flask"),
        "Werkzeug": _dist("werkzeug"),
        "gunicorn": _dist("gunicorn"),
        "gevent": f"{_dist('gevent')} (loop {gevent_loop}), greenlet {_dist('greenlet')}",
        "uvicorn": (
            f"{_dist('uvicorn')} --loop uvloop {_dist('uvloop')} --http httptools"
            f" {_dist('httptools')}"
        ),
        "sse-starlette": f"{_dist('sse-starlette')} (starlette {_dist('starlette')})",
        "Flask-SSE": _dist("flask-sse"),
        "redis": f"redis-py {_dist('redis')}, {_command_output(['redis-server', '--version'])}",
        "nginx": f"{_command_output([nginx, '-v'])}, libnginx-mod-nchan {nchan}",
        "tuspy": _dist("tuspy"),
    }


# --- Context ------------------------------------------------------------------


@dataclasses.dataclass
class Context:
    """What a scenario gets from the runner."""

    #: the shared server (``benchmarks.apps:app``, one gevent worker).
    server: GunicornServer
    #: smaller sizes, for a smoke run.
    quick: bool
    #: how many times each side is measured (the best run counts).
    repeat: int
    #: a scratch folder, deleted after the run; the shared server serves
    #: files from it (``$BENCH_DATA_DIR``).
    data_dir: Path
    #: the core the load client runs on (``None``: not pinned).
    client_cpu: int | None
    #: the core servers run on (``None``: not pinned).
    server_cpu: int | None
    #: per-run timeout (s) for one load loop.
    timeout: float = 120.0
    _servers: list[GunicornServer] = dataclasses.field(default_factory=list)

    @property
    def port(self) -> int:
        """The shared server's port."""
        return self.server.port

    def size(self, full: int, quick: int) -> int:
        """*quick* in a smoke run, else *full*."""
        return quick if self.quick else full

    def start_server(self, app: str = "benchmarks.apps:app", **kwargs: Any) -> GunicornServer:
        """Start another server (:func:`gunicorn`; stopped by the runner at
        the end)."""
        kwargs.setdefault("cpu", self.server_cpu)
        kwargs.setdefault("log_path", self.data_dir / f"server-{len(self._servers) + 2}.log")
        env = {"BENCH_DATA_DIR": str(self.data_dir), **kwargs.pop("env", {})}
        server = gunicorn(app, env=env, **kwargs)
        self._servers.append(server)
        return server.start(START_TIMEOUT)

    def client_cmd(self, *args: str) -> list[str]:
        """A command line for a load-client subprocess, pinned to the client
        core (for gevent clients, which must not run in this process)."""
        cmd = [sys.executable, *args]
        if self.client_cpu is not None:
            cmd = ["taskset", "-c", str(self.client_cpu), *cmd]
        return cmd

    def stop_servers(self) -> None:
        """Stop the servers started with :meth:`start_server`."""
        while self._servers:
            self._servers.pop().stop()


# --- Table --------------------------------------------------------------------


def _num(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.1f} ms"


def render(results: Sequence[Result], header: str) -> str:
    """The results as a plain-text table, then the checks."""
    cols = ["scenario", "implementation", "size", "seconds", "rate", "TTFB", "ratio", "aim"]
    rows: list[list[str]] = []
    for r in results:
        ratio = r.ratio
        aim = "-"
        if r.aim is not None:
            met = ratio is not None and ratio >= r.aim
            aim = f">={r.aim:g}x {'met' if met else 'MISSED'}"
            if r.peer is not None and r.peer.skipped:
                aim = f">={r.aim:g}x NOT MEASURED"
        for i, m in enumerate([r.ours] + ([r.peer] if r.peer else [])):
            rows.append(
                [
                    r.scenario if i == 0 else "",
                    m.impl + ("" if m.complete else " (INCOMPLETE)"),
                    m.size,
                    "-" if m.skipped else f"{m.seconds:.3f}",
                    "-" if m.skipped else f"{_num(m.rate)} {m.unit}",
                    _ms(m.ttfb),
                    (f"{ratio:.2f}x" if ratio is not None else "-") if i == 0 else "",
                    aim if i == 0 else "",
                ]
            )
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    right = {3, 4, 5, 6}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [header, "", line(cols), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    checks = [(r.scenario, c) for r in results for c in r.checks]
    notes = [
        (r.scenario, m) for r in results for m in (r.ours, r.peer) if m and m.note and not m.skipped
    ]
    skips = [(r.scenario, r.peer) for r in results if r.peer is not None and r.peer.skipped]
    spread = [
        (r.scenario, m)
        for r in results
        for m in (r.ours, r.peer)
        if m is not None and len(m.rates) > 1
    ]
    ratios = [(r, r.ratio) for r in results if r.ratio is not None]
    if ratios:
        out += ["", "ratios (median / median, same run):"]
        out += [
            f"  {r.scenario}: {x:.2f}x = {r.ours.impl} / {r.peer.impl}"
            for r, x in ratios
            if r.peer is not None
        ]
    if skips:
        out += ["", "peers that did not run (no figure, no ratio):"]
        out += [f"  [SKIPPED] {name}: {m.impl}: {m.note}" for name, m in skips]
    if spread:
        out += ["", "every run (the table shows the median):"]
        out += [
            f"  {name} / {m.impl}: " + ", ".join(f"{_num(x)}" for x in m.rates) + f" {m.unit}"
            for name, m in spread
        ]
    if checks:
        out += ["", "checks:"]
        out += [
            f"  [{'ok' if c.passed else 'FAIL'}] {name}: {c.name}"
            + (f" ({c.detail})" if c.detail else "")
            for name, c in checks
        ]
    if notes:
        out += ["", "notes:"]
        out += [f"  {name} / {m.impl}: {m.note}" for name, m in notes]
    return "\n".join(out)
