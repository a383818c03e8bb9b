"""Shared by the resume tests: an in-process subscriber connection to a
broker (a real :class:`~flask_streaming.brokers.Subscriber` with a real,
thread-safe outbox), and a redis-server a test may kill and restart."""

from __future__ import annotations

import time
from typing import Any

from flask_streaming.brokers import Broker, Subscriber
from flask_streaming.testing import Event, EventParser, RedisServer
from flask_streaming.transport import Outbox


class Conn:
    """One subscriber connection, read by draining its outbox as the writer
    of a real stream would."""

    def __init__(self, broker: Broker, channels: list[str], last_event_id: str | None = None):
        self.outbox = Outbox(green=False)
        self.sub = Subscriber(broker, tuple(dict.fromkeys(channels)), self.outbox, last_event_id)
        self.parser = EventParser()
        self.events: list[Event] = []
        self.sub.start(None)  # type: ignore[arg-type]  # the body is not used

    def poll(self) -> list[Event]:
        self.events += self.parser.feed(self.outbox.drain())
        return self.events

    @property
    def ended(self) -> bool:
        return self.outbox.finished

    def data(self) -> list[Event]:
        return [e for e in self.poll() if e.event == "message"]

    def resets(self) -> list[Event]:
        return [e for e in self.poll() if e.event == "stream-reset"]

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Event]:
        """Data events, once there are *n* (or the stream ended, or timeout)."""
        deadline = time.monotonic() + timeout
        while len(self.data()) < n and not self.ended and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.data()

    def wait_end(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ended and time.monotonic() < deadline:
            time.sleep(0.01)
        self.poll()
        return self.ended

    def close(self) -> None:
        self.sub.stop()


def seq(event_id: str) -> int:
    return int(event_id.rsplit("-", 1)[1])


def gen(event_id: str) -> str:
    return event_id.rsplit("-", 1)[0]


def data_of(events: list[Event]) -> list[Any]:
    return [e.data for e in events]


#: The one RedisServer (flask_streaming.testing): kill() is SIGKILL,
#: restart(kill=True) a crash and a start on the same port and directory.
RedisProc = RedisServer
