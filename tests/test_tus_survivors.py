"""Tests written for mutants of the ``tus`` mutation slice
(``uploads/tus.py``, ``tus_headers.py``, ``tus_concat.py``, ``ranges.py``)
that survived the suite (docs/testing.rst, "Mutation testing"). Each test
names the mutant it kills; each was checked by applying that mutant by hand."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from flask import Flask

from flask_streaming import Streaming, get_upload_service

T = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"


def make(tmp_path: Path, **options: Any) -> Flask:
    app = Flask("tus_survivors", instance_path=str(tmp_path / "instance"))
    app.config["TESTING"] = True
    options.setdefault("max_upload_size", 1 << 20)
    Streaming(app, **options)
    return app


def test_a_final_upload_naming_the_endpoint_itself_is_a_bad_url_under_a_long_prefix(
    tmp_path: Path,
) -> None:
    """``len(path) == len(base)`` made ``is`` in ``upload_id_from_url``:
    lengths above 256 are not cached ints, so under a long URL prefix the
    endpoint's own URL passed as a part with an empty id."""
    prefix = "/" + "p" * 300
    app = make(tmp_path, url_prefix=prefix)
    client = app.test_client()
    base = f"{prefix}/tus/"
    assert len(base) > 256
    for url in (base, f"http://localhost{base}"):
        rv = client.post(base, headers={**T, "Upload-Concat": f"final;{url}"})
        assert rv.status_code == 400
        assert rv.get_json()["error"] == "bad_concat", rv.get_json()


def test_tus_never_patches_a_session_of_another_protocol(tmp_path: Path) -> None:
    """``session.protocol != protocol`` made ``<`` in ``ranges.append_range``:
    a session whose protocol sorts after ``"tus"`` (any name an app gives
    :meth:`UploadService.create`) became writable through tus ``PATCH``."""
    app = make(tmp_path)
    client = app.test_client()
    with app.app_context():
        service = get_upload_service()
        ids = [service.create(protocol=name, length=3).id for name in ("webdav", "native", "s3")]
    for upload_id in ids:
        rv = client.patch(
            f"/streaming/tus/{upload_id}",
            data=b"abc",
            headers={**T, "Upload-Offset": "0", "Content-Type": OCTETS},
        )
        assert rv.status_code == 404, (upload_id, rv.get_json())
        assert rv.get_json()["error"] == "unknown_session"
        with app.app_context():
            session = get_upload_service().storage.load(upload_id)
            assert session is not None and session.offset == 0


def test_upload_metadata_values_are_strict_base64(tmp_path: Path) -> None:
    """``base64.b64decode(..., validate=True)`` made ``validate=False`` in
    ``parse_metadata``: characters outside the alphabet were dropped and
    the rest decoded, so ``aGVs*bG8=`` read as ``hello``."""
    app = make(tmp_path)
    client = app.test_client()
    for value in ("aGVs*bG8=", "aGVs bG8=,x", "aGVsbG8=!", "aGVs\tbG8="):
        rv = client.post(
            "/streaming/tus/",
            headers={**T, "Upload-Length": "1", "Upload-Metadata": f"filename {value}"},
        )
        assert rv.status_code == 400, value
        assert rv.get_json()["error"] == "bad_metadata", value
    rv = client.post(
        "/streaming/tus/",
        headers={**T, "Upload-Length": "1", "Upload-Metadata": "filename aGVsbG8="},
    )
    assert rv.status_code == 201


def test_an_empty_append_to_a_finished_upload_is_an_empty_duplicate(tmp_path: Path) -> None:
    """``_segment(..., offset, 0)`` made ``1`` in ``ranges.append_range``:
    an empty ``PATCH`` (or :meth:`UploadService.append_range`) at the end
    of a finished upload is an identical retry: its segment holds 0 bytes,
    not one byte past the end."""
    app = make(tmp_path)
    client = app.test_client()
    rv = client.post(
        "/streaming/tus/",
        data=b"hello",
        headers={**T, "Upload-Length": "5", "Content-Type": OCTETS},
    )
    assert rv.status_code == 201 and rv.headers["Upload-Offset"] == "5"
    upload_id = rv.headers["Location"].rsplit("/", 1)[1]
    with app.app_context():
        service = get_upload_service()
        result = service.append_range(upload_id, 5, io.BytesIO(b""), content_length=0)
        assert result.duplicate and result.session.state == "completed"
        segment = result.segment
        assert (segment.offset, segment.size) == (5, 0)
        with segment.open() as f:
            assert f.read() == b""
    rv = client.patch(
        f"/streaming/tus/{upload_id}", headers={**T, "Upload-Offset": "5", "Content-Type": OCTETS}
    )
    assert rv.status_code == 204 and rv.headers["Upload-Offset"] == "5"
