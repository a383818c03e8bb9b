"""The response helpers through Flask's test client (no server, no gevent:
producers run in threads here; the live tests cover gunicorn's gevent worker)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, g, request
from flask.json.provider import DefaultJSONProvider
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.http import parse_options_header

from flask_streaming import (
    ResponseWriter,
    ServerSentEvent,
    StreamClosedError,
    Streaming,
    chunked_response,
    download_response,
    ndjson_response,
    produce,
    sse_response,
    stream_response,
)
from flask_streaming.responses import content_disposition, safe_filename
from flask_streaming.sse_wire import EventParser
from flask_streaming.testing import parse_events
from flask_streaming.transport import StreamAborted

# When a property fails, Hypothesis imports libcst to suggest a patch, and
# libcst trips a DeprecationWarning of mypy_extensions: keep that from turning
# the failure report into an INTERNALERROR under ``filterwarnings = error``.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)

WAIT = 5.0  # generous bound for a thread to react; the happy path takes ms


def wait_for(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def chunks_of(response: Any) -> list[bytes]:
    """Every non-empty write of a streamed test response, in order."""
    try:
        return [c for c in response.response if c]
    finally:
        response.close()


# --- sse_response ---------------------------------------------------------------


def test_sse_headers(app: Flask, client: Any) -> None:
    @app.get("/e")
    def e() -> Any:
        return sse_response(iter(["x"]), headers={"X-Extra": "1"}, status=201)

    with client.get("/e") as r:
        assert r.status_code == 201
        assert r.headers["Content-Type"] == "text/event-stream"
        assert "no-cache" in r.headers["Cache-Control"]
        assert r.headers["X-Accel-Buffering"] == "no"
        assert r.headers["X-Extra"] == "1"
        for hop in ("Connection", "Keep-Alive", "Transfer-Encoding"):
            assert hop not in r.headers
        assert "Content-Length" not in r.headers
        assert r.data.startswith(b":")  # a comment first, never a BOM


def test_sse_first_bytes_before_the_first_event(app: Flask, client: Any) -> None:
    release = threading.Event()

    @app.get("/e")
    def e() -> Any:
        def gen() -> Iterator[str]:
            release.wait(WAIT)
            yield "late"

        return sse_response(gen())

    r = client.get("/e", buffered=False)
    try:
        it = iter(r.response)
        first = next(it)
        assert first.startswith(b":") and first.endswith(b"\n")
        assert b"\n\n" not in first  # a comment line: nothing a client could dispatch
        assert parse_events(first) == []
        assert not release.is_set()
        release.set()
        assert [e.data for e in parse_events(b"".join(it))] == ["late"]
    finally:
        release.set()
        r.close()


def test_sse_item_kinds(app: Flask, client: Any) -> None:
    @app.get("/e")
    def e() -> Any:
        return sse_response(
            [
                "text",
                b"bytes",
                {"data": {"n": 1}, "event": "obj", "id": 0},  # a dict of event fields
                {"n": 2},  # any other dict is the data
                ServerSentEvent("ev", event="named", id="7"),
                [1, 2],
            ]
        )

    with client.get("/e") as r:
        got = [(e.data, e.event, e.id) for e in parse_events(r.data)]
    assert got == [
        ("text", "message", ""),
        ("bytes", "message", ""),
        ('{"n":1}', "obj", "0"),
        ('{"n":2}', "message", "0"),
        ("ev", "named", "7"),
        ("[1,2]", "message", "7"),
    ]


def test_sse_retry_from_argument_and_config(app: Flask, client: Any) -> None:
    @app.get("/e")
    def e() -> Any:
        retry = request.args.get("retry", type=int)
        return sse_response(iter(["x"]), retry=retry)

    with client.get("/e?retry=1500") as r:
        parser = EventParser()
        parser.feed(r.data)
        assert parser.retry == 1500
    with client.get("/e") as r:
        assert b"retry:" not in r.data  # no config: the browser's default


def test_sse_runs_in_the_request_context(app: Flask, client: Any) -> None:
    @app.get("/e")
    def e() -> Any:
        g.user = "ada"

        def gen() -> Iterator[str]:
            yield request.args["q"]
            yield g.user
            yield request.path

        return sse_response(gen())

    with client.get("/e?q=hello") as r:
        assert [e.data for e in parse_events(r.data)] == ["hello", "ada", "/e"]


def test_sse_json_through_the_apps_provider(app: Flask, client: Any) -> None:
    class Provider(DefaultJSONProvider):
        @staticmethod
        def default(o: Any) -> Any:
            if isinstance(o, complex):
                return [o.real, o.imag]
            return DefaultJSONProvider.default(o)

    app.json = Provider(app)
    u = uuid.uuid4()

    @app.get("/e")
    def e() -> Any:
        return sse_response(iter([{"z": 1 + 2j, "u": u}]))

    with client.get("/e") as r:
        (event,) = parse_events(r.data)
    assert event.json() == {"z": [1.0, 2.0], "u": str(u)}


def test_sse_error_mid_stream(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = Flask("errapp", instance_path=str(tmp_path))
    app.config["STREAMING_ERROR_MESSAGE"] = "Sorry."
    Streaming(app)
    client = app.test_client()

    @app.get("/e")
    def e() -> Any:
        def gen() -> Iterator[str]:
            yield "before"
            raise RuntimeError("secret database password in traceback")

        return sse_response(gen())

    r = client.get("/e", buffered=False)
    received: list[bytes] = []
    with caplog.at_level(logging.ERROR, "flask_streaming"), pytest.raises(StreamAborted):
        for chunk in r.response:
            received.append(chunk)
    r.close()
    body = b"".join(received)
    events = parse_events(body)
    assert [(e.event, e.data) for e in events] == [
        ("message", "before"),
        ("stream-error", '{"message":"Sorry."}'),
    ]
    assert b"secret" not in body and b"Traceback" not in body
    # The one failure, logged once, with its traceback for the operator.
    logged = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(logged) == 1, logged
    rec = logged[0]
    assert rec.name == "flask_streaming.producers"
    assert "the stream's source raised" in rec.getMessage()
    assert rec.exc_info is not None and rec.exc_info[0] is RuntimeError
    assert str(rec.exc_info[1]) == "secret database password in traceback"


@pytest.mark.parametrize("when", ["client closes", "source ends"])
def test_sse_generator_finally_runs(app: Flask, client: Any, when: str) -> None:
    finished = threading.Event()

    @app.get("/e")
    def e() -> Any:
        def gen() -> Iterator[str]:
            try:
                for i in range(10**9 if when == "client closes" else 3):
                    yield str(i)
                    time.sleep(0.001)
            finally:
                finished.set()

        return sse_response(gen())

    r = client.get("/e", buffered=False)
    it = iter(r.response)
    next(it), next(it)
    if when == "source ends":
        list(it)
    r.close()
    assert finished.wait(WAIT)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.text(max_size=20),
            st.sampled_from(["\r\n", "\r", "\n", "\u2028", "\x00", "\U0001f600", ""]),
            st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
        ),
        max_size=8,
    )
)
def test_sse_round_trip_property(items: list[Any]) -> None:
    app = Flask("prop")

    @app.get("/e")
    def e() -> Any:
        return sse_response(iter(items))

    with app.test_client().get("/e") as r:
        got = [e.data for e in parse_events(r.data)]

    def expected(item: Any) -> str:
        if isinstance(item, str):
            return item.replace("\r\n", "\n").replace("\r", "\n")
        return json.dumps(item, separators=(",", ":"), ensure_ascii=True, sort_keys=True)

    # A dict whose keys are all event fields is an event, not data: the
    # strategy's keys are arbitrary text, so filter those rare cases.
    fields = {"data", "event", "id", "retry", "comment"}
    assert got == [
        expected(i) for i in items if not (isinstance(i, dict) and i and set(i) <= fields)
    ]


_WARNS_ONCE = """
import logging, sys
from flask import Flask
from flask_streaming import sse_response
from flask_streaming.testing import parse_events

