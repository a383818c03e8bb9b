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

``fanout-redis``
    Redis mode, 4 gunicorn gevent workers: ours (``redis://`` broker) vs
    Flask-SSE, each at *N* (2,000; ``--quick`` 200) and *N*/2 subscribers, a
    burst of 20 events; events/s, p50/p99, and Redis ``connected_clients``
    (ours: one pub/sub connection per worker whatever *N*; Flask-SSE: one
    per subscriber).

Implementations (each on a fresh server, pinned to the server core):

* ours: ``/streaming/events/<channel>`` fed by ``Streaming.publish`` with the
  memory broker (:mod:`benchmarks.fanout_app`), gunicorn ``-k gevent -w 1``;
* peer: a hand-written Flask view, a gevent ``Queue`` per subscriber
  (:mod:`benchmarks.peers.handwritten`), same gunicorn;
* peer: sse-starlette under uvicorn (:mod:`benchmarks.peers.starlette_sse`);
* peer: Flask-SSE with Redis (:mod:`benchmarks.peers.flask_sse_app`), same
  gunicorn, with a ``redis-server`` started here on a free port;
* peer (``fanout`` only): nginx with the nchan module (C), run here in the
  foreground from a generated ``nginx.conf`` (one worker), subscribers on an
  nchan EventSource location; nginx proxies ``/publish`` to a small gunicorn
  app (:mod:`benchmarks.peers.nchan_publisher`) that POSTs the events to
  nchan's publisher location, pipelined. Skipped, with the reason printed,
  when ``nginx`` or ``ngx_nchan_module.so`` is missing.

The load generator is :mod:`benchmarks.fanout_client`, an epoll subprocess
pinned to the client core; this process only orchestrates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from benchmarks.client import fetch
from benchmarks.harness import (
    ROOT,
    Check,
    Context,
    Measurement,
    Result,
    gunicorn,
    scenario,
    skipped,
)
from flask_streaming.testing import (
    GunicornServer,
    RedisServer,
    ServerProcess,
    child_pids,
    free_port,
    stop_process,
    wait_for_http,
)

KiB = 1024
#: The aims of issue 4 (ours / peer, delivered events/s).
AIM_HANDWRITTEN = 4.0
AIM_STARLETTE = 10.0
AIM_NCHAN = 2.0
#: Redis mode, 4 workers: ours / Flask-SSE.
AIM_FLASK_SSE_REDIS = 3.0
REDIS_WORKERS = 4
#: Idle memory aim per connection (KiB).
AIM_IDLE_KIB = 16.0
#: Peer packages the benchmark installs with pip when they are missing.
PEER_PACKAGES = {
    "sse_starlette": "sse-starlette",
    # uvicorn as sse-starlette's users run it: uvloop and httptools.
    "uvicorn": "uvicorn[standard]",
    "uvloop": "uvicorn[standard]",
    "httptools": "uvicorn[standard]",
    "flask_sse": "Flask-SSE",
}


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


class UvicornServer(ServerProcess):
    """uvicorn (one process, asyncio) serving an ASGI app on a free loopback
    port, pinned and under ``ulimit -n``; ready when ``GET /health`` answers
    200. Started and stopped (by its pid) like the other servers."""

    def __init__(self, app: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app

    def command(self) -> list[str]:
        """uvicorn's command line."""
        return [
            sys.executable, "-m", "uvicorn", self.app,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--loop", "uvloop", "--http", "httptools",
            "--backlog", "4096", "--no-access-log", "--log-level", "warning",
            "--timeout-graceful-shutdown", "2",
        ]  # fmt: skip

    def wait_ready(self, timeout: float) -> None:
        """Wait until ``GET /health`` answers 200."""
        wait_for_http(self.port, "/health", proc=self.proc, status=200, timeout=timeout)


def start_redis(ctx: Context, nofile: int) -> tuple[RedisServer, Any]:
    """A throwaway :class:`~flask_streaming.testing.RedisServer` (no
    persistence, pinned, ``maxclients`` near *nofile*) and a ``redis``
    client of it (for ``INFO``)."""
    import redis

    server = RedisServer(
        tempfile.mkdtemp(prefix="redis-", dir=ctx.data_dir),
        cpu=ctx.server_cpu,
        nofile=nofile,
        maxclients=max(nofile - 64, 1000),
        log_path=ctx.data_dir / "redis.log",
    ).start()
    return server, redis.Redis.from_url(server.url)


class Serving(Protocol):
    """What a run needs of a started server (gunicorn, uvicorn, nginx)."""

    port: int

    def stop(self) -> None:
        """Stop it by its pid."""

    def log_tail(self, lines: int = 30) -> str:
        """The end of its log."""


#: Where Debian (and nginx.org's packages) put dynamic nginx modules.
NGINX_MODULE_DIRS = ("/usr/lib/nginx/modules", "/usr/share/nginx/modules", "/etc/nginx/modules")
NCHAN_INSTALL = "apt-get install nginx-light libnginx-mod-nchan"


def nginx_binary() -> str | None:
    """The ``nginx`` executable (``/usr/sbin`` is not on every ``PATH``)."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def install_nchan() -> None:
    """Install Debian's ``nginx-light`` and ``libnginx-mod-nchan`` when
    nginx or the nchan module is missing and this runs as root with apt-get
    (so the nchan aim is measured in every full run, not skipped). The
    package's service is not started (no init system here; and nginx runs
    from our own config only). Bounded: 10 minutes."""
    if nginx_binary() is not None and nchan_module() is not None:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    print(f"fanout: {NCHAN_INSTALL} (the nchan peer)", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
    install += ["nginx-light", "libnginx-mod-nchan"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    with contextlib.suppress(subprocess.TimeoutExpired):
        if subprocess.call(install, timeout=600, **quiet) != 0:  # type: ignore[call-overload]
            subprocess.call(["apt-get", "update", "-qq"], timeout=600, **quiet)  # type: ignore[call-overload]
            subprocess.call(install, timeout=600, **quiet)  # type: ignore[call-overload]


def nchan_module() -> Path | None:
    """``ngx_nchan_module.so``, if installed."""
    for d in NGINX_MODULE_DIRS:
        path = Path(d) / "ngx_nchan_module.so"
        if path.is_file():
            return path
    return None


def nchan_conf(*, prefix: Path, module: Path, port: int, helper_port: int, nofile: int) -> str:
    """An ``nginx.conf`` for the nchan peer: one worker, subscribers on
    ``/events`` (EventSource, only messages published after they came),
    the publisher on ``/pub``, and the helper app behind everything else."""
    return f"""\
load_module {module};
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections {max(nofile - 64, 1024)};
    multi_accept on;
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /events {{
            nchan_subscriber eventsource;
            nchan_channel_id fanout;
            nchan_subscriber_first_message newest;
        }}
        location = /pub {{
            nchan_publisher;
            nchan_channel_id fanout;
            nchan_message_buffer_length 100;
        }}
        location / {{
            proxy_pass http://127.0.0.1:{helper_port};
            proxy_read_timeout 300s;
        }}
    }}
}}
"""


class NginxProcess(ServerProcess):
    """nginx in the foreground (``daemon off``) from the config *conf* in
    the scratch folder *prefix*; its output goes to ``prefix/nginx.out``."""

    def __init__(self, prefix: Path, conf: Path, **kwargs: Any) -> None:
        super().__init__(log_path=prefix / "nginx.out", **kwargs)
        self.prefix = prefix
        self.conf = conf
        self.error_log = prefix / "error.log"

    def command(self) -> list[str]:
        nginx = nginx_binary() or "nginx"
        return [
            nginx, "-p", f"{self.prefix}/", "-e", str(self.error_log), "-c", str(self.conf),
            "-g", "daemon off;",
        ]  # fmt: skip


class NchanServer:
    """nginx + nchan (one worker, pinned, under ``ulimit -n``) from a
    generated config in a scratch folder, and the publisher app
    (:mod:`benchmarks.peers.nchan_publisher`) behind it. Both are stopped by
    their pids."""

    def __init__(self, ctx: Context, *, nofile: int, module: Path, env: dict[str, str]) -> None:
        self.nofile = nofile
        self.module = module
        prefix = Path(tempfile.mkdtemp(prefix="nginx-", dir=ctx.data_dir))
        self.nginx = NginxProcess(
            prefix, prefix / "nginx.conf", port=free_port(), cpu=ctx.server_cpu, nofile=nofile
        )
        self.port = self.nginx.port
        self.worker = 0
        self.helper = gunicorn(
            NCHAN.app,
            nofile=nofile,
            cpu=ctx.server_cpu,
            env={"BENCH_NCHAN_PORT": str(self.port), **env},
            args=["--backlog", "4096"],
            log_path=prefix / "publisher.log",
        )
        self.helper.port = free_port()

    @property
    def pid(self) -> int | None:
        """The nginx master's pid (``None`` when not running)."""
        return self.nginx.pid

    def start(self, timeout: float = 30.0) -> NchanServer:
        """Write the config, start nginx, find its worker, start the helper,
        and wait until ``/health`` answers through nginx."""
        self.nginx.conf.write_text(
            nchan_conf(
                prefix=self.nginx.prefix,
                module=self.module,
                port=self.port,
                helper_port=self.helper.port,
                nofile=self.nofile,
            )
        )
        deadline = time.monotonic() + timeout
        try:
            self.nginx.start(timeout)
            while not self.worker:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx started no worker")
                workers = child_pids(self.nginx.pid or 0)
                self.worker = workers[0] if workers else 0
                time.sleep(0.05)
            self.helper.env["BENCH_NCHAN_PID"] = str(self.worker)
            self.helper.start(timeout)
            while True:
                with contextlib.suppress(OSError):
                    if fetch(self.port, "/health", timeout=2.0, keep_body=True).status == 200:
                        return self
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not proxy /health")
                time.sleep(0.1)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{exc}:\n{self.log_tail()}") from None
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the helper, then nginx (``SIGTERM``: fast shutdown) by its
        pid; kill the master and its worker if it hangs."""
        self.helper.stop()
        proc, self.nginx.proc = self.nginx.proc, None
        if stop_process(proc) == -signal.SIGKILL and self.worker:
            with contextlib.suppress(OSError):
                os.kill(self.worker, signal.SIGKILL)

    def log_tail(self, lines: int = 30) -> str:
        """The end of nginx's error log and of the helper's log."""
        try:
            text = self.nginx.error_log.read_text(errors="replace")
        except OSError:
            text = ""
        return "\n".join(text.splitlines()[-lines:]) + "\n" + self.helper.log_tail(lines)


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
    #: server worker processes (memory is summed over all of them)
    workers: int = 1
    #: answers a subscriber (status line and headers) before its first
    #: event; if not (Flask-SSE: its headers go out with the first event),
    #: the load client holds a subscriber once its request is sent and only
    #: the server's own count (``/stats``) proves it held
    head: bool = True


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
    "peer: sse-starlette under uvicorn[standard] (uvloop, httptools)",
    "benchmarks.peers.starlette_sse:app",
    "/events",
    server="uvicorn",
    needs=("sse_starlette", "uvicorn", "uvloop", "httptools"),
)
FLASK_SSE = Impl(
    "peer: Flask-SSE + Redis",
    "benchmarks.peers.flask_sse_app:app",
    "/events?channel=fanout",
    redis=True,
    needs=("flask_sse",),
    head=False,
)
NCHAN = Impl(
    "peer: nginx + nchan (C), 1 worker, EventSource",
    "benchmarks.peers.nchan_publisher:app",
    "/events",
    server="nginx",
)
OURS_REDIS = Impl(
    f"ours: /streaming/events/<ch> + Streaming.publish (redis://, {REDIS_WORKERS} workers)",
    "benchmarks.fanout_app:app",
    "/streaming/events/fanout",
    redis=True,
    workers=REDIS_WORKERS,
)
FLASK_SSE_REDIS = dataclasses.replace(
    FLASK_SSE, label=f"peer: Flask-SSE + Redis ({REDIS_WORKERS} workers)", workers=REDIS_WORKERS
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
    #: connects the load client retried (refused, reset, closed before the head)
    retries: int = 0
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
        if self.retries:
            parts.append(f"{self.retries:,} connects retried")
        if not self.impl.head:
            parts.append("held: request sent and the server's count (no head before an event)")
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
        stop_process(proc, kill=True)
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()


class BrokenRun(RuntimeError):
    """A run that cannot be measured (not every subscriber held); its
    message is the reason, shown in the table."""


def unheld(connected: dict[str, Any], clients: int) -> str:
    """Why the load client's ``connected`` report is not a run to publish
    to ("": every one of *clients* subscribers is held, its response head
    received)."""
    held = connected.get("connected", 0)
    if held >= clients and not connected.get("failed"):
        return ""
    return (
        f"broken run, not published: the client holds {held:,} of {clients:,} subscribers"
        f" (response heads received) after {connected.get('seconds', 0):.1f} s;"
        f" {connected.get('failed', 0):,} failed {connected.get('errors', {})},"
        f" {connected.get('retries', 0):,} retried {connected.get('retry_errors', {})}"
    )


def _drive(
    ctx: Context,
    port: int,
    path: str,
    *,
    clients: int,
    events: int,
    rate: float = 0.0,
    idle: Callable[[dict[str, Any]], None] | None = None,
    source: str = "",
    head: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Connect *clients* subscribers; unless the load client holds every one
    (its response head received; with *head* false: its request sent) and
    the server's own count agrees within a bounded time, raise
    :class:`BrokenRun` without publishing. Then call *idle* with the
    client's ``connected`` report (memory readings), publish, and return the
    client's ``connected`` and ``done`` reports."""
    publish = f"/publish?n={events}" + (f"&rate={rate:g}" if rate else "")
    publish_seconds = events / rate if rate else 0.0
    # A worker on a busy core may take a while to answer 18,500 requests.
    hold = max(60.0, clients / 100)
    with _client(
        ctx,
        port,
        path,
        publish,
        clients=clients,
        events=events,
        timeout=ctx.timeout,
        connect_timeout=hold,
        held_on="head" if head else "sent",
        **({"source": source} if source else {}),
    ) as proc:
        connected = _line(proc, hold + 30)
        problem = unheld(connected, clients)
        if problem:
            raise BrokenRun(problem)
        want = connected["connected"]
        deadline = time.monotonic() + hold
        while (held := server_stats(port)["subscribers"]) < want:
            if time.monotonic() > deadline:
                raise BrokenRun(
                    f"the server holds {held} of {want} subscribers after {hold:.0f} s"
                    f" (client: {connected}); not published"
                )
            time.sleep(0.2)
        if idle is not None:
            idle(connected)
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        done = _line(proc, ctx.timeout + publish_seconds + 30)
    return connected, done


