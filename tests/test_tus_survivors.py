"""Tests written for mutants of the ``tus`` mutation slice
(``uploads/tus.py``, ``tus_headers.py``, ``tus_concat.py``, ``ranges.py``)
that survived the suite (docs/testing.rst, "Mutation testing"). Each test
names the mutant it kills; each was checked by applying that mutant by hand."""

from __future__ import annotations

import base64
import errno
import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_streaming import Streaming, get_upload_service
from flask_streaming.errors import BadRequest, StreamingError
from flask_streaming.uploads import FileStorage
from flask_streaming.uploads.tus_headers import parse_concat
from flask_streaming.uploads.views import create_upload_service

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


def test_only_tus_1_0_0_is_spoken(tmp_path: Path) -> None:
    """``(value or "").strip() != TUS_VERSION`` made ``<`` in
    ``check_version``: a version sorting after ``1.0.0`` (a newer tus) was
    taken for 1.0.0 instead of answered with 412 and ``Tus-Version``."""
    app = make(tmp_path)
    client = app.test_client()
    for version in ("1.0.1", "2.0.0", "1.0.0.1", "0.2.2", "", "1.0"):
        rv = client.post(
            "/streaming/tus/", headers={"Tus-Resumable": version, "Upload-Length": "1"}
        )
        assert rv.status_code == 412, version
        assert rv.headers["Tus-Version"] == "1.0.0"
        assert rv.get_json()["error"] == "unsupported_tus_version"
    assert client.post("/streaming/tus/", headers={**T, "Upload-Length": "1"}).status_code == 201


def test_an_overridden_method_the_creation_endpoint_lacks_is_405(tmp_path: Path) -> None:
    """``method != "POST"`` made ``>`` in ``tus_uploads``: ``PATCH``,
    ``HEAD`` and ``DELETE`` (sorting before ``POST``) given in
    ``X-HTTP-Method-Override`` on the creation endpoint created an upload."""
    app = make(tmp_path)
    client = app.test_client()
    for method in ("PATCH", "HEAD", "DELETE"):
        rv = client.post(
            "/streaming/tus/",
            headers={**T, "Upload-Length": "1", "X-HTTP-Method-Override": method},
        )
        assert rv.status_code == 405, (method, rv.status_code)
        if method != "HEAD":
            assert rv.get_json()["error"] == "method_not_allowed"
        assert "Location" not in rv.headers
    with app.app_context():
        assert get_upload_service().sessions() == []


def _create(client: Any, data: bytes = b"", **headers: str) -> str:
    extra = {"Content-Type": OCTETS} if data else {}
    rv = client.post("/streaming/tus/", data=data, headers={**T, **extra, **headers})
    assert rv.status_code == 201, rv.get_json()
    return str(rv.headers["Location"])


def test_the_method_override_counts_on_a_post_only(tmp_path: Path) -> None:
    """``request.method == "POST"`` made ``is not`` in ``_method``: an
    ``X-HTTP-Method-Override`` on a ``PATCH`` (or any method) was obeyed,
    so a ``PATCH`` carrying ``DELETE`` removed the upload."""
    app = make(tmp_path)
    client = app.test_client()
    url = _create(client, **{"Upload-Length": "5"})
    rv = client.patch(
        url,
        data=b"hel",
        headers={
            **T,
            "Upload-Offset": "0",
            "Content-Type": OCTETS,
            "X-HTTP-Method-Override": "DELETE",
        },
    )
    assert rv.status_code == 204 and rv.headers["Upload-Offset"] == "3"
    rv = client.head(url, headers={**T, "X-HTTP-Method-Override": "DELETE"})
    assert rv.status_code == 200 and rv.headers["Upload-Offset"] == "3"
    rv = client.options(url, headers={**T, "X-HTTP-Method-Override": "DELETE"})
    assert rv.status_code in (200, 204)
    assert client.head(url, headers=T).headers["Upload-Offset"] == "3"
    # on a POST it is obeyed
    rv = client.post(url, headers={**T, "X-HTTP-Method-Override": "DELETE"})
    assert rv.status_code == 204
    assert client.head(url, headers=T).status_code == 404


