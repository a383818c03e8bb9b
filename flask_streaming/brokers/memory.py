"""The default broker: fan-out and history inside one process."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from .base import Broker, frame


class MemoryBroker(Broker):
    """Channels within one process (``STREAMING_BROKER_URL = "memory://"``).

    With more than one gunicorn worker each worker has its own channels: a
    publish in one worker never reaches the others. Use Redis there.
    """

    name = "memory"

    def __init__(self, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.seq = 0
        self.history: dict[str, deque[tuple[int, bytes]]] = {}
        #: per channel, the id of the newest event trimmed from its history
        self.trimmed: dict[str, int] = {}

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
        if len(log) >= self.history_size:
            self.trimmed[channel] = log.popleft()[0]
        log.append((seq, raw))
        self.fanout(channel, seq, raw)
        return str(seq)

    def replay(self, channels: Iterable[str], after: int) -> tuple[list[tuple[int, bytes]], bool]:
        gap = after > self.seq
        events: list[tuple[int, bytes]] = []
        for ch in channels:
            if self.trimmed.get(ch, 0) > after:
                gap = True
            for seq, raw in reversed(self.history.get(ch, ())):
                if seq <= after:
                    break
                events.append((seq, raw))
        events.sort()
        return events, gap

    def current_seq(self) -> int:
        return self.seq