records = []
handler = logging.Handler()
handler.emit = records.append
logging.getLogger("flask_streaming").addHandler(handler)
app = Flask("once")

@app.get("/e")
def e():
    return sse_response(iter(["x"]))

client = app.test_client()
for _ in range(3):
    with client.get("/e") as r:
        assert [e.data for e in parse_events(r.data)] == ["x"]
for rec in records:
    print(rec.levelname, rec.name, rec.getMessage())
"""


def test_sse_sync_fallback_warns_once() -> None:
    """Outside gevent the first stream of a process warns that streams tie
    up a thread each; the next ones say nothing (a fresh process: the
    warning is once per process)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", _WARNS_ONCE],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).parent.parent,
    ).stdout
    lines = out.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("WARNING flask_streaming.transport ")
    assert "gevent" in lines[0]


# --- produce ------------------------------------------------------------------------


def test_produce_emit_close_and_error_value(app: Flask, client: Any) -> None:
    results: dict[str, Any] = {}
    stop_calls: list[str] = []

    @app.get("/p")
    def p() -> Any:
        def start(stream: Any) -> Callable[[], None]:
            results["path"] = request.path
            results["first"] = stream.emit({"n": 1}, event="tick", id=1)
            results["second"] = stream.emit("two", id=0)
            results["closed_before"] = stream.closed
            stream.close()
            results["closed_after"] = stream.closed
            results["late"] = stream.emit("never sent")
            return lambda: stop_calls.append("cancel")

        return produce(start, stop=lambda: stop_calls.append("stop"))

    with client.get("/p") as r:
        assert r.mimetype == "text/event-stream"
        events = parse_events(r.data)
    assert [(e.data, e.event, e.id) for e in events] == [
        ('{"n":1}', "tick", "1"),
        ("two", "message", "0"),
    ]
    assert results["path"] == "/p"
    assert results["first"] is None and results["second"] is None
    assert results["closed_before"] is False and results["closed_after"] is True
    assert isinstance(results["late"], StreamClosedError)  # returned, not raised
    assert sorted(stop_calls) == ["cancel", "stop"]


