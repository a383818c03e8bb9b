"""The tus 1.0.0 protocol with Flask's test client: one test per status
code of the spec and of the extensions, plus the hooks (signals, Segment)
and the authorization hook. Live clients (tuspy, tus-js-client) are in
test_tus_live.py and test_tus_browser.py."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_streaming import Streaming, get_upload_service
from flask_streaming.signals import (
    segment_received,
    upload_aborted,
    upload_completed,
    upload_created,
    upload_expired,
)

URL = "/streaming/tus/"
T = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def make(tmp_path: Path, **options: Any) -> tuple[Flask, Streaming]:
    app = Flask("tustest", instance_path=str(tmp_path / "instance"))
    app.config["TESTING"] = True
    options.setdefault("max_upload_size", 1 << 20)
    ext = Streaming(app, **options)
    return app, ext


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return make(tmp_path)[0]


@pytest.fixture
def events(app: Flask) -> Iterator[list[tuple[str, Any, Any]]]:
    """Every upload signal sent, as ``(name, session, segment)``."""
    seen: list[tuple[str, Any, Any]] = []

    def recorder(name: str) -> Any:
        def receive(sender: Flask, session: Any, segment: Any = None, **kw: Any) -> None:
            seen.append((name, session, segment))

        return receive

    receivers = [
        (sig, recorder(sig.name))
        for sig in (
            upload_created,
            segment_received,
            upload_completed,
            upload_aborted,
            upload_expired,
        )
    ]
    for sig, fn in receivers:
        sig.connect(fn, app)
    try:
        yield seen
    finally:
        for sig, fn in receivers:
            sig.disconnect(fn, app)


def names(events: list[tuple[str, Any, Any]]) -> list[str]:
    return [e[0] for e in events]


def create(client: FlaskClient, length: int | None = 11, **headers: str) -> str:
    h = {**T, **headers}
    if length is not None:
        h["Upload-Length"] = str(length)
    r = client.post(URL, headers=h)
    assert r.status_code == 201, r.data
    assert r.headers["Tus-Resumable"] == "1.0.0"
    location: str = r.headers["Location"]
    assert location.startswith(URL)
    return location


def patch(client: FlaskClient, url: str, offset: int, data: bytes, **headers: str) -> Any:
    h = {**T, "Upload-Offset": str(offset), "Content-Type": OCTETS, **headers}
    return client.patch(url, data=data, headers=h)


def head(client: FlaskClient, url: str) -> Any:
    return client.head(url, headers=T)


def stored(app: Flask, url: str) -> bytes:
    with app.app_context():
        session = get_upload_service(app).storage.load(url.rsplit("/", 1)[1])
        assert session is not None
        with session.open() as f:
            return f.read(session.size)


# -- core ------------------------------------------------------------------


def test_options_204_lists_the_capabilities(client: FlaskClient) -> None:
    for url in (URL, create(client)):
        r = client.options(url)  # no Tus-Resumable needed
        assert r.status_code == 204
        assert r.headers["Tus-Version"] == "1.0.0"
        extensions = set(r.headers["Tus-Extension"].split(","))
        assert {
            "creation",
            "creation-with-upload",
            "creation-defer-length",
            "expiration",
            "checksum",
            "termination",
            "concatenation",
        } <= extensions
        assert r.headers["Tus-Max-Size"] == str(1 << 20)
        assert set(r.headers["Tus-Checksum-Algorithm"].split(",")) >= {"sha1", "md5", "sha256"}
        assert r.data == b""


def test_412_for_a_missing_or_unsupported_version(client: FlaskClient) -> None:
    url = create(client)
    for headers in ({}, {"Tus-Resumable": "0.2.2"}):
        for r in (
            client.post(URL, headers={**headers, "Upload-Length": "5"}),
            client.head(url, headers=headers),
            client.patch(
                url, data=b"x", headers={**headers, "Upload-Offset": "0", "Content-Type": OCTETS}
            ),
        ):
            assert r.status_code == 412
            assert r.headers["Tus-Version"] == "1.0.0"
            assert r.headers["Tus-Resumable"] == "1.0.0"
    assert head(client, url).headers["Upload-Offset"] == "0"


def test_201_create_head_patch_204_to_completion(
    app: Flask, client: FlaskClient, events: list[Any]
) -> None:
    meta = f"filename {b64('résumé.txt'.encode())},filetype {b64(b'text/plain')},flag"
    r = client.post(URL, headers={**T, "Upload-Length": "11", "Upload-Metadata": meta})
    assert r.status_code == 201 and r.data == b""
    url = r.headers["Location"]
    assert "Upload-Expires" in r.headers
    r = head(client, url)
    assert r.status_code == 200
    assert r.headers["Upload-Offset"] == "0" and r.headers["Upload-Length"] == "11"
    assert r.headers["Upload-Metadata"] == meta  # as the client sent it
    assert r.headers["Cache-Control"] == "no-store"
    r = patch(client, url, 0, b"hello")
    assert r.status_code == 204 and r.headers["Upload-Offset"] == "5"
    assert "Upload-Expires" in r.headers
    r = patch(client, url, 5, b" world")
    assert r.status_code == 204 and r.headers["Upload-Offset"] == "11"
    assert head(client, url).headers["Upload-Offset"] == "11"
    assert stored(app, url) == b"hello world"

    assert names(events) == [
        "upload-created",
        "segment-received",
        "segment-received",
        "upload-completed",
    ]
    session = events[0][1]
    assert session.protocol == "tus" and session.filename == "résumé.txt"
    assert session.content_type == "text/plain"
    assert session.metadata == {"filename": "résumé.txt", "filetype": "text/plain", "flag": None}
    first, second = events[1][2], events[2][2]
    assert (first.index, first.offset, first.end, first.data) == (0, 0, 5, b"hello")
    assert (second.index, second.offset, second.end, second.data) == (1, 5, 11, b" world")
    assert events[3][1].completed and events[3][1].size == 11
    # an empty PATCH at the end is harmless; more data is not
    assert patch(client, url, 11, b"").status_code == 204
    assert patch(client, url, 11, b"more").status_code == 409  # upload_completed


def test_404_for_an_unknown_upload(client: FlaskClient) -> None:
    for r in (
        head(client, URL + "nosuchupload0000000000"),
        patch(client, URL + "nosuchupload0000000000", 0, b"x"),
        client.delete(URL + "nosuchupload0000000000", headers=T),
        head(client, URL + "..%2F..%2Fetc"),
    ):
        assert r.status_code == 404
        assert "Upload-Offset" not in r.headers


def test_415_patch_needs_offset_octet_stream(client: FlaskClient, events: list[Any]) -> None:
    url = create(client)
    for ctype in ("application/octet-stream", "text/plain", None):
        headers = {**T, "Upload-Offset": "0"}
        if ctype:
            headers["Content-Type"] = ctype
        r = client.patch(url, data=b"hello", headers=headers)
        assert r.status_code == 415
        assert r.json is not None and r.json["error"] == "unsupported_media_type"
    assert head(client, url).headers["Upload-Offset"] == "0"
    assert "segment-received" not in names(events)
    # creation-with-upload too
    r = client.post(
        URL, data=b"hi", headers={**T, "Upload-Length": "2", "Content-Type": "text/plain"}
    )
    assert r.status_code == 415


def test_409_offset_mismatch_changes_nothing(
    app: Flask, client: FlaskClient, events: list[Any]
) -> None:
    url = create(client, length=None, **{"Upload-Defer-Length": "1"})
    assert patch(client, url, 0, b"hello").status_code == 204
    for offset in (0, 3, 6, 100):
        r = patch(client, url, offset, b"XXXXX", **{"Upload-Length": "10"})
        assert r.status_code == 409
        assert r.json is not None and r.json["offset"] == 5
    r = head(client, url)
    assert r.headers["Upload-Offset"] == "5" and r.headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in r.headers  # the 409s did not set it
    assert stored(app, url) == b"hello"
    assert names(events).count("segment-received") == 1


def test_400_for_malformed_headers(client: FlaskClient) -> None:
    bad_creations = [
        {},  # neither Upload-Length nor Upload-Defer-Length
        {"Upload-Length": "5", "Upload-Defer-Length": "1"},
        {"Upload-Length": "-1"},
        {"Upload-Length": "five"},
        {"Upload-Defer-Length": "0"},
        {"Upload-Length": "5", "Upload-Metadata": "key not-base64!"},
        {"Upload-Length": "5", "Upload-Metadata": "a Zm9v,a YmFy"},  # repeated key
        {"Upload-Length": "5", "Upload-Metadata": "a Zm9v b"},
        {"Upload-Length": "5", "Upload-Concat": "whole"},
        {"Upload-Length": "5", "Upload-Concat": "final;"},
    ]
    for headers in bad_creations:
        r = client.post(URL, headers={**T, **headers})
        assert r.status_code == 400, headers
        assert r.json is not None and r.json["error"]
    url = create(client)
    for offset in ("", "-1", "1.5", "x"):
        r = client.patch(
            url, data=b"x", headers={**T, "Upload-Offset": offset, "Content-Type": OCTETS}
        )
        assert r.status_code == 400
    r = client.patch(url, data=b"x", headers={**T, "Content-Type": OCTETS})
    assert r.status_code == 400 and r.json is not None
    assert r.json["error"] == "missing_upload_offset"
    r = client.post(url, headers={**T, "X-HTTP-Method-Override": "GET"})
    assert r.status_code == 400


def test_413_above_the_limits(app: Flask, client: FlaskClient) -> None:
    r = client.post(URL, headers={**T, "Upload-Length": str((1 << 20) + 1)})
    assert r.status_code == 413
    url = create(client, length=5)
    r = patch(client, url, 0, b"toolong")
    assert r.status_code == 413
    assert head(client, url).headers["Upload-Offset"] == "0"
    deferred = create(client, length=None, **{"Upload-Defer-Length": "1"})
    r = patch(client, deferred, 0, b"", **{"Upload-Length": str((1 << 20) + 1)})
    assert r.status_code == 413
    r = patch(client, deferred, 0, b"x" * ((1 << 20) + 1))
    assert r.status_code == 413


def test_413_checksummed_ranges_are_bounded_by_max_segment_size(tmp_path: Path) -> None:
    app, _ = make(tmp_path, max_segment_size=1000)
    client = app.test_client()
    url = create(client, length=3000)
    body = os.urandom(2000)
    digest = b64(hashlib.sha256(body).digest())
    r = patch(client, url, 0, body, **{"Upload-Checksum": f"sha256 {digest}"})
    assert r.status_code == 413
    # without a checksum the body is written through: only the length bounds it
    r = patch(client, url, 0, body)
    assert r.status_code == 204 and r.headers["Upload-Offset"] == "2000"


# -- checksum ----------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha256"])
def test_checksum_verified_and_460_discards_the_chunk(
    app: Flask, client: FlaskClient, events: list[Any], algorithm: str
) -> None:
    url = create(client, length=10)
    good, bad = b"01234", b"0123X"
    digest = b64(hashlib.new(algorithm, good).digest())
    r = patch(client, url, 0, bad, **{"Upload-Checksum": f"{algorithm} {digest}"})
    assert r.status_code == 460
    assert r.headers["Tus-Resumable"] == "1.0.0"
    assert r.json is not None and r.json["error"] == "checksum_mismatch"
    assert head(client, url).headers["Upload-Offset"] == "0"
    assert "segment-received" not in names(events)
    r = patch(client, url, 0, good, **{"Upload-Checksum": f"{algorithm} {digest}"})
    assert r.status_code == 204 and r.headers["Upload-Offset"] == "5"
    segment = events[-1][2]
    assert segment.checksum == f"{algorithm} {digest}" and segment.data == good
    assert stored(app, url) == good


def test_400_for_an_unknown_checksum_algorithm(client: FlaskClient) -> None:
    url = create(client, length=5)
    for value in ("crc32 AAAAAA==", "sha1", "sha1 !!notbase64!!", "sha1 AAAA"):
        r = patch(client, url, 0, b"hello", **{"Upload-Checksum": value})
        assert r.status_code == 400, value
    assert head(client, url).headers["Upload-Offset"] == "0"


# -- locking -----------------------------------------------------------------


def test_423_while_another_request_writes_the_upload(app: Flask, client: FlaskClient) -> None:
    url = create(client, length=10)
    upload_id = url.rsplit("/", 1)[1]
    with app.app_context():
        storage = get_upload_service(app).storage
        writing = storage.stage(upload_id, 0)  # what a PATCH in progress holds
    try:
        assert writing.in_place
        started = time.monotonic()
        r = patch(client, url, 0, b"hello")
        assert r.status_code == 423 and time.monotonic() - started < 1.0
        assert r.json is not None and r.json["error"] == "upload_locked"
    finally:
        writing.release()
    assert patch(client, url, 0, b"hello").status_code == 204


# -- creation extensions -------------------------------------------------------


def test_creation_with_upload(app: Flask, client: FlaskClient, events: list[Any]) -> None:
    r = client.post(
        URL, data=b"hello", headers={**T, "Upload-Length": "11", "Content-Type": OCTETS}
    )
    assert r.status_code == 201 and r.headers["Upload-Offset"] == "5"
    url = r.headers["Location"]
    assert patch(client, url, 5, b" world").headers["Upload-Offset"] == "11"
    assert stored(app, url) == b"hello world"
    assert names(events) == [
        "upload-created",
        "segment-received",
        "segment-received",
        "upload-completed",
    ]


def test_creation_defer_length(app: Flask, client: FlaskClient, events: list[Any]) -> None:
    url = create(client, length=None, **{"Upload-Defer-Length": "1"})
    r = head(client, url)
    assert r.headers["Upload-Defer-Length"] == "1" and "Upload-Length" not in r.headers
    assert patch(client, url, 0, b"hello").headers["Upload-Offset"] == "5"
    r = patch(client, url, 5, b" world", **{"Upload-Length": "11"})
    assert r.status_code == 204 and r.headers["Upload-Offset"] == "11"
    r = head(client, url)
    assert r.headers["Upload-Length"] == "11" and "Upload-Defer-Length" not in r.headers
    assert names(events)[-1] == "upload-completed"
    assert stored(app, url) == b"hello world"
    # the length, once set, cannot change
    other = create(client, length=None, **{"Upload-Defer-Length": "1"})
    assert patch(client, other, 0, b"ab", **{"Upload-Length": "4"}).status_code == 204
    assert patch(client, other, 2, b"cd", **{"Upload-Length": "5"}).status_code == 409
    # a final empty PATCH may bring the length (tus-js-client does)
    third = create(client, length=None, **{"Upload-Defer-Length": "1"})
    assert patch(client, third, 0, b"abc").status_code == 204
    r = patch(client, third, 3, b"", **{"Upload-Length": "3"})
    assert r.status_code == 204 and head(client, third).headers["Upload-Length"] == "3"
    assert names(events).count("upload-completed") == 2


def test_zero_length_upload_completes_at_creation(client: FlaskClient, events: list[Any]) -> None:
    url = create(client, length=0)
    r = head(client, url)
    assert r.headers["Upload-Offset"] == "0" and r.headers["Upload-Length"] == "0"
    assert names(events) == ["upload-created", "upload-completed"]


# -- expiration / termination ------------------------------------------------


def test_410_after_expiry_and_upload_expired(tmp_path: Path) -> None:
    app, _ = make(tmp_path, tus_expiry=0.3, session_timeout=600)
    client = app.test_client()
    expired: list[str] = []
    with upload_expired.connected_to(lambda s, session, **kw: expired.append(session.id), app):
        url = create(client, length=10)
        r = patch(client, url, 0, b"hello")
        expires = r.headers["Upload-Expires"]
        assert expires.endswith(" GMT")
        time.sleep(0.4)
        r = patch(client, url, 5, b"world")
        assert r.status_code == 410 and r.headers["Tus-Resumable"] == "1.0.0"
        assert head(client, url).status_code == 404  # removed with its data
    assert expired == [url.rsplit("/", 1)[1]]


def test_tus_expiry_is_its_own_setting(tmp_path: Path) -> None:
    app, _ = make(tmp_path, session_timeout=0.2)
    client = app.test_client()
    url = create(client, length=10)
    time.sleep(0.3)
    assert head(client, url).status_code == 200  # 24 h, not the native 0.2 s


def test_delete_204_terminates(app: Flask, client: FlaskClient, events: list[Any]) -> None:
    url = create(client, length=10)
    patch(client, url, 0, b"hello")
    r = client.delete(url, headers=T)
    assert r.status_code == 204 and r.data == b""
    assert head(client, url).status_code == 404
    assert patch(client, url, 5, b"world").status_code == 404
    assert names(events)[-1] == "upload-aborted"


def test_x_http_method_override(app: Flask, client: FlaskClient) -> None:
    url = create(client, length=5)
    r = client.post(
        url,
        data=b"hello",
        headers={
            **T,
            "X-HTTP-Method-Override": "PATCH",
            "Upload-Offset": "0",
            "Content-Type": OCTETS,
        },
    )
    assert r.status_code == 204 and r.headers["Upload-Offset"] == "5"
    r = client.post(url, headers={**T, "X-HTTP-Method-Override": "HEAD"})
    assert r.status_code == 200 and r.headers["Upload-Length"] == "5"
    r = client.post(url, headers={**T, "X-HTTP-Method-Override": "DELETE"})
    assert r.status_code == 204
    assert head(client, url).status_code == 404
    assert client.post(create(client), headers=T).status_code == 405


# -- concatenation -------------------------------------------------------------


def partial(client: FlaskClient, data: bytes, *, send: bool = True) -> str:
    url = create(client, length=len(data), **{"Upload-Concat": "partial"})
    if send:
        assert patch(client, url, 0, data).status_code == 204
    return url


def test_concatenation_final_upload(app: Flask, client: FlaskClient, events: list[Any]) -> None:
    a, b = partial(client, b"hello"), partial(client, b" world")
    assert head(client, a).headers["Upload-Concat"] == "partial"
    assert "upload-completed" not in names(events)  # partials are never announced
    concat = f"final;http://localhost{a} {b}"  # absolute and relative URLs
    meta = f"filename {b64(b'hw.txt')}"
    r = client.post(URL, headers={**T, "Upload-Concat": concat, "Upload-Metadata": meta})
    assert r.status_code == 201
    final = r.headers["Location"]
    r = head(client, final)
    assert r.headers["Upload-Offset"] == r.headers["Upload-Length"] == "11"
    assert r.headers["Upload-Concat"] == concat
    assert stored(app, final) == b"hello world"
    completed = [e[1] for e in events if e[0] == "upload-completed"]
    assert len(completed) == 1 and completed[0].id == final.rsplit("/", 1)[1]
    assert completed[0].filename == "hw.txt"
    # 403: a final upload is never patched
    r = patch(client, final, 11, b"more")
    assert r.status_code == 403 and r.json is not None and r.json["error"] == "final_upload"


def test_concatenation_unfinished(app: Flask, client: FlaskClient, events: list[Any]) -> None:
    a, b = partial(client, b"hello"), partial(client, b" world", send=False)
    r = client.post(URL, headers={**T, "Upload-Concat": f"final;{a} {b}"})
    assert r.status_code == 201
    final = r.headers["Location"]
    r = head(client, final)
    assert "Upload-Offset" not in r.headers  # not assembled yet
    assert r.headers["Upload-Length"] == "11" and r.headers["Upload-Concat"].startswith("final;")
    assert "upload-completed" not in names(events)
    assert patch(client, b, 0, b" world").status_code == 204  # the last part: assembles
    assert [e[1].id for e in events if e[0] == "upload-completed"] == [final.rsplit("/", 1)[1]]
    assert head(client, final).headers["Upload-Offset"] == "11"
    assert stored(app, final) == b"hello world"


def test_concatenation_errors(client: FlaskClient) -> None:
    a = partial(client, b"hello")
    plain = create(client, length=1)
    cases = [
        ({"Upload-Concat": f"final;{URL}unknownupload000000000"}, 400),
        ({"Upload-Concat": f"final;{plain}"}, 400),  # not a partial upload
        ({"Upload-Concat": "final;/elsewhere/abc"}, 400),
        ({"Upload-Concat": f"final;{a}", "Upload-Length": "5"}, 400),
    ]
    for headers, status in cases:
        assert client.post(URL, headers={**T, **headers}).status_code == status, headers
    big = [partial(client, b"", send=False) for _ in range(2)]
    for url in big:  # empty partials complete at once
        assert head(client, url).headers["Upload-Offset"] == "0"


def test_413_when_partials_add_up_past_the_limit(tmp_path: Path) -> None:
    app, _ = make(tmp_path, max_upload_size=8)
    client = app.test_client()
    a, b = partial(client, b"12345"), partial(client, b"67890")
    assert client.post(URL, headers={**T, "Upload-Concat": f"final;{a} {b}"}).status_code == 413


# -- hooks and security --------------------------------------------------------


def test_403_from_the_authorization_hook(tmp_path: Path) -> None:
    app, ext = make(tmp_path)
    client = app.test_client()
    allowed = {"create", "status"}

    @ext.authorize_upload
    def authorize(action: str, session: Any) -> bool:
        return action in allowed

    url = create(client, length=5)
    assert head(client, url).status_code == 200
    r = patch(client, url, 0, b"hello")
    assert r.status_code == 403 and r.headers["Tus-Resumable"] == "1.0.0"
    assert client.delete(url, headers=T).status_code == 403
    allowed.clear()
    assert client.post(URL, headers={**T, "Upload-Length": "5"}).status_code == 403


def test_429_too_many_uploads_per_client(tmp_path: Path) -> None:
    app, _ = make(tmp_path, max_sessions_per_client=2)
    client = app.test_client()
    create(client)
    create(client)
    assert client.post(URL, headers={**T, "Upload-Length": "5"}).status_code == 429


def test_metadata_never_becomes_a_path(app: Flask, client: FlaskClient) -> None:
    evil = "../../../../tmp/evil"
    meta = f"filename {b64(evil.encode())},name {b64(b'/etc/passwd')}"
    url = create(client, length=3, **{"Upload-Metadata": meta})
    patch(client, url, 0, b"abc")
    upload_id = url.rsplit("/", 1)[1]
    with app.app_context():
        session = get_upload_service(app).storage.load(upload_id)
    assert session is not None and session.filename == evil
    assert session.path is not None
    assert Path(session.path).parent.name == upload_id
    assert Path(app.instance_path) in Path(session.path).parents
    assert not Path("/tmp/evil").exists()


def test_a_refusing_hook_discards_the_range(app: Flask, client: FlaskClient) -> None:
    from flask_streaming.errors import BadRequest

    def refuse(sender: Flask, session: Any, segment: Any, **kw: Any) -> None:
        if segment.data == b"bad":
            raise BadRequest("not this", code="refused")

    with segment_received.connected_to(refuse, app):
        url = create(client, length=6)
        r = patch(client, url, 0, b"bad")
        assert r.status_code == 400 and r.json is not None and r.json["error"] == "refused"
        assert head(client, url).headers["Upload-Offset"] == "0"
        assert patch(client, url, 0, b"good").headers["Upload-Offset"] == "4"


def test_cors_preflight_and_exposed_headers(tmp_path: Path) -> None:
    app, _ = make(tmp_path, cors_origins=["https://app.example"])
    client = app.test_client()
    r = client.options(
        URL,
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "tus-resumable,upload-offset,upload-checksum",
        },
    )
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "PATCH" in r.headers["Access-Control-Allow-Methods"]
    allow = {h.strip().lower() for h in r.headers["Access-Control-Allow-Headers"].split(",")}
    assert {
        "tus-resumable",
        "upload-offset",
        "upload-length",
        "upload-metadata",
        "upload-defer-length",
        "upload-concat",
        "upload-checksum",
        "x-http-method-override",
        "content-type",
    } <= allow
    r = client.post(URL, headers={**T, "Upload-Length": "1", "Origin": "https://app.example"})
    exposed = {h.strip() for h in r.headers["Access-Control-Expose-Headers"].split(",")}
    assert {
        "Upload-Offset",
        "Location",
        "Upload-Length",
        "Tus-Version",
        "Tus-Resumable",
        "Tus-Max-Size",
        "Tus-Extension",
        "Upload-Metadata",
        "Upload-Defer-Length",
        "Upload-Concat",
        "Upload-Expires",
    } <= exposed
    r = client.post(URL, headers={**T, "Upload-Length": "1", "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers


def test_tus_route_group_can_be_switched_off(tmp_path: Path) -> None:
    app, _ = make(tmp_path, routes={"uploads"})
    assert app.test_client().options(URL).status_code == 404


def test_native_sessions_are_not_tus_uploads(app: Flask, client: FlaskClient) -> None:
    native = client.post("/streaming/uploads").json
    assert native is not None
    url = URL + native["streamId"]
    assert head(client, url).status_code == 404
    assert patch(client, url, 0, b"hello").status_code == 404
    assert client.delete(url, headers=T).status_code == 404
    r = client.post(URL, headers={**T, "Upload-Concat": f"final;{url}"})
    assert r.status_code == 400
    assert client.get(f"/streaming/uploads/{native['streamId']}").status_code == 200


def test_tus_uploads_take_no_native_segments(client: FlaskClient) -> None:
    url = create(client, length=5)
    upload_id = url.rsplit("/", 1)[1]
    r = client.post(
        "/streaming/uploads",
        data=b"hello",
        headers={"X-Stream-Id": upload_id, "X-Stream-Segment": "0", "X-Stream-Done": "true"},
    )
    assert r.status_code == 404
    assert head(client, url).headers["Upload-Offset"] == "0"
