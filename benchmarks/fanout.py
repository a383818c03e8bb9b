"""Channels fan-out scenarios (issue 4): one publish reaching thousands of
SSE subscribers, flask_streaming against its peers in the same run.

``fanout``
    *N* subscribers (5,000; ``--quick`` 500) on one server process, a burst
    of 20 broadcast events. Reported per implementation: delivered events/s
    (events received by all subscribers / seconds from the first publish to
    the last subscriber's 20th event), publish→receive p50/p99 (each event
    carries ``time.monotonic()`` of its publish), and the server's RSS per
    idle connection (``VmRSS`` of the serving process before and after the
    *N* subscribers connected, from ``/proc/<pid>/status``).

``fanout-paced``
    1,000 subscribers, 10 events/s: publish→receive p99, ours vs the
    hand-written peer.

Implementations (each on a fresh server, pinned to the server core):

* ours: ``/streaming/events/<channel>`` fed by ``Streaming.publish`` with the
  memory broker (:mod:`benchmarks.fanout_app`), gunicorn ``-k gevent -w 1``;
* peer: a hand-written Flask view, a gevent ``Queue`` per subscriber
  (:mod:`benchmarks.peers.handwritten`), same gunicorn;
* peer: sse-starlette under uvicorn (:mod:`benchmarks.peers.starlette_sse`);
* peer: Flask-SSE with Redis (:mod:`benchmarks.peers.flask_sse_app`), same
  gunicorn, with a ``redis-server`` started here on a free port.

The load generator is :mod:`benchmarks.fanout_client`, an epoll subprocess
pinned to the client core; this process only orchestrates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import resource
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.client import fetch
from benchmarks.harness import (
    ROOT,
    Check,
    Context,
    Measurement,
    Result,
    Server,
    free_port,
    scenario,
)

KiB = 1024
#: The aims of issue 4 (ours / peer, delivered events/s).
AIM_HANDWRITTEN = 4.0
AIM_STARLETTE = 10.0
#: Idle memory aim per connection (KiB).
AIM_IDLE_KIB = 16.0
#: Peer packages the benchmark installs with pip when they are missing.
PEER_PACKAGES = {"sse_starlette": "sse-starlette", "uvicorn": "uvicorn", "flask_sse": "Flask-SSE"}


# --- processes ------------------------------------------------------------------


def nofile_limit() -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit and
    return it: the servers and the client inherit it (and servers get it
    again through ``ulimit -n``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65536)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _with_ulimit(cmd: list[str], nofile: int) -> list[str]:
    """*cmd* run through ``sh -c 'ulimit -n N && exec ...'`` (same pid)."""
    return ["sh", "-c", 'ulimit -n "$0" && exec "$@"', str(nofile), *cmd]


class GunicornServer(Server):
    """:class:`benchmarks.harness.Server` (gunicorn ``-k gevent``, pinned)
    with ``ulimit -n`` raised for its processes."""

    def __init__(self, app: str, *, nofile: int, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.nofile = nofile

    @property
    def command(self) -> list[str]:
        """gunicorn's command line, under ``ulimit -n``."""
        return _with_ulimit(super().command, self.nofile)


class UvicornServer(GunicornServer):
    """uvicorn (one process, asyncio) serving an ASGI app, pinned and with
    ``ulimit -n`` raised; started and stopped by the harness's code."""

    @property
    def command(self) -> list[str]:
        """uvicorn's command line, under ``taskset`` and ``ulimit -n``."""
        cmd = [
            sys.executable, "-m", "uvicorn", self.app,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--backlog", "4096", "--no-access-log", "--log-level", "warning",
            "--timeout-graceful-shutdown", "2",
        ]  # fmt: skip
        if self.cpu is not None:
            cmd = ["taskset", "-c", str(self.cpu), *cmd]
        return _with_ulimit(cmd, self.nofile)


class RedisServer:
    """A throwaway ``redis-server`` on a free loopback port (no persistence),
    pinned to the server core; stopped by its pid."""

    def __init__(self, *, port: int, cpu: int | None, nofile: int, log_path: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        cmd = [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--maxclients", str(max(nofile - 64, 1000)),
        ]  # fmt: skip
        if cpu is not None:
            cmd = ["taskset", "-c", str(cpu), *cmd]
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                _with_ulimit(cmd, nofile), stdout=log, stderr=subprocess.STDOUT
            )
        import redis

        self.client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start; see {log_path}") from None
                time.sleep(0.05)

    def info(self) -> dict[str, Any]:
        """``INFO`` as a dict."""
        return dict(self.client.info())

    def stop(self) -> None:
        """Stop redis-server by its pid."""
        with contextlib.suppress(Exception):
            self.client.close()
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def rss_kib(pid: int) -> int:
    """``VmRSS`` of *pid* in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def server_stats(port: int) -> dict[str, int]:
    """The app's ``/stats``: the serving pid and its subscriber count."""
    r = fetch(port, "/stats", timeout=10, keep_body=True)
    if r.status != 200:
        raise RuntimeError(f"/stats answered {r.status}")
    stats: dict[str, int] = json.loads(r.body)
    return stats


