"""How encoded bytes get from a producer to the WSGI server.

Every streaming response of flask_streaming is a :class:`ResponseBody`: a
WSGI iterable that drains an :class:`Outbox` with one write per wake-up,
sends a heartbeat while idle, notices a client that went away, and runs its
close callbacks exactly once, whatever ended the stream. This module knows
bytes only: what they encode (events, NDJSON, chunks) is decided above it.

A :class:`Source` fills the outbox from wherever it runs: a greenlet that
iterates an app's generator (:func:`~flask_streaming.producers.pump`), a
view's own greenlet through :class:`~flask_streaming.ResponseWriter`, or a
broker's fan-out. Under gunicorn's gevent worker the producer is a greenlet;
under any other server it is a daemon thread, and one warning says that
long-lived streams need gevent.

Vocabulary: a *stream* is one streaming response, from its first bytes to
its close (what :data:`~flask_streaming.signals.stream_opened` and
:data:`~flask_streaming.signals.stream_closed` report); its *body* is the
:class:`ResponseBody` the server iterates; *writers*
(:class:`~flask_streaming.EventWriter`, :class:`~flask_streaming.ResponseWriter`)
are what an app's code writes to.
"""

from __future__ import annotations

import _socket
import contextlib
import errno
import itertools
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from .deprecations import renamed
from .signals import stream_closed, stream_opened

if TYPE_CHECKING:
    from flask import Flask

logger = logging.getLogger(__name__)

_ids = itertools.count(1)
_warned_sync = False
#: Streams of this process that started and have not closed yet.
_open_streams: set[ResponseBody] = set()
_hook_pid = 0
_shutting_down = False


def gevent_active() -> bool:
    """``True`` when the process is monkey-patched by gevent, as under
    gunicorn's gevent worker."""
    if "gevent.monkey" not in sys.modules:
        return False
    from gevent import monkey

    return bool(monkey.is_module_patched("socket"))


def _warn_sync_once() -> None:
    global _warned_sync
    if not _warned_sync:
        _warned_sync = True
        logger.warning(
            "flask_streaming: not running under gevent; streams use a thread each "
            "and long-lived streams tie up the server. Deploy with gunicorn's "
            "gevent worker (gunicorn -k gevent) for heartbeats and many clients."
        )


def open_stream_count() -> int:
    """How many streams of this process started and have not closed yet (a
    ``/stats`` route's figure, or a test's check that nothing leaked)."""
    return len(_open_streams)


def parked_stream_count() -> int:
    """How many of the open streams are parked (``STREAMING_PARK_AFTER``):
    idle, holding no greenlet of the server's."""
    return sum(1 for body in list(_open_streams) if body.parked)


def shutdown_streams() -> int:
    """End every open stream that asks to (event streams: with a jittered
    ``retry:`` line, their body's ``on_shutdown``), as when the worker is
    told to stop; such streams that open later (a worker keeps accepting for
    a moment) end at once the same way. Returns how many were ended."""
    global _shutting_down
    _shutting_down = True
    count = 0
    for body in list(_open_streams):
        if body.on_shutdown is not None and body.outbox.open:
            body.outbox.put(body.on_shutdown())
            body.outbox.finish("shutdown")
            count += 1
    return count


def _install_shutdown_hook() -> None:
    """Chain a SIGTERM handler (gunicorn sends it to workers on shutdown and
    on a HUP reload) that ends the open event streams at once, so that they
    close within the graceful timeout with a jittered ``retry`` hint."""
    global _hook_pid
    if _hook_pid == os.getpid():
        return
    _hook_pid = os.getpid()
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        if callable(previous):
            previous(signum, frame)
        import gevent

        gevent.spawn(shutdown_streams)

    try:
        signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread after all
        _hook_pid = 0


def set_socket_timeout(environ: dict[str, Any], seconds: float | None) -> None:
    """Set the timeout of the client's socket under gunicorn's gevent worker
    (no-op elsewhere): reads and writes that wait longer fail.

    :meta private:
    """
    sock = environ.get("gunicorn.socket")
    if sock is None or not gevent_active():
        return
    with contextlib.suppress(OSError):
        sock.settimeout(seconds or None)


_real_poll: Any = None


def _writable(fd: int) -> bool:
    """A zero-timeout ``poll`` for room in *fd*'s send buffer: the real
    ``poll``, not gevent's, so the check costs no switch to the hub."""
    global _real_poll
    import select

    if _real_poll is None:
        _real_poll = select.poll
        if "gevent.monkey" in sys.modules:
            from gevent.monkey import get_original

            _real_poll = get_original("select", "poll")
    p = _real_poll()
    p.register(fd, select.POLLOUT)
    return bool(p.poll(0))


