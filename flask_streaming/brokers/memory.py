"""The default broker: fan-out and history inside one process."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any

from .base import (
    RESET_UNKNOWN_ID,
    Broker,
    EncodedEvent,
    Replay,
    format_id,
    frame,
    parse_last_event_id,
)


class MemoryBroker(Broker):
    """Channels within one process (``STREAMING_BROKER_URL = "memory://"``).

    With more than one gunicorn worker each worker has its own channels: a
    publish in one worker never reaches the others. Use Redis there.

    History is bounded three ways, so that per-session channels (one per
    upload, one per user) do not pile up: ``history_size`` events per
    channel, ``history_channels`` channels (the least recently published go
    first), and ``history_ttl`` seconds since a channel's last publish. A
    resume that reaches into dropped history gets the ``stream-reset`` gap
    signal. Its generation is new with every broker object (every process),
    so ids from before a restart are recognised as foreign.
    """

    name = "memory"

    def __init__(
        self,
        *,
        history_channels: int = 10_000,
        history_ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.seq = 0
        self.history_channels = history_channels
        self.history_ttl = history_ttl
        #: seconds, monotonic; injectable for tests
        self.clock = clock
        #: per channel, its events; the least recently published first
        self.history: OrderedDict[str, deque[tuple[int, bytes]]] = OrderedDict()
        #: per channel, when it was last published to
        self.published_at: dict[str, float] = {}
        #: per channel, the seq of the newest event trimmed from its history
        self.trimmed: dict[str, int] = {}
        #: the newest seq of any channel whose whole history was dropped
        self.dropped_upto = 0

    def _publish(self, event: EncodedEvent) -> str:
        channel, min_seq = event.channel, event.seq
        if min_seq is not None:
            if min_seq <= self.seq:
                raise ValueError(f"event id {min_seq} is not above the last id {self.seq}")
            self.seq = min_seq
        else:
            self.seq += 1
        seq = self.seq
        raw = frame(self.generation, seq, channel, event.body)
        now = self.clock()
        self._drop_old_channels(now)  # this channel's too, when idle past the TTL
        log = self.history.get(channel)
        if log is None:
            log = self.history[channel] = deque()
            if self.dropped_upto:
                # a history dropped whole may have been this channel's
                self.trimmed[channel] = self.dropped_upto
        else:
            self.history.move_to_end(channel)
        if len(log) >= self.history_size:
            self.trimmed[channel] = log.popleft()[0]
        log.append((seq, raw))
        self.published_at[channel] = now
        self._drop_old_channels(now)
        self.fanout(channel, seq, raw)
        return format_id(self.generation, seq)

    def _drop_old_channels(self, now: float) -> None:
        history = self.history
        while history:
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

    def replay(self, channels: Iterable[str], last_event_id: str) -> Replay:
        after = parse_last_event_id(last_event_id, self.generation)
        self._drop_old_channels(self.clock())
        rv = Replay(self.generation, [], 0)
        if after is None or after < 0 or after > self.seq:
            rv.reason = RESET_UNKNOWN_ID
        else:
            rv.after = rv.position = after
        after = rv.after
        for ch in channels:
            log = self.history.get(ch)
            if log is None:
                if after < self.dropped_upto:
                    rv.lost(self.dropped_upto)  # its history may have been dropped whole
                continue
            trimmed = self.trimmed.get(ch, 0)
            if trimmed > after:
                rv.lost(trimmed)
            for seq, raw in reversed(log):
                if seq <= after:
                    break
                rv.events.append((seq, raw))
        rv.events.sort(key=_seq)
        return rv

    def current_seq(self) -> int:
        return self.seq


def _seq(item: tuple[int, bytes]) -> int:
    return item[0]
