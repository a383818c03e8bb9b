"""The benchmark harness's own logic (no server): medians, alternating
order, skipped peers, the chunked-body digest used for same-output checks."""

from __future__ import annotations

import hashlib
import random

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
