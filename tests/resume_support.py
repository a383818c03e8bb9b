"""Shared by the resume tests: a subscriber connection to a broker in
process (a real :class:`~flask_streaming.brokers.Subscriber` with a real,
thread-safe outbox) or over HTTP, with the same interface."""

from __future__ import annotations

import time
from typing import Any

from flask_streaming.brokers import Broker, Subscriber
from flask_streaming.sse_wire import Event, EventParser
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


class HttpConn:
    """:class:`Conn`'s interface over HTTP: one event stream read by a
    thread (httpx), for the end-to-end run through gunicorn."""

    def __init__(self, url: str, channels: list[str], last_event_id: str | None = None):
        import threading

        import httpx

        self.parser = EventParser()
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._closed = False
        self._ended = threading.Event()
        opened = threading.Event()
        query = "&".join(f"channel={c}" for c in dict.fromkeys(channels))
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}

        def run() -> None:
            try:
                with httpx.stream(
                    "GET", f"{url}/streaming/events?{query}", headers=headers, timeout=60
                ) as r:
                    for chunk in r.iter_raw():
                        with self._lock:
                            self.events += self.parser.feed(chunk)
                        opened.set()
                        if self._closed:
                            return
            except Exception:
                pass
            finally:
                opened.set()
                self._ended.set()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        # The prelude comes after the subscription is registered and its
        # replay queued (ResponseBody starts the producer first).
        assert opened.wait(15), "the stream did not open"

    def poll(self) -> list[Event]:
        with self._lock:
            return list(self.events)

    @property
    def ended(self) -> bool:
        return self._ended.is_set() and not self._closed

    def data(self) -> list[Event]:
        return [e for e in self.poll() if e.event == "message"]

    def resets(self) -> list[Event]:
        return [e for e in self.poll() if e.event == "stream-reset"]

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Event]:
        deadline = time.monotonic() + timeout
        while len(self.data()) < n and not self._ended.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.data()

    def wait_end(self, timeout: float = 10.0) -> bool:
        return self._ended.wait(timeout)

    def close(self) -> None:
        self._closed = True  # the reader returns at its next chunk (a heartbeat at worst)
