"""The extension's settings: every ``STREAMING_*`` config key, read once.

Each field of :class:`Settings` is one config key, ``STREAMING_`` plus the
field's name in upper case. :meth:`Settings.from_app` reads them with
``app.config.setdefault`` so that the app's config wins over options given to
:class:`~flask_streaming.Streaming`, which win over the defaults here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app


def _origins(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    return tuple(o.strip().rstrip("/") for o in value if o.strip())


def _routes(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        value = value.split(",")
    return frozenset(r.strip() for r in value if r.strip())


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


#: Route groups of the blueprint; ``STREAMING_ROUTES`` switches them on.
ROUTE_GROUPS = frozenset({"index", "events", "uploads", "tus", "client"})


@dataclasses.dataclass(frozen=True)
class Settings:
    """Typed settings of one app. Attribute ``x`` is config key ``STREAMING_X``."""

    #: Where the blueprint is mounted.
    url_prefix: str = "/streaming"
    #: Route groups to register (a set or a comma-separated string), out of
    #: ``index``, ``events``, ``uploads``, ``tus``, ``client``. Empty: none.
    routes: frozenset[str] = ROUTE_GROUPS
    #: Seconds between SSE heartbeat comments while a stream is idle.
    ping_interval: float = 15.0
    #: Reconnection time (ms) sent as ``retry:`` when an event stream opens;
    #: ``None`` leaves the browser's default.
    retry: int | None = None
    #: Text of the ``stream-error`` event sent when a stream's source raises.
    error_message: str = "The stream failed on the server."
    #: Allowed CORS origins: a list, a comma-separated string, or ``"*"``.
    #: Empty (the default) means no cross-origin access.
    cors_origins: tuple[str, ...] = ()
    #: Send ``Access-Control-Allow-Credentials: true`` to allowed origins.
    cors_credentials: bool = False
    #: Seconds a browser may cache a preflight answer.
    cors_max_age: int = 600
    #: Chunked responses coalesce small writes up to this many bytes.
    buffer_size: int = 65536
    #: ... and never hold data longer than this many seconds.
    flush_interval: float = 0.05
    #: Channels' broker: ``memory://`` (one process) or ``redis://host:port/db``
    #: (many workers and machines; needs the ``redis`` extra).
    broker_url: str = "memory://"
    #: Events kept per channel for ``Last-Event-ID`` replay.
    history_size: int = 1000
    #: Memory broker: channels whose history is kept; beyond it the least
    #: recently published channel's history is dropped.
    history_channels: int = 10_000
    #: Memory broker: seconds a channel's history is kept after its last
    #: publish. (Redis keeps ``history_size`` events per channel's stream.)
    history_ttl: float = 3600.0
    #: A subscriber this many events behind is sent a ``retry`` hint and
    #: disconnected (it resumes by ``Last-Event-ID``).
    max_queue: int = 1000
    #: ... or this many bytes behind.
    max_queue_bytes: int = 4 << 20
    #: Open channel streams per worker; beyond it a stream gets only a
    #: jittered ``retry`` and a ``stream-error`` event. Keep it below
    #: gunicorn's ``worker_connections``.
    max_connections: int = 9000
    #: Open channel streams per client address in one worker process;
    #: beyond it a subscription answers 429 with ``Retry-After`` (``0``: no
    #: limit; clients behind one NAT or proxy share an address, so mind
    #: ``ProxyFix``).
    max_connections_per_client: int = 0
    #: Channels a client may subscribe to on one connection.
    max_channels: int = 16
    #: Seconds a streaming response waits for a client that stopped reading
    #: (its socket buffer is full) before the connection is cut (``0``: wait
    #: forever). Needs gunicorn's gevent worker.
    send_timeout: float = 30.0
    #: Key prefix of everything the Redis broker stores.
    redis_prefix: str = "flask_streaming"
    #: Folder of the upload store; ``None``: ``streaming-uploads`` in the
    #: app's instance folder.
    upload_folder: str | None = None
    #: Largest segment (or checksummed tus ``PATCH`` body, which is staged)
    #: in bytes: 413 from ``Content-Length`` before reading, and while
    #: reading without one. Other tus bodies are written through and bounded
    #: by the upload's length.
    max_segment_size: int = 64 << 20
    #: Largest upload in bytes (``None``: no limit).
    max_upload_size: int | None = 4 << 30
    #: Segments per upload: segment numbers run 0..max_segments-1.
    max_segments: int = 10000
    #: Seconds without activity after which an unfinished upload session
    #: expires and its data is removed (svelte-stream's 10 minutes).
    session_timeout: float = 600.0
    #: Open upload sessions per client address (``0``: no limit); beyond it
    #: creating one answers 429.
    max_sessions_per_client: int = 20
    #: Seconds a request body may stall (no byte arriving) before the
    #: request fails with 408 ``body_timeout`` and the connection is closed
    #: (``0``: wait forever). Applies to every route of the blueprint under
    #: gunicorn.
    body_timeout: float = 30.0
    #: Seconds a request waits for a busy upload session before 503.
    upload_lock_timeout: float = 30.0
    #: ``fsync`` upload bytes and records (survive power loss, not only a
    #: killed worker; slower).
    upload_fsync: bool = False
    #: Seconds without activity after which a tus upload expires and its
    #: data is removed (tus clients resume after hours or days; apart from
    #: ``session_timeout``). Sent as ``Upload-Expires``.
    tus_expiry: float = 86400.0
    #: Seconds after its completion at which a completed upload (native or
    #: tus) is removed by the sweep and ``flask streaming cleanup``;
    #: ``None`` (the default): completed uploads are never removed by the
    #: extension, they stay until the app removes them
    #: (:meth:`UploadService.remove <flask_streaming.uploads.UploadService.remove>`,
    #: ``flask streaming remove``). The idle timeouts above never apply to
    #: completed uploads.
    completed_retention: float | None = None

    @classmethod
    def from_app(cls, app: Flask, options: Mapping[str, Any] | None = None) -> Settings:
        """Read every key from ``app.config``, setting defaults there."""
        options = dict(options or {})
        unknown = set(options) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown Streaming option(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            default = options.get(field.name, field.default)
            raw = app.config.setdefault(f"STREAMING_{field.name.upper()}", default)
            values[field.name] = _CONVERT.get(field.name, _identity)(raw)
        prefix = "/" + values["url_prefix"].strip("/")
        values["url_prefix"] = "" if prefix == "/" else prefix
        return cls(**values)


def _identity(value: Any) -> Any:
    return value


_CONVERT: dict[str, Any] = {
    "routes": _routes,
    "ping_interval": float,
    "retry": _opt_int,
    "error_message": str,
    "cors_origins": _origins,
    "cors_credentials": _bool,
    "cors_max_age": int,
    "buffer_size": int,
    "flush_interval": float,
    "broker_url": str,
    "history_size": int,
    "history_channels": int,
    "history_ttl": float,
    "max_queue": int,
    "max_queue_bytes": int,
    "max_connections": int,
    "max_connections_per_client": int,
    "max_channels": int,
    "send_timeout": float,
    "redis_prefix": str,
    "upload_folder": _opt_str,
    "max_segment_size": int,
    "max_upload_size": _opt_int,
    "max_segments": int,
    "session_timeout": float,
    "max_sessions_per_client": int,
    "body_timeout": float,
    "upload_lock_timeout": float,
    "upload_fsync": _bool,
    "tus_expiry": float,
    "completed_retention": _opt_float,
}


def get_settings(app: Flask | None = None) -> Settings:
    """The settings of *app* (default: the current app); defaults when the
    extension is not registered, so the response helpers work on their own."""
    if app is None:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    state = app.extensions.get("streaming")
    if state is None:
        return _DEFAULTS
    settings: Settings = state.settings
    return settings


_DEFAULTS = Settings()