def _start(ctx: Context, impl: Impl, nofile: int, env: dict[str, str]) -> Serving:
    if impl.server == "nginx":
        module = nchan_module()
        assert module is not None  # missing_peer checked
        env = {"BENCH_DATA_DIR": str(ctx.data_dir), **env}
        return NchanServer(ctx, nofile=nofile, module=module, env=env).start()
    name = impl.app.split(":")[0].rsplit(".", 1)[-1]
    env = {"BENCH_DATA_DIR": str(ctx.data_dir), **env}
    log_path = ctx.data_dir / f"fanout-{name}.log"
    server: GunicornServer | UvicornServer
    if impl.server == "uvicorn":
        server = UvicornServer(
            impl.app,
            nofile=nofile,
            cpu=ctx.server_cpu,
            env={"PYTHONPATH": str(ROOT), **env},
            cwd=str(ROOT),
            log_path=log_path,
        )
    else:
        server = gunicorn(
            impl.app,
            nofile=nofile,
            workers=impl.workers,
            cpu=ctx.server_cpu,
            env=env,
            args=["--backlog", "4096"],
            log_path=log_path,
        )
    return server.start(30.0)


def fresh_source() -> str:
    """A random loopback address 127.x.y.z (x ≥ 1, never 127.0.0.1 the
    servers listen on): a fresh one per run, so the ports the last run left
    in TIME_WAIT never collide with this run's connects."""
    import random

    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def run_impl(
    ctx: Context,
    impl: Impl,
    *,
    clients: int,
    events: int,
    rate: float = 0.0,
    source: str = "",
    env: dict[str, str] | None = None,
) -> Run:
    """Start *impl*'s server (and Redis), warm it up, measure idle memory
    and one publish to *clients* subscribers (from loopback address
    *source*, if given); stop everything by pid."""
    nofile = nofile_limit()
    run = Run(impl, clients, events)
    redis: RedisServer | None = None
    redis_client: Any = None
    server: Serving | None = None
    try:
        env = dict(env or {})
        if impl.redis:
            redis, redis_client = start_redis(ctx, nofile)
            # Flask-SSE reads the first, our app the second.
            env["BENCH_REDIS_URL"] = env["BENCH_BROKER_URL"] = redis.url
        if impl.workers > 1:
            # Our app's /stats sums the workers' counts kept here.
            env["BENCH_STATS_DIR"] = tempfile.mkdtemp(prefix="stats-", dir=ctx.data_dir)
        server = _start(ctx, impl, nofile, env)
        port = server.port
        # Warm-up: imports, first requests, the broker's lazy set-up.
        _drive(ctx, port, impl.path, clients=20, events=2, head=impl.head)
        # One more event, to nobody: peers that notice a gone client only
        # when a write fails let go of the warm-up's subscribers now.
        fetch(port, "/publish?n=1", timeout=10)
        time.sleep(0.5)
        pids = [server_stats(port)["pid"]]
        if impl.workers > 1 and isinstance(server, GunicornServer):
            pids = server.worker_pids() or pids
        before = sum(rss_kib(pid) for pid in pids)
        redis_before = redis_client.info()["used_memory"] if redis else 0
        redis_pid = (redis.pid or 0) if redis else 0
        redis_rss_before = rss_kib(redis_pid) if redis else 0

        def idle(connected: dict[str, Any]) -> None:
            run.connected = connected["connected"]
            time.sleep(1.0)  # let the last connections settle
            run.idle_kib = (sum(rss_kib(pid) for pid in pids) - before) / max(run.connected, 1)
            if redis is not None:
                info = redis_client.info()
                run.redis_clients = int(info["connected_clients"])
                grown = max(rss_kib(redis_pid) - redis_rss_before, 0) * KiB
                grown = max(grown, int(info["used_memory"]) - redis_before)
                run.redis_kib = grown / KiB / max(run.connected, 1)

        connected, done = _drive(
            ctx,
            port,
            impl.path,
            clients=clients,
            events=events,
            rate=rate,
            idle=idle,
            source=source,
            head=impl.head,
        )
        run.connected = connected["connected"]
        run.connect_seconds = connected["seconds"]
        run.retries = connected.get("retries", 0)
        run.received = done["received"]
        run.complete = done["complete"]
        first = done["published"].get("first", done["t_go"])
        run.seconds = done["t_last"] - first
        run.p50, run.p99 = done["p50"], done["p99"]
        if done["published"].get("error"):
            run.problem = f"publish failed: {done['published']['error']}"
    except BrokenRun as exc:
        run.problem = str(exc)
    except Exception as exc:
        run.problem = f"failed: {exc!r}"
        if server is not None:
            print(server.log_tail(), file=sys.stderr)
    finally:
        if server is not None:
            server.stop()
        if redis_client is not None:
            with contextlib.suppress(Exception):
                redis_client.close()
        if redis is not None:
            redis.stop()
    return run


