"""Config checking: every ``STREAMING_*`` key is checked when the app starts,
and a refused value names the key, the value and what is accepted."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from flask_streaming import Streaming
from flask_streaming.settings import ConfigError, Settings, check_of, get_settings

MiB = 1 << 20


def make_app(tmp_path: Path, config: dict[str, Any]) -> Flask:
    app = Flask("settingstest", instance_path=str(tmp_path / "instance"))
    app.config.update(config)
    Streaming(app)
    return app


#: (key, value written, value read). Strings as they come from the environment.
ACCEPTED = [
    ("STREAMING_PING_INTERVAL", "10m", 600.0),
    ("STREAMING_PING_INTERVAL", "500ms", 0.5),
    ("STREAMING_PING_INTERVAL", "2.5", 2.5),
    ("STREAMING_PING_INTERVAL", 0, 0.0),
    ("STREAMING_SESSION_TIMEOUT", "2h", 7200.0),
    ("STREAMING_TUS_EXPIRY", "1d", 86400.0),
    ("STREAMING_SEND_TIMEOUT", 0, 0.0),
    ("STREAMING_MAX_SEGMENT_SIZE", "8MiB", 8 * MiB),
    ("STREAMING_MAX_SEGMENT_SIZE", "8MB", 8_000_000),
    ("STREAMING_MAX_SEGMENT_SIZE", "8 mib", 8 * MiB),
    ("STREAMING_MAX_SEGMENT_SIZE", "1048576", MiB),
    ("STREAMING_MAX_UPLOAD_SIZE", None, None),
    ("STREAMING_MAX_UPLOAD_SIZE", "1.5GiB", 3 << 29),
    ("STREAMING_BUFFER_SIZE", 4096.0, 4096),
    ("STREAMING_RETRY", "2500", 2500),
    ("STREAMING_RETRY", None, None),
    ("STREAMING_MAX_CONNECTIONS", "40", 40),
    ("STREAMING_MAX_CONNECTIONS_PER_CLIENT", 0, 0),
    ("STREAMING_UPLOAD_FSYNC", "yes", True),
    ("STREAMING_CORS_CREDENTIALS", "off", False),
    ("STREAMING_ROUTES", "uploads, events", frozenset({"uploads", "events"})),
    ("STREAMING_ROUTES", [], frozenset()),
    ("STREAMING_ROUTES", "", frozenset()),
    ("STREAMING_CORS_ORIGINS", "https://a.test/, http://b.test:8080", ("https://a.test", "http://b.test:8080")),
    ("STREAMING_CORS_ORIGINS", "*", ("*",)),
    ("STREAMING_BROKER_URL", "redis://localhost:6379/0", "redis://localhost:6379/0"),
    ("STREAMING_BROKER_URL", "rediss://:pw@cache.internal", "rediss://:pw@cache.internal"),
    ("STREAMING_BROKER_URL", "unix:///run/redis.sock", "unix:///run/redis.sock"),
    ("STREAMING_URL_PREFIX", "api/live/", "/api/live"),
    ("STREAMING_UPLOAD_FOLDER", "", None),
]  # fmt: skip


@pytest.mark.parametrize(("key", "value", "expected"), ACCEPTED)
def test_accepted_values(tmp_path: Path, key: str, value: Any, expected: Any) -> None:
    settings = get_settings(make_app(tmp_path, {key: value}))
    assert getattr(settings, key.removeprefix("STREAMING_").lower()) == expected


#: (key, value, words the error must contain besides the key and the value).
REFUSED = [
    ("STREAMING_PING_INTERVAL", -1, "0 (no heartbeats) or at least 0.05"),
    ("STREAMING_PING_INTERVAL", 0.001, "at least 0.05"),
    ("STREAMING_PING_INTERVAL", "often", '"10m"'),
    ("STREAMING_PING_INTERVAL", True, "a number"),
    ("STREAMING_SESSION_TIMEOUT", 0, "above 0"),
    ("STREAMING_SEND_TIMEOUT", "-5s", "at least 0"),
    ("STREAMING_ROUTES", "uploads,evnts", "unknown route group(s) evnts"),
    ("STREAMING_ROUTES", 5, "client, events, index, tus, uploads"),
    ("STREAMING_BROKER_URL", "localhost:6379", "memory:// or a Redis URL"),
    ("STREAMING_BROKER_URL", "redis:/localhost", "memory:// or a Redis URL"),
    ("STREAMING_BROKER_URL", "redis://host:port/0", "redis://host:port/db"),
    ("STREAMING_BROKER_URL", "redis://localhost/zero", "the database must be a number"),
    ("STREAMING_BROKER_URL", "amqp://localhost", "memory:// or a Redis URL"),
    ("STREAMING_BROKER_URL", "", "memory://"),
    ("STREAMING_MAX_SEGMENT_SIZE", "8M", '"8M" and "8k" are ambiguous'),
    ("STREAMING_MAX_SEGMENT_SIZE", "8 megabytes", '"8MiB"'),
    ("STREAMING_MAX_SEGMENT_SIZE", 0, "at least 1"),
    ("STREAMING_MAX_SEGMENT_SIZE", "1.5", "bytes"),
    ("STREAMING_MAX_UPLOAD_SIZE", -1, "or None for no limit"),
    ("STREAMING_MAX_CONNECTIONS", 0, "at least 1, or None"),
    ("STREAMING_MAX_SEGMENTS", "ten", "an integer"),
    ("STREAMING_MAX_QUEUE", 2.5, "an integer"),
    ("STREAMING_RETRY", -1, "milliseconds"),
    ("STREAMING_CORS_MAX_AGE", 10**9, "from 0 to 86400"),
    ("STREAMING_CORS_CREDENTIALS", "maybe", '"true"/"false"'),
    ("STREAMING_UPLOAD_FSYNC", 2, "True or False"),
    ("STREAMING_CORS_ORIGINS", "app.example.com", "origins such as"),
    ("STREAMING_CORS_ORIGINS", "https://a.test/path", "is not an origin"),
    ("STREAMING_CORS_ORIGINS", ["*", "https://a.test"], '"*" alone'),
    ("STREAMING_URL_PREFIX", "/a b", "a URL path"),
    ("STREAMING_URL_PREFIX", None, "a URL path"),
    ("STREAMING_REDIS_PREFIX", " ", "non-empty"),
    ("STREAMING_ERROR_MESSAGE", 42, "a string"),
    ("STREAMING_UPLOAD_FOLDER", 3, "a folder path"),
    ("STREAMING_PING_INTERVALL", 3, "did you mean STREAMING_PING_INTERVAL?"),
    ("STREAMING_SOMETHING", 3, "not a flask_streaming key"),
]


@pytest.mark.parametrize(("key", "value", "words"), REFUSED)
def test_refused_values_name_key_value_and_what_is_accepted(
    tmp_path: Path, key: str, value: Any, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        make_app(tmp_path, {key: value})
    message = str(info.value)
    assert f"{key} = {value!r}" in message
    assert words in message
    assert [p[0] for p in info.value.problems] == [key]


def test_every_bad_key_is_named_in_one_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        make_app(tmp_path, {"STREAMING_PING_INTERVAL": -1, "STREAMING_ROUTES": "evnts"})
    assert sorted(p[0] for p in info.value.problems) == [
        "STREAMING_PING_INTERVAL",
        "STREAMING_ROUTES",
    ]


def test_options_are_checked_like_config(tmp_path: Path) -> None:
    app = Flask("opts", instance_path=str(tmp_path))
    with pytest.raises(ConfigError, match="STREAMING_MAX_SEGMENTS = 0"):
        Streaming(app, max_segments=0)


def test_every_field_has_a_check_and_its_default_passes_it() -> None:
    for field in dataclasses.fields(Settings):
        check = check_of(field.name)
        assert check.accepted
        check.convert(field.default)


def _reads(name: str, value: Any) -> Any:
    try:
        return check_of(name).convert(value)
    except (TypeError, ValueError):
        return "refused"


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Settings)])
def test_each_checks_unit_matches_what_its_converter_reads(field: str) -> None:
    # The unit sits in the field's Check (the reference shows byte counts as
    # sizes from it): a size reads "2KiB", a duration "2s", nothing else does.
    unit = check_of(field).unit
    assert (_reads(field, "2KiB") == 2048) == (unit == "bytes")
    assert (_reads(field, "2s") == 2.0) == (unit == "seconds")
    assert unit in ("", "bytes", "seconds", "milliseconds")


def test_wildcard_origin_with_credentials_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        make_app(tmp_path, {"STREAMING_CORS_ORIGINS": "*", "STREAMING_CORS_CREDENTIALS": "true"})
    assert info.value.problems[0][0] == "STREAMING_CORS_CREDENTIALS"
    assert "list the allowed origins" in str(info.value)
    # Listed origins with credentials, and the wildcard without, are fine.
    make_app(
        tmp_path, {"STREAMING_CORS_ORIGINS": "https://a.test", "STREAMING_CORS_CREDENTIALS": True}
    )
    make_app(tmp_path, {"STREAMING_CORS_ORIGINS": "*"})


def test_wildcard_with_credentials_never_reflects_an_origin() -> None:
    from flask import Response

    from flask_streaming.views import apply_cors

    app = Flask("cors")
    settings = Settings(cors_origins=("*",), cors_credentials=True)  # made by hand
    with app.test_request_context("/", headers={"Origin": "https://evil.test"}):
        response = apply_cors(settings, Response())
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_max_connections_outside_gunicorn_is_nine_tenths_of_its_default(tmp_path: Path) -> None:
    assert get_settings(make_app(tmp_path, {})).max_connections == 900
    assert Settings().max_connections == 900


def test_max_connections_derived_from_the_running_gunicorn_worker(live_server: Any) -> None:
    server = live_server("tests.apps.prod_app:create_app()", args=["--worker-connections", "50"])
    got = requests.get(server.url + "/settings", timeout=10).json()
    assert got["max_connections"] == 45
    server.stop()
    log = Path(server.log_path).read_text()
    assert "worker_connections" not in log  # no warning at start


def test_bad_config_stops_gunicorn_with_the_key_in_the_log(
    live_server: Any, tmp_path: Path
) -> None:
    env = {"STREAMING_ROUTES": "uploads,evnts"}
    try:
        server = live_server("tests.apps.prod_app:create_app()", env=env)
    except RuntimeError:
        pass  # exited before it listened
    else:
        # The master listens before the worker loads the app; the worker
        # fails to boot and the master exits.
        assert server.proc.wait(timeout=30) != 0
    log = (tmp_path / "server.log").read_text()
    assert "STREAMING_ROUTES = 'uploads,evnts'" in log
    assert "unknown route group(s) evnts" in log