#: ``request.environ`` key of the request's :class:`ResponseBody`: it stays
#: reachable when a middleware or ``after_request`` hook wrapped or replaced
#: the response body.
#:
#: :meta private:
BODY_ENVIRON_KEY = "flask_streaming.body"


class StreamAborted(BrokenPipeError):
    """Raised out of a :class:`ResponseBody` after a producer failed, so that the
    server aborts the connection instead of ending a short body cleanly (a
    chunked response then looks truncated to the client, never complete).

    It is a :class:`BrokenPipeError` (``errno.EPIPE``): servers drop the
    connection without logging a second traceback (gunicorn ignores
    ``EPIPE``; the one traceback, with method and path, is the producer's).
    """

    def __init__(self, message: str = "the stream's source failed") -> None:
        super().__init__(errno.EPIPE, message)


class _GreenWake:
    """The writer's wake-up under gevent: a flag and the one greenlet waiting
    on it, resumed from the hub's loop.

    It does what :class:`gevent.event.Event` does for a single waiter with
    less: no link list, no :class:`~gevent.Timeout` object per wait, and a
    shallower stack to save while an idle stream waits, which is most of an
    idle connection's memory.
    """

    __slots__ = ("_flag", "_scheduled", "_waiter", "resume")

    def __init__(self) -> None:
        self._flag = False
        self._scheduled = False
        self._waiter: Any = None
        #: called once (then cleared) by :meth:`set` when no greenlet
        #: waits: how a parked stream is woken (:meth:`Outbox.park`)
        self.resume: Callable[[], None] | None = None

    def set(self) -> None:
        self._flag = True
        if self._waiter is not None:
            if not self._scheduled:
                self._scheduled = True
                _hub().loop.run_callback(self._notify)
        elif self.resume is not None:
            resume, self.resume = self.resume, None
            resume()

    def _notify(self) -> None:
        self._scheduled = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.switch(True)

    def _expire(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.switch(False)

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        hub = _hub()
        self._waiter = _getcurrent()
        timer = None
        if timeout is not None:
            timer = hub.loop.timer(max(timeout, 0.0))
            timer.start(self._expire)
        try:
            return bool(hub.switch())
        finally:
            self._waiter = None
            if timer is not None:
                timer.close()


_get_hub: Any = None
_spawn: Any = None


def _hub() -> Any:
    global _get_hub
    if _get_hub is None:  # imported once, not on every call (a fan-out's path)
        from gevent import get_hub

        _get_hub = get_hub
    return _get_hub()


def _spawn_raw(fn: Callable[..., Any], *args: Any) -> None:
    """Run *fn* in a new plain greenlet on the hub's next turn (it must
    handle its own errors)."""
    global _spawn
    if _spawn is None:
        from gevent import spawn_raw

        _spawn = spawn_raw
    _spawn(fn, *args)


class _Idle:
    """What :meth:`ResponseBody._frames` yields when it waits idle: the
    seconds until a heartbeat is due (``None``: none)."""

    __slots__ = ("timeout",)

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout


#: the last event framed as an HTTP/1.1 chunk, ``(data, chunk)``: one
#: publish hands the same bytes object to every subscriber, framed once.
_last_framed: tuple[bytes, bytes] = (b"", b"0\r\n\r\n")
#: parked streams that wrote straight out during this turn of the hub
_rearm_pending: list[ResponseBody] = []
#: parked streams woken during this turn of the hub
_wake_pending: list[ResponseBody] = []


def _framed(data: bytes) -> bytes:
    """*data* as one HTTP/1.1 chunk. A fan-out frames each event once, and
    allocates no object the garbage collector tracks per subscriber: with
    tens of thousands of subscribers, a collection in the middle of a
    publish would delay the last of them by a full pass over the heap."""
    global _last_framed
    last, chunk = _last_framed
    if last is not data:
        chunk = b"%X\r\n%s\r\n" % (len(data), data)
        _last_framed = (data, chunk)
    return chunk


def _flush_woken() -> None:
    """The hub's next turn after parked streams were woken: flush them all
    (one callback, not one per stream)."""
    bodies = _wake_pending.copy()
    _wake_pending.clear()
    for body in bodies:
        body._flush()


def _rearm_all() -> None:
    """The hub's next turn after writes straight out to parked streams:
    re-arm them all (one callback, not one per stream)."""
    bodies = _rearm_pending.copy()
    _rearm_pending.clear()
    for body in bodies:
        body._rearm()


#: the frames of a stream (:meth:`ResponseBody._frames`)
_Frames = Generator[bytes | _Idle, bool | None, None]


def _getcurrent() -> Any:
    from greenlet import getcurrent

    return getcurrent()


class Outbox:
    """Bytes waiting to be written to one client.

    :param high_water: a producer that finds this many bytes waiting blocks in
        :meth:`wait_room` until the writer drained them.
    :param max_delay: seconds a producer that never blocks lets data wait
        before it gives the writer a turn.
    :param green: use gevent primitives (else thread-safe ones).

    :meta private:
    """

    __slots__ = (
        "_chunks",
        "_lock",
        "_room",
        "_wake",
        "direct",
        "direct_at",
        "error",
        "finished",
        "first_at",
        "gone",
        "high_water",
        "max_delay",
        "reason",
        "size",
        "tail",
        "urgent",
    )

    def __init__(
        self, *, high_water: int = 65536, max_delay: float = 0.005, green: bool | None = None
    ) -> None:
        if green is None:
            green = gevent_active()
        if green:
            self._wake: Any = _GreenWake()
            self._room: Any = None  # made when a producer first has to wait
            self._lock: Any = None
        else:
            self._wake = threading.Event()
            self._room = threading.Event()
            self._room.set()
            self._lock = threading.Lock()
        self._chunks: list[bytes] = []
        self.size = 0
        #: something waiting must go out now, flush interval or not
        self.urgent = False
        self.first_at = 0.0
        self.high_water = high_water
        #: the longest a busy producer lets data wait before it yields to
        #: the writer (the flush interval of chunked responses)
        self.max_delay = max_delay
        #: no more data will come; the writer sends what is left, then ends.
        self.finished = False
        #: the client went away; nothing more is written.
        self.gone = False
        #: why the stream ended (see :data:`~flask_streaming.signals.stream_closed`).
        self.reason: str | None = None
        #: bytes to send before aborting, when a producer failed.
        self.error: bytes | None = None
        #: the body whose writer waits idle and lets :meth:`put` write
        #: straight to its socket (see :meth:`ResponseBody.write_through`);
        #: ``None`` while it may not.
        self.direct: ResponseBody | None = None
        #: ``time.monotonic()`` of the last write straight to the socket
        self.direct_at = -math.inf
        #: the rest of a write that went straight to the socket half-way:
        #: framed bytes the writer sends before anything else.
        self.tail = b""

    @property
    def green(self) -> bool:
        """``True`` when made with gevent's primitives (producers are
        greenlets), ``False`` with thread-safe ones."""
        return self._lock is None

    @property
    def open(self) -> bool:
        """``True`` while data put now would still be sent."""
        return not (self.finished or self.gone)

    def put(self, data: bytes, *, flush: bool = False) -> bool:
        """Queue *data*; return ``False`` (and drop it) once the stream ended.

        :param flush: send it without waiting out the writer's flush interval.

        The writer is woken when the outbox stops being empty (it then
        drains, or waits out its flush interval) and at ``high_water``; not
        for every put, which matters when one publish reaches thousands of
        outboxes. While the writer waits idle with nothing queued, *data*
        goes straight to the client's socket from the caller's greenlet
        when the socket takes it (no wake-up at all; see
        :meth:`ResponseBody.write_through`).
        """
        if self.finished or self.gone:
            return False
        direct = self.direct
        if direct is not None and not self._chunks and direct.write_through(data):
            return not self.gone
        if self._lock is not None:
            with self._lock:
                self._append(data)
        else:
            self._append(data)
        if flush:
            self.urgent = True
            self._wake.set()
        elif len(self._chunks) == 1 or self.size >= self.high_water:
            self._wake.set()
        return True

    def _append(self, data: bytes) -> None:
        if not self._chunks:
            self.first_at = time.monotonic()
        self._chunks.append(data)
        self.size += len(data)

    def chunk_count(self) -> int:
        """How many writes are waiting (events, for an event stream)."""
        return len(self._chunks)

    def wait_room(self) -> None:
        """Block the producer while the writer is ``high_water`` bytes behind."""
        while self.size >= self.high_water and not (self.gone or self.finished):
            if self._room is None:
                from gevent.event import Event

                self._room = Event()
            self._room.clear()
            if self.size >= self.high_water and not self.gone:
                self._room.wait()

    def drain(self) -> bytes:
        """Take everything waiting, as one bytes object."""
        if self._lock is not None:
            with self._lock:
                chunks, self._chunks, self.size = self._chunks, [], 0
        else:
            chunks, self._chunks, self.size = self._chunks, [], 0
        self.urgent = False
        if self._room is not None:
            self._room.set()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def finish(self, reason: str = "complete", error: bytes | None = None) -> None:
        """No more data will come; the writer sends what is left and ends."""
        if self.finished:
            return
        self.finished = True
        self.reason = self.reason or reason
        self.error = error
        self._wake.set()
        if self._room is not None:
            self._room.set()

    def disconnect(self) -> None:
        """The client went away: stop writing, wake every waiter."""
        self.gone = True
        self.reason = self.reason or "disconnect"
        self._wake.set()
        if self._room is not None:
            self._room.set()

    def clear_wake(self) -> None:
        self._wake.clear()

    def park(self, resume: Callable[[], None]) -> bool:
        """Under gevent, with no greenlet waiting: have the next wake-up
        call *resume* (once, from the waker's greenlet; it must not block).
        ``False`` (and nothing armed) when a wake-up already came."""
        wake = self._wake
        if wake.is_set():
            return False
        wake.resume = resume
        return True

    @property
    def parked(self) -> bool:
        """``True`` while :meth:`park`'s callback is armed."""
        return getattr(self._wake, "resume", None) is not None

    def unpark(self) -> bool:
        """Disarm :meth:`park`'s callback; ``True`` if it was still armed."""
        wake = self._wake
        armed = getattr(wake, "resume", None) is not None
        if armed:
            wake.resume = None
        return armed

    def wait(self, timeout: float | None) -> bool:
        """Wait until woken or *timeout* seconds passed; ``True`` if woken."""
        return bool(self._wake.wait(timeout))


class _DisconnectWatcher:
    """Notices a client that closed its connection while the stream is idle.

    A WSGI app normally learns of a disconnect only when a write fails; under
    gunicorn's gevent worker we also watch the socket for readability and peek
    at it: an orderly close reads as EOF at once.
    """

    __slots__ = ("_outbox", "_raw", "_watcher")

    def __init__(self, environ: dict[str, Any], outbox: Outbox) -> None:
        self._watcher: Any = None
        sock = environ.get("gunicorn.socket")
        raw = getattr(sock, "_sock", None)
        if raw is None or not outbox.green:  # a gevent socket, gevent's loop
            return
        try:
            fd = raw.fileno()
        except OSError:
            return
        from gevent import get_hub

        self._raw = raw
        self._outbox = outbox
        self._watcher = get_hub().loop.io(fd, 1)
        self._watcher.start(self._readable)

    def _readable(self) -> None:
        try:
            peek = self._raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            peek = b""
        self.stop()
        if not peek:
            self._outbox.disconnect()
        # else: the client sent more (a pipelined request); a failed write
        # will tell us if it leaves.

    def rebind(self, raw: Any) -> None:
        """Peek through *raw* from now on (the same descriptor, another
        socket object: a parked stream's)."""
        self._raw = raw

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()
            self._watcher = None


class Source(Protocol):
    """What feeds a :class:`ResponseBody`'s outbox: started after the first
    bytes went out, stopped when the stream ends (a
    :class:`~flask_streaming.producers.Producer`, a channel subscription).

    :meta private:
    """

    def start(self, body: ResponseBody) -> None: ...

    def stop(self) -> None: ...


class ResponseBody:
    """The WSGI iterable of a streaming response.

    :param outbox: where producers put encoded bytes.
    :param prelude: bytes sent at once, so that headers and a first chunk
        reach the client before any data exists.
    :param ping: seconds between heartbeats while idle (``None``: none).
    :param ping_bytes: the heartbeat (an SSE comment for event streams).
    :param flush_interval: the longest time data waits to be coalesced.
    :param producer: started on the first iteration, stopped on close.
    :param on_close: callables run once when the stream ends.
    :param channels: channel names, reported in the signals.
    :param on_shutdown: when the worker shuts down, the stream sends what
        this returns and ends (event streams: a jittered ``retry:`` line, so
        that clients reconnect elsewhere, spread out). ``None``: the stream
        runs to its end.
    :param send_timeout: seconds a write may wait for room in the socket
        under gevent before the client is cut off (``0``: no limit; the
        callers pass ``STREAMING_SEND_TIMEOUT``).
    :param park_after: seconds of idleness after which the stream is
        *parked* (``0``: never; event streams pass
        ``STREAMING_PARK_AFTER``): gunicorn's request greenlet hands the
        connection over and ends; the stream then holds no greenlet, no
        request objects and no server objects, only its socket, an idle
        watcher and a heartbeat timer, and a short-lived greenlet writes
        whenever there is something to write. Only where writes may go
        straight to the socket (see :meth:`write_through`).
    """

    __slots__ = (
        "_chunked",
        "_fd",
        "_frames_gen",
        "_parked",
        "_raw",
        "_resp",
        "_timer",
        "_watcher",
        "app",
        "channels",
        "closed",
        "environ",
        "flush_interval",
        "green",
        "id",
        "on_close",
        "on_shutdown",
        "outbox",
        "park_after",
        "ping",
        "ping_bytes",
        "prelude",
        "producer",
        "send_timeout",
        "started",
    )

    def __init__(
        self,
        outbox: Outbox,
        *,
        app: Flask | None = None,
        environ: dict[str, Any] | None = None,
        prelude: bytes = b"",
        ping: float | None = None,
        ping_bytes: bytes = b"",
        flush_interval: float = 0.0,
        producer: Source | None = None,
        on_close: Iterable[Callable[[], Any]] = (),
        channels: tuple[str, ...] = (),
        on_shutdown: Callable[[], bytes] | None = None,
        send_timeout: float = 0.0,
        park_after: float = 0.0,
    ) -> None:
        self.id = next(_ids)
        self.outbox = outbox
        self.green = outbox.green
        self.app = app
        self.environ = environ or {}
        if environ is not None:
            environ[BODY_ENVIRON_KEY] = self
        self.prelude = prelude
        self.ping = ping if ping and ping_bytes else None
        self.ping_bytes = ping_bytes
        self.flush_interval = flush_interval
        self.producer = producer
        self.on_close = tuple(on_close)
        self.channels = channels
        self.on_shutdown = on_shutdown
        #: seconds a write may wait for a client that stopped reading
        self.send_timeout = send_timeout
        #: seconds idle before the stream is parked (``0``: never)
        self.park_after = park_after
        self.started = False
        self.closed = False
        self._watcher: _DisconnectWatcher | None = None
        self._fd = -1
        #: the server's response (gunicorn's) and the client's raw socket,
        #: when writes may go straight to the socket; ``False``: not looked
        #: for yet, ``None``: they may not (or the stream is parked: then
        #: only ``_raw`` is set).
        self._resp: Any = False
        self._raw: Any = None
        #: the body is framed as HTTP/1.1 chunks (gunicorn's choice)
        self._chunked = False
        self._parked = False
        self._frames_gen: Any = None
        self._timer: Any = None

    @property
    def reason(self) -> str | None:
        """Why the stream ended, once it did."""
        return self.outbox.reason

    @property
    def remote_addr(self) -> str | None:
        return self.environ.get("REMOTE_ADDR")

    @property
    def parked(self) -> bool:
        """``True`` once the server's greenlet handed the connection over
        (``park_after``): the stream now writes from greenlets of its own."""
        return self._parked

    def __iter__(self) -> Iterator[bytes]:
        return self._run()

    def _run(self) -> Iterator[bytes]:
        """What the server iterates: the frames of the stream (bytes), from
        the prelude to the end, waiting while it is idle. Its ``finally``
        releases the stream (:meth:`close`) as soon as its frames end or the
        iteration is abandoned, not only when the server calls :meth:`close`:
        a middleware or ``after_request`` hook (Flask-Compress) that wraps
        the body may never pass the server's ``close()`` on; unless the
        stream was parked, which hands it over and returns."""
        frames = self._frames()
        parked = False
        try:
            if self._resp is False:
                self._resp = self._find_response(sys._getframe(1).f_code)
            outbox, park_after = self.outbox, self.park_after
            value: bool | None = None
            while True:
                item = frames.send(value)
                if not isinstance(item, _Idle):
                    value = None
                    yield item
                    continue
                timeout = item.timeout
                if not (park_after and outbox.direct is self):
                    value = outbox.wait(timeout)
                    continue
                # Writes go straight to the socket: park once idle so long.
                value = outbox.wait(park_after if timeout is None else min(timeout, park_after))
                if value or (timeout is not None and timeout <= park_after):
                    continue
                if self._park(frames, None if timeout is None else timeout - park_after):
                    parked = True
                    return
                value = outbox.wait(timeout - park_after if timeout is not None else None)
        except StopIteration:
            return
        finally:
            if not parked:
                frames.close()
                self.close()

    def _frames(self) -> _Frames:
        """The stream's frames: bytes to send, or an :class:`_Idle` when it
        waits for data (sent back: ``True`` when woken, ``False`` when the
        heartbeat is due). One generator for the server's greenlet and, once
        parked, for the greenlets that write for it."""
        outbox = self.outbox
        self.started = True
        _open_streams.add(self)
        if not self.green:
            _warn_sync_once()
        elif self.on_shutdown is not None:
            _install_shutdown_hook()
        self._watcher = _DisconnectWatcher(self.environ, outbox)
        if self.app is not None:
            stream_opened.send(self.app, stream=self, channels=self.channels)
        if _shutting_down and self.on_shutdown is not None:
            # This worker is stopping: send the client elsewhere at once.
            outbox.finish("shutdown")
            yield self.prelude + self.on_shutdown()
            return
        if self.producer is not None:
            self.producer.start(self)
        guarded = self._arm_send_timeout()
        yield self.prelude
        interval, ping = self.flush_interval, self.ping
        monotonic = time.monotonic
        while True:
            outbox.clear_wake()
            if outbox.gone:
                return
            if outbox.tail:
                # A write straight to the socket went out half-way: its
                # rest goes first, as it is (already framed).
                if guarded and not self._has_room():
                    return
                tail, outbox.tail = outbox.tail, b""
                self._send_all(tail)
                continue
            if outbox.size:
                wait = 0.0
                if (
                    interval
                    and not (outbox.finished or outbox.urgent)
                    and outbox.size < outbox.high_water
                ):
                    wait = interval - (monotonic() - outbox.first_at)
                if wait <= 0:
                    if guarded and not self._has_room():
                        return
                    yield outbox.drain()
                    continue
                outbox.wait(wait)
                continue
            if outbox.finished:
                if outbox.error is not None:
                    if outbox.error:
                        yield outbox.error
                    self._shut()
                    raise StreamAborted()
                return
            # Idle: wait for data; a heartbeat is due *ping* s after the
            # last write, counting writes straight to the socket.
            armed = not interval and self._arm_direct()
            timeout = ping
            while True:
                mark = outbox.direct_at
                woken = yield _Idle(timeout)
                if woken or ping is None or outbox.direct_at == mark:
                    break
                timeout = max(ping - (monotonic() - outbox.direct_at), 0.0)
                if armed and outbox.direct is None and not outbox.size:
                    outbox.direct = self  # a write went straight out
            if armed:
                outbox.direct = None
            if woken or ping is None or outbox.gone:
                continue
            if guarded and not self._has_room():
                return
            yield self.ping_bytes

    def _arm_direct(self) -> bool:
        """Let puts write straight to the socket while the writer waits idle
        (:meth:`write_through`): under gunicorn's gevent worker, on a plain
        (not TLS) HTTP/1 socket, when gunicorn's own loop iterates this body
        (no middleware between them to see or change the bytes; when it
        resumes the body, it has written all the body yielded), for a body
        gunicorn neither cuts at a ``Content-Length`` nor drops (``HEAD``,
        204, 304); and while parked. Called from :meth:`_frames` only.
        ``False``: not now."""
        if not (self._resp or self._parked):
            return False
        self.outbox.direct = self
        return True

    def _find_response(self, server_loop: Any) -> Any:
        """gunicorn's response object of this request (through the
        environ's early-hints callback, which holds it), when this body may
        write to the client's socket itself: *server_loop*, the code that
        iterates the body, is gunicorn's request loop. Else ``None``."""
        sock = self.environ.get("gunicorn.socket")
        if sock is None or not self.green:
            return None
        from gevent.socket import socket as green_socket
        from gunicorn.http.wsgi import Response
        from gunicorn.workers.base_async import AsyncWorker

        if server_loop is not AsyncWorker.handle_request.__code__:
            return None  # a middleware iterates the body
        if type(sock) is not green_socket:  # TLS (a subclass) or unknown
            return None
        for cell in getattr(self.environ.get("wsgi.early_hints"), "__closure__", None) or ():
            resp = cell.cell_contents
            if type(resp) is Response and resp.sock is sock:
                if resp.response_length is not None or getattr(resp, "_omits_body", True):
                    return None
                self._raw = sock._sock
                self._chunked = bool(resp.chunked)
                return resp
        return None

    def write_through(self, data: bytes) -> bool:
        """Write *data* straight to the client's socket, without blocking,
        framed as the server frames the body (HTTP/1.1 chunked, else as it
        is), and count it as the server counts body bytes. Called by
        :meth:`Outbox.put` while the writer waits idle with nothing queued.

        Returns ``False`` when the socket took none of it (its buffer is
        full): the caller queues *data* for the writer. ``True`` otherwise:
        all of it went out; or part of it did and the writer sends the rest
        first (:attr:`Outbox.tail`, before anything queued later); or the
        client is gone (the stream ends as after a failed write). Either
        way the writer is woken and nothing more goes straight out until it
        waits idle again, so a burst of puts is written in one go, not one
        ``send`` each. Never raises for the socket.
        """
        if not data:
            return True
        outbox = self.outbox
        chunk = _framed(data) if self._chunked else data
        try:
            sent = self._raw.send(chunk)
        except BlockingIOError:
            outbox.direct = None  # the writer sends it, and what follows
            return False
        except OSError:
            outbox.direct = None
            outbox.disconnect()
            return True
        if self._resp:
            self._resp.sent += len(data)
        outbox.direct_at = time.monotonic()
        # One write straight out per wait: what is put next (a burst) is
        # queued and the writer, woken now, sends it in one write; it arms
        # again when it next waits idle. A parked stream has no writer to
        # wake: it arms again on the hub's next turn, unless a burst was
        # queued by then (which woke it).
        outbox.direct = None
        if sent < len(chunk):
            outbox.tail = chunk[sent:]
        elif self._parked:
            if not _rearm_pending:
                _hub().loop.run_callback(_rearm_all)
            _rearm_pending.append(self)
            return True
        outbox._wake.set()
        return True

    def _rearm(self) -> None:
        """After a write straight out while parked (the hub's next turn):
        let the next put write straight out too, if the stream still waits
        with nothing queued."""
        outbox = self.outbox
        if outbox.parked and outbox.direct is None and not (outbox.size or outbox.tail):
            outbox.direct = self

    def _park(self, frames: _Frames, timeout: float | None) -> bool:
        """Take the connection over from gunicorn's request greenlet, which
        ends once :meth:`_run` returns: gunicorn then writes no chunked
        terminator (``chunked`` cleared), keeps no keep-alive (the stream
        owns the socket until it ends), logs the request (now) and closes a
        socket object that no longer owns the descriptor (detached; the
        stream goes on with a plain socket of its own on it). What the
        stream keeps of the WSGI environ are its plain values (strings and
        numbers); the request's and the server's objects are freed.
        ``False`` (nothing changed): the socket is closed already."""
        resp, sock = self._resp, self.environ["gunicorn.socket"]
        if sock.fileno() < 0:
            return False
        resp.chunked = False
        resp.force_close()
        fd = sock.detach()
        raw = _socket.socket(fileno=fd)
        raw.setblocking(False)
        self._raw, self._fd = raw, fd
        self._resp = None
        self._parked = True
        self._frames_gen = frames
        if self._watcher is not None:
            self._watcher.rebind(raw)
        self.environ = {k: v for k, v in self.environ.items() if type(v) in (str, int, float, bool)}
        if not self._idle(timeout):
            _spawn_raw(self._drive, True)
        return True

    def _idle(self, timeout: float | None) -> bool:
        """Parked and idle: the next wake-up (data, the end, a disconnect)
        or the heartbeat's timer (*timeout* s) spawns a greenlet that goes
        on with the frames (:meth:`_drive`). ``False``: woken already."""
        if not self.outbox.park(self._wake_parked):
            return False
        if timeout is not None:
            self._start_timer(timeout)
        return True

    def _start_timer(self, seconds: float) -> None:
        """The heartbeat's timer of a parked stream: :meth:`_ping_due` in
        *seconds*."""
        self._timer = _hub().loop.timer(max(seconds, 0.0))
        self._timer.start(self._ping_due)

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.stop()
            timer.close()

    def _wake_parked(self) -> None:
        """The resume hook of :meth:`Outbox.park` (from the waker's
        greenlet): on the hub's next turn, :meth:`_flush` this stream, with
        every other one woken during this turn (one callback for a whole
        fan-out)."""
        if not _wake_pending:
            _hub().loop.run_callback(_flush_woken)
        _wake_pending.append(self)

    def _flush(self) -> None:
        """In the hub, for a parked stream that was woken: when what woke it
        is queued data and the socket takes all of it at once, send it
        (framed) and park again, with no greenlet (a burst to thousands of
        parked subscribers then costs one ``send`` each); otherwise (the
        end, a disconnect, a full socket) start a writer (:meth:`_drive`)."""
        outbox = self.outbox
        if outbox.open and outbox.size and not outbox.tail and not self.closed:
            data = outbox.drain()
            chunk = _framed(data) if self._chunked else data
            try:
                sent = self._raw.send(chunk)
            except BlockingIOError:
                sent = 0
            except OSError:
                outbox.disconnect()
                sent = -1
            if sent > 0:
                outbox.direct_at = time.monotonic()
            if sent == len(chunk):
                outbox.clear_wake()
                if outbox.park(self._wake_parked):
                    if not outbox.direct:
                        outbox.direct = self
                    if self._timer is None and self.ping is not None:
                        # the heartbeat's timer fired during this turn
                        self._start_timer(self.ping)
                    return
            elif sent >= 0:
                outbox.tail = chunk[sent:]  # the writer sends the rest first
        self._stop_timer()
        _spawn_raw(self._drive, True)

    def _ping_due(self) -> None:
        self._stop_timer()
        if self.outbox.unpark():
            _spawn_raw(self._drive, False)

    def _drive(self, value: bool | None) -> None:
        """A parked stream's writer (a greenlet of its own for as long as
        there is something to write): goes on with the frames, framing them
        as gunicorn did, until they are idle again or end. A clean end sends
        the chunked terminator; then the socket is closed and the stream
        released, as :meth:`close` does for a stream the server ends."""
        frames, idle = self._frames_gen, False
        try:
            while True:
                try:
                    item = frames.send(value)
                except StopIteration:
                    break
                if isinstance(item, _Idle):
                    idle = self._idle(item.timeout)
                    if idle:
                        return
                    value = True
                    continue
                value = None
                if item and self._chunked:
                    item = b"%X\r\n%s\r\n" % (len(item), item)
                if item:
                    self._send_all(item)
            if self._chunked and not self.outbox.gone:
                self._send_all(b"0\r\n\r\n")
        except OSError:
            self.outbox.disconnect()
        except Exception:
            self.outbox.disconnect()
            logger.exception("flask_streaming: a parked stream failed")
        finally:
            if not idle:
                self._end_parked(frames)

    def _end_parked(self, frames: _Frames) -> None:
        if self.closed:
            return
        self._stop_timer()
        self.outbox.unpark()
        self.outbox.direct = None
        frames.close()
        self._release()
        raw = self._raw
        with contextlib.suppress(OSError):
            # What the client sent (and nobody reads) would turn the close
            # into a reset that can discard the stream's last bytes unread.
            raw.shutdown(socket.SHUT_WR)
            while raw.recv(65536):
                pass
        raw.close()

    def _send_all(self, data: bytes) -> None:
        """Send framed *data* to the client, all of it (for a parked stream:
        on its own socket, waiting for room up to ``send_timeout``).

        :raises OSError: the client is gone, or did not read in time.
        """
        if not self._parked:
            self.environ["gunicorn.socket"].sendall(data)
            return
        view, raw = memoryview(data), self._raw
        while view:
            try:
                view = view[raw.send(view) :]
            except BlockingIOError:
                from gevent.socket import wait_write

                try:
                    wait_write(self._fd, timeout=self.send_timeout or None)
                except TimeoutError:
                    self._cut_off()
                    raise

    def _arm_send_timeout(self) -> bool:
        """Under gevent with a send timeout, give the socket that timeout (a
        backstop for a write that fills the buffer half-way) and remember its
        descriptor for :meth:`_has_room`. ``False``: no guard."""
        sock = self.environ.get("gunicorn.socket")
        if sock is None or not self.send_timeout or not self.green:
            return False
        try:
            self._fd = sock.fileno()
        except OSError:
            return False
        set_socket_timeout(self.environ, self.send_timeout)
        return True

    def _has_room(self) -> bool:
        """Before a write: wait up to ``send_timeout`` for room in the socket
        buffer; a client that stopped reading is cut off (``send_timeout``)."""
        fd = self._fd
        if _writable(fd):
            return True
        from gevent.socket import wait_write

        try:
            wait_write(fd, timeout=self.send_timeout)
        except TimeoutError:
            self._cut_off()
            return False
        return True

    def _socket(self) -> Any:
        """The client's socket: gunicorn's, or a parked stream's own."""
        return self._raw if self._parked else self.environ.get("gunicorn.socket")

    def _cut_off(self) -> None:
        outbox = self.outbox
        outbox.reason = outbox.reason or "send_timeout"
        outbox.disconnect()
        self._shut()

    def _shut(self) -> None:
        """Shut the client's socket, so that no server can end the
        response cleanly after a failure."""
        sock = self._socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Called by the server when the response ends, however it ends;
        ignored once the stream is parked (gunicorn's close then comes at
        the hand-over: the stream ends later, by itself)."""
        if self._parked:
            return
        self._release()

    def _release(self) -> None:
        if self.closed:
            return
        self.closed = True
        _open_streams.discard(self)
        outbox = self.outbox
        outbox.direct = None
        if not outbox.finished:
            outbox.disconnect()
        if self._watcher is not None:
            self._watcher.stop()
        if self.send_timeout and self.green and not self._parked:
            set_socket_timeout(self.environ, None)
        if self.producer is not None:
            self.producer.stop()
        for fn in self.on_close:
            try:
                fn()
            except Exception:
                logger.exception("flask_streaming: a stop callback raised")
        if self.started and self.app is not None:
            stream_closed.send(self.app, stream=self, channels=self.channels, reason=outbox.reason)


# Old names: typed aliases for type checkers, a warning at run time.
if TYPE_CHECKING:
    StreamBody = ResponseBody
    open_streams = _open_streams
else:
    __getattr__ = renamed(
        __name__,
        {"StreamBody": "ResponseBody", "open_streams": "_open_streams"},
        instead={"open_streams": "open_stream_count()"},
    )
