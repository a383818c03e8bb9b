"""The native segmented-upload protocol (svelte-stream compatible).

=========================================  ===================================
``GET {prefix}/uploads``                   open a session → 200 ``{"streamId"}``
``POST {prefix}/uploads`` (JSON or empty)  open a session → 201 ``{"streamId", "url", ...}``
``POST {prefix}/uploads`` + headers        send one segment (below)
``POST {prefix}/uploads/<id>``             the same, the id in the path
``GET {prefix}/uploads/<id>``              status, to resume
``DELETE {prefix}/uploads/<id>``           abort: the data is removed
=========================================  ===================================

A segment request carries ``X-Stream-Id``, ``X-Stream-Segment`` (0-based)
and ``X-Stream-Done`` (``true``/``false``, default ``false``); the
``X-Svelte-Stream-*`` spellings are accepted too. The body is the segment's
bytes. An empty done request at *k* completes the upload with segments
``0..k-1`` (what svelte-stream's client sends); a non-empty one stores
segment *k* and completes with ``0..k``. ``X-Stream-Checksum:
sha256=<base64 digest>`` (also ``sha1``, ``md5``; a hex digest is accepted)
makes the server verify the segment and discard it on mismatch (400
``checksum_mismatch``).

These views only parse headers; :class:`~.service.UploadService` does the rest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request, url_for

from ..errors import BadRequest, StreamingError
from ..settings import Settings
from ..state import get_state
from .bodies import request_body
from .json_body import read_json_object
from .results import CompletionResult, SegmentResult
from .service import UploadService
from .sessions import UploadSession
from .storage import FileStorage, Storage

_SEGMENT_RE = re.compile(r"[0-9]{1,10}")
_DONE = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def create_upload_service(app: Flask, storage: Storage | None = None) -> UploadService:
    """Make (and keep, for :func:`get_upload_service`) *app*'s upload
    service; *storage* defaults to a :class:`FileStorage` in
    ``STREAMING_UPLOAD_FOLDER`` (or the instance folder). Call it after
    ``init_app`` to use another storage backend.

    :raises RuntimeError: no Streaming extension is registered with *app*.
    """
    state = get_state(app)
    settings = state.settings
    if storage is None:
        folder = settings.upload_folder or os.path.join(app.instance_path, "streaming-uploads")
        storage = FileStorage(
            folder, lock_timeout=settings.upload_lock_timeout, fsync=settings.upload_fsync
        )
    hooks = state.hooks
    state.uploads = UploadService(app, storage, settings, lambda: hooks.upload)
    return state.uploads


def get_upload_service(app: Flask | None = None) -> UploadService:
    """The upload service of *app* (default: the current app).

    :raises RuntimeError: no Streaming extension is registered with the app.
    """
    if app is None:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    assert app is not None
    service = get_state(app).uploads
    if service is None:
        service = create_upload_service(app)
    return service


def _header(*names: str) -> str | None:
    for name in names:
        value = request.headers.get(name)
        if value is not None:
            return value.strip()
    return None


def _client() -> str:
    return request.remote_addr or ""


def _session_body(session: UploadSession, **extra: Any) -> dict[str, Any]:
    return {**session.status(), **extra}


def _create_options() -> dict[str, Any]:
    """Read the optional JSON body of ``POST /uploads`` (bounded in size and
    depth; ``application/json`` or empty, see :func:`.json_body.read_json_object`)."""
    body = read_json_object(
        request.stream, mimetype=request.mimetype, content_length=request.content_length
    )
    metadata = body.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise BadRequest("metadata must be a JSON object", code="bad_metadata")
    return {
        "filename": body.get("filename"),
        "content_type": body.get("content_type", body.get("contentType")),
        "length": body.get("size"),
        "metadata": metadata,
    }


def _segment_response(result: SegmentResult) -> dict[str, Any]:
    session, segment = result.session, result.segment
    return {
        "streamId": session.id,
        "segment": segment.index,
        "size": segment.size,
        "offset": segment.offset,
        "received": session.received,
        "bytes": session.offset,
        "done": False,
        "duplicate": result.duplicate,
        **result.results,
    }


def _final_response(result: CompletionResult, partial: dict[str, Any]) -> dict[str, Any]:
    session = result.session
    return {
        **partial,
        "streamId": session.id,
        "done": True,
        "segments": session.segments,
        "size": session.offset,
        "duplicate": result.duplicate,
        **result.results,
    }


def _receive_segment(service: UploadService, session_id: str | None) -> Response:
    if session_id is None:
        session_id = _header("X-Stream-Id", "X-Svelte-Stream-Id")
        if not session_id:
            raise BadRequest("X-Stream-Id is missing", code="missing_stream_id")
    raw_index = _header("X-Stream-Segment", "X-Svelte-Stream-Segment")
    if raw_index is None:
        raise BadRequest("X-Stream-Segment is missing", code="bad_segment")
    if not _SEGMENT_RE.fullmatch(raw_index):
        raise BadRequest("X-Stream-Segment must be a non-negative integer", code="bad_segment")
    index = int(raw_index)
    raw_done = (_header("X-Stream-Done", "X-Svelte-Stream-Done") or "false").lower()
    if raw_done not in _DONE:
        raise BadRequest("X-Stream-Done must be 'true' or 'false'", code="bad_done")
    done = _DONE[raw_done]
    checksum = _header("X-Stream-Checksum")
    if done and request.content_length == 0:
        final = service.complete(session_id, index)
        return jsonify(_final_response(final, {}))
    result = service.append_segment(
        session_id,
        index,
        request_body(request.environ, request.stream, request.content_length),
        content_length=request.content_length,
        checksum=checksum,
        done=done,
    )
    if isinstance(result, CompletionResult):  # a done request whose body was empty
        return jsonify(_final_response(result, {}))
    partial = _segment_response(result)
    if result.completion is not None:
        return jsonify(_final_response(result.completion, partial))
    return jsonify(partial)


def _is_segment_request() -> bool:
    return any(
        name in request.headers
        for name in (
            "X-Stream-Id", "X-Stream-Segment", "X-Stream-Done",
            "X-Svelte-Stream-Id", "X-Svelte-Stream-Segment", "X-Svelte-Stream-Done",
        )
    )  # fmt: skip


def register_upload_views(
    bp: Blueprint,
    route: Callable[..., Callable[[Callable[..., Any]], Callable[..., Any]]],
    settings: Settings,
) -> None:
    """Add the native upload routes to the blueprint (``uploads`` group)."""

    @route("/uploads", methods=["GET", "POST"])
    def uploads() -> Response | tuple[Response, int]:
        """Open a session (``GET``, or ``POST`` without segment headers),
        or receive a segment (``POST`` with them)."""
        service = get_upload_service()
        if request.method == "HEAD":  # a safe method creates nothing
            raise StreamingError(
                "HEAD does not open a session; GET or POST does",
                status=405,
                code="method_not_allowed",
                headers={"Allow": "GET, POST, OPTIONS"},
            )
        if request.method == "POST" and _is_segment_request():
            return _receive_segment(service, None)
        options = _create_options() if request.method == "POST" else {}
        session = service.create(client=_client(), **options)
        if request.method == "GET":
            return jsonify({"streamId": session.id})
        url = url_for(".upload", session_id=session.id)
        rv = jsonify(_session_body(session, url=url))
        rv.headers["Location"] = url
        return rv, 201

    @route("/uploads/<session_id>", methods=["GET", "POST", "DELETE"])
    def upload(session_id: str) -> Response:
        """Status (``GET``), a segment (``POST``), abort (``DELETE``)."""
        service = get_upload_service()
        if request.method == "POST":
            return _receive_segment(service, session_id)
        if request.method == "DELETE":
            session = service.abort(session_id)
            return jsonify({"streamId": session.id, "state": "aborted"})
        return jsonify(service.status(session_id).status())
