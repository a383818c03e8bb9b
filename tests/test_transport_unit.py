"""In-memory unit tests of the transport layer: :class:`Outbox` and
:class:`ResponseBody` driven by hand, as a WSGI server would, with the bytes
collected in an :class:`io.BytesIO` (the style of Werkzeug's
``tests/test_wsgi.py``). No server, no app, no gevent: outboxes here use the
thread-safe primitives (``green=False``) and producers are threads."""

from __future__ import annotations

import importlib
import io
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flask_streaming.producers import Producer, pump
from flask_streaming.transport import (
    BODY_ENVIRON_KEY,
    Outbox,
    ResponseBody,
    StreamAborted,
    open_stream_count,
)

WAIT = 5.0  # bound for a thread to react; the happy path takes ms


def outbox(**kw: Any) -> Outbox:
    return Outbox(green=False, **kw)


def serve(body: ResponseBody, limit: int = 1000) -> bytes:
    """Iterate *body* to its end as a server does, then close it."""
    out = io.BytesIO()
    try:
        for i, chunk in enumerate(body):
            assert i < limit, "the body did not end"
            out.write(chunk)
    finally:
        body.close()
    return out.getvalue()


class Recorder:
    """A :class:`~flask_streaming.transport.Source` that records its calls
    and runs *fill* (in the server's thread) when started."""

    def __init__(self, fill: Callable[[Outbox], None] = lambda o: None) -> None:
        self.fill = fill
        self.calls: list[str] = []

    def start(self, body: ResponseBody) -> None:
        self.calls.append("start")
        self.fill(body.outbox)

    def stop(self) -> None:
        self.calls.append("stop")


# --- Outbox --------------------------------------------------------------------------


def test_outbox_drains_what_was_put_in_order() -> None:
    box = outbox()
    assert box.put(b"a") and box.put(b"bc") and box.put(b"")
    assert (box.size, box.chunk_count()) == (3, 3)
    assert box.drain() == b"abc"
    assert (box.size, box.chunk_count()) == (0, 0)
    assert box.drain() == b""


def test_outbox_refuses_data_once_finished_or_gone() -> None:
    box = outbox()
    box.put(b"kept")
    box.finish("complete")
    assert not box.open
    assert box.put(b"late") is False
    assert box.drain() == b"kept"  # what was put before still goes out

    gone = outbox()
    gone.disconnect()
    assert not gone.open and gone.put(b"x") is False and gone.size == 0


def test_outbox_keeps_the_first_reason() -> None:
    box = outbox()
    box.disconnect()
    box.finish("complete")
    assert box.reason == "disconnect"

    box = outbox()
    box.finish("error", b"boom")
    box.finish("complete")  # a second finish changes nothing
    assert (box.reason, box.error) == ("error", b"boom")


def test_outbox_wakes_the_writer_on_first_data_not_every_put() -> None:
    box = outbox(high_water=100)
    assert box.wait(0) is False
    box.put(b"a")
    assert box.wait(0) is True  # empty -> not empty wakes
    box.clear_wake()
    box.put(b"b")
    assert box.wait(0) is False  # a second small put does not
    box.put(b"x" * 100)
    assert box.wait(0) is True  # reaching high_water does


def test_outbox_flush_wakes_and_marks_urgent() -> None:
    box = outbox(high_water=100)
    box.put(b"a")
    box.clear_wake()
    box.put(b"b", flush=True)
    assert box.urgent and box.wait(0) is True
    box.drain()
    assert not box.urgent


@pytest.mark.parametrize(
    "release",
    [Outbox.drain, Outbox.disconnect, lambda box: box.finish("shutdown")],
    ids=["drained", "client gone", "finished"],
)
def test_outbox_wait_room_blocks_until_drained_or_gone(release: Callable[[Outbox], Any]) -> None:
    box = outbox(high_water=4)
    box.put(b"12345")
    done = threading.Event()

    def producer() -> None:
        box.wait_room()
        done.set()

    threading.Thread(target=producer, daemon=True).start()
    assert not done.wait(0.05)  # behind by high_water: blocked
    release(box)
    assert done.wait(WAIT)


def test_outbox_green_reports_its_primitives() -> None:
    assert outbox().green is False