class WatchedBody(io.BytesIO):
    """A request body that counts the server's reads of it."""

    reads = 0

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        return super().read(size)

    def readinto(self, buffer: Any) -> int:
        self.reads += 1
        return super().readinto(buffer)

    def readline(self, size: int | None = -1) -> bytes:
        self.reads += 1
        return super().readline(size)


def test_a_patch_past_the_upload_length_is_refused(tmp_path: Path) -> None:
    """``offset + content_length > limit`` made ``offset / content_length``
    (or ``%``, ``^``) in ``ranges.append_range``: a ``PATCH`` longer than
    what is left of the upload was read before its 413 (which then came
    from the body's limit: a client sending gigabytes had to send them),
    and an empty append (``content_length=0``) at a non-zero offset
    divided by zero."""
    app = make(tmp_path)
    client = app.test_client()
    url = _create(client, **{"Upload-Length": "5"})
    patch = {**T, "Content-Type": OCTETS}
    for offset, data in ((0, b"0123456789"), (0, b"012345"), (3, b"def")):
        if offset == 3:
            rv = client.patch(url, data=b"abc", headers={**patch, "Upload-Offset": "0"})
            assert rv.status_code == 204
        body = WatchedBody(data)
        rv = client.patch(
            url,
            input_stream=body,
            headers={**patch, "Upload-Offset": str(offset), "Content-Length": str(len(data))},
        )
        assert rv.status_code == 413, (offset, data, rv.status_code)
        assert body.reads == 0, "refused only after reading the body"
        assert client.head(url, headers=T).headers["Upload-Offset"] == str(offset)
    rv = client.patch(url, data=b"", headers={**patch, "Upload-Offset": "3"})
    assert rv.status_code == 204 and rv.headers["Upload-Offset"] == "3"
    with app.app_context():  # Werkzeug reads "Content-Length: 0" as None; the service API
        result = get_upload_service().append_range(
            url.rsplit("/", 1)[1], 3, io.BytesIO(b""), content_length=0
        )
        assert result.session.offset == 3 and result.segment.size == 0
    assert client.patch(url, data=b"de", headers={**patch, "Upload-Offset": "3"}).status_code == 204
    assert client.get(url).data == b"abcde"


def test_a_final_upload_whose_part_lost_its_bytes_stays_unfinished(tmp_path: Path) -> None:
    """``return False`` made ``True`` in ``tus_concat._copy_parts`` when a
    part's bytes are gone (the part removed while the final upload is
    assembled): the final upload was completed short of that part's bytes."""
    app = make(tmp_path)
    client = app.test_client()
    parts = []
    for data in (b"hello", b"world"):
        parts.append(_create(client, data, **{"Upload-Length": "5", "Upload-Concat": "partial"}))
    with app.app_context():
        part = get_upload_service().storage.load(parts[1].rsplit("/", 1)[1])
        assert part is not None and part.path is not None and part.state == "completed"
        Path(part.path).unlink()  # its bytes removed meanwhile
    final = _create(client, **{"Upload-Concat": "final;" + " ".join(parts)})
    rv = client.head(final, headers=T)
    assert rv.status_code == 200
    assert "Upload-Offset" not in rv.headers  # not finished
    rv = client.get(final)
    assert rv.status_code == 409 and rv.get_json()["error"] == "upload_unfinished"


def test_upload_metadata_takes_at_most_64_pairs(tmp_path: Path) -> None:
    """``len(pairs) > MAX_METADATA_PAIRS`` made ``==`` in
    ``parse_metadata``: 65 pairs were taken, 64 refused."""
    app = make(tmp_path)
    client = app.test_client()

    def create(n: int) -> int:
        metadata = ",".join(f"k{i} dg==" for i in range(n))
        rv = client.post(
            "/streaming/tus/", headers={**T, "Upload-Length": "1", "Upload-Metadata": metadata}
        )
        if rv.status_code == 400:
            assert rv.get_json()["error"] == "bad_metadata"
        return rv.status_code

    assert [create(n) for n in (63, 64, 65, 66, 200)] == [201, 201, 400, 400, 400]


