"""Event-stream scenarios: gunicorn reload and shutdown, Redis killed while
publishing, a subscriber that stops reading, many idle subscribers."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import threading
import time
from pathlib import Path

from flask_streaming.testing import RedisServer

from .common import (
    Publisher,
    Result,
    ResumingSubscriber,
    Uploader,
    gunicorn,
    request,
    wait_until,
)


def _redis(workdir: Path) -> RedisServer | None:
    import shutil

    if shutil.which("redis-server") is None:
        return None
    return RedisServer(workdir, persistence="always").start()


def _catch_up(subs: list[ResumingSubscriber], ids: list[int], timeout: float) -> None:
    if ids:
        last = max(ids)
        wait_until(lambda: all(s.ids() and max(s.ids()) >= last for s in subs), timeout)


def _losses(res: Result, subs: list[ResumingSubscriber], published: list[int]) -> int:
    """Events published successfully that some subscriber never got."""
    lost = 0
    want = set(published)
    for sub in subs:
        got = sub.ids()
        if len(got) != len(set(got)):
            res.errors["duplicate events"] += len(got) - len(set(got))
        lost += len(want - set(got))
        if sub.resets:
            res.errors["stream-reset"] += sub.resets
    return lost


def reload_and_term(
    workdir: Path, cycles: int, *, subscribers: int = 20, uploads: int = 4
) -> Result:
    """gunicorn HUP (graceful reload) then TERM (shutdown, and a new server
    on the same port) while SSE subscribers listen, events are published
    and uploads run: subscribers reconnect with ``Last-Event-ID`` and miss
    no event, uploads resume and verify. Redis broker (memory history is
    per process)."""
    res = Result("HUP reload + TERM restart, SSE + uploads in flight")
    rs = _redis(workdir / "redis")
    if rs is None:
        res.notes.append("redis-server missing: not run")
        return res
    try:
        env = {"BROKER_URL": rs.url, "MAX_SESSIONS": "0", "HISTORY": "100000"}
        with gunicorn(workdir, workers=2, env=env) as server:
            reconnects = 0
            for cycle in range(cycles):
                res.runs += 1
                channel = f"reload-{cycle}"
                subs = [ResumingSubscriber(server.port, channel) for _ in range(subscribers)]
                for s in subs:
                    s.start()
                for s in subs:
                    s.opened.wait(10)
                pub = Publisher(server.port, channel, 0.01)
                pub.start()
                ups = [
                    Uploader(server.port, os.urandom(4 << 20), 128 << 10, pace=0.01)
                    for _ in range(uploads)
                ]
                done: list[bool] = []
                threads = [
                    threading.Thread(target=lambda u=u, d=done: d.append(u.run(timeout=90)))
                    for u in ups
                ]
                for t in threads:
                    t.start()
                time.sleep(1.0)
                assert server.proc is not None
                os.kill(server.proc.pid, signal.SIGHUP)
                time.sleep(2.0)
                server.stop()  # TERM: graceful shutdown
                time.sleep(0.3)
                server.start()  # same port, same store, same Redis
                time.sleep(1.5)
                pub.stop()
                for t in threads:
                    t.join(90)
                _catch_up(subs, pub.ok, 20)
                for s in subs:
                    s.stop()
                reconnects += sum(s.connects - 1 for s in subs)
                lost = _losses(res, subs, pub.ok)
                res.lost_events += lost
                res.errors.update(pub.errors)
                for u in ups:
                    res.errors.update(u.errors)
                bad = sum(not u.verified() for u in ups)
                res.lost_bytes += sum(len(u.data) for u in ups if not u.verified())
                if not lost and not bad and len(done) == len(ups) and pub.ok:
                    res.passed += 1
                res.notes.append(f"cycle {cycle}: {len(pub.ok)} events")
            res.notes.append(f"{reconnects} reconnects by Last-Event-ID")
    finally:
        rs.kill()
    return res


def redis_restart(workdir: Path, cycles: int, *, subscribers: int = 10) -> Result:
    """Redis (appendonly) killed and restarted while events are published
    over HTTP on 2 workers: no event that was published successfully is
    lost for subscribers that stay or resume."""
    res = Result("Redis SIGKILL + restart while publishing")
    rs = _redis(workdir / "redis")
    if rs is None:
        res.notes.append("redis-server missing: not run")
        return res
    try:
        env = {"BROKER_URL": rs.url, "HISTORY": "100000"}
        with gunicorn(workdir, workers=2, env=env) as server:
            res.runs += 1
            subs = [ResumingSubscriber(server.port, "durable") for _ in range(subscribers)]
            for s in subs:
                s.start()
            for s in subs:
                s.opened.wait(10)
            pub = Publisher(server.port, "durable", 0.005)
            pub.start()
            for _ in range(cycles):
                time.sleep(0.7)
                rs.kill()
                time.sleep(0.5)
                rs.start()
            time.sleep(1.5)
            pub.stop()
            _catch_up(subs, pub.ok, 20)
            for s in subs:
                s.stop()
            lost = _losses(res, subs, pub.ok)
            res.lost_events += lost
            res.errors.update(pub.errors)
            res.passed += not lost and bool(pub.ok)
            res.notes.append(
                f"{cycles} kills, {len(pub.ok)} published, {pub.failed} refused while down"
            )
    finally:
        rs.kill()
    return res


def stalled_subscriber(workdir: Path, runs: int, *, timeout: float = 1.0) -> Result:
    """A subscriber that stops reading: the others get every event at once,
    and the stalled one is cut off after the send timeout (its connection
    leaves the worker's count)."""
    res = Result("SSE client not reading (send timeout)")
    env = {"SEND_TIMEOUT": str(timeout), "PING": "0.5"}
    with gunicorn(workdir, workers=1, env=env) as server:
        cut: list[float] = []
        lag: list[float] = []
        for run in range(runs):
            res.runs += 1
            channel = f"flood-{run}"
            stalled = socket.socket()
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.connect(("127.0.0.1", server.port))
            stalled.sendall(f"GET /streaming/events/{channel} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            good = ResumingSubscriber(server.port, channel)
            good.start()
            good.opened.wait(10)
            wait_until(lambda: request(server.port, "GET", "/stats")[1]["connections"] == 2, 5)
            t0 = time.monotonic()
            n = 300
            for i in range(n):
                request(server.port, "POST", f"/publish/{channel}?data=e{i}&pad=16000")
            got_all = wait_until(lambda g=good, n=n: len(g.events) >= n, 10, 0.01)
            lag.append(time.monotonic() - t0)
            t1 = time.monotonic()
            gone = wait_until(
                lambda: request(server.port, "GET", "/stats")[1]["connections"] == 1,
                timeout + 10,
            )
            cut.append(time.monotonic() - t1)
            good.stop()
            stalled.close()
            if not got_all:
                res.errors["good subscriber short"] += 1
            if not gone:
                res.errors["stalled one not cut"] += 1
            if got_all and gone and good.ids() == sorted(set(good.ids())):
                res.passed += 1
        res.notes.append(
            f"others got {n} x 16 KB in {max(lag):.2f} s; stalled cut after "
            f"{max(cut):.1f} s (timeout {timeout:g} s)"
        )
    return res


def idle_subscribers(workdir: Path, count: int) -> Result:
    """*count* concurrent idle SSE connections on one gevent worker, then a
    broadcast that every one of them receives; all close cleanly."""
    res = Result(f"{count} idle SSE connections, 1 worker, broadcast")
    # One load client, one address: the per-client bound is for browsers.
    env = {"MAX_CONNECTIONS": str(count + 1000), "MAX_CONNECTIONS_PER_CLIENT": "0", "PING": "60"}
    with gunicorn(workdir, workers=1, env=env) as server:
        res.runs = 1
        before = request(server.port, "GET", "/stats")[1]["rss_kib"]
        sel = selectors.DefaultSelector()
        socks: list[socket.socket] = []
        bufs: dict[int, bytearray] = {}
        req = b"GET /streaming/events/idle HTTP/1.1\r\nHost: x\r\n\r\n"
        t0 = time.monotonic()
        try:
            for _ in range(count):
                s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                s.sendall(req)
                s.setblocking(False)
                socks.append(s)
                bufs[s.fileno()] = bytearray()
                sel.register(s, selectors.EVENT_READ)
                if len(socks) % 500 == 0:
                    _drain(sel, bufs, 0)

            def opened() -> bool:
                _drain(sel, bufs, 0.05)
                return all(b": stream opened" in b for b in bufs.values())

            all_open = wait_until(opened, 60, 0)
            connect_s = time.monotonic() - t0
            stats = request(server.port, "GET", "/stats")[1]
            per_conn = (stats["rss_kib"] - before) / max(1, count)
            t1 = time.monotonic()
            request(server.port, "POST", "/publish/idle?data=hello-everyone")

            def everyone_got() -> bool:
                _drain(sel, bufs, 0.05)
                return all(b"hello-everyone" in b for b in bufs.values())

            everyone = wait_until(everyone_got, 60, 0)
            fanout_s = time.monotonic() - t1
            got = sum(b"hello-everyone" in b for b in bufs.values())
        finally:
            for s in socks:
                with contextlib.suppress(OSError):
                    sel.unregister(s)
                s.close()
        drained = wait_until(
            lambda: request(server.port, "GET", "/stats")[1]["connections"] == 0, 30
        )
        if not all_open:
            res.errors["not all opened"] += 1
        res.lost_events = count - got
        res.passed = int(all_open and everyone and drained)
        if not drained:
            res.errors["subscribers left registered"] += 1
        res.notes.append(
            f"opened in {connect_s:.1f} s, broadcast reached all in {fanout_s * 1000:.0f} ms, "
            f"{per_conn:.1f} KiB RSS per connection"
        )
    return res


def _drain(sel: selectors.BaseSelector, bufs: dict[int, bytearray], timeout: float) -> None:
    for key, _ in sel.select(timeout):
        sock = key.fileobj
        assert isinstance(sock, socket.socket)
        with contextlib.suppress(BlockingIOError, OSError):
            data = sock.recv(65536)
            bufs[sock.fileno()] += data
            if len(bufs[sock.fileno()]) > 4096:  # keep only the tail
                del bufs[sock.fileno()][:-2048]
