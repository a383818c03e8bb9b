"""The extension's settings: every ``STREAMING_*`` config key, read and
checked once.

Each field of :class:`Settings` is one config key, ``STREAMING_`` plus the
field's name in upper case. Next to each field sits its :class:`Check`: how
the value the app wrote is turned into the field's value, and in words what
is accepted (the config reference is generated from both). :meth:`Settings.from_app`
reads the keys with ``app.config.setdefault`` so that the app's config wins
over options given to :class:`~flask_streaming.Streaming`, which win over the
defaults here, and raises :class:`ConfigError` naming every bad key.

Sizes and durations may be written as numbers or as strings, as they come
from environment variables and config files:

* sizes (bytes): ``65536``, ``"65536"``, ``"64KiB"``, ``"8MiB"``, ``"4GiB"``
  (binary, 1024-based) or ``"8MB"``, ``"1GB"`` (decimal, 1000-based);
  ``"8M"`` and ``"8k"`` are refused as ambiguous;
* durations (seconds): ``30``, ``"0.5"``, ``"500ms"``, ``"30s"``, ``"10m"``,
  ``"2h"``, ``"1d"``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app


class ConfigError(ValueError):
    """Raised by :meth:`Streaming.init_app <flask_streaming.Streaming.init_app>`
    when ``STREAMING_*`` keys hold values that cannot work. Its message names
    each bad key, the value found and what is accepted; :attr:`problems`
    holds them as ``(key, value, accepted)`` tuples."""

    def __init__(self, problems: list[tuple[str, Any, str]]) -> None:
        self.problems = problems
        lines = [f"{key} = {value!r}: {accepted}" for key, value, accepted in problems]
        super().__init__("invalid flask_streaming config: " + "; ".join(lines))


@dataclasses.dataclass(frozen=True)
class Check:
    """How one config key is read.

    :param convert: turns the app's value into the field's value; raises
        :class:`ValueError` (or :class:`TypeError`) when it cannot.
    :param accepted: what the key accepts, in words (used in errors and in
        the generated config reference).
    :param unit: ``"bytes"`` for sizes, ``"seconds"`` for durations,
        ``"milliseconds"`` for the retry time, else ``""`` (the reference
        shows a byte count's default as a size too).
    """

    convert: Callable[[Any], Any]
    accepted: str
    unit: str = ""


def _key(default: Any, check: Check) -> Any:
    return dataclasses.field(default=default, metadata={"check": check})


# -- converters -----------------------------------------------------------

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}
_DURATION_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*$")
_GENERIC = {
    "",
    "empty",
    "out of range",
    "not a boolean",
    "not a duration",
    "not a list",
    "not a list of strings",
    "not a number",
    "not a path",
    "not a size",
    "not a string",
    "not a whole number",
    "not a whole number of bytes",
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_size(value: Any) -> int:
    if _is_number(value):
        if value != int(value):
            raise ValueError("not a whole number of bytes")
        return int(value)
    if not isinstance(value, str):
        raise TypeError("not a number")
    m = _NUMBER_UNIT.match(value)
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _SIZE_UNITS:
        raise ValueError("not a size")
    n = float(m.group(1)) * _SIZE_UNITS[unit]
    if n != int(n):
        raise ValueError("not a whole number of bytes")
    return int(n)


def _parse_seconds(value: Any) -> float:
    if _is_number(value):
        return float(value)
    if not isinstance(value, str):
        raise TypeError("not a number")
    m = _NUMBER_UNIT.match(value)
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _DURATION_UNITS:
        raise ValueError("not a duration")
    return float(m.group(1)) * _DURATION_UNITS[unit]


def _parse_int(value: Any) -> int:
    if _is_number(value):
        if value != int(value):
            raise ValueError("not a whole number")
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        return int(value)
    raise ValueError("not a whole number")


def _bounded(parse: Callable[[Any], Any], low: float, high: float | None = None) -> Any:
    def convert(value: Any) -> Any:
        n = parse(value)
        if n < low or (high is not None and n > high):
            raise ValueError("out of range")
        return n

    return convert


_SIZE_WORDS = (
    'bytes: an integer, or a string such as "64KiB", "8MiB", "4GiB" (binary)'
    ' or "8MB" (decimal); "8M" and "8k" are ambiguous and refused'
)
_DURATION_WORDS = 'seconds: a number, or a string such as "500ms", "30s", "10m", "2h", "1d"'


def _seconds(low: float, *, positive: bool = False, zero: str = "") -> Check:
    def convert(value: Any) -> float:
        n = _parse_seconds(value)
        if (n < low and not (zero and n == 0)) or (positive and n <= 0):
            raise ValueError("out of range")
        return n

    bound = "above 0" if positive else f"at least {low:g}"
    if zero:
        bound = f"{bound}, 0: {zero}" if low == 0 else f"0 ({zero}) or {bound}"
    return Check(convert, f"{_DURATION_WORDS}; {bound}", "seconds")


def _size(low: int, *, optional: bool = False) -> Check:
    convert = _bounded(_parse_size, low)
    words = f"{_SIZE_WORDS}; at least {low}"
    if optional:
        return Check(_or_none(convert), words + "; or None for no limit", "bytes")
    return Check(convert, words, "bytes")


def _count(low: int, high: int | None = None, *, extra: str = "") -> Check:
    bound = f"from {low} to {high}" if high is not None else f"at least {low}"
    return Check(_bounded(_parse_int, low, high), f"an integer {bound}{extra}")


def _or_none(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def optional(value: Any) -> Any:
        return None if value is None else convert(value)

    return optional


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("not a boolean")


_BOOL = Check(_bool, 'True or False (or "1"/"0", "true"/"false", "yes"/"no", "on"/"off")')


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _nonempty_text(value: Any) -> str:
    if not _text(value).strip():
        raise ValueError("empty")
    return str(value)


def _opt_str(value: Any) -> str | None:
    return None if value in (None, "") else _text(value)


def _url_prefix(value: Any) -> str:
    text = _text(value)
    if re.search(r"[\s?#%]", text):
        raise ValueError("not a path")
    prefix = "/" + text.strip("/")
    return "" if prefix == "/" else prefix


#: Route groups of the blueprint; ``STREAMING_ROUTES`` switches them on.
ROUTE_GROUPS = frozenset({"index", "events", "uploads", "tus", "client"})


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise TypeError("not a list")
    if not all(isinstance(v, str) for v in value):
        raise TypeError("not a list of strings")
    return [v.strip() for v in value if v.strip()]


def _routes(value: Any) -> frozenset[str]:
    names = frozenset(_names(value))
    unknown = names - ROUTE_GROUPS
    if unknown:
        raise ValueError(f"unknown route group(s) {', '.join(sorted(unknown))}")
    return names


def _origin(text: str) -> str:
    text = text.rstrip("/")
    if text == "*":
        return text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
        raise ValueError(f"{text!r} is not an origin")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{text!r} is not an origin")
    parts.port  # noqa: B018  (raises ValueError for a bad port)
    return text


def _origins(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    origins = tuple(_origin(o) for o in _names(value))
    if "*" in origins and len(origins) > 1:
        raise ValueError('"*" mixed with origins')
    return origins


#: URL schemes of ``STREAMING_BROKER_URL`` and the brokers they name.
BROKER_SCHEMES = {"memory": "memory", "redis": "redis", "rediss": "redis", "unix": "redis"}


def _broker_url(value: Any) -> str:
    url = _nonempty_text(value).strip()
    parts = urlsplit(url)
    if parts.scheme not in BROKER_SCHEMES or "://" not in url:
        raise ValueError("unknown scheme")
    if BROKER_SCHEMES[parts.scheme] == "redis":
        parts.port  # noqa: B018  (raises ValueError for a bad port)
        if parts.scheme == "unix":
            if not parts.path:
                raise ValueError("no socket path")
        elif not parts.hostname:
            raise ValueError("no host")
        else:
            db = parts.path.strip("/")
            if db and not db.isdigit():
                raise ValueError("the database must be a number")
        try:
            import redis  # noqa: F401
        except ImportError:
            raise ValueError(
                'needs the redis package: pip install "flask-streaming[redis]"'
            ) from None
    return url


def _metrics(value: Any) -> bool:
    on = _bool(value)
    if on:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise ValueError(
                'needs prometheus_client: pip install "flask-streaming[metrics]"'
            ) from None
    return on


def _max_connections(value: Any) -> int:
    if value is None:
        return derived_max_connections()
    n: int = _bounded(_parse_int, 1)(value)
    return n


def derived_max_connections() -> int:
    """``STREAMING_MAX_CONNECTIONS`` when unset: 90 % of the running gunicorn
    worker's ``worker_connections`` (so that requests other than event
    streams still get in, and a full worker answers with a retry hint
    instead of not accepting); of gunicorn's default 1000 outside gunicorn."""
    from .server import gunicorn_config

    cfg = gunicorn_config()
    connections = int(getattr(cfg, "worker_connections", 1000) or 1000)
    return max(1, connections * 9 // 10)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Typed settings of one app. Attribute ``x`` is config key ``STREAMING_X``."""

    #: Where the blueprint is mounted.
    url_prefix: str = _key("/streaming", Check(_url_prefix, "a URL path such as /streaming"))
    #: Route groups to register (a set or a comma-separated string), out of
    #: ``index``, ``events``, ``uploads``, ``tus``, ``client``. Empty: none.
    routes: frozenset[str] = _key(
        ROUTE_GROUPS,
        Check(
            _routes,
            "a set or list of route groups, or a comma-separated string, out of "
            + ", ".join(sorted(ROUTE_GROUPS)),
        ),
    )
    #: Seconds between SSE heartbeat comments while a stream is idle
    #: (``0``: none; proxies then cut idle streams).
    ping_interval: float = _key(15.0, _seconds(0.05, zero="no heartbeats"))
    #: Reconnection time (ms) sent as ``retry:`` when an event stream opens;
    #: ``None`` leaves the browser's default.
    retry: int | None = _key(
        None,
        Check(
            _or_none(_bounded(_parse_int, 0, 86_400_000)),
            "milliseconds: an integer from 0 to 86400000, or None",
            "milliseconds",
        ),
    )
    #: Text of the ``stream-error`` event sent when a stream's source raises.
    error_message: str = _key("The stream failed on the server.", Check(_text, "a string"))
    #: Allowed CORS origins: a list, a comma-separated string, or ``"*"``.
    #: Empty (the default) means no cross-origin access. ``"*"`` cannot be
    #: combined with ``STREAMING_CORS_CREDENTIALS`` (see there).
    cors_origins: tuple[str, ...] = _key(
        (),
        Check(
            _origins,
            'origins such as "https://app.example.com" (a list or a comma-separated'
            ' string), or "*" alone',
        ),
    )
    #: Send ``Access-Control-Allow-Credentials: true`` to allowed origins.
    #: Refused together with ``STREAMING_CORS_ORIGINS = "*"``: every site on
    #: the internet could then read a logged-in user's streams and uploads
    #: with the user's cookies. List the origins instead.
    cors_credentials: bool = _key(False, _BOOL)
    #: Seconds a browser may cache a preflight answer.
    cors_max_age: int = _key(600, _count(0, 86400))
    #: Chunked responses coalesce small writes up to this many bytes.
    buffer_size: int = _key(65536, _size(1))
    #: ... and never hold data longer than this many seconds.
    flush_interval: float = _key(0.05, _seconds(0.0))
    #: Channels' broker: ``memory://`` (one process) or ``redis://host:port/db``
    #: (also ``rediss://`` and ``unix://``; many workers and machines; needs the
    #: ``redis`` extra). Checked when the app starts; Redis itself is first
    #: contacted at the first publish or subscription.
    broker_url: str = _key(
        "memory://",
        Check(
            _broker_url,
            "memory:// or a Redis URL redis://host:port/db, rediss://..., unix:///path.sock",
        ),
    )
    #: Events kept per channel for ``Last-Event-ID`` replay.
    history_size: int = _key(1000, _count(0))
    #: Memory broker: channels whose history is kept; beyond it the least
    #: recently published channel's history is dropped.
    history_channels: int = _key(10_000, _count(1))
    #: Seconds a channel's history is kept after its last publish (both
    #: brokers; Redis keeps a small per-channel record twice as long).
    history_ttl: float = _key(3600.0, _seconds(0.0, positive=True))
    #: A subscriber this many events behind is sent a ``retry`` hint and
    #: disconnected (it resumes by ``Last-Event-ID``).
    max_queue: int = _key(1000, _count(1))
    #: ... or this many bytes behind.
    max_queue_bytes: int = _key(4 << 20, _size(1))
    #: Open channel streams per worker; beyond it a stream gets only a
    #: jittered ``retry`` and a ``stream-error`` event. ``None`` (the
    #: default): 90 % of the gunicorn worker's ``worker_connections`` (900
    #: with gunicorn's default 1000, and outside gunicorn). Keep it below
    #: ``worker_connections``.
    max_connections: int = _key(
        None, Check(_max_connections, "an integer of at least 1, or None (derived from gunicorn)")
    )
    #: Open channel streams per client address in one worker process;
    #: beyond it a subscription answers 429 with ``Retry-After`` (``0``: no
    #: limit). The default is above what one browser can hold (6 connections
    #: per host over HTTP/1.1, all tabs together; over HTTP/2 the server's
    #: concurrent-stream limit, 100 in Chromium, 128 in nginx) and stops one
    #: address from taking a worker's connections. Behind a proxy every client
    #: has the proxy's address: use ``ProxyFix`` (see docs/security.rst).
    max_connections_per_client: int = _key(128, _count(0, extra=" (0: no limit)"))
    #: Channels a client may subscribe to on one connection.
    max_channels: int = _key(16, _count(1))
    #: Seconds between re-checks of the channel authorization hook for every
    #: open stream of the ``/events`` routes; a stream now refused ends
    #: (reason ``revoked``) and its client reconnects into a 403 (``0``, the
    #: default: authorization only when a stream opens; see
    #: :meth:`Streaming.end_streams <flask_streaming.Streaming.end_streams>`).
    reauthorize_interval: float = _key(0.0, _seconds(0.0, zero="off"))
    #: Seconds a streaming response waits for a client that stopped reading
    #: (its socket buffer is full) before the connection is cut (``0``: wait
    #: forever). Needs gunicorn's gevent worker.
    send_timeout: float = _key(30.0, _seconds(0.0, zero="no limit"))
    #: Seconds an event stream may be idle before it is *parked* (``0``:
    #: never): gunicorn's request greenlet hands the connection over and
    #: ends, and the idle stream holds no greenlet and no request objects
    #: (about 2.5 KiB per connection instead of 15; see
    #: docs/deployment.rst). Events and heartbeats are sent as before. Under
    #: gunicorn's gevent worker on plain HTTP/1.1 only, where the stream may
    #: write straight to the socket (not over TLS, not behind a WSGI
    #: middleware that wraps the body). Gunicorn logs the request when it
    #: is parked, and the connection is not kept alive after the stream.
    park_after: float = _key(1.0, _seconds(0.0, zero="never"))
    #: Key prefix of everything the Redis broker stores.
    redis_prefix: str = _key("flask_streaming", Check(_nonempty_text, "a non-empty string"))
    #: Folder of the upload store; ``None``: ``streaming-uploads`` in the
    #: app's instance folder.
    upload_folder: str | None = _key(None, Check(_opt_str, "a folder path, or None"))
    #: Largest segment (or checksummed tus ``PATCH`` body, which is staged)
    #: in bytes: 413 from ``Content-Length`` before reading, and while
    #: reading without one. Other tus bodies are written through and bounded
    #: by the upload's length.
    max_segment_size: int = _key(64 << 20, _size(1))
    #: Largest upload in bytes (``None``: no limit).
    max_upload_size: int | None = _key(4 << 30, _size(1, optional=True))
    #: Segments per upload: segment numbers run 0..max_segments-1.
    max_segments: int = _key(10000, _count(1))
    #: Seconds without activity after which an unfinished upload session
    #: expires and its data is removed (10 minutes, as svelte-stream's server).
    session_timeout: float = _key(600.0, _seconds(0.0, positive=True))
    #: Open upload sessions per client address (``0``: no limit); beyond it
    #: creating one answers 429.
    max_sessions_per_client: int = _key(20, _count(0, extra=" (0: no limit)"))
    #: Uploads per client address held in the store, open or finished (a
    #: finished one until the app removes it or ``completed_retention``
    #: passes; ``0``: no limit); beyond it creating one answers 429
    #: ``too_many_uploads``. Bounds what one address keeps on disk: at most
    #: this many times ``max_upload_size``.
    max_uploads_per_client: int = _key(1000, _count(0, extra=" (0: no limit)"))
    #: Seconds a request body may stall (no byte arriving) before the
    #: request fails with 408 ``body_timeout`` and the connection is closed
    #: (``0``: wait forever). Applies to every route of the blueprint under
    #: gunicorn; an upload body spliced to disk notices the stall between
    #: one and two timeouts after its last byte.
    body_timeout: float = _key(30.0, _seconds(0.0, zero="no limit"))
    #: Seconds a request waits for a busy upload session before 503.
    upload_lock_timeout: float = _key(30.0, _seconds(0.0))
    #: ``fsync`` upload bytes and records (survive power loss, not only a
    #: killed worker; slower).
    upload_fsync: bool = _key(False, _BOOL)
    #: Seconds without activity after which a tus upload expires and its
    #: data is removed (tus clients resume after hours or days; apart from
    #: ``session_timeout``). Sent as ``Upload-Expires``.
    tus_expiry: float = _key(86400.0, _seconds(0.0, positive=True))
    #: Seconds after its completion at which a completed upload (native or
    #: tus) is removed by the sweep and ``flask streaming cleanup``;
    #: ``None`` (the default): completed uploads are never removed by the
    #: extension, they stay until the app removes them
    #: (:meth:`UploadService.remove <flask_streaming.uploads.UploadService.remove>`,
    #: ``flask streaming remove``). The idle timeouts above never apply to
    #: completed uploads.
    completed_retention: float | None = _key(
        None,
        Check(
            _or_none(_seconds(0.0, positive=True).convert),
            f"{_DURATION_WORDS}; above 0; or None (kept until the app removes them)",
            "seconds",
        ),
    )
    #: Serve Prometheus metrics (``flask_streaming_*``) at ``{prefix}/metrics``
    #: in the text format; needs the ``metrics`` extra (``prometheus_client``).
    #: Answered only to loopback clients unless the app sets a hook with
    #: :meth:`Streaming.authorize_metrics <flask_streaming.Streaming.authorize_metrics>`;
    #: never wrapped by ``view_decorators`` nor covered by CORS. Several
    #: gunicorn workers: set ``PROMETHEUS_MULTIPROC_DIR`` (see the deployment
    #: guide).
    metrics: bool = _key(False, Check(_metrics, 'True or False (or "1"/"0", "true"/"false")'))

    def __post_init__(self) -> None:
        if self.max_connections is None:  # the default: derived from gunicorn
            object.__setattr__(self, "max_connections", derived_max_connections())

    @classmethod
    def from_app(cls, app: Flask, options: Mapping[str, Any] | None = None) -> Settings:
        """Read and check every key from ``app.config``, setting defaults
        there.

        :raises TypeError: for an option that names no key.
        :raises ConfigError: naming every key whose value is refused, and
            every ``STREAMING_*`` key of the config that is not one of ours.
        """
        options = dict(options or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(options) - set(fields)
        if unknown:
            raise TypeError(f"unknown Streaming option(s): {', '.join(sorted(unknown))}")
        problems: list[tuple[str, Any, str]] = []
        keys = {f"STREAMING_{name.upper()}" for name in fields}
        for key in sorted(k for k in app.config if k.startswith("STREAMING_")):
            if key not in keys:
                close = difflib.get_close_matches(key, sorted(keys), n=1)
                hint = f"did you mean {close[0]}?" if close else "see the config reference"
                problems.append((key, app.config[key], f"not a flask_streaming key; {hint}"))
        values: dict[str, Any] = {}
        for name, field in fields.items():
            key = f"STREAMING_{name.upper()}"
            check: Check = field.metadata["check"]
            raw = app.config.setdefault(key, options.get(name, field.default))
            try:
                values[name] = check.convert(raw)
            except (TypeError, ValueError) as exc:
                # A specific reason is added; a generic one is in the words already.
                reason = f" ({exc})" if str(exc) not in _GENERIC else ""
                problems.append((key, raw, f"accepts {check.accepted}{reason}"))
        if not problems and values["cors_credentials"] and "*" in values["cors_origins"]:
            problems.append(
                (
                    "STREAMING_CORS_CREDENTIALS",
                    app.config["STREAMING_CORS_CREDENTIALS"],
                    'cannot be True with STREAMING_CORS_ORIGINS = "*": any site could read'
                    " a logged-in user's streams and uploads; list the allowed origins",
                )
            )
        if problems:
            raise ConfigError(problems)
        return cls(**values)


def check_of(name: str) -> Check:
    """The :class:`Check` of field *name* (for the docs)."""
    field = {f.name: f for f in dataclasses.fields(Settings)}[name]
    check: Check = field.metadata["check"]
    return check


#: The key of the extension's per-app state in ``app.extensions`` (see
#: :mod:`flask_streaming.state`).
EXTENSION_KEY = "streaming"


def get_settings(app: Flask | None = None) -> Settings:
    """The settings of *app* (default: the current app); defaults when the
    extension is not registered, so the response helpers work on their own.
    (It reads the entry :func:`flask_streaming.state.get_state` owns: this
    module sits below the brokers, which the state module imports.)"""
    if app is None:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    state = app.extensions.get(EXTENSION_KEY)
    if state is None:
        return _DEFAULTS
    settings: Settings = state.settings
    return settings


_DEFAULTS = Settings(max_connections=900)