# --- one run -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Impl:
    """One implementation under test."""

    #: the label in the table ("ours: ...", "peer: ...")
    label: str
    #: gunicorn or uvicorn app spec
    app: str
    #: the subscription path
    path: str
    #: ``"gunicorn"`` or ``"uvicorn"``
    server: str = "gunicorn"
    #: needs a redis-server (its URL in ``$BENCH_REDIS_URL``)
    redis: bool = False
    #: modules that must import, else the peer is skipped
    needs: tuple[str, ...] = ()


OURS = Impl(
    "ours: /streaming/events/<ch> + Streaming.publish (memory://)",
    "benchmarks.fanout_app:app",
    "/streaming/events/fanout",
)
HANDWRITTEN = Impl(
    "peer: hand-written Flask, gevent Queue per subscriber",
    "benchmarks.peers.handwritten:app",
    "/events",
)
STARLETTE = Impl(
    "peer: sse-starlette under uvicorn",
    "benchmarks.peers.starlette_sse:app",
    "/events",
    server="uvicorn",
    needs=("sse_starlette", "uvicorn"),
)
FLASK_SSE = Impl(
    "peer: Flask-SSE + Redis",
    "benchmarks.peers.flask_sse_app:app",
    "/events?channel=fanout",
    redis=True,
    needs=("flask_sse",),
)


@dataclasses.dataclass
class Run:
    """What one implementation's run measured."""

    impl: Impl
    clients: int
    events: int
    connected: int = 0
    received: int = 0
    complete: int = 0
    seconds: float = 0.0
    p50: float | None = None
    p99: float | None = None
    idle_kib: float | None = None
    redis_kib: float | None = None
    redis_clients: int | None = None
    connect_seconds: float = 0.0
    problem: str = ""

    @property
    def rate(self) -> float:
        """Delivered events/s."""
        return self.received / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Every subscriber connected and got every event."""
        return not self.problem and self.complete == self.clients

    def measurement(self) -> Measurement:
        """This run as a row of the table."""
        parts = [
            f"p50 {_ms(self.p50)}, p99 {_ms(self.p99)}",
            f"idle {self.idle_kib:.1f} KiB/conn" if self.idle_kib is not None else "idle -",
        ]
        if self.redis_clients is not None:
            parts.append(f"Redis connected_clients {self.redis_clients:,}")
        if self.redis_kib is not None:
            parts.append(f"redis-server +{self.redis_kib:.1f} KiB/conn")
        parts.append(f"{self.complete:,}/{self.clients:,} subscribers got all {self.events}")
        if self.problem:
            parts.append(self.problem)
        return Measurement(
            impl=self.impl.label,
            size=f"{self.clients:,} subs x {self.events} ev",
            seconds=self.seconds,
            rate=self.rate,
            unit="events/s",
            complete=self.ok,
            note="; ".join(parts),
        )


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.1f} ms"


def _line(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The next JSON line the client prints, waiting at most *timeout* s."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"the load client said nothing for {timeout:.0f} s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"the load client exited ({proc.wait()})")
    msg: dict[str, Any] = json.loads(line)
    return msg


@contextlib.contextmanager
def _client(ctx: Context, port: int, path: str, publish: str, **opts: Any) -> Iterator[Any]:
    """The load client subprocess (pinned); killed by its pid on exit."""
    args = ["-m", "benchmarks.fanout_client", "--port", str(port), "--path", path]
    args += ["--publish", publish]
    for k, v in opts.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    with open(ctx.data_dir / "client.log", "ab") as err:
        proc = subprocess.Popen(
            ctx.client_cmd(*args),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()


def _drive(
    ctx: Context,
    port: int,
    path: str,
    *,
    clients: int,
    events: int,
    rate: float = 0.0,
    idle: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Connect *clients* subscribers, wait until the server holds them all,
    call *idle* with the client's ``connected`` report (memory readings),
    publish, and return the client's ``connected`` and ``done`` reports."""
    publish = f"/publish?n={events}" + (f"&rate={rate:g}" if rate else "")
    publish_seconds = events / rate if rate else 0.0
    with _client(
        ctx,
        port,
        path,
        publish,
        clients=clients,
        events=events,
        timeout=ctx.timeout,
    ) as proc:
        connected = _line(proc, 120)
        want = connected["connected"]
        deadline = time.monotonic() + 60
        while server_stats(port)["subscribers"] < want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server holds fewer than {want} subscribers after 60 s")
            time.sleep(0.2)
        if idle is not None:
            idle(connected)
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        done = _line(proc, ctx.timeout + publish_seconds + 30)
    return connected, done


