"""One error table (issue 14, failing input 3): every error code the
package raises is in :data:`flask_streaming.error_codes.ERRORS` with the
status it is answered with; every ``stream-closed`` reason the package sends
is in :data:`~flask_streaming.signals.STREAM_CLOSED_REASONS`; the HTTP
reference renders both (so docs and code cannot drift); and the five
disagreements the issue lists are fixed, checked over HTTP."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

import flask_streaming
from flask_streaming import Streaming, errors
from flask_streaming.error_codes import ERRORS, GROUPS, status_of, table
from flask_streaming.signals import STREAM_CLOSED_REASONS
from flask_streaming.uploads.tus_headers import parse_int

PACKAGE = Path(flask_streaming.__file__).parent
DOCS = Path(__file__).resolve().parent.parent / "docs"
T = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"


def _error_classes() -> dict[str, type[errors.StreamingError]]:
    for info in pkgutil.walk_packages([str(PACKAGE)], "flask_streaming."):
        if info.name.endswith("__main__") or ".static" in info.name:
            continue
        importlib.import_module(info.name)
    found: dict[str, type[errors.StreamingError]] = {}
    todo = [errors.StreamingError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo += cls.__subclasses__()
    return found


def _raise_sites() -> list[tuple[str, int, str, str, int]]:
    """``(file, line, class, code, status)`` of every ``SomeError(...,
    code="x")`` in the package (the status: an explicit ``status=``, else
    the class's)."""
    classes = _error_classes()
    sites = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            cls = classes.get(node.func.id)
            if cls is None:
                continue
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            code = kw.get("code")
            if not isinstance(code, ast.Constant):
                continue  # f-strings: checked below by calling the parser
            status = kw.get("status")
            used = status.value if isinstance(status, ast.Constant) else cls.status
            sites.append((path.name, node.lineno, cls.__name__, code.value, used))
    return sites


def test_every_raised_code_is_in_the_table_with_its_status() -> None:
    sites = _raise_sites()
    assert len(sites) > 40, "the scan found too few raise sites"
    wrong = [
        (f, line, cls, code, used, status_of(code))
        for f, line, cls, code, used in sites
        if status_of(code) != used
    ]
    assert wrong == [], "codes raised with another status than the table's (or unlisted)"


def test_class_defaults_are_in_the_table() -> None:
    for cls in _error_classes().values():
        assert status_of(cls.code) == cls.status, cls
        assert cls("x").status == cls.status


def test_the_table_sets_the_status_of_a_known_code() -> None:
    # one code, one status: whichever class raises it
    assert errors.BadRequest("x", code="length_already_set").status == 409
    assert errors.PayloadTooLarge("x", code="upload_completed").status == 409
    assert errors.BadRequest("x", code="not_in_the_table").status == 400
    assert errors.BadRequest("x", code="upload_completed", status=418).status == 418


@pytest.mark.parametrize("name", ["Upload-Offset", "Upload-Length"])
def test_generated_header_codes_are_in_the_table(name: str) -> None:
    for value, required in (("x", False), (None, True)):
        with pytest.raises(errors.BadRequest) as info:
            parse_int(name, value, required=required)
        assert status_of(info.value.code) == 400, info.value.code


def test_every_stream_closed_reason_sent_is_listed() -> None:
    sent = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            # outbox.finish("reason", ...), subscriber.end("reason", ...)
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("finish", "end")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                sent.add(node.args[0].value)
            # broker.end_local_streams(channels, "reason")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("end_streams", "end_local_streams")
                and len(node.args) == 2
                and isinstance(node.args[1], ast.Constant)
            ):
                sent.add(node.args[1].value)
            # outbox.reason = outbox.reason or "reason" / self.reason = ... or "reason"
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.targets[0], ast.Attribute)
                and node.targets[0].attr == "reason"
                and isinstance(node.value, ast.BoolOp)
            ):
                sent |= {v.value for v in node.value.values if isinstance(v, ast.Constant)}
    assert {"complete", "send_timeout", "broker_unavailable", "disconnect", "broker_reset"} <= sent
    assert sent <= set(STREAM_CLOSED_REASONS), sent - set(STREAM_CLOSED_REASONS)


