"""Bad input: the malformed corpus (tests/malformed_corpus.py) through
Flask's test client and, as raw bytes, against a live gunicorn; hypothesis
properties of every header parser. Each malformed request gets a clear 4xx
JSON error, never a 5xx, and the data already accepted stays intact."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_streaming import Streaming
from flask_streaming.brokers.base import check_channel, parse_last_event_id
from flask_streaming.errors import StreamingError
from flask_streaming.testing import GunicornServer
from flask_streaming.uploads import tus_headers
from flask_streaming.uploads.bodies import CHECKSUM_ALGORITHMS, parse_checksum
from flask_streaming.uploads.sessions import new_session_id, valid_session_id

from .malformed_corpus import CASES, MAX_SEGMENT, MAX_UPLOAD, Case

SEG0, SEG1 = b"A" * 1000, b"B" * 2000
TUS_DATA = b"abcd"
CONFIG = {
    "STREAMING_MAX_SEGMENT_SIZE": MAX_SEGMENT,
    "STREAMING_MAX_UPLOAD_SIZE": MAX_UPLOAD,
    "STREAMING_MAX_SESSIONS_PER_CLIENT": 0,
}


def test_the_corpus_is_large_and_names_are_unique() -> None:
    assert len(CASES) >= 200
    assert len({c.name for c in CASES}) == len(CASES)


# -- through the test client -------------------------------------------------


def _seed(call: Callable[..., tuple[int, dict[str, str], Any]]) -> tuple[str, str]:
    """Open a native session holding two segments and a tus upload holding
    four bytes of five; return their ids."""
    status, _, body = call("POST", "/streaming/uploads", [], b"")
    assert status == 201
    sid = body["streamId"]
    for i, data in enumerate((SEG0, SEG1)):
        headers = [("X-Stream-Id", sid), ("X-Stream-Segment", str(i))]
        assert call("POST", "/streaming/uploads", headers, data)[0] == 200
    status, headers, _ = call(
        "POST", "/streaming/tus/", [("Tus-Resumable", "1.0.0"), ("Upload-Length", "5")], b""
    )
    assert status == 201
    tus = headers["location"].rstrip("/").rsplit("/", 1)[1]
    patch = [("Tus-Resumable", "1.0.0"), ("Upload-Offset", "0"),
             ("Content-Type", "application/offset+octet-stream")]  # fmt: skip
    assert call("PATCH", f"/streaming/tus/{tus}", patch, TUS_DATA)[0] == 204
    return sid, tus


def _intact(
    call: Callable[..., tuple[int, dict[str, str], Any]], store: Path, sid: str, tus: str
) -> None:
    status, _, body = call("GET", f"/streaming/uploads/{sid}", [], b"")
    assert status == 200
    assert (body["state"], body["received"], body["bytes"]) == ("open", 2, len(SEG0 + SEG1))
    with open(store / sid / "data", "rb") as f:
        assert f.read(len(SEG0 + SEG1)) == SEG0 + SEG1
    status, headers, _ = call("HEAD", f"/streaming/tus/{tus}", [("Tus-Resumable", "1.0.0")], b"")
    assert status == 200 and headers["upload-offset"] == "4"
    with open(store / tus / "data", "rb") as f:
        assert f.read(4) == TUS_DATA
    # No name ever became a path: the store holds session folders only.
    for entry in store.iterdir():
        assert entry.name.startswith(".") or valid_session_id(entry.name), entry


def _problem(case: Case, status: int, ctype: str, body: bytes, *, ours: bool = True) -> str | None:
    if status >= 500 or status < 200:
        return f"{status}"
    if case.expect:
        if status not in case.expect:
            return f"{status}, expected {case.expect}"
    elif not 400 <= status < 500:
        return f"{status}, expected a 4xx"
    if status >= 400 and case.method != "HEAD" and ours:
        try:
            doc = json.loads(body)
        except ValueError:
            return f"{status} with a body that is not JSON: {body[:80]!r}"
        if not (isinstance(doc, dict) and doc.get("error") and doc.get("message")):
            return f"{status} without error/message: {doc}"
    return None


@pytest.fixture
def corpus_app(tmp_path: Path) -> Flask:
    app = Flask("corpus", instance_path=str(tmp_path / "instance"))
    app.config.update(TESTING=True, **CONFIG)
    Streaming(app)
    return app


def test_corpus_through_the_test_client(corpus_app: Flask, tmp_path: Path) -> None:
    client = corpus_app.test_client()

    def call(method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Any:
        rv = client.open(path, method=method, headers=headers, data=body)
        try:
            return (
                rv.status_code,
                {k.lower(): v for k, v in rv.headers.items()},
                rv.get_json(silent=True),
            )
        finally:
            rv.close()

    sid, tus = _seed(call)
    failures = []
    tried = 0
    for template in CASES:
        if template.raw is not None:
            continue
        case = template.fill(sid, tus)
        kwargs: dict[str, Any] = {"method": case.method, "headers": case.headers}
        if case.chunked:
            kwargs["input_stream"] = io.BytesIO(case.body)
            kwargs["environ_overrides"] = {"wsgi.input_terminated": True}
        else:
            kwargs["data"] = case.body
        rv = client.open(case.path, **kwargs)
        try:
            body = b"" if rv.mimetype == "text/event-stream" else rv.get_data()
            tried += 1
            problem = _problem(case, rv.status_code, rv.mimetype, body)
        finally:
            rv.close()
        if problem:
            failures.append(f"{case.name}: {problem}")
    assert tried >= 180
    assert not failures, "\n".join(failures)
    _intact(call, tmp_path / "instance" / "streaming-uploads", sid, tus)


# -- as raw bytes, against gunicorn ------------------------------------------


def _raw_request(case: Case) -> bytes:
    if case.raw is not None:
        return case.raw
    lines = [f"{case.method} {case.path} HTTP/1.1", "Host: x", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in case.headers]
    body = case.body
    if case.chunked:
        lines.append("Transfer-Encoding: chunked")
        body = (
            b"".join(
                b"%x\r\n%s\r\n" % (len(body[i : i + 1000]), body[i : i + 1000])
                for i in range(0, len(body), 1000)
            )
            + b"0\r\n\r\n"
        )
    elif case.method not in ("GET", "HEAD") or body:
        lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines).encode("utf-8") + b"\r\n\r\n" + body


def _send_raw(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before the body is sent
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines[0].startswith("HTTP/") else 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


@pytest.mark.live
def test_corpus_as_raw_bytes_against_gunicorn(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    env = {
        "MAX_SEGMENT_SIZE": str(MAX_SEGMENT),
        "MAX_UPLOAD_SIZE": str(MAX_UPLOAD),
        "MAX_SESSIONS": "0",
    }
    server = live_server("tests.apps.reliability_app:create_app()", env=env)

    def call(method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Any:
        status, h, raw = _send_raw(server.port, _raw_request(Case("", method, path, headers, body)))
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = None
        return status, h, doc

    sid, tus = _seed(call)
    failures = []
    gunicorn_answered = 0
    for template in CASES:
        case = template.fill(sid, tus)
        status, headers, body = _send_raw(server.port, _raw_request(case))
        # gunicorn answers broken framing and bytes it refuses in headers
        # itself, with its own HTML page (a 4xx all the same).
        ours = not body.lstrip().startswith(b"<html>")
        gunicorn_answered += not ours
        problem = _problem(case, status, headers.get("content-type", ""), body, ours=ours)
        if problem:
            failures.append(f"{case.name}: {problem}")
    assert not failures, "\n".join(failures)
    assert gunicorn_answered < 25  # the rest reached our handlers
    _intact(call, tmp_path / "instance" / "streaming-uploads", sid, tus)
    assert b"Traceback" not in (tmp_path / "server.log").read_bytes()


# -- header parsers: hypothesis properties ------------------------------------

_header_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=80)


@settings(max_examples=300, deadline=None)
@given(_header_text)
def test_parse_checksum_accepts_only_well_formed_digests(value: str) -> None:
    try:
        algorithm, digest = parse_checksum(value)
    except StreamingError as exc:
        assert exc.status == 400
    else:
        assert algorithm in CHECKSUM_ALGORITHMS
        assert len(digest) == hashlib.new(algorithm).digest_size


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(CHECKSUM_ALGORITHMS), st.binary(min_size=64, max_size=64),
       st.sampled_from(["=", " "]), st.booleans())  # fmt: skip
def test_parse_checksum_round_trips(algorithm: str, raw: bytes, sep: str, hexed: bool) -> None:
    digest = raw[: hashlib.new(algorithm).digest_size]
    encoded = digest.hex() if hexed else base64.b64encode(digest).decode()
    assert parse_checksum(f"{algorithm.upper()}{sep}{encoded}") == (algorithm, digest)


@settings(max_examples=300, deadline=None)
@given(_header_text)
def test_parse_last_event_id_never_raises(value: str) -> None:
    rv = parse_last_event_id(value, "0a1b2c3d")
    assert rv is None or rv == -1 or (isinstance(rv, int) and 0 <= rv < 10**19)


@given(st.integers(0, 10**19 - 1), st.sampled_from(["0a1b2c3d", "ffffffff", "x"]))
def test_parse_last_event_id_round_trips(n: int, generation: str) -> None:
    assert parse_last_event_id(f"{generation}-{n}", generation) == n
    assert parse_last_event_id(f"{generation}-{n}", "other") == -1
    assert parse_last_event_id(str(n), generation) == -1  # ids before generations


@settings(max_examples=300, deadline=None)
@given(_header_text)
def test_ids_and_channel_names_are_checked(value: str) -> None:
    if valid_session_id(value):
        assert value.isascii() and "/" not in value and "." not in value
    try:
        check_channel(value)
    except StreamingError as exc:
        assert exc.status == 400
    else:
        assert not any(c in value for c in "\r\n\x00 ")
    assert valid_session_id(new_session_id())


@settings(max_examples=300, deadline=None)
@given(_header_text)
def test_tus_header_parsers_raise_only_client_errors(value: str) -> None:
    for parse in (
        lambda v: tus_headers.parse_int("Upload-Offset", v),
        tus_headers.parse_defer_length,
        tus_headers.parse_metadata,
        tus_headers.parse_concat,
        tus_headers.check_version,
    ):
        try:
            parse(value)
        except StreamingError as exc:
            assert 400 <= exc.status < 500


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(
    st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=10),
    st.one_of(st.none(), st.text(max_size=30)), max_size=8,
))  # fmt: skip
def test_tus_metadata_round_trips(pairs: dict[str, str | None]) -> None:
    header = ",".join(
        k if v is None else f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items()
    )
    decoded = tus_headers.parse_metadata(header)
    assert decoded == {k: (None if v in (None, "") else v) for k, v in pairs.items()}


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**30), st.sampled_from(["", " ", "\t"]))
def test_tus_parse_int_round_trips(n: int, pad: str) -> None:
    try:
        assert tus_headers.parse_int("Upload-Length", f"{pad}{n}{pad}") == n
    except StreamingError:
        assert len(str(n)) > 18  # the parser bounds the digits


@pytest.fixture(scope="module")
def header_app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    app = Flask("headers", instance_path=str(tmp_path_factory.mktemp("h")))
    app.config.update(TESTING=True, **CONFIG)
    Streaming(app)
    return app.test_client()


@settings(max_examples=200, deadline=None)
@given(_header_text.filter(lambda t: t.isprintable() and t.isascii()), st.sampled_from(
    ["X-Stream-Segment", "X-Stream-Done", "X-Stream-Id", "X-Stream-Checksum"]))  # fmt: skip
def test_native_segment_headers_never_give_5xx(header_app: Any, value: str, name: str) -> None:
    headers = {"X-Stream-Id": "AAAAAAAAAAAAAAAAAAAAAA", "X-Stream-Segment": "0", name: value}
    rv = header_app.post("/streaming/uploads", headers=headers, data=b"x")
    assert rv.status_code in (400, 404), rv.get_data()
    assert rv.get_json()["error"]