def _start(ctx: Context, impl: Impl, nofile: int, env: dict[str, str]) -> Server:
    cls = UvicornServer if impl.server == "uvicorn" else GunicornServer
    name = impl.app.split(":")[0].rsplit(".", 1)[-1]
    server = cls(
        impl.app,
        nofile=nofile,
        cpu=ctx.server_cpu,
        env={"BENCH_DATA_DIR": str(ctx.data_dir), **env},
        args=["--backlog", "4096"],
        log_path=ctx.data_dir / f"fanout-{name}.log",
    )
    return server.start()


def run_impl(ctx: Context, impl: Impl, *, clients: int, events: int, rate: float = 0.0) -> Run:
    """Start *impl*'s server (and Redis), warm it up, measure idle memory
    and one publish to *clients* subscribers; stop everything by pid."""
    nofile = nofile_limit()
    run = Run(impl, clients, events)
    redis: RedisServer | None = None
    server: Server | None = None
    try:
        env: dict[str, str] = {}
        if impl.redis:
            redis = RedisServer(
                port=free_port(),
                cpu=ctx.server_cpu,
                nofile=nofile,
                log_path=ctx.data_dir / "redis.log",
            )
            env["BENCH_REDIS_URL"] = redis.url
        server = _start(ctx, impl, nofile, env)
        port = server.port
        # Warm-up: imports, first requests, the broker's lazy set-up.
        _drive(ctx, port, impl.path, clients=20, events=2)
        # One more event, to nobody: peers that notice a gone client only
        # when a write fails let go of the warm-up's subscribers now.
        fetch(port, "/publish?n=1", timeout=10)
        time.sleep(0.5)
        pid = server_stats(port)["pid"]
        before = rss_kib(pid)
        redis_before = redis.info()["used_memory"] if redis else 0
        redis_pid = redis.proc.pid if redis else 0
        redis_rss_before = rss_kib(redis_pid) if redis else 0

        def idle(connected: dict[str, Any]) -> None:
            run.connected = connected["connected"]
            time.sleep(1.0)  # let the last connections settle
            run.idle_kib = (rss_kib(pid) - before) / max(run.connected, 1)
            if redis is not None:
                info = redis.info()
                run.redis_clients = int(info["connected_clients"])
                grown = max(rss_kib(redis_pid) - redis_rss_before, 0) * KiB
                grown = max(grown, int(info["used_memory"]) - redis_before)
                run.redis_kib = grown / KiB / max(run.connected, 1)

        connected, done = _drive(
            ctx, port, impl.path, clients=clients, events=events, rate=rate, idle=idle
        )
        run.connected = connected["connected"]
        run.connect_seconds = connected["seconds"]
        if connected["failed"]:
            run.problem = f"{connected['failed']} connects failed: {connected['errors']}"
        run.received = done["received"]
        run.complete = done["complete"]
        first = done["published"].get("first", done["t_go"])
        run.seconds = done["t_last"] - first
        run.p50, run.p99 = done["p50"], done["p99"]
        if done["published"].get("error"):
            run.problem = f"publish failed: {done['published']['error']}"
    except Exception as exc:
        run.problem = f"failed: {exc!r}"
        if server is not None:
            print(server.log_tail(), file=sys.stderr)
    finally:
        if server is not None:
            server.stop()
        if redis is not None:
            redis.stop()
    return run


# --- peers ---------------------------------------------------------------------------


