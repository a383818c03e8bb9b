"""Brokers carry channel events from publishers to subscribers.

:class:`MemoryBroker` (``memory://``, the default) fans out inside one
process; :class:`~flask_streaming.brokers.redis.RedisBroker` (``redis://``)
across workers and machines.
"""

from __future__ import annotations

from ..settings import Settings
from .base import Broker, Subscriber, check_channel
from .memory import MemoryBroker


def create_broker(settings: Settings) -> Broker:
    """The broker named by ``STREAMING_BROKER_URL``."""
    url = settings.broker_url
    sizes = {
        "history_size": settings.history_size,
        "max_queue": settings.max_queue,
        "max_queue_bytes": settings.max_queue_bytes,
    }
    if url.startswith("memory:"):
        return MemoryBroker(
            history_channels=settings.history_channels,
            history_ttl=settings.history_ttl,
            history_size=settings.history_size,
            max_queue=settings.max_queue,
            max_queue_bytes=settings.max_queue_bytes,
        )
    if url.startswith(("redis:", "rediss:", "unix:")):
        from .redis import RedisBroker

        return RedisBroker(
            url, prefix=settings.redis_prefix, history_ttl=settings.history_ttl, **sizes
        )
    raise ValueError(f"STREAMING_BROKER_URL: no broker for {url!r} (memory:// or redis://)")


__all__ = ["Broker", "MemoryBroker", "Subscriber", "check_channel", "create_broker"]
