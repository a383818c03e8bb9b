"""What we can learn about the server we run in (gunicorn), to warn early
about settings that cannot work together."""

from __future__ import annotations

import gc
import logging
import os
import sys
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class ServerSettings(Protocol):
    """What :func:`check_server` reads of
    :class:`~flask_streaming.settings.Settings` (a protocol, so that this
    module, which :mod:`~flask_streaming.settings` asks for gunicorn's
    config, does not import it back)."""

    @property
    def broker_url(self) -> str: ...

    @property
    def max_connections(self) -> int: ...


def gunicorn_config() -> Any | None:
    """The running gunicorn's config object, when this process is a gunicorn
    worker (or a master that preloads the app): the ``Worker`` or
    ``Arbiter`` whose ``pid`` is this process's. ``None`` elsewhere, also
    when gunicorn's classes are merely imported or instantiated by hand (a
    test harness)."""
    base = sys.modules.get("gunicorn.workers.base")
    arbiter = sys.modules.get("gunicorn.arbiter")
    kinds = tuple(
        k for k in (getattr(base, "Worker", None), getattr(arbiter, "Arbiter", None)) if k
    )
    if not kinds:
        return None
    pid = os.getpid()
    for obj in gc.get_objects():
        # type(), not isinstance(): a weak proxy whose object is gone
        # raises ReferenceError at any other look.
        if issubclass(type(obj), kinds) and getattr(obj, "pid", None) == pid:
            return getattr(obj, "cfg", None)
    return None


def check_server(settings: ServerSettings) -> list[str]:
    """Log (and return) a warning for each setting that cannot work with the
    gunicorn configuration this process runs under."""
    cfg = gunicorn_config()
    if cfg is None:
        return []
    warnings: list[str] = []
    workers = int(getattr(cfg, "workers", 1) or 1)
    worker_class = str(getattr(cfg, "worker_class_str", "") or "")
    connections = int(getattr(cfg, "worker_connections", 1000) or 1000)
    if settings.broker_url.startswith("memory:") and workers > 1:
        warnings.append(
            f"STREAMING_BROKER_URL is memory:// but gunicorn runs {workers} workers: each "
            "worker has its own channels and a publish reaches only the subscribers of "
            "its own worker. Set STREAMING_BROKER_URL to a redis:// URL."
        )
    if "gevent" not in worker_class:
        warnings.append(
            f"gunicorn runs the {worker_class or 'sync'} worker: long-lived streams each "
            "hold a worker thread. Use the gevent worker (-k gevent)."
        )
    elif settings.max_connections >= connections:
        warnings.append(
            f"STREAMING_MAX_CONNECTIONS ({settings.max_connections}) is not below gunicorn's "
            f"worker_connections ({connections}): beyond it gunicorn stops accepting "
            "instead of answering with a retry hint. Raise worker_connections."
        )
    for text in warnings:
        logger.warning("flask_streaming: %s", text)
    return warnings
