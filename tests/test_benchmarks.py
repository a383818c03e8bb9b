"""The benchmark harness's own logic (no server): medians, alternating
order, skipped peers, the chunked-body digest used for same-output checks."""

from __future__ import annotations

import hashlib
import json
import random
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.client import Dechunker
from benchmarks.harness import Measurement, Result, alternate, median, render, skipped


def m(rate: float, complete: bool = True) -> Measurement:
    return Measurement("x", "-", 1.0, rate, "u", complete=complete)


def test_median_is_the_middle_run_and_keeps_every_rate() -> None:
    got = median([m(5), m(1), m(3)])
    assert (got.rate, got.rates) == (3, (5, 1, 3))
    assert median([m(4), m(2)]).rate == 2  # the lower middle one
    assert not median([m(9), m(1, complete=False), m(5)]).complete


def test_alternate_switches_who_runs_first() -> None:
    order: list[str] = []

    def side(name: str) -> Measurement:
        order.append(name)
        return m(len(order))

    alternate(3, lambda: side("ours"), lambda: side("peer"))
    assert order == ["ours", "peer", "peer", "ours", "ours", "peer"]


def test_a_skipped_peer_has_no_ratio_and_is_never_ok() -> None:
    r = Result("s", ours=m(10), peer=skipped("peer: nginx", "no nginx binary"), aim=2.0)
    assert r.ratio is None
    table = render([r], "header")
    assert "[SKIPPED] s: peer: nginx (SKIPPED): no nginx binary" in table
    assert "NOT MEASURED" in table and "[ok]" not in table and " met" not in table


def test_dechunker_digest_matches_the_payload() -> None:
    rng = random.Random(7)
    payload = rng.randbytes(20_000)
    wire = b""
    i = 0
    while i < len(payload):
        chunk = payload[i : i + rng.randint(1, 3000)]
        wire += b"%x;ext=1\r\n" % len(chunk) + chunk + b"\r\n"
        i += len(chunk)
    wire += b"0\r\n\r\n"
    for _ in range(50):
        d = Dechunker()
        j = 0
        while j < len(wire):
            k = rng.randint(1, 70)
            d.feed(wire[j : j + k])
            j += k
        assert d.done and d.hash.hexdigest() == hashlib.sha256(payload).hexdigest()


def test_fresh_source_is_a_new_loopback_address_off_127_0_0() -> None:
    import ipaddress

    from benchmarks.fanout import fresh_source

    got = {fresh_source() for _ in range(20)}
    assert len(got) > 1
    for addr in got:
        ip = ipaddress.ip_address(addr)
        assert ip.is_loopback and not addr.startswith("127.0.")


class FakeServer:
    """A loopback listener on a thread that accepts every connection and
    answers the *n*-th accepted one (0-based) as ``answer(n)`` says:
    ``"head"`` (a 200 response head, then nothing), ``"503"`` (that status),
    ``"reset"`` (closed with an RST) or ``None`` (never answers, keeps it
    open). Bounded: 20 s."""

    def __init__(self, answer: Callable[[int], str | None]) -> None:
        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        deadline = time.monotonic() + 20
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            what = self.answer(self.accepted)
            self.accepted += 1
            if what == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                continue
            if what == "503":
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            if what == "head":
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )
            self.held.append(conn)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        for c in self.held:
            c.close()
        self.sock.close()


def connect_report(port: int, clients: int, *extra: str) -> dict[str, Any]:
    """Run the fan-out load client against *port* and return its
    ``connected`` report (then close its stdin: it exits without publishing)."""
    cmd = [sys.executable, "-m", "benchmarks.fanout_client", "--port", str(port)]
    cmd += ["--path", "/events", "--publish", "/publish", "--clients", str(clients)]
    cmd += ["--connect-timeout", "2", *extra]
    root = Path(__file__).resolve().parents[1]
    with subprocess.Popen(
        cmd, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdin is not None
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, "the load client said nothing for 30 s"
            report: dict[str, Any] = json.loads(proc.stdout.readline())
            proc.stdin.close()
            proc.wait(10)
            return report
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def test_a_subscriber_is_held_only_once_its_response_head_arrived() -> None:
    # Issue 16: TCP connected is not held. The server accepts all five
    # connections but answers only three; the other two fail, and the run
    # is broken (the runner does not publish), not "5 connected".
    from benchmarks.fanout import unheld

    with FakeServer(lambda n: "head" if n < 3 else None) as server:
        report = connect_report(server.port, 5)
    assert server.accepted == 5
    assert (report["connected"], report["failed"]) == (3, 2)
    assert report["errors"] == {"no response head": 2}
    why = unheld(report, 5)
    assert "broken run, not published" in why and "holds 3 of 5" in why
    assert unheld({**report, "connected": 5, "failed": 0}, 5) == ""


def test_connections_waiting_for_their_head_are_bounded_by_the_window() -> None:
    # At most --inflight connections connecting or unanswered at a time: a
    # server that never answers accepts no more than the window.
    with FakeServer(lambda n: None) as server:
        report = connect_report(server.port, 40, "--inflight", "8")
    assert server.accepted == 8
    assert (report["connected"], report["failed"]) == (0, 40)
    assert report["errors"] == {"no response head": 8, "not opened by the connect timeout": 32}


def test_a_reset_connection_is_retried_and_counted() -> None:
    with FakeServer(lambda n: "reset" if n < 2 else "head") as server:
        report = connect_report(server.port, 3)
    assert (report["connected"], report["failed"]) == (3, 0)
    assert report["retries"] == 2 and sum(report["retry_errors"].values()) == 2
    with FakeServer(lambda n: "reset") as server:
        report = connect_report(server.port, 1, "--retries", "2")
    assert (report["connected"], report["failed"], report["retries"]) == (0, 1, 2)
    assert server.accepted == 3


def test_another_status_than_200_fails_the_subscriber_without_retry() -> None:
    with FakeServer(lambda n: "503" if n == 0 else "head") as server:
        report = connect_report(server.port, 2, "--inflight", "1")
    assert (report["connected"], report["failed"], report["retries"]) == (1, 1, 0)
    assert report["errors"] == {"HTTP 503 Service Unavailable": 1}
