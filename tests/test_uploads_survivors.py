"""Tests written for mutants of the ``uploads`` mutation slice (the upload
service, its transaction, the native protocol's flow, bodies, locks, file
storage; see docs/testing.rst, "Mutation testing") that survived the suite.
Each test names the mutant it kills; each was checked by applying that
mutant by hand."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_streaming import Streaming, get_upload_service
from flask_streaming.errors import BadRequest
from flask_streaming.uploads.bodies import parse_checksum
from flask_streaming.uploads.json_body import MAX_JSON_DEPTH, json_depth
from flask_streaming.uploads.sessions import new_session_id


def make(tmp_path: Path, **options: Any) -> Flask:
    app = Flask("uploads_survivors", instance_path=str(tmp_path / "instance"))
    app.config["TESTING"] = True
    Streaming(app, **options)
    return app


def nested(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


def test_json_depth_counts_from_zero() -> None:
    """``depth = deepest = 0`` made ``-1`` in ``json_depth``: every body
    read one level shallower, so one nested a level past the limit passed."""
    assert json_depth(b"1") == 0
    assert json_depth(b'"[[{"') == 0
    assert json_depth(b"{}") == 1
    assert json_depth(b'{"a": [1, {"b": []}]}') == 4
    assert json_depth(json.dumps(nested(MAX_JSON_DEPTH)).encode()) == MAX_JSON_DEPTH


def test_a_creation_body_one_level_too_deep_is_400(tmp_path: Path) -> None:
    """The same mutant over HTTP: a native creation body nested
    ``MAX_JSON_DEPTH + 1`` levels deep (outside ``metadata``, which the
    service checks again) was accepted."""
    client = make(tmp_path).test_client()
    for levels, status in ((MAX_JSON_DEPTH - 1, 201), (MAX_JSON_DEPTH, 400)):
        rv = client.post("/streaming/uploads", json={"other": nested(levels)})
        assert rv.status_code == status, (levels, rv.get_json())
        if status == 400:
            assert rv.get_json()["error"] == "too_deep"


def test_a_worker_sweeps_expired_sessions_once_a_minute(tmp_path: Path) -> None:
    """``SWEEP_INTERVAL = 60.0`` made ``59.0`` (or ``61.0``): a worker swept
    expired sessions on creating one more often (less often) than the once
    a minute ``service.py`` states. The last sweep's time is set back instead of
    waiting a minute."""
    app = make(tmp_path, session_timeout=0.05)
    client = app.test_client()
    service = get_upload_service(app)
    expired = client.post("/streaming/uploads").get_json()["streamId"]
    time.sleep(0.2)
    assert service.storage.load(expired) is not None
    for ago, swept in ((59.5, False), (60.5, True)):  # SWEEP_INTERVAL: 60 s
        service._last_sweep = time.monotonic() - ago
        assert client.post("/streaming/uploads").status_code == 201
        assert (service.storage.load(expired) is None) is swept, ago


def test_json_depth_skips_brackets_in_strings_with_spaces(tmp_path: Path) -> None:
    """``byte == 0x22`` (the closing quote) made ``<`` in ``json_depth``: a
    space (or any byte below ``"``) ended a string, so brackets later in
    it counted as nesting, and a file name like ``"a [[[...] b"`` made a
    creation body "too deep"."""
    assert json_depth(b'{"a [[[[ b": 1}') == 1
    assert json_depth(b'["x\\t[[[", "!{{{"]') == 1
    name = "scan " + "[" * (MAX_JSON_DEPTH + 4) + " final.pdf"
    rv = make(tmp_path).test_client().post("/streaming/uploads", json={"filename": name})
    assert rv.status_code == 201, rv.get_json()


def test_a_segment_number_out_of_range_names_the_range(tmp_path: Path) -> None:
    """``max_segments - 1`` made ``- 2`` in the ``bad_segment`` message of
    ``native.append_segment``: the client was told a range one short."""
    client = make(tmp_path, max_segments=4).test_client()
    sid = client.post("/streaming/uploads").get_json()["streamId"]
    rv = client.post(
        "/streaming/uploads", data=b"x", headers={"X-Stream-Id": sid, "X-Stream-Segment": "4"}
    )
    assert rv.status_code == 400
    body = rv.get_json()
    assert body["error"] == "bad_segment" and body["limit"] == 4, body
    assert "0..3" in body["message"], body["message"]
    rv = client.post(
        "/streaming/uploads", data=b"x", headers={"X-Stream-Id": sid, "X-Stream-Segment": "3"}
    )
    assert rv.status_code == 200


def test_an_acknowledgement_does_not_follow_a_planted_log_link(tmp_path: Path) -> None:
    """``if exc.errno != errno.ELOOP: raise`` made ``if not ...`` in
    ``FileStorage.acknowledge`` (and ``acknowledged``): a symbolic link planted as a session's
    ``acks.log`` made the acknowledgement raise (the post-commit signal's
    request failed) instead of being logged and ignored; other errors were
    swallowed."""
    app = make(tmp_path)
    client = app.test_client()
    sid = client.post("/streaming/uploads").get_json()["streamId"]
    storage = get_upload_service(app).storage
    folder = Path(storage.folder, sid)
    (folder / "acks.log").unlink(missing_ok=True)
    victim = tmp_path / "victim.log"
    victim.write_bytes(b"")
    (folder / "acks.log").symlink_to(victim)
    storage.acknowledge(sid, "0123456789abcdef")  # logged, not followed, not raised
    assert victim.read_bytes() == b""
    victim.write_bytes(b"fedcba9876543210\n")
    assert storage.acknowledged(sid) == (set(), 0)  # reading does not follow it either
    (folder / "acks.log").unlink()
    (folder / "acks.log").mkdir()  # another error (EISDIR) is raised
    with pytest.raises(IsADirectoryError):
        storage.acknowledge(sid, "0123456789abcdef")


def test_json_depth_counts_brackets_after_whitespace(tmp_path: Path) -> None:
    """``byte == 0x22`` (an opening quote) made ``<=`` in ``json_depth``: a
    space or newline outside a string opened a "string", so the brackets
    after it were not counted: a pretty-printed body nested far too deep
    passed the depth check."""
    assert json_depth(b"[ [ [ 1 ] ] ]") == 3
    assert json_depth(b'{\n  "a": [\n    [1]\n  ]\n}') == 3
    body = json.dumps({"other": nested(MAX_JSON_DEPTH + 5)}, indent=1).encode()
    rv = (
        make(tmp_path)
        .test_client()
        .post("/streaming/uploads", data=body, headers={"Content-Type": "application/json"})
    )
    assert rv.status_code == 400 and rv.get_json()["error"] == "too_deep", rv.get_json()


def test_a_file_where_the_old_acks_folder_was_is_ignored(tmp_path: Path) -> None:
    """``os.O_RDONLY | os.O_DIRECTORY | NOFOLLOW`` losing ``O_DIRECTORY``
    (``|`` made ``>>``: ``0 >> O_DIRECTORY`` is 0) in
    ``FileStorage.forget_acknowledged`` / ``_legacy_acknowledged``: a
    regular file named ``acks`` (where an older version kept a folder) was
    opened, and the unlink or listing through it raised."""
    app = make(tmp_path)
    client = app.test_client()
    sid = client.post("/streaming/uploads").get_json()["streamId"]
    storage = get_upload_service(app).storage
    (Path(storage.folder, sid) / "acks").write_bytes(b"0123456789abcdef")
    storage.forget_acknowledged(sid, ["0123456789abcdef"])
    assert storage.acknowledged(sid) == (set(), 0)
    assert (Path(storage.folder, sid) / "acks").read_bytes() == b"0123456789abcdef"


def test_cleanup_removes_an_old_session_folder_without_a_record(tmp_path: Path) -> None:
    """``valid_session_id(name) and os.path.exists(.../session.json)`` made
    ``or`` in ``FileStorage.remove_orphans``: every folder with a session's
    name was kept, so one left without its record by a killed worker (past
    ``ORPHAN_GRACE``) stayed for good; a young one and a live session stay."""
    app = make(tmp_path)
    client = app.test_client()
    live = client.post("/streaming/uploads").get_json()["streamId"]
    service = get_upload_service(app)
    store = Path(service.storage.folder)
    old, young = store / new_session_id(), store / new_session_id()
    for folder in (old, young):
        folder.mkdir()
        (folder / "data").write_bytes(b"left over")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    os.utime(store / live, (hour_ago, hour_ago))
    service.cleanup()
    assert not old.exists()
    assert young.exists() and (store / live / "session.json").exists()


def test_json_depth_skips_escaped_quotes(tmp_path: Path) -> None:
    """``byte == 0x5C`` (a backslash) made ``93`` in ``json_depth``: an
    escaped quote ended the string, so brackets after it counted, and a
    file name like ``say \\"[[[...`` made a creation body "too deep"."""
    assert json_depth(b'["a\\"[[[[", 1]') == 1
    assert json_depth(b'{"k]\\"{{": "\\\\"}') == 1
    name = 'say "' + "[" * (MAX_JSON_DEPTH + 4)
    rv = make(tmp_path).test_client().post("/streaming/uploads", json={"filename": name})
    assert rv.status_code == 201, rv.get_json()


def test_an_unpadded_base64_digest_of_hex_letters_is_base64() -> None:
    """``len(encoded) == 2 * size and all(hex)`` made ``or`` in
    ``parse_checksum``: an unpadded base64 digest that happens to use only
    hex letters was read as hex (odd length: ``bad_checksum``), not as the
    base64 it is."""
    encoded = "a" * 42 + "c"  # 43 base64 digits, all of them hex letters
    raw = base64.b64decode(encoded + "=")
    assert base64.b64encode(raw).decode() == encoded + "="
    assert set(encoded) <= set("0123456789abcdefABCDEF") and len(encoded) == 43
    assert parse_checksum(f"sha256={encoded}") == ("sha256", raw)
    assert parse_checksum("sha256=" + raw.hex()) == ("sha256", raw)  # hex: 64 digits


def test_store_folders_are_the_owners_alone(tmp_path: Path) -> None:
    """``DIR_MODE = 0o700`` made ``449`` (``0o701``) in ``private_files``:
    other local users could pass through the upload store's folders (its
    session ids are an upload's only credential without a hook)."""
    app = make(tmp_path)
    client = app.test_client()
    sid = client.post("/streaming/uploads").get_json()["streamId"]
    store = Path(get_upload_service(app).storage.folder)
    for folder in (store, store / sid):
        assert folder.stat().st_mode & 0o777 == 0o700, (folder, oct(folder.stat().st_mode))


def test_completing_with_a_count_past_max_segments_is_400(tmp_path: Path) -> None:
    """``count < 0 or count > max_segments`` made ``and`` in
    ``native.complete``: a count past the limit (or below 0) went on to
    list the segments "missing" up to it (a 409 as long as the count)."""
    app = make(tmp_path, max_segments=4)
    client = app.test_client()
    sid = client.post("/streaming/uploads").get_json()["streamId"]
    service = get_upload_service(app)
    for count in (5, 10**6, -1):
        with app.test_request_context(), pytest.raises(BadRequest) as info:
            service.complete(sid, count)
        assert info.value.code == "bad_segment", count


def test_file_names_and_types_of_1024_characters_are_taken(tmp_path: Path) -> None:
    """``len(text) > 1024`` made ``> 1023`` in ``UploadService.create``: a
    file name or content type of exactly 1024 characters was refused."""
    client = make(tmp_path).test_client()
    for key in ("filename", "contentType"):
        for size, status in ((1024, 201), (1025, 400)):
            rv = client.post("/streaming/uploads", json={key: "n" * size})
            assert rv.status_code == status, (key, size, rv.get_json())