def test_produce_emit_after_client_left(app: Flask, client: Any) -> None:
    gone = threading.Event()
    result: list[Any] = []
    stop_calls: list[str] = []

    @app.get("/p")
    def p() -> Any:
        def start(stream: Any) -> Callable[[], None]:
            def loop() -> None:
                for i in range(100_000):
                    err = stream.emit(i)
                    if err is not None:
                        result.append(err)
                        gone.set()
                        return
                    time.sleep(0.002)

            threading.Thread(target=loop, daemon=True).start()
            return lambda: stop_calls.append("cancel")

        return produce(start, stop=lambda: stop_calls.append("stop"))

    r = client.get("/p", buffered=False)
    parser = EventParser()
    got: list[Any] = []
    for chunk in r.response:
        got.extend(parser.feed(chunk))
        if len(got) >= 3:
            break
    r.close()
    assert [e.data for e in got[:3]] == ["0", "1", "2"]
    assert gone.wait(WAIT)
    assert isinstance(result[0], StreamClosedError)
    assert sorted(stop_calls) == ["cancel", "stop"]  # each exactly once


def test_produce_start_raises(app: Flask, client: Any) -> None:
    stopped = threading.Event()

    @app.get("/p")
    def p() -> Any:
        def start(stream: Any) -> None:
            stream.emit("hello")
            raise ValueError("boom")

        return produce(start, stop=stopped.set)

    r = client.get("/p", buffered=False)
    received: list[bytes] = []
    with pytest.raises(StreamAborted):
        for chunk in r.response:
            received.append(chunk)
    r.close()
    events = parse_events(b"".join(received))
    assert [e.event for e in events] == ["message", "stream-error"]
    assert stopped.is_set()


# --- stream_response ----------------------------------------------------------------


def test_stream_response_coalesces(app: Flask, client: Any) -> None:
    items = [f"{i:05d}\n" for i in range(20_000)]  # 6 bytes each

    @app.get("/s")
    def s() -> Any:
        return stream_response(iter(items), buffer_size=4096, flush_interval=1.0)

    r = client.get("/s", buffered=False)
    assert r.mimetype == "text/plain"
    chunks = chunks_of(r)
    assert b"".join(chunks) == "".join(items).encode()
    assert len(chunks) <= len(items) * 6 // 4096 + 2
    assert max(map(len, chunks)) < 4096 + 6
    assert len(chunks) > 2  # and not one big buffer either


def test_stream_response_never_holds_data_past_flush_interval(app: Flask, client: Any) -> None:
    release = threading.Event()

    @app.get("/s")
    def s() -> Any:
        def gen() -> Iterator[bytes]:
            yield b"first"
            release.wait(WAIT)
            yield b"second"

        return stream_response(gen(), mimetype="application/octet-stream", flush_interval=0.1)

    r = client.get("/s", buffered=False)
    try:
        t0 = time.monotonic()
        it = (c for c in r.response if c)
        assert next(it) == b"first"
        elapsed = time.monotonic() - t0
        assert not release.is_set()  # the generator is still waiting
        assert elapsed < 0.1 + 0.5  # flush_interval, and slack for a busy machine
        release.set()
        assert b"".join(it) == b"second"
    finally:
        release.set()
        r.close()


