"""Every machine error code the blueprint answers, with its one HTTP status.

This table is the single source of truth (tusd's single error table is the
model): :class:`~flask_streaming.errors.StreamingError` takes its status
from here when raised with a known ``code`` and no explicit ``status``; the
HTTP reference (``docs/reference/http.rst``) renders its tables from here;
and ``tests/test_error_codes.py`` checks that every code raised in the
package is listed with the status it is raised with. One code, one status —
except where a protocol's spec fixes another one (``tus_status``: the tus
checksum extension's 460).
"""

from __future__ import annotations

import dataclasses

#: Route groups a code belongs to (``any``: every route of the blueprint).
GROUPS = ("any", "events", "uploads", "tus")


@dataclasses.dataclass(frozen=True)
class ErrorCode:
    """One machine code of the JSON error body ``{"error": code, ...}``.

    :param code: the ``error`` member, snake case.
    :param status: the HTTP status it is always answered with.
    :param groups: route groups that answer it (out of :data:`GROUPS`).
    :param meaning: one line for the reference.
    :param tus_status: the status under the tus routes when the tus spec
        fixes another one (``None``: :attr:`status`).
    """

    code: str
    status: int
    groups: tuple[str, ...]
    meaning: str
    tus_status: int | None = None

    def status_for(self, group: str) -> int:
        """The status under route group *group*."""
        if group == "tus" and self.tus_status is not None:
            return self.tus_status
        return self.status


_U, _T, _UT, _E, _A = ("uploads",), ("tus",), ("uploads", "tus"), ("events",), ("any",)