# --- ResponseBody ----------------------------------------------------------------------


def test_body_sends_prelude_then_data_then_ends() -> None:
    source = Recorder(lambda o: (o.put(b"one\n"), o.put(b"two\n"), o.finish()))
    body = ResponseBody(outbox(), prelude=b"hello\n", producer=source)
    assert serve(body) == b"hello\none\ntwo\n"
    assert source.calls == ["start", "stop"]
    assert body.reason == "complete" and body.closed


def test_body_starts_its_source_only_when_iterated() -> None:
    source = Recorder()
    body = ResponseBody(outbox(), producer=source)
    assert source.calls == [] and not body.started
    it = iter(body)
    assert next(it) == b""  # the empty prelude: headers go out
    assert source.calls == ["start"] and body.started
    body.close()
    assert source.calls == ["start", "stop"]


def test_body_counts_as_open_from_first_iteration_to_close() -> None:
    box = outbox()
    before = open_stream_count()
    body = ResponseBody(box)
    assert open_stream_count() == before
    it = iter(body)
    next(it)
    assert open_stream_count() == before + 1
    box.finish()
    assert list(it) == []
    assert open_stream_count() == before and body.closed


def test_body_close_runs_callbacks_once_and_disconnects() -> None:
    calls: list[int] = []
    box = outbox()
    body = ResponseBody(box, on_close=[lambda: calls.append(1), lambda: calls.append(2)])
    it = iter(body)
    next(it)
    body.close()
    body.close()
    assert calls == [1, 2]
    assert box.gone and body.reason == "disconnect"
    assert box.put(b"x") is False


def test_body_callback_that_raises_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    def bad() -> None:
        raise RuntimeError("boom")

    body = ResponseBody(outbox(), on_close=[bad, lambda: calls.append("after")])
    body.close()
    assert calls == ["after"]
    assert any(r.name == "flask_streaming.transport" for r in caplog.records)


def test_body_abandoned_iteration_releases_the_stream() -> None:
    """A middleware that drops the iterator without calling close()."""
    calls: list[str] = []
    box = outbox()
    box.put(b"data")
    before = open_stream_count()
    body = ResponseBody(box, on_close=[lambda: calls.append("closed")])
    it = iter(body)
    assert next(it) == b""
    assert next(it) == b"data"
    it.close()  # type: ignore[attr-defined]
    assert calls == ["closed"] and body.closed and open_stream_count() == before


def test_body_failed_source_sends_error_bytes_then_aborts() -> None:
    box = outbox()
    box.put(b"partial")
    box.finish("error", b"sorry\n")
    out = io.BytesIO()
    body = ResponseBody(box)
    with pytest.raises(StreamAborted):
        for chunk in body:
            out.write(chunk)
    assert out.getvalue() == b"partialsorry\n"
    assert body.closed and body.reason == "error"


def test_body_sends_heartbeats_while_idle() -> None:
    box = outbox()
    body = ResponseBody(box, ping=0.01, ping_bytes=b": ping\n")
    it = iter(body)
    assert next(it) == b""
    assert next(it) == b": ping\n"
    assert next(it) == b": ping\n"
    box.put(b"data")
    assert next(it) == b"data"
    body.close()


def test_body_without_ping_bytes_sends_no_heartbeat() -> None:
    body = ResponseBody(outbox(), ping=0.01)
    assert body.ping is None
    body.close()


def test_body_coalesces_writes_within_the_flush_interval() -> None:
    box = outbox(high_water=1 << 20)
    body = ResponseBody(box, flush_interval=0.2)
    it = iter(body)
    next(it)
    box.put(b"a")
    box.put(b"b")
    box.put(b"c")
    started = time.monotonic()
    assert next(it) == b"abc"  # one write after the interval
    assert time.monotonic() - started >= 0.1
    box.put(b"now", flush=True)
    started = time.monotonic()
    assert next(it) == b"now"  # flush=True: no wait
    assert time.monotonic() - started < 0.1
    body.close()


def test_body_registers_itself_in_the_environ() -> None:
    environ: dict[str, Any] = {"REMOTE_ADDR": "192.0.2.1"}
    body = ResponseBody(outbox(), environ=environ)
    assert environ[BODY_ENVIRON_KEY] is body
    assert body.remote_addr == "192.0.2.1"
    body.close()