def test_stream_response_mixes_text_and_bytes(app: Flask, client: Any) -> None:
    @app.get("/s")
    def s() -> Any:
        return stream_response(
            iter(["h\u00e9", b"\x00\xff", bytearray(b"!")]), headers={"X-A": "b"}
        )

    with client.get("/s") as r:
        assert r.data == "h\u00e9".encode() + b"\x00\xff!"
        assert r.headers["X-A"] == "b"
        assert r.headers["Content-Type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize("bad", [RuntimeError("broke"), 42])
def test_stream_response_failure_aborts(app: Flask, client: Any, bad: Any) -> None:
    @app.get("/s")
    def s() -> Any:
        def gen() -> Iterator[Any]:
            yield "partial\n"
            if isinstance(bad, Exception):
                raise bad
            yield bad  # not str or bytes

        return stream_response(gen(), flush_interval=0.0)

    r = client.get("/s", buffered=False)
    received: list[bytes] = []
    with pytest.raises(StreamAborted):
        for chunk in r.response:
            received.append(chunk)
    r.close()
    assert b"".join(received) == b"partial\n"


# --- ndjson_response -----------------------------------------------------------------


def test_ndjson(app: Flask, client: Any) -> None:
    rows = [{"id": i, "name": f"n\u00e9 {i}", "tags": ["a\nb"]} for i in range(5000)]

    @app.get("/n")
    def n() -> Any:
        return ndjson_response(iter(rows))

    with client.get("/n") as r:
        assert r.mimetype == "application/x-ndjson"
        body = r.data
    lines = body.split(b"\n")
    assert lines[-1] == b""  # every document ends with a newline
    assert [json.loads(line) for line in lines[:-1]] == rows
    # the app's provider: sorted keys, ASCII (Flask's defaults)
    assert lines[0] == b'{"id":0,"name":"n\\u00e9 0","tags":["a\\nb"]}'
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    with client.get("/n") as r:
        assert r.data.split(b"\n")[0] == '{"id":0,"name":"n\u00e9 0","tags":["a\\nb"]}'.encode()


def test_ndjson_uses_the_apps_provider(app: Flask, client: Any) -> None:
    day = uuid.UUID(int=5)

    @app.get("/n")
    def n() -> Any:
        return ndjson_response(iter([{"u": day}, [1], "s", None]))

    with client.get("/n") as r:
        assert r.data == b'{"u":"00000000-0000-0000-0000-000000000005"}\n[1]\n"s"\nnull\n'


# --- chunked_response ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("utf-8", [b"a", "\u00e9".encode(), b"\x00\x01", b'{"k":[1]}']),
        (
            "base64",
            [b"YQ==\n", b"w6k=\n", b"AAE=\n", base64.b64encode(b'{"k":[1]}') + b"\n"],
        ),
        ("hex", [b"61\n", b"c3a9\n", b"0001\n", b'{"k":[1]}'.hex().encode() + b"\n"]),
    ],
)
def test_chunked_each_chunk_one_write(
    app: Flask, client: Any, encoding: str, expected: list[bytes]
) -> None:
    @app.get("/c")
    def c() -> Any:
        return chunked_response(iter(["a", "\u00e9", b"\x00\x01", {"k": [1]}]), encoding=encoding)

    r = client.get("/c", buffered=False)
    assert chunks_of(r) == expected


def test_chunked_many_small_chunks_stay_separate(app: Flask, client: Any) -> None:
    @app.get("/c")
    def c() -> Any:
        return chunked_response(iter(str(i) for i in range(500)))

    assert chunks_of(client.get("/c", buffered=False)) == [str(i).encode() for i in range(500)]


def test_chunked_rejects_unknown_encoding(app: Flask) -> None:
    with app.test_request_context(), pytest.raises(ValueError, match="encoding"):
        chunked_response(iter([]), encoding="latin-1")


# --- download_response --------------------------------------------------------------