def _final_of(client: Any, *datas: bytes, defer: bool = False) -> tuple[list[str], Any]:
    parts = []
    for data in datas:
        size = {"Upload-Defer-Length": "1"} if defer else {"Upload-Length": str(len(data))}
        url = _create(client, **size, **{"Upload-Concat": "partial"})
        headers = {**T, "Upload-Offset": "0", "Content-Type": OCTETS}
        if defer:
            headers["Upload-Length"] = str(len(data))
        assert client.patch(url, data=data, headers=headers).status_code == 204
        parts.append(url)
    rv = client.post("/streaming/tus/", headers={**T, "Upload-Concat": "final;" + " ".join(parts)})
    return parts, rv


def test_final_uploads_without_an_upload_limit_and_past_it(tmp_path: Path) -> None:
    """``if limit is not None and total > limit`` made ``if not limit is
    not None and ...`` in ``tus_concat.try_finish``: with no upload limit
    a final upload crashed (``total > None``), and partials of deferred
    length adding up past the limit were assembled."""
    app = make(tmp_path / "a", max_upload_size=None)
    client = app.test_client()
    _, rv = _final_of(client, b"hello", b" world")
    assert rv.status_code == 201
    assert client.get(rv.headers["Location"]).data == b"hello world"

    app = make(tmp_path / "b", max_upload_size=8)
    client = app.test_client()
    _, rv = _final_of(client, b"hello", b"world", defer=True)
    assert rv.status_code == 413, rv.status_code
    assert not any(
        s.concat == "final" and s.state == "completed" for s in get_upload_service(app).sessions()
    )


def test_head_assembles_a_final_upload_that_could_not_be_assembled_before(
    tmp_path: Path,
) -> None:
    """``session.state == OPEN`` made ``<`` in ``_head`` (``if is_final(session)
    and ...: try_finish``): a ``HEAD`` of an unfinished final upload no
    longer tried to assemble it, so a final upload whose assembly once
    failed stayed unfinished for good."""
    app = make(tmp_path)
    client = app.test_client()
    parts = [
        _create(client, data, **{"Upload-Length": "5", "Upload-Concat": "partial"})
        for data in (b"hello", b"world")
    ]
    with app.app_context():
        part = get_upload_service().storage.load(parts[1].rsplit("/", 1)[1])
        assert part is not None and part.path is not None
    data = Path(part.path)
    held = data.with_name("held")
    data.rename(held)  # the part's bytes out of reach: assembly fails
    final = _create(client, **{"Upload-Concat": "final;" + " ".join(parts)})
    assert "Upload-Offset" not in client.head(final, headers=T).headers
    held.rename(data)  # back: the next HEAD assembles it
    rv = client.head(final, headers=T)
    assert rv.status_code == 200 and rv.headers.get("Upload-Offset") == "10"
    assert client.get(final).data == b"helloworld"


def test_a_final_upload_refused_after_claiming_its_parts_frees_them(tmp_path: Path) -> None:
    """``except BaseException`` made ``except CosmicRayTestingException``
    in ``create_final``: a final upload refused once its parts were claimed
    (here the authorization hook denies ``create``) left the parts claimed,
    so every later final upload of them got ``409 partial_used``."""
    app = Flask("tus_survivors", instance_path=str(tmp_path / "instance"))
    app.config["TESTING"] = True
    ext = Streaming(app)
    allowed = {"create", "append", "read", "status"}

    @ext.authorize_upload
    def authorize(action: str, session: Any) -> bool:
        return action in allowed

    client = app.test_client()
    parts = [
        _create(client, data, **{"Upload-Length": "5", "Upload-Concat": "partial"})
        for data in (b"hello", b"world")
    ]
    concat = {**T, "Upload-Concat": "final;" + " ".join(parts)}
    allowed.discard("create")
    assert client.post("/streaming/tus/", headers=concat).status_code == 403
    allowed.add("create")
    rv = client.post("/streaming/tus/", headers=concat)
    assert rv.status_code == 201, rv.get_json()
    assert client.get(rv.headers["Location"]).data == b"helloworld"


