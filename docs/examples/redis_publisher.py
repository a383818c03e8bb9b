"""Publish to a flask_streaming app's channels from a process that is not a
Flask app (a cron job, a worker of a task queue)."""

import os

from flask_streaming.brokers.redis import RedisPublisher


def announce(text: str) -> str:
    publisher = RedisPublisher(
        os.environ.get("STREAMING_BROKER_URL", "redis://localhost:6379/0"),
        prefix="flask_streaming",  # the app's STREAMING_REDIS_PREFIX
    )
    return publisher.publish("news", {"headline": text}, event="headline")