def _generated(function: str, *args: str) -> str:
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        ext = importlib.import_module("streaming_errors")
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    return "\n".join(getattr(ext, function)(*args))


@pytest.mark.parametrize("group", GROUPS)
def test_the_reference_renders_the_table(group: str) -> None:
    page = (DOCS / "reference" / "http.rst").read_text()
    assert f".. streaming-errors:: {group}\n" in page
    text = _generated("errors_rst", group)
    for status, codes in table(group):
        assert f"* - {status}" in text
        for code in codes:
            assert f"``{code}``: {ERRORS[code].meaning}" in text
    assert "``too_many_connections``" in _generated("errors_rst", "events")


def test_the_reference_renders_the_close_reasons() -> None:
    assert ".. streaming-close-reasons::" in (DOCS / "reference" / "http.rst").read_text()
    assert ".. streaming-close-reasons::" in (DOCS / "reference" / "signals.rst").read_text()
    text = _generated("close_reasons_rst")
    for reason in ("send_timeout", "broker_unavailable", *STREAM_CLOSED_REASONS):
        assert f'``"{reason}"``' in text


# -- the five disagreements, over HTTP ---------------------------------
@pytest.fixture
def app(tmp_path: Path) -> Flask:
    app = Flask("codes", instance_path=str(tmp_path / "instance"))
    app.config["TESTING"] = True
    Streaming(app)
    return app


def _tus(client: Any, length: str | None = None, deferred: bool = False) -> str:
    headers = {**T, "Upload-Length": length} if length else {**T, "Upload-Defer-Length": "1"}
    rv = client.post("/streaming/tus/", headers=headers)
    assert rv.status_code == 201
    url: str = rv.headers["Location"]
    return url


def test_length_already_set_is_409(app: Flask) -> None:
    c = app.test_client()
    url = _tus(c, deferred=True)
    h = {**T, "Content-Type": OCTETS, "Upload-Offset": "0", "Upload-Length": "10"}
    assert c.patch(url, data=b"hello", headers=h).status_code == 204
    rv = c.patch(url, data=b"", headers={**h, "Upload-Offset": "5", "Upload-Length": "12"})
    assert rv.status_code == 409 and rv.json["error"] == "length_already_set"


def test_upload_completed_is_409_for_tus_and_native(app: Flask) -> None:
    c = app.test_client()
    url = _tus(c, length="5")
    h = {**T, "Content-Type": OCTETS, "Upload-Offset": "0"}
    assert c.patch(url, data=b"hello", headers=h).status_code == 204
    rv = c.patch(url, data=b"more", headers={**h, "Upload-Offset": "5"})
    assert rv.status_code == 409 and rv.json["error"] == "upload_completed"
    assert c.patch(url, data=b"", headers={**h, "Upload-Offset": "5"}).status_code == 204
    sid = c.get("/streaming/uploads").json["streamId"]
    seg = {"X-Stream-Id": sid, "X-Stream-Segment": "0", "X-Stream-Done": "true"}
    assert c.post("/streaming/uploads", data=b"abc", headers=seg).status_code == 200
    rv = c.post("/streaming/uploads", data=b"", headers={**seg, "X-Stream-Segment": "3"})
    assert rv.status_code == 409 and rv.json["error"] == "upload_completed"


def test_options_carries_tus_resumable(app: Flask) -> None:
    rv = app.test_client().options("/streaming/tus/")
    assert rv.status_code == 204 and rv.headers["Tus-Resumable"] == "1.0.0"
    assert "OPTIONS`` included" in (DOCS / "reference" / "http.rst").read_text()


def test_checksum_mismatch_is_460_for_tus_only(app: Flask) -> None:
    c = app.test_client()
    url = _tus(c, length="5")
    h = {
        **T,
        "Content-Type": OCTETS,
        "Upload-Offset": "0",
        "Upload-Checksum": "sha1 " + "A" * 27 + "=",
    }
    rv = c.patch(url, data=b"hello", headers=h)
    assert rv.status_code == status_of("checksum_mismatch", "tus") == 460
    assert status_of("checksum_mismatch") == 400