class FullDisk(FileStorage):
    """Writes into an upload's data in place (the append target, not the
    temporary file a checksummed range is staged in first) fail with
    ``ENOSPC`` after half the block, as on a full disk."""

    def stage(self, session_id: str, offset: int | None) -> Any:
        staging = super().stage(session_id, offset)
        if offset is not None:
            real_write = staging.write

            def write(block: bytes) -> None:
                real_write(block[: len(block) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")

            staging.write = write
        return staging


def test_a_full_disk_while_placing_a_checksummed_range_is_507(tmp_path: Path) -> None:
    """``except OSError`` made ``except CosmicRayTestingException`` in
    ``ranges._receive_checked``: a write error while copying a verified
    range into the upload's data reached the caller as a bare ``OSError``:
    the blueprint's ``OSError`` handler still made it a 507 over HTTP, but
    :meth:`UploadService.append_range` raised it as is."""
    app = make(tmp_path)
    create_upload_service(app, FullDisk(str(tmp_path / "store")))
    client = app.test_client()
    url = _create(client, **{"Upload-Length": "5"})
    digest = base64.b64encode(hashlib.sha1(b"hello").digest()).decode()
    rv = client.patch(
        url,
        data=b"hello",
        headers={**T, "Upload-Offset": "0", "Content-Type": OCTETS,
                 "Upload-Checksum": f"sha1 {digest}"},
    )  # fmt: skip
    assert rv.status_code == 507, rv.status_code
    assert rv.get_json()["error"] == "insufficient_storage"
    assert client.head(url, headers=T).headers["Upload-Offset"] == "0"
    # the service API (no blueprint error handler behind it) raises the
    # protocol-independent error, never the bare OSError
    with app.app_context(), pytest.raises(StreamingError) as info:
        get_upload_service().append_range(
            url.rsplit("/", 1)[1], 0, io.BytesIO(b"hello"), content_length=5,
            checksum=f"sha1 {digest}",
        )  # fmt: skip
    assert (info.value.status, info.value.code) == (507, "insufficient_storage")


def test_a_deferred_length_upload_without_an_upload_limit_takes_data(tmp_path: Path) -> None:
    """``(1 << 62)`` made ``(1 & 62)``, ``(1 >> 62)`` or ``(1 * 62)`` in
    ``ranges.append_range`` (the range's bound when neither the upload's
    length nor an upload limit is known): a ``PATCH`` of such an upload was
    413 (past 0 or 62 bytes)."""
    app = make(tmp_path, max_upload_size=None)
    client = app.test_client()
    url = _create(client, **{"Upload-Defer-Length": "1"})
    patch = {**T, "Content-Type": OCTETS}
    first, second = b"a" * 100, b"b" * 1000
    rv = client.patch(url, data=first, headers={**patch, "Upload-Offset": "0"})
    assert rv.status_code == 204 and rv.headers["Upload-Offset"] == "100"
    headers = {**patch, "Upload-Offset": "100", "Upload-Length": "1100"}
    rv = client.patch(url, data=second, headers=headers)
    assert rv.status_code == 204 and rv.headers["Upload-Offset"] == "1100"
    assert client.get(url).data == first + second


def test_a_part_url_with_more_path_is_not_an_upload_url(tmp_path: Path) -> None:
    """Either ``or`` made ``and`` in ``upload_id_from_url``: a URL with more
    path after the id (``/streaming/tus/<id>/x``) was taken as the id
    ``<id>/x``, a URL of another path as the id at the same position
    (``/elsewhere/tus/<id>``)."""
    app = make(tmp_path)
    client = app.test_client()
    part = _create(client, b"hello", **{"Upload-Length": "5", "Upload-Concat": "partial"})
    other = part.replace("/streaming/tus/", "/elsewhere/tus/")
    for url in (f"{part}/x", f"{part}/", f"http://localhost{part}/x", "/streaming/tus/a/b",
                "/elsewhere/abc", other, "/streaming/tu"):  # fmt: skip
        rv = client.post("/streaming/tus/", headers={**T, "Upload-Concat": f"final;{url}"})
        assert rv.status_code == 400, url
        assert rv.get_json()["error"] == "bad_concat", (url, rv.get_json())


def test_upload_metadata_keys_without_a_value(tmp_path: Path) -> None:
    """``len(parts) == 1`` made ``<`` in ``parse_metadata``: a key without
    a value (allowed by tus) read ``parts[1]``: 500."""
    app = make(tmp_path)
    client = app.test_client()
    metadata = "filename aGkudHh0,is_confidential,other "
    url = _create(client, **{"Upload-Length": "1", "Upload-Metadata": metadata})
    assert client.head(url, headers=T).headers["Upload-Metadata"] == metadata.strip()
    with app.app_context():
        session = get_upload_service().storage.load(url.rsplit("/", 1)[1])
        assert session is not None
        assert session.metadata == {"filename": "hi.txt", "is_confidential": None, "other": None}


class FullDiskFor(FileStorage):
    """In-place writes into the uploads in :attr:`full` fail with ``ENOSPC``."""

    full: set[str]

    def stage(self, session_id: str, offset: int | None) -> Any:
        staging = super().stage(session_id, offset)
        if offset is not None and session_id in self.full:

            def write(block: bytes) -> None:
                raise OSError(errno.ENOSPC, "No space left on device")

            staging.write = write
        return staging


def test_the_last_patch_of_a_part_succeeds_when_its_final_upload_cannot_be_written(
    tmp_path: Path,
) -> None:
    """``except OSError`` made ``except CosmicRayTestingException`` in
    ``tus_concat._copy_parts``: when the part's last ``PATCH`` completed it
    and assembling the waiting final upload hit a full disk, the ``PATCH``
    (whose bytes were stored) answered 507; the assembly's failure is the
    final upload's, retried by its ``HEAD``."""
    app = make(tmp_path)
    storage = FullDiskFor(str(tmp_path / "store"))
    storage.full = set()
    create_upload_service(app, storage)
    client = app.test_client()
    a = _create(client, b"hello", **{"Upload-Length": "5", "Upload-Concat": "partial"})
    b = _create(client, **{"Upload-Length": "5", "Upload-Concat": "partial"})
    final = _create(client, **{"Upload-Concat": f"final;{a} {b}"})
    storage.full.add(final.rsplit("/", 1)[1])
    patch = {**T, "Upload-Offset": "0", "Content-Type": OCTETS}
    rv = client.patch(b, data=b"world", headers=patch)
    assert rv.status_code == 204 and rv.headers["Upload-Offset"] == "5"
    assert client.head(final, headers=T).status_code == 507
    storage.full.clear()
    rv = client.head(final, headers=T)
    assert rv.status_code == 200 and rv.headers["Upload-Offset"] == "10"
    assert client.get(final).data == b"helloworld"


def test_head_says_upload_concat_for_partial_uploads_only(tmp_path: Path) -> None:
    """``session.concat == PARTIAL`` made ``is not`` in ``_head``: a
    ``HEAD`` of a plain upload said ``Upload-Concat: partial``."""
    app = make(tmp_path)
    client = app.test_client()
    plain = _create(client, **{"Upload-Length": "5"})
    part = _create(client, **{"Upload-Length": "5", "Upload-Concat": "partial"})
    final = _create(client, **{"Upload-Concat": f"final;{part}"})
    assert "Upload-Concat" not in client.head(plain, headers=T).headers
    assert client.head(part, headers=T).headers["Upload-Concat"] == "partial"
    assert client.head(final, headers=T).headers["Upload-Concat"] == f"final;{part}"


def test_a_final_upload_of_some_of_another_final_uploads_parts_is_409(tmp_path: Path) -> None:
    """``list(final.parts) != part_ids`` made ``<`` in ``_same_final``: a
    final upload naming only some of the parts of an existing one (or the
    same parts in another order) was taken for a repeat of it and got its
    ``Location``, not ``409 partial_used``."""
    app = make(tmp_path)
    client = app.test_client()
    a, b = (
        _create(client, data, **{"Upload-Length": "1", "Upload-Concat": "partial"})
        for data in (b"a", b"b")
    )
    final = _create(client, **{"Upload-Concat": f"final;{a} {b}"})
    for parts in ([a], [b], [b, a]):
        rv = client.post(
            "/streaming/tus/", headers={**T, "Upload-Concat": "final;" + " ".join(parts)}
        )
        assert rv.status_code == 409, (parts, rv.headers.get("Location"))
        assert rv.get_json()["error"] == "partial_used"
    rv = client.post("/streaming/tus/", headers={**T, "Upload-Concat": f"final;{a} {b}"})
    assert rv.status_code == 201 and rv.headers["Location"] == final  # a repeat


def test_upload_concat_takes_at_most_1000_parts() -> None:
    """``len(urls) > 1000`` made ``>=`` in ``parse_concat``: a final upload
    of exactly 1000 partial uploads was refused."""
    urls = [f"/streaming/tus/p{i}" for i in range(1001)]
    assert parse_concat("final;" + " ".join(urls[:1000])) == ("final", urls[:1000])
    with pytest.raises(BadRequest) as info:
        parse_concat("final;" + " ".join(urls))
    assert info.value.code == "bad_concat"


def test_a_patch_may_repeat_the_upload_length_already_set(tmp_path: Path) -> None:
    """``length == session.length`` made ``is`` in ``ranges._check``: an
    ``Upload-Length`` on a ``PATCH`` equal to the length already set (above
    256: not one cached int object) was ``409 length_already_set``."""
    app = make(tmp_path)
    client = app.test_client()
    url = _create(client, **{"Upload-Length": "1000"})
    patch = {**T, "Content-Type": OCTETS, "Upload-Length": "1000"}
    rv = client.patch(url, data=b"x" * 600, headers={**patch, "Upload-Offset": "0"})
    assert rv.status_code == 204, rv.get_json()
    rv = client.patch(url, data=b"y" * 400, headers={**patch, "Upload-Offset": "600"})
    assert rv.status_code == 204 and rv.headers["Upload-Offset"] == "1000"
    rv = client.patch(
        url, data=b"", headers={**patch, "Upload-Length": "999", "Upload-Offset": "1000"}
    )
    assert rv.status_code == 409 and rv.get_json()["error"] == "length_already_set"


def test_a_chunked_patch_stops_at_the_upload_length(tmp_path: Path) -> None:
    """``limit - offset`` made ``limit | offset`` in ``ranges.append_range``
    (the room left for a body without ``Content-Length``): a chunked
    ``PATCH`` wrote past the upload's length (offset 8 of a 5-byte upload)."""
    app = make(tmp_path)
    client = app.test_client()
    url = _create(client, **{"Upload-Length": "5"})
    patch = {**T, "Content-Type": OCTETS}
    assert (
        client.patch(url, data=b"abc", headers={**patch, "Upload-Offset": "0"}).status_code == 204
    )
    rv = client.open(
        url,
        method="PATCH",
        input_stream=io.BytesIO(b"defgh"),
        headers={**patch, "Upload-Offset": "3", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert rv.status_code == 413, (rv.status_code, rv.headers.get("Upload-Offset"))
    offset = client.head(url, headers=T).headers["Upload-Offset"]
    assert int(offset) <= 5
    rest = b"de"[: 5 - int(offset)]
    rv = client.patch(url, data=rest, headers={**patch, "Upload-Offset": offset})
    assert rv.status_code == 204 and rv.headers["Upload-Offset"] == "5"
    assert client.get(url).data == b"abcde"


def test_a_creation_with_data_of_another_media_type_is_415(tmp_path: Path) -> None:
    """``request.mimetype != OFFSET_OCTET_STREAM`` made ``>`` in ``_create``:
    a creation request with a body of a media type sorting before
    ``application/offset+octet-stream`` (``application/json``) was
    accepted."""
    app = make(tmp_path)
    client = app.test_client()
    for mimetype in ("application/json", "application/a", "text/plain", "application/x"):
        rv = client.post(
            "/streaming/tus/",
            data=b"hello",
            headers={**T, "Upload-Length": "5", "Content-Type": mimetype},
        )
        assert rv.status_code == 415, mimetype
    with app.app_context():
        assert get_upload_service().sessions() == []
