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
