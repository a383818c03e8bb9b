"""What every fan-out server app shares: the event payload and the publish
schedule, so that ours and every peer publish exactly the same bytes.

The payload carries its publish time (``time.monotonic()``, one clock for
every process of the machine) after the marker ``ts=``; the load client
counts events by that marker and parses one timestamp per read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

#: The channel every fan-out app publishes on and every client subscribes to.
CHANNEL = "fanout"
#: Marks each event's payload (counted by the load client).
MARKER = b"ts="
#: Upper bound on the events one publish request may send.
MAX_EVENTS = 100_000


def payload(seq: int) -> str:
    """The data of the *seq*-th event, stamped with the time of its publish."""
    return f"ts={time.monotonic():.6f} seq={seq} msg=hello"


def publish_args(args: dict[str, str]) -> tuple[int, float]:
    """``(n, interval)`` from a publish request's query: how many events, and
    seconds between them (0: a burst)."""
    n = max(0, min(int(args.get("n", "20")), MAX_EVENTS))
    rate = float(args.get("rate", "0"))
    return n, (1.0 / rate if rate > 0 else 0.0)


def next_slot(start: float, seq: int, interval: float) -> float:
    """Seconds to wait before the *seq*-th event of a paced run that started
    at *start* (absolute schedule: a late event does not delay the rest)."""
    return max(0.0, start + seq * interval - time.monotonic())


def publish_run(
    args: Any, send: Callable[[int], object], sleep: Callable[[float], object]
) -> dict[str, float]:
    """Publish the events a publish request asks for (:func:`publish_args`):
    ``send(seq)`` for each, as a burst or paced with *sleep* (the server's
    own: ``gevent.sleep``); the first and last publish times, which the
    load client turns into latency and rate."""
    n, interval = publish_args(args)
    first = start = time.monotonic()
    for seq in range(n):
        if interval:
            sleep(next_slot(start, seq, interval))
        if seq == 0:
            first = time.monotonic()
        send(seq)
    return {"first": first, "last": time.monotonic()}
