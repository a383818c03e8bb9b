"""The default broker: fan-out and history inside one process."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Iterable

from .base import Broker, frame


class MemoryBroker(Broker):
    """Channels within one process (``STREAMING_BROKER_URL = "memory://"``).

    With more than one gunicorn worker each worker has its own channels: a
    publish in one worker never reaches the others. Use Redis there.

    History is bounded three ways, so that per-session channels (one per
    upload, one per user) do not pile up: ``history_size`` events per
    channel, ``history_channels`` channels (the least recently published go
    first), and ``history_ttl`` seconds since a channel's last publish. A
    resume that reaches into dropped history gets the ``stream-reset`` gap
    signal.
    """

    name = "memory"

    def __init__(
        self, *, history_channels: int = 10_000, history_ttl: float = 3600.0, **kwargs: int
    ) -> None:
        super().__init__(**kwargs)
        self.seq = 0
        self.history_channels = history_channels
        self.history_ttl = history_ttl
        #: per channel, its events; the least recently published first
        self.history: OrderedDict[str, deque[tuple[int, bytes]]] = OrderedDict()
        #: per channel, when it was last published to
        self.published_at: dict[str, float] = {}
        #: per channel, the id of the newest event trimmed from its history
        self.trimmed: dict[str, int] = {}
        #: the newest id of any channel whose whole history was dropped
        self.dropped_upto = 0

    def _publish(self, channel: str, body: bytes, min_seq: int | None) -> str:
        if min_seq is not None:
            if min_seq <= self.seq:
                raise ValueError(f"event id {min_seq} is not above the last id {self.seq}")
            self.seq = min_seq
        else:
            self.seq += 1
        seq = self.seq
        raw = frame(seq, channel, body)
        log = self.history.get(channel)
        if log is None:
            log = self.history[channel] = deque()
        else:
            self.history.move_to_end(channel)
        if len(log) >= self.history_size:
            self.trimmed[channel] = log.popleft()[0]
        log.append((seq, raw))
        now = time.monotonic()
        self.published_at[channel] = now
        self._drop_old_channels(now)
        self.fanout(channel, seq, raw)
        return str(seq)

    def _drop_old_channels(self, now: float) -> None:
        history = self.history
        while len(history) > 1:
            channel = next(iter(history))
            if (
                len(history) <= self.history_channels
                and now - self.published_at[channel] < self.history_ttl
            ):
                break
            log = history.pop(channel)
            del self.published_at[channel]
            self.trimmed.pop(channel, None)
            self.dropped_upto = max(self.dropped_upto, log[-1][0])

    def replay(self, channels: Iterable[str], after: int) -> tuple[list[tuple[int, bytes]], bool]:
        gap = after > self.seq
        events: list[tuple[int, bytes]] = []
        for ch in channels:
            if self.trimmed.get(ch, 0) > after:
                gap = True
            elif after < self.dropped_upto and ch not in self.history:
                gap = True  # its history may have been dropped whole
            for seq, raw in reversed(self.history.get(ch, ())):
                if seq <= after:
                    break
                events.append((seq, raw))
        events.sort()
        return events, gap

    def current_seq(self) -> int:
        return self.seq