NAMES = [
    ("report.pdf", "report.pdf", None),
    ("donn\u00e9es 2024.csv", "donnees 2024.csv", "donn\u00e9es 2024.csv"),
    ("\u65e5\u672c\u8a9e.txt", None, "\u65e5\u672c\u8a9e.txt"),
    ("smile \U0001f600.bin", None, "smile \U0001f600.bin"),
    ('quote"back\\slash.txt', 'quote"back_slash.txt', None),
    ("../../etc/passwd", "_.._etc_passwd", None),
]


def _disposition(header: str) -> dict[str, str]:
    kind, params = parse_options_header(header)
    assert kind == "attachment"
    return params


@pytest.mark.parametrize(("name", "ascii_name", "unicode_name"), NAMES)
@pytest.mark.parametrize("source", ["path", "iterable"])
def test_download_filename(
    app: Flask,
    client: Any,
    tmp_path: Path,
    source: str,
    name: str,
    ascii_name: str | None,
    unicode_name: str | None,
) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"content")

    @app.get("/d")
    def d() -> Any:
        src: Any = str(path) if source == "path" else iter([b"cont", "ent"])
        return download_response(src, filename=name)

    with client.get("/d") as r:
        assert r.status_code == 200
        assert r.data == b"content"
        header = r.headers["Content-Disposition"]
    header.encode("ascii")  # headers stay ASCII
    raw = header.lower()
    if unicode_name is None:
        assert "filename*" not in raw
        assert _disposition(header)["filename"] == ascii_name
    else:
        assert "filename*=utf-8''" in raw  # RFC 6266 / RFC 5987
        assert 'filename="' in raw or "filename=" in raw  # an ASCII fallback too
        # werkzeug decodes filename* and prefers it over the fallback.
        assert _disposition(header)["filename"] == unicode_name
        if ascii_name is not None:
            assert f'filename="{ascii_name}"'.lower() in raw or f"filename={ascii_name}" in raw


@pytest.mark.parametrize("source", ["path", "iterable"])
@pytest.mark.parametrize(
    "name", ["evil\r\nSet-Cookie: a=b", "a\nb.txt", "x\r.txt", "nul\x00.txt", "tab\t.txt"]
)
def test_download_no_header_injection(
    app: Flask, client: Any, tmp_path: Path, source: str, name: str
) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")

    @app.get("/d")
    def d() -> Any:
        src: Any = path if source == "path" else iter([b"x"])
        return download_response(src, filename=name)

    with client.get("/d") as r:
        assert r.status_code == 200
        assert "Set-Cookie" not in r.headers
        values = r.headers.getlist("Content-Disposition")
        assert len(values) == 1
        assert not any(c in values[0] for c in "\r\n\x00")
        assert _disposition(values[0])["filename"] == safe_filename(name)


@given(st.text(max_size=40))
def test_content_disposition_property(name: str) -> None:
    header = content_disposition(name)
    header.encode("ascii")
    assert not any(c in header for c in "\r\n\x00")
    assert _disposition(header)["filename"] == safe_filename(name)
    assert "/" not in safe_filename(name) and "\\" not in safe_filename(name)
    assert safe_filename(name)


