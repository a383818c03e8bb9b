"""The tus 1.0.0 resumable-upload protocol on the upload store
(https://tus.io/protocols/resumable-upload).

=====================================================  =============================
``OPTIONS {prefix}/tus/``                              capabilities (204)
``POST {prefix}/tus/``                                 create an upload (201 + ``Location``)
``HEAD {prefix}/tus/<id>``                             offset, length, metadata (200)
``PATCH {prefix}/tus/<id>``                            append at ``Upload-Offset`` (204)
``DELETE {prefix}/tus/<id>``                           terminate (204)
``POST {prefix}/tus/<id>`` + ``X-HTTP-Method-Override``  any of the above
=====================================================  =============================

Extensions: creation, creation-with-upload, creation-defer-length,
expiration (``STREAMING_TUS_EXPIRY``, 24 h by default, apart from the native
session timeout), checksum (sha1, md5, sha256), termination, concatenation
and concatenation-unfinished. tusd's status codes: 412 for another
``Tus-Resumable``, 415 for a ``PATCH`` that is not
``application/offset+octet-stream``, 409 when ``Upload-Offset`` is not the
current offset (nothing changes), 423 while another request writes the same
upload (in any worker), 460 on a checksum mismatch (the chunk is discarded),
413 past ``Upload-Length`` or the upload limit, 403 for a ``PATCH`` on a
final upload, 404/410 for unknown/expired uploads. Errors carry the usual
JSON body.

tus uploads are upload sessions with ``protocol == "tus"``: the same limits,
authorization hook (``create``, ``append``, ``status``, ``abort``, and
``read`` for each partial upload a final upload lists) and
signals as native ones. ``segment-received`` is sent once per ``PATCH`` with
the range's :class:`~flask_streaming.uploads.Segment` (``offset`` before,
``end`` after); ``upload-completed`` when the offset reaches the length
(never for a partial upload, only for the final one assembled from them).
**tus responses have no body: what receivers return is stored with the
session (``session.results``), not sent to the client.** ``Upload-Metadata``
is decoded into ``session.metadata``; ``filename``/``name`` and
``filetype``/``type`` also fill ``session.filename`` and
``session.content_type``. None of it ever becomes a path.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.http import http_date

from ..error_codes import status_of
from ..errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    StreamingError,
    UnsupportedMediaType,
    http_error_response,
)
from ..responses import download_response
from ..settings import Settings
from ..tus_version import TUS_VERSION
from .bodies import request_body
from .ranges import FINAL, PARTIAL, append_range, complete_if_full
from .segments import BLOCK_SIZE
from .sessions import COMPLETED, OPEN, UploadSession
from .tus_concat import create_final, finish_waiting_finals, is_final, try_finish
from .tus_headers import (
    OFFSET_OCTET_STREAM,
    OVERRIDABLE,
    TUS_EXTENSIONS,
    check_version,
    checksum_algorithms,
    parse_concat,
    parse_defer_length,
    parse_int,
    parse_metadata,
    upload_id_from_url,
)
from .views import get_upload_service

TusView = Callable[..., Response]


def _method() -> str:
    """The effective method: ``X-HTTP-Method-Override`` on a ``POST``."""
    override = (request.headers.get("X-HTTP-Method-Override") or "").strip().upper()
    if request.method == "POST" and override:
        if override not in OVERRIDABLE:
            raise BadRequest(
                f"X-HTTP-Method-Override must be one of {', '.join(sorted(OVERRIDABLE))}",
                code="bad_method_override",
            )
        return override
    return request.method


def _tus(view: TusView) -> Callable[..., Response]:
    """Wrap a tus view: check ``Tus-Resumable`` (not on ``OPTIONS`` and the
    download ``GET``), turn
    errors into responses, add ``Tus-Resumable`` to every response."""

    @functools.wraps(view)
    def wrapper(**kwargs: Any) -> Response:
        try:
            method = _method()
            if method not in ("OPTIONS", "GET"):  # GET: a plain download, not tus
                check_version(request.headers.get("Tus-Resumable"))
            rv = view(method, **kwargs)
        except StreamingError as exc:
            if exc.status == status_of(exc.code):  # the tus spec's own status: 460
                exc.status = status_of(exc.code, "tus") or exc.status
            rv = exc.response()
        except HTTPException as exc:  # e.g. the client went away mid-body
            rv = http_error_response(exc)
        rv.headers["Tus-Resumable"] = TUS_VERSION
        return rv

    return wrapper


def _empty(status: int, headers: dict[str, str] | None = None) -> Response:
    """A response without a body (and so without a ``Content-Type``)."""
    rv = Response(status=status)
    del rv.headers["Content-Type"]
    rv.headers.update(headers or {})
    return rv


def _expires(session: UploadSession) -> dict[str, str]:
    """``Upload-Expires`` while the upload is unfinished."""
    expires_at = session.expires_at
    if expires_at is None:  # completed: never expires
        return {}
    return {"Upload-Expires": http_date(expires_at)}


def _options(settings: Settings) -> Response:
    headers = {
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": ",".join(TUS_EXTENSIONS),
        "Tus-Checksum-Algorithm": checksum_algorithms(),
    }
    if settings.max_upload_size is not None:
        headers["Tus-Max-Size"] = str(settings.max_upload_size)
    return _empty(204, headers)


def _has_body() -> bool:
    return (
        bool(request.content_length)
        or "chunked" in (request.headers.get("Transfer-Encoding") or "").lower()
    )


def _tus_session(upload_id: str, action: str) -> UploadSession:
    """The tus upload *upload_id*, once the authorization hook allowed
    *action* on it (asked before anything else is checked, so that a denied
    client learns nothing of the upload): 404 for a native session's id
    (the two protocols never write into each other's uploads), 410 when
    expired."""
    session = get_upload_service().authorized(upload_id, action)
    if session.protocol != "tus":
        raise NotFound("unknown upload", code="unknown_session")
    return session


def _location(session_id: str) -> str:
    return url_for(".tus_upload", upload_id=session_id)


def _create(settings: Settings) -> Response:
    """``POST``: creation, creation-defer-length, creation-with-upload,
    concatenation."""
    service = get_upload_service()
    concat, urls = parse_concat(request.headers.get("Upload-Concat"))
    length = parse_int("Upload-Length", request.headers.get("Upload-Length"))
    deferred = parse_defer_length(request.headers.get("Upload-Defer-Length"))
    metadata = parse_metadata(request.headers.get("Upload-Metadata"))
    body = _has_body()
    if body and request.mimetype != OFFSET_OCTET_STREAM:
        raise UnsupportedMediaType(f"a creation request with data must be {OFFSET_OCTET_STREAM}")
    raw_metadata = (request.headers.get("Upload-Metadata") or "").strip()
    options: dict[str, Any] = {
        "tus_metadata": raw_metadata or None,
        "client": request.remote_addr or "",
        "protocol": "tus",
        "filename": metadata.get("filename") or metadata.get("name"),
        "content_type": metadata.get("filetype") or metadata.get("type"),
        "metadata": metadata,
        "timeout": settings.tus_expiry,
    }
    if concat == "final":
        if length is not None or deferred:
            raise BadRequest(
                "a final upload takes no Upload-Length: it is the sum of its parts",
                code="bad_concat",
            )
        if body:
            raise Forbidden("a final upload takes no data", code="final_upload")
        base = url_for(".tus_uploads")
        ids = [upload_id_from_url(u, base) for u in urls]
        header = (request.headers.get("Upload-Concat") or "").strip()
        session = create_final(service, ids, header=header, **options)
        return _empty(201, {"Location": _location(session.id), **_expires(session)})
    if (length is None) == (not deferred):
        raise BadRequest(
            "send either Upload-Length or Upload-Defer-Length: 1", code="missing_upload_length"
        )
    session = service.create(length=length, concat=concat, **options)
    headers = {"Location": _location(session.id)}
    if body:
        try:
            session = _append(session.id, 0)
        except StreamingError as exc:  # created all the same: say where
            exc.headers.setdefault("Location", headers["Location"])
            raise
        headers["Upload-Offset"] = str(session.offset)
    elif session.length == 0:
        session = complete_if_full(service, session.id)
    return _empty(201, {**headers, **_expires(session)})


def _append(upload_id: str, offset: int, length: int | None = None) -> UploadSession:
    """Append the request body at *offset* (one pass: see :mod:`.ranges`);
    complete waiting final uploads when this finished a partial one."""
    service = get_upload_service()
    result = append_range(
        service,
        upload_id,
        offset,
        request_body(request.environ, request.stream, request.content_length),
        content_length=request.content_length,
        checksum=request.headers.get("Upload-Checksum"),
        length=length,
        protocol="tus",
    )
    session = result.session
    if result.completion is not None and session.concat == PARTIAL:
        finish_waiting_finals(service, session)
    return session


def _patch(upload_id: str) -> Response:
    if request.mimetype != OFFSET_OCTET_STREAM:
        raise UnsupportedMediaType(f"PATCH bodies must be {OFFSET_OCTET_STREAM}")
    offset = parse_int("Upload-Offset", request.headers.get("Upload-Offset"), required=True)
    assert offset is not None
    length = parse_int("Upload-Length", request.headers.get("Upload-Length"))
    session = _append(upload_id, offset, length)
    return _empty(204, {"Upload-Offset": str(session.offset), **_expires(session)})


def _head(upload_id: str) -> Response:
    service = get_upload_service()
    session = _tus_session(upload_id, "status")
    if is_final(session) and session.state == OPEN:
        session = try_finish(service, upload_id)
    headers = {"Cache-Control": "no-store", **_expires(session)}
    unfinished_final = is_final(session) and session.state == OPEN
    if not unfinished_final:
        headers["Upload-Offset"] = str(session.offset)
    if session.length is not None:
        headers["Upload-Length"] = str(session.length)
    elif not unfinished_final:
        headers["Upload-Defer-Length"] = "1"
    if session.tus_metadata:
        headers["Upload-Metadata"] = session.tus_metadata
    if is_final(session):
        headers["Upload-Concat"] = session.concat_header or FINAL
    elif session.concat == PARTIAL:
        headers["Upload-Concat"] = PARTIAL
    return _empty(200, headers)


_MIMETYPE_RE = re.compile(r"[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*")


def _download(upload_id: str) -> Response:
    """``GET`` of a finished upload: its bytes (``Range`` and conditional
    requests included, through :func:`~flask_streaming.download_response`),
    as an attachment named after its ``filename`` metadata, with
    ``X-Content-Type-Options: nosniff``. Authorization: ``read``, asked
    before anything else. An unfinished upload (or an unfinished final
    concatenation) answers ``409 upload_unfinished``, with its ``offset``.
    """
    session = _tus_session(upload_id, "read")
    if session.state != COMPLETED:
        raise Conflict(
            "the upload is not finished; GET it once it is",
            code="upload_unfinished",
            offset=session.offset,
        )
    content_type = session.content_type or ""
    mimetype = content_type if _MIMETYPE_RE.fullmatch(content_type) else None
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-cache"}
    name = session.filename or f"{session.id}.bin"
    path = session.path
    if path is not None and os.path.exists(path) and not os.path.islink(path):
        return download_response(
            path, filename=name, mimetype=mimetype or "application/octet-stream",
            headers=headers,
        )  # fmt: skip
    # A store without local files, or a planted link: the store's own reader
    # (which never follows a link) opens it now, so a refusal is a JSON error.
    f = session.open()

    def body() -> Iterator[bytes]:
        with f:
            while block := f.read(BLOCK_SIZE):
                yield block

    return download_response(body(), filename=name, mimetype=mimetype, headers=headers)


def register_tus_views(
    bp: Blueprint,
    route: Callable[..., Callable[[Callable[..., Any]], Callable[..., Any]]],
    settings: Settings,
) -> None:
    """Add the tus routes to the blueprint (``tus`` group)."""

    @route("/tus/", methods=["OPTIONS", "POST"], strict_slashes=False)
    @_tus
    def tus_uploads(method: str) -> Response:
        """The creation endpoint: ``OPTIONS`` (capabilities), ``POST`` (create)."""
        if method == "OPTIONS":
            return _options(settings)
        if method != "POST":
            raise StreamingError(
                f"{method} is not allowed here", status=405, code="method_not_allowed"
            )
        return _create(settings)

    @route("/tus/<upload_id>", methods=["GET", "HEAD", "PATCH", "DELETE", "OPTIONS", "POST"])
    @_tus
    def tus_upload(method: str, upload_id: str) -> Response:
        """One upload: ``GET`` (download a finished one), ``HEAD``,
        ``PATCH``, ``DELETE``, ``OPTIONS``, or a ``POST`` whose
        ``X-HTTP-Method-Override`` names one of them."""
        if method == "OPTIONS":
            return _options(settings)
        if method == "GET":
            return _download(upload_id)
        if method == "HEAD":
            return _head(upload_id)
        if method == "PATCH":
            return _patch(upload_id)
        if method == "DELETE":
            _tus_session(upload_id, "abort")
            get_upload_service().abort(upload_id)
            return _empty(204)
        raise StreamingError(
            "POST on an upload needs X-HTTP-Method-Override (PATCH, HEAD or DELETE)",
            status=405,
            code="method_not_allowed",
            headers={"Allow": "HEAD, PATCH, DELETE, OPTIONS, POST"},
        )