# --- peers ---------------------------------------------------------------------------


def missing_peer(impl: Impl) -> str | None:
    """Why *impl* cannot run here (``None``: it can). Missing peer packages
    are installed with pip first."""
    missing = [m for m in impl.needs if importlib.util.find_spec(m) is None]
    if missing:
        pkgs = sorted({PEER_PACKAGES[m] for m in missing})
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
    if impl.server == "nginx":
        install_nchan()
        if nginx_binary() is None:
            return f"no nginx binary ({NCHAN_INSTALL})"
        if nchan_module() is None:
            dirs = ", ".join(NGINX_MODULE_DIRS)
            return f"no ngx_nchan_module.so in {dirs} ({NCHAN_INSTALL})"
    return None


def _skipped(impl: Impl, why: str) -> Measurement:
    return skipped(impl.label, why, "events/s")


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
    """Each implementation's median run (``ctx.repeat`` rounds, alternating
    which implementation runs first; ranked by the *best* key), or why it
    was skipped."""
    out: dict[Impl, Run | str] = {}
    runs: dict[Impl, list[Run]] = {i: [] for i in impls}
    for impl in impls:
        why = missing_peer(impl)
        if why:
            out[impl] = why
            print(f"fanout: skipping {impl.label}: {why}", file=sys.stderr)
    for n in range(ctx.repeat):
        # Alternate which implementation runs first.
        for impl in impls if n % 2 == 0 else impls[::-1]:
            if impl not in out:
                print(f"fanout: {impl.label} ...", file=sys.stderr, flush=True)
                runs[impl].append(run_impl(ctx, impl, **kw))
    for impl, rs in runs.items():
        if rs:
            # The median run by the *best* key (the lower middle one for an
            # even count; an incomplete run ranks lowest).
            out[impl] = sorted(rs, key=best)[(len(rs) - 1) // 2]
    return out


@scenario("fanout", "channels fan-out: a burst of 20 events to 5,000 SSE subscribers")
def fanout(ctx: Context) -> list[Result]:
    """Ours vs each peer: delivered events/s, p50/p99, idle KiB/connection."""
    clients = ctx.size(5000, 500)
    events = 20
    peers = [
        (HANDWRITTEN, AIM_HANDWRITTEN),
        (STARLETTE, AIM_STARLETTE),
        (FLASK_SSE, None),
        (NCHAN, AIM_NCHAN),
    ]
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


@scenario(
    "fanout-redis",
    f"channels fan-out, Redis mode, {REDIS_WORKERS} workers: 20 events to 2,000 subscribers",
)
def fanout_redis(ctx: Context) -> list[Result]:
    """Ours with the ``redis://`` broker vs Flask-SSE, both on gunicorn with
    4 gevent workers and a redis-server of their own, at *N* and *N*/2
    subscribers: events/s, p50/p99 and Redis ``connected_clients`` (ours
    must not grow with the subscribers)."""
    clients = ctx.size(2000, 200)
    half = clients // 2
    events = 20
    impls = [OURS_REDIS, FLASK_SSE_REDIS]
    at_half = _measure(ctx, impls, clients=half, events=events)
    at_full = _measure(ctx, impls, clients=clients, events=events)
    results: list[Result] = []
    for got, aim in ((at_full, AIM_FLASK_SSE_REDIS), (at_half, None)):
        ours_run, peer_run = got[OURS_REDIS], got[FLASK_SSE_REDIS]
        assert isinstance(ours_run, Run)
        ours = ours_run.measurement()
        if isinstance(peer_run, str):
            peer = _skipped(FLASK_SSE_REDIS, peer_run)
        else:
            peer = peer_run.measurement()
        results.append(Result("fanout-redis", ours=ours, peer=peer, aim=aim))
    full, half_run = at_full[OURS_REDIS], at_half[OURS_REDIS]
    assert isinstance(full, Run) and isinstance(half_run, Run)
    checks = [
        Check(
            f"ours: all {r.clients:,} subscribers received all {events} events",
            r.ok,
            f"{r.complete:,} complete, {r.received:,} events. {r.problem}",
        )
        for r in (full, half_run)
    ]
    c_full, c_half = full.redis_clients, half_run.redis_clients
    growth = [
        f"{r.impl.label}: {r.redis_clients} at {r.clients:,}"
        for got in (at_half, at_full)
        for r in got.values()
        if isinstance(r, Run)
    ]
    # Ours holds one pub/sub connection per worker plus at most its bounded
    # publish/replay pool, whatever the number of subscribers (+1: the
    # runner's own INFO connection).
    from flask_streaming.brokers.redis import POOL_SIZE

    bound = REDIS_WORKERS * (1 + POOL_SIZE) + 1
    checks.append(
        Check(
            f"ours: Redis connected_clients independent of the subscribers (<= {bound})",
            c_full is not None and c_half is not None and max(c_full, c_half) <= bound,
            "; ".join(growth),
        )
    )
    results[0].checks = checks
    return results


#: Connections the idle scenario holds on one worker: as many as the
#: open-files hard limit (20,000 per process here) leaves room for.
IDLE_CONNECTIONS = 18_500
#: Idle memory aim per connection at that scale (KiB).
AIM_IDLE_MAX_KIB = 14.0


@scenario(
    "idle-max",
    f"{IDLE_CONNECTIONS:,} idle SSE connections on one worker, then one publish (vs nginx+nchan)",
)
def idle_max(ctx: Context) -> list[Result]:
    """As many idle subscribers on one worker as the open-files limit
    allows, then one event: RSS per connection, and the time from the
    publish call to the last subscriber's receipt (the maximum, not a
    percentile). Ours (``STREAMING_MAX_CONNECTIONS`` raised for it) vs
    nginx+nchan in the same run; a fresh 127.x.y.z source address per run;
    the load client is one epoll process under its own open-files cap."""
    nofile = nofile_limit()
    clients = ctx.size(min(IDLE_CONNECTIONS, nofile - 1_500), 2_000)
    env = {"BENCH_MAX_CONNECTIONS": str(clients + 500)}
    impls = [OURS, NCHAN]
    runs: dict[Impl, list[Run]] = {i: [] for i in impls}
    why = {i: missing_peer(i) for i in impls}
    for n in range(ctx.repeat):
        order = impls if n % 2 == 0 else impls[::-1]
        for impl in order:
            if why[impl] is None:
                print(f"idle-max: {impl.label} ...", file=sys.stderr, flush=True)
                runs[impl].append(
                    run_impl(ctx, impl, clients=clients, events=1, source=fresh_source(), env=env)
                )

    def row(impl: Impl) -> tuple[Measurement, Run | None]:
        if why[impl] is not None:
            return _skipped(impl, str(why[impl])), None
        rs = sorted(runs[impl], key=lambda r: (r.ok, -r.seconds))
        broken = [r for r in rs if not r.ok]
        mid = broken[0] if broken else sorted(rs, key=lambda r: r.seconds)[(len(rs) - 1) // 2]
        reach = [r.seconds * 1000 for r in runs[impl]]
        kib = [r.idle_kib or 0.0 for r in runs[impl]]
        m = Measurement(
            impl=impl.label,
            size=f"{clients:,} idle subs, 1 event",
            seconds=mid.seconds,
            rate=1 / mid.seconds if mid.seconds > 0 else 0.0,
            unit="1/s to reach all",
            complete=mid.ok,
            note=(
                f"publish→last subscriber {mid.seconds * 1000:.0f} ms (runs: "
                + ", ".join(f"{x:.0f}" for x in reach)
                + " ms); idle "
                + (f"{mid.idle_kib:.1f}" if mid.idle_kib is not None else "-")
                + " KiB/conn (runs: "
                + ", ".join(f"{x:.1f}" for x in kib)
                + f"); {mid.complete:,}/{clients:,} reached"
                + (f"; {mid.retries:,} connects retried" if mid.retries else "")
                + (f"; {mid.problem}" if mid.problem else "")
            ),
        )
        return m, mid

    ours, ours_run = row(OURS)
    peer, _ = row(NCHAN)
    checks: list[Check] = []
    if ours_run is not None:
        checks.append(
            Check(
                f"ours: all {clients:,} idle subscribers received the event",
                ours_run.ok,
                f"{ours_run.complete:,} reached. {ours_run.problem}",
            )
        )
        kib = ours_run.idle_kib
        met = "met" if kib is not None and kib <= AIM_IDLE_MAX_KIB else "MISSED"
        ours.note += f"; idle aim <= {AIM_IDLE_MAX_KIB:g} KiB/conn {met}"
    return [Result("idle-max", ours=ours, peer=peer, aim=1.0, checks=checks)]


__all__ = ["fanout", "fanout_paced", "fanout_redis", "idle_max", "run_impl"]
