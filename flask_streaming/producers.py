"""Producers: what runs beside a stream's writer and fills its outbox.

A :class:`Producer` runs a function in a :class:`Task` (a greenlet under
gevent, a daemon thread elsewhere) once the stream started and kills it when
the stream ends; :func:`pump` makes one that iterates an app's generator.
Anything with ``start(body)`` and ``stop()`` can feed a stream
(:class:`~flask_streaming.transport.Source`): channel subscribers do, with no
greenlet of their own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import has_request_context, request

if TYPE_CHECKING:
    from .transport import Outbox, ResponseBody

logger = logging.getLogger(__name__)


class Task:
    """A producer running beside the writer: a greenlet under gevent, a daemon
    thread elsewhere. :meth:`kill` stops a greenlet at once (its ``finally``
    blocks run); a thread stops at its next write to a finished outbox.

    :meta private:
    """

    __slots__ = ("_handle",)

    def __init__(self, fn: Callable[[], None], *, green: bool) -> None:
        if green:
            import gevent

            self._handle: Any = gevent.spawn(fn)
        else:
            self._handle = threading.Thread(target=fn, daemon=True, name="flask-streaming")
            self._handle.start()

    def kill(self, timeout: float = 5.0) -> None:
        import greenlet

        h = self._handle
        if isinstance(h, greenlet.greenlet) and h is not greenlet.getcurrent() and not h.dead:
            h.kill(block=True, timeout=timeout)


class Producer:
    """Runs ``fn(outbox)`` in a :class:`Task` when the stream starts (after its
    first bytes went out) and kills it when the stream ends.

    :meta private:
    """

    __slots__ = ("_task", "fn")

    def __init__(self, fn: Callable[[Outbox], Any]) -> None:
        self.fn = fn
        self._task: Task | None = None

    def start(self, body: ResponseBody) -> None:
        outbox = body.outbox
        self._task = Task(lambda: self.fn(outbox), green=body.green)

    def stop(self) -> None:
        if self._task is not None:
            self._task.kill()


def _yield_now() -> None:
    import gevent

    gevent.sleep(0)


def pump(
    iterable: Iterable[Any],
    encode: Callable[[Any], bytes],
    *,
    on_error: Callable[[BaseException], bytes | None] | None = None,
) -> Producer:
    """A :class:`Producer` that puts each encoded item of *iterable* into the
    outbox, blocking while the writer is behind.

    :param encode: turns one item into bytes (``b""`` to skip it).
    :param on_error: bytes to send to the client before aborting when the
        iterable raises (``None``: abort without a word).

    :meta private:
    """

    where = "outside a request"
    if has_request_context():
        where = f"{request.method} {request.path}"

    def run(outbox: Outbox) -> None:
        it = iter(iterable)
        green = outbox.green
        limit = outbox.max_delay
        monotonic = time.monotonic
        try:
            for item in it:
                data = encode(item)
                if data and not outbox.put(data):
                    break
                if outbox.size >= outbox.high_water:
                    outbox.wait_room()
                elif green and outbox.size and monotonic() - outbox.first_at >= limit:
                    # A busy source never blocks: give the writer its turn,
                    # so that no data waits longer than max_delay.
                    _yield_now()
            else:
                outbox.finish("complete")
        except Exception as exc:
            # The one traceback of a failing stream (the server logs none).
            logger.exception("flask_streaming: the stream's source raised (%s)", where)
            error = on_error(exc) if on_error is not None else None
            outbox.finish("error", error or b"")
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    return Producer(run)