def missing_peer(impl: Impl) -> str | None:
    """Why *impl* cannot run here (``None``: it can). Missing peer packages
    are installed with pip first."""
    missing = [m for m in impl.needs if importlib.util.find_spec(m) is None]
    if missing:
        pkgs = [PEER_PACKAGES[m] for m in missing]
        print(f"fanout: pip install {' '.join(pkgs)} (peer packages)", file=sys.stderr)
        rc = subprocess.call(
            [sys.executable, "-m", "pip", "install", "-q", *pkgs],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        importlib.invalidate_caches()
        missing = [m for m in impl.needs if importlib.util.find_spec(m) is None]
        if missing:
            return f"pip install {' '.join(pkgs)} failed (exit {rc})"
    if impl.redis and shutil.which("redis-server") is None:
        return "no redis-server binary (apt-get install redis-server)"
    return None


def _skipped(impl: Impl, why: str) -> Measurement:
    return Measurement(impl.label + " (SKIPPED)", "-", 0.0, 0.0, "events/s", note=why)


# --- scenarios ----------------------------------------------------------------------


def _by_rate(r: Run) -> tuple[bool, float]:
    """Sort key of the best burst run: complete first, then highest rate."""
    return r.ok, r.rate


def _by_p99(r: Run) -> tuple[bool, float]:
    """Sort key of the best paced run: complete first, then lowest p99."""
    return r.ok, -(r.p99 if r.p99 is not None else float("inf"))


def _measure(
    ctx: Context,
    impls: list[Impl],
    best: Callable[[Run], tuple[bool, float]] = _by_rate,
    **kw: Any,
) -> dict[Impl, Run | str]:
    """Each implementation's best run (``ctx.repeat`` rounds, the highest
    *best* key wins), or why it was skipped."""
    out: dict[Impl, Run | str] = {}
    runs: dict[Impl, list[Run]] = {i: [] for i in impls}
    for impl in impls:
        why = missing_peer(impl)
        if why:
            out[impl] = why
            print(f"fanout: skipping {impl.label}: {why}", file=sys.stderr)
    for _ in range(ctx.repeat):
        for impl in impls:
            if impl not in out:
                print(f"fanout: {impl.label} ...", file=sys.stderr, flush=True)
                runs[impl].append(run_impl(ctx, impl, **kw))
    for impl, rs in runs.items():
        if rs:
            out[impl] = max(rs, key=best)
    return out


@scenario("fanout", "channels fan-out: a burst of 20 events to 5,000 SSE subscribers")
def fanout(ctx: Context) -> list[Result]:
    """Ours vs each peer: delivered events/s, p50/p99, idle KiB/connection."""
    clients = ctx.size(5000, 500)
    events = 20
    peers = [(HANDWRITTEN, AIM_HANDWRITTEN), (STARLETTE, AIM_STARLETTE), (FLASK_SSE, None)]
    got = _measure(ctx, [OURS, *(p for p, _ in peers)], clients=clients, events=events)
    ours_run = got[OURS]
    assert isinstance(ours_run, Run)
    ours = ours_run.measurement()
    if ours_run.idle_kib is not None:
        met = "met" if ours_run.idle_kib <= AIM_IDLE_KIB else "MISSED"
        ours.note += f"; idle aim <= {AIM_IDLE_KIB:g} KiB/conn {met}"
    checks = [
        Check(
            f"ours: all {clients:,} subscribers received all {events} events",
            ours_run.ok,
            f"{ours_run.complete:,} complete, {ours_run.received:,} events. {ours_run.problem}",
        )
    ]
    results: list[Result] = []
    for i, (impl, aim) in enumerate(peers):
        peer_run = got[impl]
        peer = _skipped(impl, peer_run) if isinstance(peer_run, str) else peer_run.measurement()
        row = ours if i == 0 else dataclasses.replace(ours, note="")
        results.append(Result("fanout", ours=row, peer=peer, aim=aim, checks=[]))
    results[0].checks = checks
    return results


@scenario("fanout-paced", "channels fan-out: 1,000 subscribers at 10 events/s, p99 latency")
def fanout_paced(ctx: Context) -> Result:
    """Ours vs the hand-written peer at a steady 10 events/s: the aim is a
    publish→receive p99 no worse than the peer's."""
    clients = 1000
    events = ctx.size(50, 20)
    got = _measure(
        ctx, [OURS, HANDWRITTEN], best=_by_p99, clients=clients, events=events, rate=10.0
    )
    ours_run, peer_run = got[OURS], got[HANDWRITTEN]
    assert isinstance(ours_run, Run) and isinstance(peer_run, Run)
    ours, peer = ours_run.measurement(), peer_run.measurement()
    if ours_run.p99 is not None and peer_run.p99 is not None:
        met = "met" if ours_run.p99 <= peer_run.p99 else "MISSED"
        ours.note += f"; aim p99 <= the hand-written peer's: {met}"
    check = Check(
        f"ours: all {clients:,} subscribers received all {events} events",
        ours_run.ok,
        f"{ours_run.complete:,} complete. {ours_run.problem}",
    )
    return Result("fanout-paced", ours=ours, peer=peer, checks=[check])


__all__ = ["fanout", "fanout_paced", "run_impl"]
