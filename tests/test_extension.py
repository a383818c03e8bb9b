"""The extension object: registration, settings, routes, CORS, JSON errors,
signals."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, abort, request

from flask_streaming import Settings, Streaming, sse_response, stream_closed, stream_opened
from flask_streaming.channels import get_broker
from flask_streaming.settings import get_settings
from flask_streaming.state import get_state
from flask_streaming.testing import parse_events
from flask_streaming.transport import StreamAborted
from flask_streaming.uploads import create_upload_service, get_upload_service
from flask_streaming.uploads.storage import FileStorage

ORIGIN = "https://app.example.com"


def make_app(tmp_path: Path, config: dict[str, Any] | None = None, **options: Any) -> Flask:
    app = Flask("exttest", instance_path=str(tmp_path / "instance"))
    app.config["TESTING"] = True
    app.config.update(config or {})
    Streaming(app, **options)
    return app


# --- registration -------------------------------------------------------------


def test_registers_itself_in_app_extensions(app: Flask) -> None:
    state = app.extensions["streaming"]
    assert isinstance(state.extension, Streaming)
    assert isinstance(state.settings, Settings)
    assert get_settings(app) is state.settings


def test_init_app_twice_raises(app: Flask) -> None:
    ext = app.extensions["streaming"].extension
    with pytest.raises(RuntimeError, match="already been registered"):
        ext.init_app(app)
    with pytest.raises(RuntimeError, match="already been registered"):
        Streaming(app)


def test_one_state_per_app_owns_settings_broker_and_upload_service(app: Flask) -> None:
    streaming: Streaming = app.extensions["streaming"].extension
    state = streaming.state(app)
    assert get_state(app) is state
    with app.app_context():
        assert streaming.state() is state
        assert get_broker() is state.broker is streaming.broker(app)
    assert state.settings is get_settings(app)
    assert state.hooks is streaming.hooks
    service = get_upload_service(app)
    assert state.uploads is service
    assert get_upload_service(app) is service  # made once
    replaced = create_upload_service(app, FileStorage(str(Path(app.instance_path) / "other")))
    assert get_upload_service(app) is replaced is state.uploads
    # one entry in app.extensions, no second key
    assert [key for key in app.extensions if "streaming" in key] == ["streaming"]


def test_an_app_never_registered_gets_one_error(tmp_path: Path) -> None:
    bare = Flask("bare", instance_path=str(tmp_path))
    calls: list[Callable[[], Any]] = [
        lambda: get_state(bare),
        lambda: get_upload_service(bare),
        lambda: create_upload_service(bare),
    ]
    for call in calls:
        with pytest.raises(RuntimeError, match=r"'bare': call streaming\.init_app\(app\)"):
            call()
    with bare.test_request_context(), pytest.raises(RuntimeError, match="'bare'"):
        get_broker()
    assert "streaming" not in bare.extensions


def test_one_extension_many_apps(tmp_path: Path) -> None:
    ext = Streaming(ping_interval=3)
    a = Flask("a", instance_path=str(tmp_path / "a"))
    b = Flask("b", instance_path=str(tmp_path / "b"))
    b.config["STREAMING_PING_INTERVAL"] = 9
    ext.init_app(a)
    ext.init_app(b)
    assert get_settings(a).ping_interval == 3.0
    assert get_settings(b).ping_interval == 9.0
    assert not hasattr(ext, "app")
    assert a.test_client().get("/streaming/").status_code == 200
    assert b.test_client().get("/streaming/").status_code == 200


# --- settings ---------------------------------------------------------------------


def test_defaults_are_written_to_config(app: Flask) -> None:
    assert app.config["STREAMING_URL_PREFIX"] == "/streaming"
    assert app.config["STREAMING_PING_INTERVAL"] == 15.0
    assert app.config["STREAMING_CORS_ORIGINS"] == ()
    assert get_settings(app).cors_origins == ()


def test_options_are_defaults_and_config_wins(tmp_path: Path) -> None:
    app = make_app(
        tmp_path,
        {"STREAMING_PING_INTERVAL": "7", "STREAMING_CORS_ORIGINS": f"{ORIGIN}/, https://b.test"},
        ping_interval=5,
        retry=2500,
        cors_origins=["https://ignored.test"],
    )
    s = get_settings(app)
    assert s.ping_interval == 7.0  # config wins, converted
    assert s.retry == 2500  # option used where config is silent
    assert app.config["STREAMING_RETRY"] == 2500
    assert s.cors_origins == (ORIGIN, "https://b.test")  # split, trailing slash gone


def test_unknown_option_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="ping_intervall"):
        make_app(tmp_path, ping_intervall=3)


def test_settings_are_read_once(tmp_path: Path) -> None:
    app = make_app(tmp_path, {"STREAMING_RETRY": 1000})

    @app.get("/e")
    def events() -> Any:
        return sse_response(iter(["x"]))

    app.config["STREAMING_RETRY"] = 9999
    app.config["STREAMING_CORS_ORIGINS"] = [ORIGIN]
    app.config["STREAMING_URL_PREFIX"] = "/elsewhere"
    assert get_settings(app).retry == 1000
    client = app.test_client()
    with client.get("/e") as r:
        assert b"retry: 1000\n" in r.data
        assert b"9999" not in r.data
    r = client.get("/streaming/", headers={"Origin": ORIGIN})
    assert r.status_code == 200
    assert "Access-Control-Allow-Origin" not in r.headers


@pytest.mark.parametrize(
    ("prefix", "url"), [("/api/live/", "/api/live/"), ("api", "/api/"), ("/", "/")]
)
def test_url_prefix(tmp_path: Path, prefix: str, url: str) -> None:
    app = make_app(tmp_path, {"STREAMING_URL_PREFIX": prefix})
    r = app.test_client().get(url)
    assert r.status_code == 200
    assert r.json is not None and r.json["name"] == "flask_streaming"


# --- routes off or wrapped ----------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "options"),
    [
        ({"STREAMING_ROUTES": ""}, {}),
        ({"STREAMING_ROUTES": []}, {}),
        ({}, {"register_blueprint": False}),
    ],
)
def test_routes_switched_off(
    tmp_path: Path, config: dict[str, Any], options: dict[str, Any]
) -> None:
    app = make_app(tmp_path, config, **options)
    assert "streaming" not in app.blueprints
    assert not [r for r in app.url_map.iter_rules() if r.endpoint.startswith("streaming.")]
    assert app.test_client().get("/streaming/").status_code == 404


def test_route_groups_selectable(tmp_path: Path) -> None:
    app = make_app(tmp_path, {"STREAMING_ROUTES": "index"})
    r = app.test_client().get("/streaming/")
    assert r.status_code == 200
    assert r.json is not None and r.json["routes"] == ["index"]
    app = make_app(tmp_path, {"STREAMING_ROUTES": "events"})
    assert app.test_client().get("/streaming/").status_code == 404


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if request.headers.get("Authorization") != "Bearer good":
            abort(401)
        return view(*args, **kwargs)

    return wrapped


def test_view_decorators_wrap_every_view(tmp_path: Path) -> None:
    calls: list[str] = []

    def record(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            calls.append(view.__name__)
            return view(*args, **kwargs)

        return wrapped

    app = make_app(tmp_path, view_decorators=[login_required, record])
    client = app.test_client()
    r = client.get("/streaming/")
    assert r.status_code == 401
    assert r.json is not None and r.json["error"] == "unauthorized"
    assert calls == ["index"]  # innermost first: record wraps login_required
    r = client.get("/streaming/", headers={"Authorization": "Bearer good"})
    assert r.status_code == 200
    assert calls == ["index", "index"]
    # Every view of the blueprint is wrapped (the static files route aside).
    endpoints = [
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("streaming.") and rule.endpoint != "streaming.static"
    ]
    assert endpoints
    for endpoint in endpoints:
        assert hasattr(app.view_functions[endpoint], "__wrapped__"), endpoint


# --- CORS ------------------------------------------------------------------------------

PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type, x-stream-id",
}


def test_cors_closed_by_default(client: Any) -> None:
    r = client.get("/streaming/", headers={"Origin": ORIGIN})
    assert r.status_code == 200
    assert not [h for h, _ in r.headers.items() if h.lower().startswith("access-control-")]
    r = client.options("/streaming/", headers=PREFLIGHT)
    assert "Access-Control-Allow-Origin" not in r.headers
    assert "Access-Control-Allow-Methods" not in r.headers


def test_cors_allowed_origin(tmp_path: Path) -> None:
    app = make_app(tmp_path, {"STREAMING_CORS_ORIGINS": [ORIGIN]})
    client = app.test_client()
    r = client.get("/streaming/", headers={"Origin": ORIGIN})
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in r.headers.get("Vary", "")
    assert "Access-Control-Allow-Credentials" not in r.headers
    assert "Access-Control-Allow-Methods" not in r.headers  # only on preflights
    r = client.get("/streaming/", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in r.headers
    # The answer depended on Origin: a shared cache must not reuse it for another.
    assert "Origin" in r.headers.get("Vary", "")
    r = client.get("/streaming/")  # same-origin: nothing added
    assert "Access-Control-Allow-Origin" not in r.headers
    assert "Origin" in r.headers.get("Vary", "")


def test_cors_preflight(tmp_path: Path) -> None:
    app = make_app(tmp_path, {"STREAMING_CORS_ORIGINS": ORIGIN, "STREAMING_CORS_MAX_AGE": 30})
    r = app.test_client().options("/streaming/", headers=PREFLIGHT)
    assert r.status_code in (200, 204)
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in r.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "x-stream-id", "last-event-id"} <= allowed
    assert r.headers["Access-Control-Max-Age"] == "30"


def test_cors_preflight_is_not_blocked_by_view_decorators(tmp_path: Path) -> None:
    app = make_app(tmp_path, {"STREAMING_CORS_ORIGINS": ORIGIN}, view_decorators=[login_required])
    r = app.test_client().options("/streaming/", headers=PREFLIGHT)
    assert r.status_code in (200, 204)
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_cors_wildcard(tmp_path: Path) -> None:
    app = make_app(tmp_path, {"STREAMING_CORS_ORIGINS": "*"})
    r = app.test_client().get("/streaming/", headers={"Origin": "https://any.test"})
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in r.headers
    # With credentials a wildcard is refused at start: tests/test_settings.py.


def test_cors_headers_on_errors(tmp_path: Path) -> None:
    app = make_app(tmp_path, {"STREAMING_CORS_ORIGINS": ORIGIN}, view_decorators=[login_required])
    r = app.test_client().get("/streaming/", headers={"Origin": ORIGIN})
    assert r.status_code == 401
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    r = app.test_client().get("/streaming/no-such-route", headers={"Origin": ORIGIN})
    assert r.status_code == 404
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN


# --- JSON errors -----------------------------------------------------------------------


def test_404_under_the_blueprint_is_json(client: Any) -> None:
    r = client.get("/streaming/no-such-route")
    assert r.status_code == 404
    assert r.mimetype == "application/json"
    assert r.json["error"] == "not_found"
    assert isinstance(r.json["message"], str) and r.json["message"]


def test_405_under_the_blueprint_is_json(client: Any) -> None:
    r = client.put("/streaming/")
    assert r.status_code == 405
    assert r.mimetype == "application/json"
    assert r.json["error"] == "method_not_allowed"
    assert "GET" in r.headers["Allow"]


def test_errors_outside_the_blueprint_are_untouched(client: Any) -> None:
    r = client.get("/not-streaming")
    assert r.status_code == 404
    assert r.mimetype == "text/html"


def test_trailing_slash_redirect_still_redirects(client: Any) -> None:
    r = client.get("/streaming")
    assert r.status_code in (301, 308)
    assert r.headers["Location"].endswith("/streaming/")


def test_streaming_error_raised_in_a_view_decorator_is_json(tmp_path: Path) -> None:
    from flask_streaming.errors import TooManyRequests

    def limited(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            raise TooManyRequests("slow down", headers={"Retry-After": "3"}, limit=10)

        return wrapped

    app = make_app(tmp_path, view_decorators=[limited])
    r = app.test_client().get("/streaming/")
    assert r.status_code == 429
    assert r.json == {"error": "too_many_requests", "message": "slow down", "limit": 10}
    assert r.headers["Retry-After"] == "3"


# --- signals ---------------------------------------------------------------------------


def signal_app(tmp_path: Path) -> Flask:
    app = make_app(tmp_path)

    @app.get("/ok")
    def ok() -> Any:
        return sse_response(iter(["a", "b"]))

    @app.get("/fail")
    def fail() -> Any:
        def gen() -> Iterator[str]:
            yield "a"
            raise RuntimeError("source broke")

        return sse_response(gen())

    @app.get("/forever")
    def forever() -> Any:
        def gen() -> Iterator[str]:
            while True:
                yield "tick"

        return sse_response(gen())

    return app


def _record(log: list[tuple[str, Any, dict[str, Any]]], name: str) -> Callable[..., None]:
    def receiver(sender: Any, **kwargs: Any) -> None:
        log.append((name, sender, kwargs))

    return receiver


def test_signals_complete(tmp_path: Path) -> None:
    app = signal_app(tmp_path)
    log: list[tuple[str, Any, dict[str, Any]]] = []
    with (
        stream_opened.connected_to(_record(log, "opened"), app),
        stream_closed.connected_to(_record(log, "closed"), app),
    ):
        with app.test_client().get("/ok") as r:
            assert [e.data for e in parse_events(r.data)] == ["a", "b"]
            # Closed when the body ends, not only when the server closes it.
            assert [n for n, *_ in log] == ["opened", "closed"]
        assert [n for n, *_ in log] == ["opened", "closed"]
    (_, s1, opened), (_, s2, closed) = log
    assert s1 is app and s2 is app
    assert opened["stream"] is closed["stream"]
    assert opened["channels"] == () and closed["channels"] == ()
    assert closed["reason"] == "complete"


def test_signal_reasons_error_and_disconnect(tmp_path: Path) -> None:
    app = signal_app(tmp_path)
    closed: list[tuple[str, Any, dict[str, Any]]] = []
    with stream_closed.connected_to(_record(closed, "closed"), app):
        r = app.test_client().get("/fail", buffered=False)
        with pytest.raises(StreamAborted):
            list(r.response)
        r.close()
        r = app.test_client().get("/forever", buffered=False)
        it = iter(r.response)
        next(it), next(it)
        r.close()
    assert [kw["reason"] for _, _, kw in closed] == ["error", "disconnect"]


def test_signals_are_per_app(tmp_path: Path) -> None:
    app, other = signal_app(tmp_path), signal_app(tmp_path)
    log: list[tuple[str, Any, dict[str, Any]]] = []
    with (
        stream_closed.connected_to(_record(log, "closed"), other),
        app.test_client().get("/ok") as r,
    ):
        assert r.data
    assert log == []


def test_streaming_docstring_names_every_config_key_and_links_the_reference() -> None:
    import dataclasses
    import re

    from flask_streaming.settings import Settings

    doc = Streaming.__doc__ or ""
    keys = sorted(f"STREAMING_{f.name.upper()}" for f in dataclasses.fields(Settings))
    # Names only, each once; what a key means lives in settings.py's ``#:``
    # comments, from which the reference is generated.
    assert sorted(re.findall(r"``(STREAMING_[A-Z_]+)``", doc)) == keys
    assert ":doc:`config reference </reference/config>`" in doc
