"""Model-based test of the resume contract (docs/guides/channels.rst, "The
resume contract") on MemoryBroker and RedisBroker (a real redis-server on a
free port, SIGKILLed and restarted with each persistence setting).

Rules publish, subscribe (with no id, a received id, a very old id, an id
never issued, an id of an earlier generation, garbage, or the id of the last
``stream-reset``: a reconnect straight after a reset), disconnect, restart
the broker, and let time pass (an injected clock for the memory broker, real
short TTLs for Redis). After every step each open connection's received
events are checked against a plain reference model.

Sizes: ``RESUME_MODEL_SCALE`` multiplies examples and steps (CI: 1; the
``tox -e reliability`` profile runs 10).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from flask_streaming.brokers import Broker, MemoryBroker
from flask_streaming.brokers.base import frame
from flask_streaming.brokers.redis import RedisBroker, stream_bound
from flask_streaming.testing import RedisServer

from .resume_support import Conn, gen, seq

SCALE = int(os.environ.get("RESUME_MODEL_SCALE", "1"))
SHRINK = os.environ.get("RESUME_MODEL_SHRINK", "1") != "0"
CHANNELS = ["a", "b", "c", "d"]
HISTORY = 3
MAX_QUEUE = 4  # replays of up to 4 channels x 3 events must not trip it
KINDS = [
    "none",
    "reconnect",
    "reconnect",
    "received",
    "oldest",
    "never",
    "previous",
    "garbage",
    "reset",
]


@dataclass
class Published:
    seq: int
    channel: str
    data: str
    at: float  # when publish() returned (monotonic or the injected clock)
    before: float  # when publish() was called


@dataclass
class Expect:
    """One open connection and what the model says it must receive."""

    conn: Conn
    channels: tuple[str, ...]
    generation: str
    data: list[tuple[str, str]] = field(default_factory=list)  # (id, data)
    may_end: bool = False


class ResumeModel(RuleBasedStateMachine):
    """The reference model: per generation the published events; what a
    channel holds; which ids are foreign."""

    kind = "memory"
    ttl = 10.0
    redis: RedisServer | None = None

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0  # the memory broker's injected clock
        self.prefix = f"m{uuid.uuid4().hex[:8]}"
        self.broker = self.make_broker()
        self.generation = ""  # learnt from the first id of a generation
        self.seq = 0
        self.events: list[Published] = []  # this generation's, in seq order
        self.dropped_upto = 0  # memory broker: newest seq of a dropped channel
        self.live: set[str] = set()  # memory broker: channels with history
        self.last_publish: dict[str, Published] = {}
        #: per channel: its events up to this seq are gone (expired, dropped)
        self.gone: dict[str, int] = {}
        #: per channel: resuming below this seq may reset although nothing
        #: of it was lost (its history was recreated: the broker cannot know)
        self.floor: dict[str, int] = {}
        self.conns: list[Expect] = []
        self.old_ids: list[str] = []  # ids of earlier generations
        self.received: list[str] = []  # ids of this generation seen by clients
        #: the last event id of connections that ended, as a browser resends it
        self.reconnect_ids: list[str] = []
        self.last_reset = ""
        self.counter = 0

    # -- the broker under test -------------------------------------------

    def make_broker(self) -> Broker:
        if self.kind == "memory":
            return MemoryBroker(
                history_size=HISTORY, max_queue=MAX_QUEUE, history_ttl=self.ttl,
                clock=lambda: self.now,
            )  # fmt: skip
        assert self.redis is not None
        return RedisBroker(
            self.redis.url, prefix=self.prefix, history_size=HISTORY, max_queue=MAX_QUEUE,
            history_ttl=self.ttl,
        )  # fmt: skip

    def clock(self) -> float:
        return self.now if self.kind == "memory" else time.monotonic()

    def teardown(self) -> None:
        for e in self.conns:
            e.conn.close()
        self.broker.close()

    # -- the model's view of history -------------------------------------

    def expired(self, ch: str, at: float, ttl: float) -> bool:
        last = self.last_publish.get(ch)
        return last is None or at - last.at >= ttl

    def settle(self, channels: tuple[str, ...]) -> None:
        """Redis TTLs are real: wait out a channel that is about to expire
        (or may just have), so that the model knows which it is."""
        if self.kind == "memory":
            return
        for ttl in (self.ttl, 2 * self.ttl):
            for ch in channels:
                last = self.last_publish.get(ch)
                if last is None:
                    continue
                now = time.monotonic()
                if last.before + ttl - 0.35 <= now < last.at + ttl + 0.05:
                    time.sleep(last.at + ttl + 0.05 - now)

    def memory_drop(self) -> None:
        """The memory broker drops channels idle past the TTL (at publish
        and at replay time)."""
        for ch in list(self.live):
            if self.expired(ch, self.now, self.ttl):
                self.live.discard(ch)
                self.gone[ch] = self.last_publish[ch].seq
                self.dropped_upto = max(self.dropped_upto, self.last_publish[ch].seq)

    def has_history(self, ch: str) -> bool:
        if self.kind == "memory":
            return ch in self.live
        return not self.expired(ch, time.monotonic(), self.ttl)

    def held(self, ch: str) -> list[Published]:
        if not self.has_history(ch):
            return []
        gone = self.gone.get(ch, 0)
        return [e for e in self.events if e.channel == ch and e.seq > gone][-HISTORY:]

    # -- rules ------------------------------------------------------------

    @initialize()
    def overflow_first(self) -> None:
        """Every example starts past a channel's stream bound and resumes
        from its oldest id: the gap, the trimming and the reset are
        exercised in each run, not only when the random rules line up (with
        the few examples a real Redis allows, they rarely did). Not over
        HTTP: there every example shares the app's Redis keys, so an
        example must not assume a fresh counter."""
        if self.kind == "live":
            return
        for _ in range(stream_bound(HISTORY) + 1):
            self.publish(CHANNELS[0])
        self.subscribe([CHANNELS[0]], "oldest", 0)

    @rule(ch=st.sampled_from(CHANNELS))
    def publish(self, ch: str) -> None:
        self.counter += 1
        data = f"{ch}{self.counter}"
        if self.kind == "memory":
            self.memory_drop()
            if ch not in self.live:
                self.floor[ch] = self.dropped_upto
        else:
            self.settle((ch,))
            now = time.monotonic()
            if self.expired(ch, now, self.ttl) and ch in self.last_publish:
                self.gone[ch] = self.last_publish[ch].seq
            if self.expired(ch, now, 2 * self.ttl):
                self.floor[ch] = self.seq
        before = self.clock()
        event_id = self.broker.publish(ch, data)
        if not self.generation:
            self.generation = gen(event_id)
        assert gen(event_id) == self.generation, "the generation changed without a restart"
        assert seq(event_id) == self.seq + 1
        self.seq += 1
        published = Published(self.seq, ch, data, self.clock(), before)
        if self.kind == "memory":
            self.live.add(ch)
        self.last_publish[ch] = published
        self.events.append(published)
        for e in self.conns:
            if ch in e.channels:
                e.data.append((event_id, data))

    @rule(ch=st.sampled_from(CHANNELS), n=st.integers(2, 2 * HISTORY + 2))
    def publish_many(self, ch: str, n: int) -> None:
        """History overflow: more than a channel holds, while clients are away."""
        for _ in range(n):
            self.publish(ch)
            self.connections_hold_the_contract()  # clients read: live lag stays small

    @rule(
        channels=st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=4, unique=True),
        kind=st.sampled_from(KINDS),
        pick=st.integers(0, 1000),
    )
    def subscribe(self, channels: list[str], kind: str, pick: int) -> None:
        chans = tuple(channels)
        last_id: str | None = None
        if kind == "reconnect" and self.reconnect_ids:
            last_id = self.reconnect_ids[-1 - pick % len(self.reconnect_ids)]
        elif kind == "received" and self.received:
            last_id = self.received[pick % len(self.received)]
        elif kind == "oldest" and self.seq:
            last_id = f"{self.generation}-1"
        elif kind == "never" and self.generation:
            last_id = f"{self.generation}-{self.seq + 1 + pick % 5}"
        elif kind == "previous" and self.old_ids:
            last_id = self.old_ids[pick % len(self.old_ids)]
        elif kind == "garbage":
            last_id = ["1", "x", "-", f"{pick}"][pick % 4]
        elif kind == "reset" and self.last_reset:
            last_id = self.last_reset
        self.settle(chans)
        if self.kind == "memory" and last_id:
            self.memory_drop()
        conn = self.connect(list(chans), last_id)
        self.check_resume(conn, chans, last_id)

    def connect(self, channels: list[str], last_id: str | None) -> Any:
        return Conn(self.broker, channels, last_id)

    def check_resume(self, conn: Any, chans: tuple[str, ...], last_id: str | None) -> None:
        if self.kind == "live" and last_id:
            # over HTTP the replay is on its way: it comes as one write
            deadline = time.monotonic() + 2
            while not conn.poll() and time.monotonic() < deadline:
                time.sleep(0.01)
        events = conn.poll()
        expect = Expect(conn, chans, self.generation)
        self.conns.append(expect)
        if not last_id:
            assert events == [], events
            return
        current = self.generation and last_id.startswith(self.generation + "-")
        after = seq(last_id) if current else 0
        foreign = not current or after > self.seq
        if foreign:
            after = 0
        lost: list[int] = []
        held: list[Published] = []
        unknowable = False
        for ch in chans:
            mine = self.held(ch)
            held += [e for e in mine if e.seq > after]
            kept = {e.seq for e in mine}
            lost += [e.seq for e in self.events if e.channel == ch and e.seq > after
                     and e.seq not in kept]  # fmt: skip
            unknowable |= after < self.floor.get(ch, 0)
            if self.kind == "memory":
                unknowable |= ch not in self.live and after < self.dropped_upto
            else:
                record_gone = self.expired(ch, time.monotonic(), 2 * self.ttl)
                unknowable |= record_gone and after < self.seq
        resets = [e for e in events if e.event == "stream-reset"]
        if resets and not self.generation:  # no event in this generation yet
            self.generation = expect.generation = gen(resets[0].id)
        if foreign or lost:
            assert resets, f"no stream-reset: foreign={foreign} lost={lost}"
        elif not unknowable:
            assert not resets, f"a reset when nothing was lost: {resets}"
        if resets:
            reset = events[0]
            assert reset.event == "stream-reset" and len(resets) == 1
            assert gen(reset.id) == self.generation or not self.generation
            assert all(s <= seq(reset.id) for s in lost), (lost, reset.id)
            self.last_reset = reset.id
        held.sort(key=lambda e: e.seq)
        expect.data = [(f"{self.generation}-{e.seq}", e.data) for e in held]

    @precondition(lambda self: self.kind != "live" and bool(self.events and self.generation))
    @rule()
    def overlap(self) -> None:
        """The broker brings the newest event a second time, as the Redis
        listener's catch-up and the live path do after a reconnect; every
        subscriber must drop it."""
        newest = self.events[-1]
        raw = frame(self.generation, newest.seq, newest.channel, b"data: %s\n\n" % (
            newest.data.encode()))  # fmt: skip
        self.broker.fanout(newest.channel, newest.seq, raw)

    @rule(pick=st.integers(0, 1000))
    def disconnect(self, pick: int) -> None:
        if self.conns:
            e = self.conns.pop(pick % len(self.conns))
            self.remember(e)
            e.conn.close()

    @rule(dt=st.sampled_from([0.4, 0.6, 1.1, 2.1]))
    def time_passes(self, dt: float) -> None:
        """In TTLs: streams (x1) and Redis records (x2) expire."""
        if self.kind == "memory":
            self.now += dt * self.ttl
        else:
            time.sleep(dt * self.ttl)

    @rule()
    def restart(self) -> None:
        if self.kind == "memory":
            for e in self.conns:  # the process is gone, and its connections
                self.remember(e)
                e.conn.close()
            self.conns = []
            self.broker.close()
            self.broker = self.make_broker()
            self.new_generation(keep_upto=0)
            return
        assert self.redis is not None
        self.redis.kill()  # a crash: SIGKILL
        self.redis.start()
        if self.redis.persistence == "always":
            for e in self.conns:
                e.may_end = True  # a catch-up that finds a gap ends streams
            return
        r = redis_lib.Redis.from_url(self.redis.url)
        try:
            survived = int(r.hget(f"{self.prefix}:id", "seq") or 0)
        finally:
            r.close()
        for e in self.conns:
            # ids went back (or may have): every open stream must end
            assert e.conn.wait_end(20), "a stream outlived a change of generation"
            self.check_conn(e, ended=True)
            self.remember(e)
            e.conn.close()
        self.conns = []
        self.new_generation(keep_upto=survived)

    def new_generation(self, keep_upto: int) -> None:
        self.old_ids += [i for i in self.received[-3:]] or (
            [f"{self.generation}-1"] if self.generation else []
        )
        self.received = []
        self.last_reset = ""  # (reconnect ids stay: they are foreign now)
        self.generation = ""
        self.events = [e for e in self.events if e.seq <= keep_upto]
        self.seq = keep_upto if self.kind != "memory" else 0
        self.last_publish = {}
        for e in self.events:
            self.last_publish[e.channel] = e
        self.live = set()
        self.dropped_upto = 0
        if self.kind == "memory":
            self.gone, self.floor = {}, {}

    def remember(self, e: Expect) -> None:
        got = [ev.id for ev in e.conn.data()]
        if e.conn.parser.last_event_id:
            got.append(e.conn.parser.last_event_id)
            self.reconnect_ids = [*self.reconnect_ids[-4:], e.conn.parser.last_event_id]
        for i in got:
            if self.generation and i.startswith(self.generation + "-"):
                self.received.append(i)

    # -- the check after every step -----------------------------------------

    def check_conn(self, e: Expect, ended: bool = False) -> None:
        if not ended:
            e.conn.wait_for(len(e.data), timeout=0 if self.kind == "memory" else 15)
        got = [(ev.id, ev.data) for ev in e.conn.data()]
        seqs = [seq(i) for i, _ in got]
        assert seqs == sorted(set(seqs)), f"ids not strictly increasing: {got}"
        assert len({gen(i) for i, _ in got}) <= 1, f"two generations on one stream: {got}"
        if e.conn.ended or ended:
            assert got == e.data[: len(got)], (got, e.data)
            assert ended or e.may_end, f"a stream ended: {e.conn.events[-3:]}"
        else:
            assert got == e.data, (got, e.data)
        for ev in e.conn.events:
            assert ev.event in ("message", "stream-reset"), ev

    @invariant()
    def redis_streams_stay_bounded(self) -> None:
        if self.kind == "memory":
            return
        assert self.redis is not None
        r = redis_lib.Redis.from_url(self.redis.url)
        try:
            for ch in CHANNELS:
                assert r.xlen(f"{self.prefix}:stream:{ch}") <= stream_bound(HISTORY)
        finally:
            r.close()

    @invariant()
    def connections_hold_the_contract(self) -> None:
        for e in list(self.conns):
            self.check_conn(e)
            if e.conn.ended:
                self.conns.remove(e)
                self.remember(e)
                e.conn.close()
        for e in self.conns:
            self.received += [ev.id for ev in e.conn.data()[-2:]
                              if ev.id.startswith(self.generation + "-")]  # fmt: skip
        self.received = self.received[-20:]


def run(machine: type[ResumeModel], examples: int, steps: int) -> None:
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples * SCALE,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=SCALE == 1,
            # RESUME_MODEL_SHRINK=0: report the first failure as found
            # (shrinking Redis restarts takes minutes; for mutation runs)
            phases=[p for p in Phase if p is not Phase.shrink or SHRINK],
        ),
    )


def test_memory_broker_holds_the_contract() -> None:
    run(ResumeModel, 300, 40)


@pytest.fixture
def crashable_redis(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    proc = RedisServer(tmp_path / "redis", persistence=request.param).start()
    try:
        yield proc
    finally:
        proc.kill()


@pytest.mark.redis
@pytest.mark.parametrize("crashable_redis", ["none", "everysec", "always"], indirect=True)
def test_redis_broker_holds_the_contract(crashable_redis: RedisServer) -> None:
    class OnRedis(ResumeModel):
        kind = "redis"
        ttl = 1.0
        redis = crashable_redis

    run(OnRedis, 6, 20)