def test_download_path_range_and_conditional(app: Flask, client: Any, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4: larger than one read block
    path = tmp_path / "big.bin"
    path.write_bytes(data)

    @app.route("/d", methods=["GET", "HEAD"])
    def d() -> Any:
        return download_response(path, filename="big.bin")

    with client.get("/d") as r:
        assert r.status_code == 200
        assert r.headers["Content-Length"] == str(len(data))
        assert r.headers["Accept-Ranges"] == "bytes"
        assert r.mimetype == "application/octet-stream"
        assert hashlib.sha256(r.data).digest() == hashlib.sha256(data).digest()
        etag = r.headers["ETag"]
    for spec, start, stop in [
        ("bytes=0-0", 0, 1),
        ("bytes=100-199", 100, 200),
        ("bytes=1048570-", 1048570, len(data)),
        ("bytes=-3", len(data) - 3, len(data)),
        ("bytes=1000-5000000", 1000, len(data)),
    ]:
        with client.get("/d", headers={"Range": spec}) as r:
            assert r.status_code == 206, spec
            assert r.data == data[start:stop], spec
            assert r.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{len(data)}"
            assert r.headers["Content-Length"] == str(stop - start)
    with client.get("/d", headers={"Range": f"bytes={len(data) + 10}-"}) as r:
        assert r.status_code == 416
    with client.get("/d", headers={"If-None-Match": etag}) as r:
        assert r.status_code == 304
        assert r.data == b""
    with client.head("/d") as r:
        assert r.status_code == 200
        assert r.headers["Content-Length"] == str(len(data))
        assert r.data == b""


def test_download_iterable_is_streamed(app: Flask, client: Any) -> None:
    @app.get("/d")
    def d() -> Any:
        lines = (f"{i},{i * i}\n" for i in range(10_000))
        return download_response(lines, filename="squares.csv", mimetype="text/csv")

    with client.get("/d") as r:
        assert r.mimetype == "text/csv"
        assert "Content-Length" not in r.headers
        assert r.data == "".join(f"{i},{i * i}\n" for i in range(10_000)).encode()
        assert _disposition(r.headers["Content-Disposition"])["filename"] == "squares.csv"


def test_download_inline(app: Flask, client: Any) -> None:
    @app.get("/d")
    def d() -> Any:
        return download_response(iter([b"x"]), filename="a.txt", as_attachment=False)

    with client.get("/d") as r:
        assert r.headers["Content-Disposition"].startswith("inline")


# --- ResponseWriter -----------------------------------------------------------------


def test_response_stream_writes(app: Flask, client: Any) -> None:
    closed: list[int] = []
    results: list[Any] = []

    @app.get("/m")
    def m() -> Any:
        stream = ResponseWriter(mimetype="text/plain", on_close=lambda: closed.append(1))
        results.append(stream.write("text\n"))
        results.append(stream.write(b"bytes\n"))
        results.append(stream.write_chunk({"k": "\u00e9"}))
        results.append(stream.write_sse("a\nb", event="e", id=3))
        assert not stream.closed
        stream.close()
        assert stream.closed
        results.append(stream.write("after close"))
        return stream.response

    with client.get("/m") as r:
        body = r.data
    assert body == (
        b"text\nbytes\n" + b'{"k":"\\u00e9"}\n' + b"id: 3\nevent: e\ndata: a\ndata: b\n\n"
    )
    assert results[:4] == [None, None, None, None]
    assert isinstance(results[4], StreamClosedError)
    assert closed == [1]


def test_response_stream_from_another_thread(app: Flask, client: Any) -> None:
    go = threading.Event()

    @app.get("/m")
    def m() -> Any:
        stream = ResponseWriter(flush_interval=0.01)

        def work() -> None:
            go.wait(WAIT)
            for i in range(200):
                stream.write(f"{i}\n")
            stream.close()

        threading.Thread(target=work, daemon=True).start()
        return stream.response

    r = client.get("/m", buffered=False)
    go.set()
    assert b"".join(chunks_of(r)) == "".join(f"{i}\n" for i in range(200)).encode()


def test_response_stream_after_client_left(app: Flask, client: Any) -> None:
    outcome: list[Any] = []
    done = threading.Event()
    closed = threading.Event()

    @app.get("/m")
    def m() -> Any:
        stream = ResponseWriter(flush_interval=0.0, on_close=closed.set)

        def work() -> None:
            for i in range(100_000):
                err = stream.write(f"{i}\n")
                if err is not None:
                    outcome.append(err)
                    break
                time.sleep(0.001)
            done.set()

        threading.Thread(target=work, daemon=True).start()
        return stream.response

    r = client.get("/m", buffered=False)
    it = (c for c in r.response if c)
    assert next(it).startswith(b"0\n")
    r.close()
    assert closed.is_set()
    assert done.wait(WAIT)
    assert isinstance(outcome[0], StreamClosedError)


# --- the settings every body gets ---------------------------------------------------


def test_every_body_gets_the_apps_send_timeout(tmp_path: Path) -> None:
    """``STREAMING_SEND_TIMEOUT`` reaches the body of each kind of streaming
    response (the transport reads no settings: the helpers pass it)."""
    app = Flask("timeouts", instance_path=str(tmp_path))
    app.config["STREAMING_SEND_TIMEOUT"] = 7.5
    Streaming(app)
    with app.test_request_context("/"):
        bodies = [
            stream_response(iter(["x"])).response,
            ndjson_response(iter([1])).response,
            chunked_response(iter(["x"])).response,
            sse_response(iter(["x"])).response,
            produce(lambda stream: None).response,
            ResponseWriter().response.response,
        ]
        for body in bodies:
            assert body.send_timeout == 7.5, body  # type: ignore[attr-defined]
            body.close()  # type: ignore[attr-defined]
