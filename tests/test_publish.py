"""One publish path: one channel check, one explicit-id check, one encoder
(the app's JSON provider passed explicitly), brokers take the encoded event.
Both entry points, ``Streaming.publish`` and ``RedisPublisher.publish``,
refuse the same ids."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from flask import Flask

from flask_streaming import Streaming
from flask_streaming.brokers import MemoryBroker
from flask_streaming.brokers.base import EncodedEvent
from flask_streaming.testing import RedisServer
from tests.test_sse_encoder import Point, PointProvider

#: Ids Python's ``int()`` reads as 70, 80 and 90: an explicit id is ASCII
#: digits only, on every path.
NOT_IDS = ["7_0", " 80 ", "\u0669\u0660"]


def make_app(tmp_path: Path, name: str = "publish") -> tuple[Flask, Streaming]:
    app = Flask(name, instance_path=str(tmp_path / name))
    streaming = Streaming(app)
    return app, streaming


def held(broker: MemoryBroker, channel: str) -> list[bytes]:
    return [raw for _, raw in broker.history.get(channel, ())]


@pytest.mark.parametrize("bad", NOT_IDS)
def test_extension_publish_refuses_ids_int_would_read(tmp_path: Path, bad: str) -> None:
    app, streaming = make_app(tmp_path)
    broker = streaming.broker(app)
    with pytest.raises(ValueError, match="explicit event id"):
        streaming.publish("room", "x", id=bad)
    assert isinstance(broker, MemoryBroker)
    assert broker.seq == 0 and held(broker, "room") == []
    # the digits themselves are an id
    assert streaming.publish("room", "y", id="70") == f"{broker.generation}-70"


@pytest.mark.redis
@pytest.mark.parametrize("bad", NOT_IDS)
def test_redis_publisher_refuses_the_same_ids(redis_server: RedisServer, bad: str) -> None:
    from flask_streaming.brokers.redis import RedisPublisher

    publisher = RedisPublisher(redis_server.url, prefix=f"test-ids-{secrets.token_hex(4)}")
    try:
        with pytest.raises(ValueError, match="explicit event id"):
            publisher.publish("room", "x", id=bad)
        # nothing reached Redis: no seq taken, no history
        assert publisher.position()[1] == 0
        assert publisher.redis.exists(publisher.stream_key("room")) == 0
        event_id = publisher.publish("room", "y", id="70")
        assert event_id == f"{publisher.generation}-70"
        assert publisher.position() == (publisher.generation, 70)
    finally:
        publisher.redis.close()


def test_publish_encodes_with_the_apps_provider_without_its_context(tmp_path: Path) -> None:
    app, streaming = make_app(tmp_path)
    app.json = PointProvider(app)
    other = Flask("other")  # the current app is another one: the target's provider wins
    with other.app_context():
        streaming.publish("room", {"p": Point(1, 2)}, app=app)
    streaming.publish("room", {"b": Point(3, 4), "a": 0})  # no app context at all
    broker = streaming.broker(app)
    assert isinstance(broker, MemoryBroker)
    gen = broker.generation
    assert held(broker, "room") == [
        f'id: {gen}-1\nchannel: room\ndata: {{"p":[1,2]}}\n\n'.encode(),
        f'id: {gen}-2\nchannel: room\ndata: {{"a":0,"b":[3,4]}}\n\n'.encode(),
    ]


class Recorder(MemoryBroker):
    """A memory broker that keeps the encoded events it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.given: list[EncodedEvent] = []

    def publish_event(self, event: EncodedEvent) -> str:
        self.given.append(event)
        return super().publish_event(event)


def test_brokers_take_the_encoded_event() -> None:
    broker = Recorder()
    broker.publish("c", {"n": 1}, event="tick", id=7, retry=50)
    assert broker.given == [EncodedEvent("c", b'event: tick\ndata: {"n":1}\nretry: 50\n\n', 7)]