def test_body_ids_are_distinct() -> None:
    a, b = ResponseBody(outbox()), ResponseBody(outbox())
    assert a.id != b.id
    a.close()
    b.close()


def test_pump_in_a_thread_fills_the_body_to_its_end() -> None:
    items = [f"{i}\n" for i in range(200)]
    box = outbox(high_water=64)  # the producer blocks on the writer often
    producer = pump(items, str.encode)
    assert serve(ResponseBody(box, producer=producer)) == "".join(items).encode()
    assert box.reason == "complete"


def test_pump_stops_and_closes_the_generator_when_the_client_leaves() -> None:
    closed = threading.Event()

    def gen() -> Iterator[bytes]:
        try:
            while True:
                yield b"x" * 10
        finally:
            closed.set()

    box = outbox(high_water=16)
    body = ResponseBody(box, producer=pump(gen(), bytes))
    it = iter(body)
    next(it)
    assert next(it).startswith(b"x")
    body.close()  # the client left
    assert closed.wait(WAIT)


def test_pump_failure_aborts_with_the_error_bytes() -> None:
    def gen() -> Iterator[bytes]:
        yield b"ok "
        raise ValueError("boom")

    box = outbox()
    body = ResponseBody(box, producer=pump(gen(), bytes, on_error=lambda exc: b"failed"))
    out = io.BytesIO()
    with pytest.raises(StreamAborted):
        for chunk in body:
            out.write(chunk)
    assert out.getvalue() == b"ok failed"


def test_producer_gets_the_outbox() -> None:
    def fill(box: Outbox) -> None:
        box.put(b"from a thread")
        box.finish()

    assert serve(ResponseBody(outbox(), producer=Producer(fill))) == b"from a thread"


# --- the layer ---------------------------------------------------------------------


def _package_imports(module: str) -> set[str]:
    """The flask_streaming modules *module* imports anywhere in its source
    (top level, in functions, under ``TYPE_CHECKING``)."""
    import ast

    mod = importlib.import_module(module)
    assert mod.__file__ is not None
    tree = ast.parse(Path(mod.__file__).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            names = [("." * node.level) + (node.module or "")]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name.startswith("flask_streaming.") or name.startswith("."):
                found.add(name.removeprefix("flask_streaming").lstrip("."))
    return found


def test_transport_imports_nothing_above_it() -> None:
    """Transport moves bytes: it knows no encoder (what an event stream
    sends at shutdown comes from its ``on_shutdown``), producer, response
    helper or settings, only the signals it sends and the deprecation
    helper. The wire format (:mod:`flask_streaming.sse_wire`) imports
    nothing of the package."""
    assert _package_imports("flask_streaming.transport") <= {"signals", "deprecations"}
    assert _package_imports("flask_streaming.sse_wire") == set()
    assert _package_imports("flask_streaming.producers") <= {"transport"}


# --- deprecated names ------------------------------------------------------------------

RENAMED = [
    ("flask_streaming", "EventStream", "EventWriter"),
    ("flask_streaming", "ResponseStream", "ResponseWriter"),
    ("flask_streaming.sse", "EventStream", "EventWriter"),
    ("flask_streaming.responses", "ResponseStream", "ResponseWriter"),
    ("flask_streaming.transport", "StreamBody", "ResponseBody"),
]


@pytest.mark.parametrize(("module", "old", "new"), RENAMED)
def test_old_names_work_and_warn(module: str, old: str, new: str) -> None:
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=rf"{module}\.{old} is deprecated; use .*{new}"):
        value = getattr(mod, old)
    assert value is getattr(mod, new)


def test_open_streams_set_warns_towards_the_count() -> None:
    import flask_streaming.transport as transport

    advice = r"transport\.open_streams is deprecated; use flask_streaming\.transport"
    with pytest.warns(DeprecationWarning, match=advice + r"\.open_stream_count\(\)"):
        streams = transport.open_streams
    assert len(streams) == open_stream_count()


@pytest.mark.parametrize("module", sorted({m for m, _, _ in RENAMED}))
def test_unknown_names_still_raise(module: str) -> None:
    mod = importlib.import_module(module)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError):
            _ = mod.NoSuchName
