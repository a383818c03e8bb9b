"""File locks that exclude other processes *and* other greenlets.

``flock`` locks belong to an open file description, so each acquisition
opens the lock file anew: two greenlets of one worker exclude each other just
as two workers do. A blocking ``flock`` would freeze a gevent worker's hub
(every stream of the worker), so the lock is taken with ``LOCK_NB`` and the
waiter sleeps between attempts. ``time.sleep`` is looked up at call time:
under gunicorn's gevent worker it is gevent's (it yields to the hub); in a
threaded server it blocks only the thread. A worker that dies holding a lock
releases it with its file descriptors.
"""

from __future__ import annotations

import fcntl
import os
import time
from types import TracebackType
from typing import Protocol


class Lock(Protocol):
    """What a store's locks offer (:class:`FileLock` for the file store; a
    Redis or database lock for another backend). Excludes other processes
    *and* other greenlets of the same worker."""

    def acquire(self, timeout: float | None = None) -> bool:
        """Take the lock; ``False`` when it stayed busy for *timeout* s."""

    def release(self) -> None:
        """Let go (no-op when not held)."""

    def __enter__(self) -> Lock:
        """Take the lock or raise :class:`LockTimeout`."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class LockTimeout(Exception):
    """The lock was not free within the timeout."""


class FileLock:
    """An exclusive lock on *path* (created if missing).

    ::

        with FileLock(path, timeout=30):
            ...

    :param timeout: seconds to wait; ``0`` tries once.
    :raises LockTimeout: from ``__enter__`` when the wait ran out.
    :raises FileNotFoundError: when the lock file's folder is gone.
    """

    def __init__(self, path: str, *, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._fd: int | None = None

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float | None = None) -> bool:
        """Take the lock; ``False`` when it stayed busy for *timeout* s."""
        if self._fd is not None:
            raise RuntimeError("lock already held by this object")
        timeout = self.timeout if timeout is None else timeout
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(delay)  # gevent.sleep under the gevent worker
                delay = min(delay * 2, 0.02)
            else:
                self._fd = fd
                return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the description drops the flock

    def __enter__(self) -> FileLock:
        """Take the lock (unless :meth:`acquire` already did)."""
        if self._fd is None and not self.acquire():
            raise LockTimeout(self.path)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
