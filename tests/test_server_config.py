"""``server.gunicorn_config()``: which gunicorn this process runs under.

The tests run in the pytest process, where gunicorn's classes are imported
(other tests drive gunicorn's request loop in-process) but no gunicorn
runs: the answer must be ``None`` there, whatever else lives in the heap.
"""

from __future__ import annotations

import gc
import os
import weakref

from gunicorn.config import Config
from gunicorn.workers.base import Worker
from gunicorn.workers.base_async import AsyncWorker

from flask_streaming.server import gunicorn_config


class _Target:
    pass


def test_a_dead_weak_proxy_in_the_heap_is_skipped() -> None:
    """A weak proxy whose object is gone raises ``ReferenceError`` on
    ``isinstance``; it must not make the lookup (and so every app's
    settings) fail."""
    target = _Target()
    proxy = weakref.proxy(target)
    holder = [proxy]  # keep the proxy alive, tracked by gc
    del target
    gc.collect()
    assert gunicorn_config() is None
    assert holder


def test_a_worker_made_by_hand_is_not_the_running_one() -> None:
    """A worker built without gunicorn (``__new__``, a test harness) has
    no pid of this process: its config is not the server's."""
    worker = AsyncWorker.__new__(AsyncWorker)
    worker.cfg = Config()
    assert gunicorn_config() is None
    assert worker.cfg is not None


def test_the_worker_of_this_process_is_found() -> None:
    cfg = Config()
    cfg.set("worker_connections", 4321)
    worker = Worker.__new__(Worker)
    worker.cfg, worker.pid = cfg, os.getpid()
    try:
        found = gunicorn_config()
        assert found is cfg and found.worker_connections == 4321
    finally:
        worker.pid = 0