_TABLE = (
    # -- any route: the exception classes' defaults and Werkzeug's errors --
    ErrorCode("bad_request", 400, _A, "malformed input (a refusing hook's default)"),
    ErrorCode(
        "forbidden", 403, ("any", "events", "uploads", "tus"), "an authorization hook said no"
    ),
    ErrorCode("not_found", 404, _A, "no such route or resource"),
    ErrorCode(
        "method_not_allowed", 405, ("any", "tus"), "the method is not served here (``Allow``)"
    ),
    ErrorCode(
        "body_timeout",
        408,
        ("any", "uploads", "tus"),
        "the request body stalled past ``STREAMING_BODY_TIMEOUT``; the connection is closed",
    ),
    ErrorCode("conflict", 409, _A, "contradicts what the server holds"),
    ErrorCode("gone", 410, _A, "existed and expired"),
    ErrorCode("payload_too_large", 413, ("any", "uploads", "tus"), "a size limit (with ``limit``)"),
    ErrorCode("locked", 423, _A, "another request writes the same resource"),
    ErrorCode("too_many_requests", 429, _A, "a per-client quota"),
    ErrorCode("hook_failed", 500, _UT, "a receiver raised; nothing was accepted, send again"),
    ErrorCode(
        "hook_result_invalid",
        500,
        _UT,
        "a receiver returned what cannot be sent (a server bug); final",
    ),
    ErrorCode(
        "storage_error", 500, _UT, "the store failed to write; nothing was accepted, send again"
    ),
    ErrorCode("service_unavailable", 503, _A, "a per-worker limit; retry later"),
    ErrorCode("insufficient_storage", 507, _UT, "the store is out of space; nothing was accepted"),
    ErrorCode(
        "broker_unavailable",
        503,
        ("any", "events"),
        "the broker (Redis) is unreachable (``Retry-After``)",
    ),
    # -- events --
    ErrorCode("no_channel", 400, _E, "no channel named"),
    ErrorCode("too_many_channels", 400, _E, "more than ``STREAMING_MAX_CHANNELS``"),
    ErrorCode("invalid_channel", 400, _E, "not a valid channel name"),
    ErrorCode(
        "too_many_connections",
        429,
        _E,
        "``STREAMING_MAX_CONNECTIONS_PER_CLIENT`` reached (``Retry-After``)",
    ),
    # -- native uploads --
    ErrorCode("missing_stream_id", 400, _U, "no ``X-Stream-Id``"),
    ErrorCode("bad_segment", 400, _U, "a segment number that is not 0..max-1"),
    ErrorCode("bad_done", 400, _U, "``X-Stream-Done`` not true/false"),
    ErrorCode("bad_json", 400, _U, "the creation body is not a JSON object"),
    ErrorCode("bad_size", 400, _U, "``size`` is not a non-negative integer"),
    ErrorCode("bad_metadata", 400, _UT, "metadata malformed or over 16 KiB"),
    ErrorCode("bad_checksum", 400, _UT, "unknown checksum algorithm or malformed digest"),
    ErrorCode(
        "checksum_mismatch",
        400,
        _UT,
        "the body does not match its checksum; it was discarded",
        tus_status=460,
    ),
    ErrorCode("incomplete_body", 400, _UT, "the body ended before ``Content-Length``"),
    ErrorCode("bad_body", 400, _UT, "the body's framing is malformed"),
    ErrorCode("unknown_session", 404, _UT, "no such upload"),
    ErrorCode("segment_conflict", 409, _U, "a segment number resent with other bytes"),
    ErrorCode("missing_segments", 409, _U, "completion with segments missing (``missing``)"),
    ErrorCode("segments_beyond_end", 409, _U, "segments received past the completed count"),
    ErrorCode("size_mismatch", 409, _U, "the bytes received differ from the announced size"),
    ErrorCode(
        "upload_completed",
        409,
        _UT,
        "the upload is already complete (other segment count, or more data)",
    ),
    ErrorCode("retry", 409, _U, "the session changed while the body arrived; send again"),
    ErrorCode("session_expired", 410, _UT, "the unfinished upload expired; its data is gone"),
    ErrorCode(
        "segment_too_large",
        413,
        _UT,
        "a segment (or checksummed tus body) over ``STREAMING_MAX_SEGMENT_SIZE``",
    ),
    ErrorCode("too_many_sessions", 429, _UT, "``STREAMING_MAX_SESSIONS_PER_CLIENT`` open uploads"),
    ErrorCode(
        "too_many_uploads",
        429,
        _UT,
        "``STREAMING_MAX_UPLOADS_PER_CLIENT`` uploads held, finished ones included",
    ),
    ErrorCode("too_deep", 400, _U, "a JSON body nested deeper than 16 levels"),
    ErrorCode("session_busy", 503, _UT, "the upload's lock stayed busy (``Retry-After``)"),
    ErrorCode("busy", 503, _UT, "too many uploads being opened at once (``Retry-After``)"),
    # -- tus --
    ErrorCode("bad_upload_offset", 400, _T, "``Upload-Offset`` is not a non-negative integer"),
    ErrorCode("missing_upload_offset", 400, _T, "a ``PATCH`` without ``Upload-Offset``"),
    ErrorCode("bad_upload_length", 400, _T, "``Upload-Length`` is not a non-negative integer"),
    ErrorCode(
        "missing_upload_length", 400, _T, "neither ``Upload-Length`` nor ``Upload-Defer-Length: 1``"
    ),
    ErrorCode("bad_upload_defer_length", 400, _T, "``Upload-Defer-Length`` other than 1"),
    ErrorCode("bad_length", 400, _T, "``Upload-Length`` below the bytes already received"),
    ErrorCode("bad_concat", 400, _T, "a malformed ``Upload-Concat``"),
    ErrorCode("unknown_partial", 400, _T, "a partial upload of a final one does not exist"),
    ErrorCode("not_partial", 400, _T, "an upload named in ``Upload-Concat: final`` is not partial"),
    ErrorCode("partial_listed_twice", 400, _T, "``Upload-Concat: final`` names a partial twice"),
    ErrorCode("partial_used", 409, _T, "the partial upload already serves another final upload"),
    ErrorCode("bad_method_override", 400, _T, "``X-HTTP-Method-Override`` names no tus method"),
    ErrorCode("final_upload", 403, _T, "a final (concatenated) upload takes no data"),
    ErrorCode(
        "offset_mismatch", 409, _T, "``Upload-Offset`` is not the upload's offset; nothing changed"
    ),
    ErrorCode(
        "length_already_set", 409, _T, "``Upload-Length`` differs from the length already set"
    ),
    ErrorCode("upload_unfinished", 409, _T, "``GET`` of an upload that is not finished"),
    ErrorCode(
        "unsupported_tus_version",
        412,
        _T,
        "``Tus-Resumable`` missing or not 1.0.0 (``Tus-Version``)",
    ),
    ErrorCode(
        "unsupported_media_type",
        415,
        _UT,
        "a body that is not ``application/offset+octet-stream`` (tus) or ``application/json``"
        " (native creation)",
    ),
    ErrorCode("upload_locked", 423, _T, "another request is writing this upload"),
)

#: The codes of 500 answers that may succeed when sent again (a hook or the
#: store failed this time; the Python client reads this set without
#: loading Flask). Clients retry a 500 only for these; any other
#: 500 (e.g. ``hook_result_invalid``, a server bug) is final.
TRANSIENT_500_CODES = frozenset({"hook_failed", "storage_error"})

#: Code → :class:`ErrorCode`, in table order.
ERRORS: dict[str, ErrorCode] = {e.code: e for e in _TABLE}
assert len(ERRORS) == len(_TABLE), "an error code is listed twice"


def status_of(code: str, group: str = "any") -> int | None:
    """The status of *code* under route group *group* (``None``: unknown)."""
    entry = ERRORS.get(code)
    return None if entry is None else entry.status_for(group)


def table(group: str) -> list[tuple[int, list[str]]]:
    """``(status, [codes])`` of route group *group*, by status: what the
    HTTP reference shows."""
    rows: dict[int, list[str]] = {}
    for entry in _TABLE:
        if group in entry.groups:
            rows.setdefault(entry.status_for(group), []).append(entry.code)
    return sorted(rows.items())
