"""The documentation's code runs: every example module under docs/examples is
imported and exercised here, the reference pages name every config key,
signal and route, and ``sphinx-build -W`` passes.

Examples are real modules (``docs/examples/*.py``) that the pages include
with ``literalinclude``, so what a reader copies is what this file tests.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import os
import re
import runpy
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_streaming import signals
from flask_streaming.settings import Settings
from flask_streaming.sse_wire import EventParser
from flask_streaming.state import get_state
from flask_streaming.testing import GunicornServer, iter_sse, parse_events

from .tls import self_signed_certificate

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"


def example(name: str, tmp_path: Path) -> Any:
    """Import ``docs.examples.<name>`` with its app's instance folder (and so
    its upload store) under *tmp_path*."""
    module = importlib.import_module(f"docs.examples.{name}")
    app = getattr(module, "app", None)
    if isinstance(app, Flask):
        app.instance_path = str(tmp_path / name)
        get_state(app).uploads = None  # made again in the new folder
        app.config["TESTING"] = True
    return module


def read_events(response: Any, n: int) -> list[Any]:
    """The first *n* events of a streamed test-client response."""
    events = []
    for event in iter_sse(response):
        events.append(event)
        if len(events) == n:
            break
    return events


def rst_sources() -> dict[Path, str]:
    return {
        p: p.read_text(encoding="utf-8") for p in DOCS.rglob("*.rst") if "_build" not in p.parts
    }


# -- every example is shown, every include exists ------------------------------
def test_every_example_is_included_and_every_include_exists() -> None:
    included: set[Path] = set()
    for page, text in rst_sources().items():
        for target in re.findall(r"^\s*\.\. (?:literalinclude|include):: (\S+)", text, re.M):
            path = DOCS / target.lstrip("/") if target.startswith("/") else page.parent / target
            path = path.resolve()
            assert path.is_file(), f"{page.name} includes a missing file: {target}"
            included.add(path)
    shown = {p.resolve() for p in EXAMPLES.iterdir() if p.is_file() and p.name != "__init__.py"}
    assert shown - included == set(), "example files no page includes"


# -- quickstart ------------------------------------------------------------------
def test_quickstart_clock_and_upload_hooks(tmp_path: Path) -> None:
    qs = example("quickstart", tmp_path)
    client = qs.app.test_client()
    response = client.get("/clock", buffered=False)
    try:
        (tick,) = read_events(response, 1)
    finally:
        response.close()
    assert tick.event == "tick" and re.fullmatch(r"\d\d:\d\d:\d\d", tick.json()["time"])

    sid = client.post("/streaming/uploads").get_json()["streamId"]
    headers = {"X-Stream-Id": sid, "Content-Type": "application/octet-stream"}
    part = client.post(
        "/streaming/uploads", data=b"hello ", headers={**headers, "X-Stream-Segment": "0"}
    )
    assert part.get_json()["received"] == "segment 0: 6 bytes"
    client.post("/streaming/uploads", data=b"world", headers={**headers, "X-Stream-Segment": "1"})
    done = client.post(
        "/streaming/uploads",
        headers={"X-Stream-Id": sid, "X-Stream-Segment": "2", "X-Stream-Done": "true"},
    ).get_json()
    assert done["done"] is True and done["size"] == 11
    assert done["sha256"] == hashlib.sha256(b"hello world").hexdigest()


def test_quickstart_page_uses_the_documented_wire_format() -> None:
    page = (EXAMPLES / "quickstart_page.html").read_text()
    for needle in ('new EventSource("/clock")', '"tick"', "/streaming/uploads", "X-Stream-Id",
                   "X-Stream-Segment", '"X-Stream-Done": "true"'):  # fmt: skip
        assert needle in page


def docs_app() -> Flask:
    """gunicorn entry for the live docs tests: the quickstart app with its
    instance folder from ``INSTANCE_PATH``."""
    from docs.examples.quickstart import app

    app.instance_path = os.environ["INSTANCE_PATH"]
    return app


@pytest.fixture
def docs_server(live_server: Callable[..., GunicornServer]) -> GunicornServer:
    return live_server("tests.test_docs:docs_app()")


def code_blocks(page: str, language: str) -> list[str]:
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = re.findall(rf"^\.\. code-block:: {language}\n\n((?:   .*\n|\n)+)", text, re.M)
    return ["\n".join(line[3:] for line in b.splitlines()).strip() for b in blocks]


@pytest.mark.live
def test_quickstart_shell_commands_against_gunicorn(docs_server: GunicornServer) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    blocks = code_blocks("quickstart.rst", "sh")
    port = str(docs_server.port)
    run_line = next(b for b in blocks if b.startswith("gunicorn"))
    assert "-k gevent" in run_line and "quickstart:app" in run_line

    clock = next(b for b in blocks if "/clock" in b).replace("8000", port)
    out = subprocess.run(
        f"{clock} --max-time 1.5", shell=True, capture_output=True, text=True, timeout=20
    ).stdout
    assert out.startswith(": stream opened") and "event: tick" in out

    upload = next(b for b in blocks if "X-Stream-Done" in b).replace("8000", port)
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", upload], capture_output=True, text=True, timeout=30
    ).stdout
    final = out.strip().splitlines()[-1]
    assert '"done":true' in final.replace(" ", "")
    assert hashlib.sha256(b"hello world").hexdigest() in final


# -- SSE guide -----------------------------------------------------------------------
def test_sse_encoder_rules() -> None:
    importlib.import_module("docs.examples.sse_encoder")  # its assertions are the test


def test_sse_views_countdown_and_producer(tmp_path: Path) -> None:
    mod = example("sse_views", tmp_path)
    client = mod.app.test_client()
    events = parse_events(client.get("/countdown?from=3").data)
    assert [(e.event, e.id, e.data) for e in events] == [
        ("tick", "3", '{"n":3}'),
        ("tick", "2", '{"n":2}'),
        ("tick", "1", '{"n":1}'),
        ("done", "1", "lift-off"),
    ]
    parser = EventParser()
    parser.feed(client.get("/countdown?from=1").data)
    assert parser.retry == 2000

    events = parse_events(client.get("/jobs/7/progress").data)
    assert [e.json()["percent"] for e in events] == [0, 25, 50, 75, 100]
    assert {e.event for e in events} == {"progress"}


def test_sse_guide_sveltekit_sse_form(tmp_path: Path) -> None:
    """What sveltekit-sse's source() needs (tests/test_sse_sveltekit_example.py
    runs the real client against this module): POST answered like GET, the
    bare type, and an ``event:`` field on every event (its select() misses
    the unnamed ones)."""
    mod = example("sveltekit_sse", tmp_path)
    client = mod.app.test_client()
    for method in ("POST", "GET"):
        r = client.open("/prices", method=method, json={})
        assert r.status_code == 200 and r.headers["Content-Type"] == "text/event-stream"
        blocks = [b for b in r.data.split(b"\n\n") if b"data:" in b]
        assert len(blocks) == 3 and all(b"\nevent: price\n" in b"\n" + b for b in blocks)
        events = parse_events(r.data)
        assert [(e.event, e.json()["price"]) for e in events] == [
            ("price", 101.5),
            ("price", 101.75),
            ("price", 102.0),
        ]
    js = (EXAMPLES / "sveltekit_sse_client.js").read_text()
    assert 'from "sveltekit-sse"' in js and '.select("price")' in js


# -- channels guide -----------------------------------------------------------------
def test_channels_app_rooms_authorization_and_resume(tmp_path: Path) -> None:
    mod = example("channels_app", tmp_path)
    client = mod.app.test_client()
    denied = client.get("/streaming/events/room-1")
    assert denied.status_code == 403 and denied.get_json()["error"] == "forbidden"
    assert client.get("/streaming/events/private-x").status_code == 403

    client.post("/rooms/1/join")
    stream = client.get("/streaming/events/room-1", buffered=False)
    try:
        next(iter(stream.response))  # the stream is open, the subscription registered
        sent = client.post("/rooms/1/messages", json={"text": "hi"})
        assert sent.status_code == 201
        (message,) = read_events(stream, 1)
    finally:
        stream.close()
    assert (message.event, message.json(), message.id) == (
        "message",
        {"text": "hi"},
        sent.get_json()["id"],
    )

    # Last-Event-ID replays what was missed.
    missed = client.post("/rooms/1/messages", json={"text": "while away"}).get_json()["id"]
    resumed = client.get(
        "/streaming/events/room-1", headers={"Last-Event-ID": message.id}, buffered=False
    )
    try:
        (replayed,) = read_events(resumed, 1)
    finally:
        resumed.close()
    assert (replayed.id, replayed.json()) == (missed, {"text": "while away"})


def test_channels_publish_from_a_real_thread(tmp_path: Path) -> None:
    mod = example("channels_app", tmp_path)
    stream = mod.app.test_client().get("/streaming/events/news", buffered=False)
    try:
        next(iter(stream.response))
        mod.publish_from_a_thread("extra")
        (event,) = read_events(stream, 1)
    finally:
        stream.close()
    assert event.json() == {"headline": "extra"}


def test_channels_custom_subscribe_view(tmp_path: Path) -> None:
    mod = example("channels_custom", tmp_path)
    client = mod.app.test_client()
    assert client.get("/streaming/events/news").status_code == 404  # group switched off
    stream = client.get("/me/events", buffered=False)
    try:
        assert stream.mimetype == "text/event-stream"
        assert next(iter(stream.response)).startswith(b": stream opened")
    finally:
        stream.close()


@pytest.mark.redis
def test_redis_publisher(redis_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    monkeypatch.setenv("STREAMING_BROKER_URL", redis_server.url)
    from docs.examples.redis_publisher import announce
    from flask_streaming.brokers.base import EVENT_ID

    event_id = announce("from cron")
    assert EVENT_ID.fullmatch(event_id)
    entries = redis.Redis.from_url(redis_server.url).xrange("flask_streaming:stream:news")
    assert any(b"from cron" in fields[b"b"] for _, fields in entries)


# -- chunked responses guide ----------------------------------------------------------
def test_responses_app(tmp_path: Path) -> None:
    mod = example("responses_app", tmp_path)
    client = mod.app.test_client()
    assert client.get("/report.txt").data.decode().splitlines()[-1] == "line 9999"
    lines = client.get("/rows.ndjson").data.splitlines()
    assert len(lines) == 1000 and lines[2] == b'{"id":2,"square":4}'
    assert client.get("/frames").data == base64.b64encode(b"\x00\x01") + b"\n/w==\n"

    csv = client.get("/export.csv")
    assert csv.headers["Content-Disposition"] == "attachment; filename=squares.csv"
    assert csv.data.startswith(b"0,0\n1,1\n2,4\n")

    path = Path(mod.app.instance_path, "exports", "report.bin")
    path.parent.mkdir(parents=True)
    path.write_bytes(bytes(range(256)) * 16)
    rv = client.get("/files/Q3", headers={"Range": "bytes=0-3"})
    assert rv.status_code == 206 and rv.data == b"\x00\x01\x02\x03"
    assert "filename*=UTF-8''Bericht%20f%C3%BCr%20Q3.bin" in rv.headers["Content-Disposition"]

    manual = client.get("/manual")
    assert manual.data.splitlines() == [b'{"step":0}', b'{"step":1}', b'{"step":2}']


# -- uploads guide -----------------------------------------------------------------------
WEBM = b"\x1a\x45\xdf\xa3" + b"\x00" * 60


def test_uploads_app_authorization_refusal_and_final_hook(tmp_path: Path) -> None:
    mod = example("uploads_app", tmp_path)
    client = mod.app.test_client()
    assert client.post("/streaming/uploads").status_code == 403
    auth = {"Authorization": "Bearer let-me-in"}
    created = client.post(
        "/streaming/uploads",
        json={"content_type": "audio/webm", "size": 2 * len(WEBM)},
        headers=auth,
    )
    assert created.status_code == 201
    sid = created.get_json()["streamId"]
    seg = {**auth, "X-Stream-Id": sid, "Content-Type": "application/octet-stream"}
    bad = client.post(
        "/streaming/uploads", data=b"RIFF....", headers={**seg, "X-Stream-Segment": "0"}
    )
    assert bad.status_code == 400 and bad.get_json()["error"] == "not_webm"
    ok = client.post("/streaming/uploads", data=WEBM, headers={**seg, "X-Stream-Segment": "0"})
    assert ok.get_json()["segment"] == 0 and ok.get_json()["bytes_so_far"] == len(WEBM)
    last = client.post(
        "/streaming/uploads",
        data=WEBM,
        headers={**seg, "X-Stream-Segment": "1", "X-Stream-Done": "true"},
    ).get_json()
    assert last["done"] is True and last["saved_as"] == f"{sid}.webm"
    saved = Path(mod.app.instance_path, "recordings", f"{sid}.webm")
    assert saved.read_bytes() == WEBM + WEBM


def test_cpu_hooks(tmp_path: Path) -> None:
    mod = example("cpu_hooks", tmp_path)
    client = mod.app.test_client()
    sid = client.get("/streaming/uploads").get_json()["streamId"]
    rv = client.post(
        "/streaming/uploads",
        data=b"abc",
        headers={"X-Stream-Id": sid, "X-Stream-Segment": "0"},
    )
    assert rv.get_json()["fingerprint"] == mod.fingerprint(b"abc")


# -- testing guide -------------------------------------------------------------------
def test_testing_example() -> None:
    mod = importlib.import_module("docs.examples.testing_example")
    mod.test_a_finite_stream()
    mod.test_read_a_stream_as_it_arrives()


# -- deployment guide -----------------------------------------------------------------------
def test_proxy_fix_makes_the_client_address_the_browser(tmp_path: Path) -> None:
    mod = example("proxy_fix", tmp_path)
    from flask_streaming.uploads import get_upload_service

    client = mod.app.test_client()
    sid = client.get("/streaming/uploads", headers={"X-Forwarded-For": "203.0.113.9"}).get_json()
    with mod.app.app_context():
        session = get_upload_service().status(sid["streamId"])
    assert session.client == "203.0.113.9"


def test_shipped_gunicorn_conf_matches_the_guide() -> None:
    conf = runpy.run_path(str(ROOT / "examples" / "gunicorn.conf.py"))
    assert conf["worker_class"] == "gevent"
    assert conf["worker_connections"] > Settings().max_connections
    assert conf["graceful_timeout"] >= 5 and conf["keepalive"] >= 1 and conf["timeout"] >= 30


def test_nginx_conf_has_what_the_guide_explains() -> None:
    text = (EXAMPLES / "nginx.conf").read_text()
    for directive in ("proxy_buffering off;", "proxy_request_buffering off;", "http2 on;",
                      "proxy_http_version 1.1;", 'proxy_set_header Connection "";'):  # fmt: skip
        assert directive in text
    size = re.search(r"client_max_body_size (\d+)m;", text)
    assert size and int(size.group(1)) << 20 >= Settings().max_segment_size
    read = re.search(r"location /streaming/events \{[^}]*proxy_read_timeout (\d+)h;", text)
    assert read and int(read.group(1)) * 3600 > Settings().ping_interval


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
NGINX_INSTALL = "nginx is not installed (apt-get install nginx-light; scripts/test does)"


def nginx_version() -> tuple[int, ...]:
    assert NGINX is not None, NGINX_INSTALL
    out = subprocess.run([NGINX, "-v"], capture_output=True, text=True, check=True)
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out.stderr + out.stdout)
    assert found, out.stderr
    return tuple(int(x) for x in found.groups())


def test_nginx_conf_passes_nginx_t(tmp_path: Path) -> None:
    """``nginx -t`` on the shipped server block itself, inside a minimal
    main config (pid, logs and temp paths in tmp_path). Only the certificate
    paths change (to a fresh self-signed pair), and on nginx < 1.25.1 the
    ``http2 on;`` line the file itself says to replace."""
    assert NGINX is not None, NGINX_INSTALL
    openssl = shutil.which("openssl")
    assert openssl is not None, "openssl is not installed (scripts/test installs it)"
    cert, key = self_signed_certificate(openssl, tmp_path, "example.org")
    text = (EXAMPLES / "nginx.conf").read_text()
    site = text.replace("/etc/ssl/example.org.crt", str(cert))
    site = site.replace("/etc/ssl/example.org.key", str(key))
    assert site.count(str(tmp_path)) == 2
    if nginx_version() < (1, 25, 1):
        assert "listen 443 ssl http2;" in text  # the file's own note for older nginx
        site = site.replace("listen 443 ssl;", "listen 443 ssl http2;").replace("http2 on;", "")
    (tmp_path / "site.conf").write_text(site)
    temp = "\n".join(
        f"    {kind}_temp_path {tmp_path}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n    access_log off;\n{temp}\n    include {tmp_path}/site.conf;\n}}\n"
    )
    out = subprocess.run(
        [NGINX, "-t", "-p", f"{tmp_path}/", "-e", str(tmp_path / "error.log"),
         "-c", str(tmp_path / "nginx.conf")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "syntax is ok" in out.stderr and "test is successful" in out.stderr


def test_monkey_patching_entry_patches_before_the_app(tmp_path: Path) -> None:
    code = (
        "import monkey_patched_entry, socket, threading\n"
        "from gevent import monkey\n"
        "assert monkey.is_module_patched('socket') and monkey.is_module_patched('threading')\n"
        "print(monkey_patched_entry.app.name)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=EXAMPLES,
        env={**os.environ, "PYTHONPATH": f"{EXAMPLES}{os.pathsep}{ROOT}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "quickstart"


# -- clients and tus recipes ---------------------------------------------------------------
JS_FILES = ["js_client.js", "tus_browser.js", "tus_uppy.js", "sveltekit_sse_client.js"]


@pytest.mark.parametrize("name", JS_FILES)
def test_javascript_examples_parse(name: str, tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    copy = tmp_path / (Path(name).stem + ".mjs")  # parse as an ES module
    copy.write_text((EXAMPLES / name).read_text())
    out = subprocess.run(["node", "--check", str(copy)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_js_client_example_uses_exported_names() -> None:
    script = ROOT / "flask_streaming" / "static" / "flask-streaming.js"
    assert script.exists(), script
    exported = set(
        re.findall(r"^export (?:async )?(?:function|class|const) (\w+)", script.read_text(), re.M)
    )
    used = re.search(
        r"import \{([^}]*)\} from \"/streaming/client.js\"", (EXAMPLES / "js_client.js").read_text()
    )
    assert used
    names = {n.strip() for n in used.group(1).split(",")}
    assert names <= exported, f"not exported by the client: {names - exported}"


@pytest.mark.live
def test_tuspy_recipe_against_gunicorn(docs_server: GunicornServer, tmp_path: Path) -> None:
    probe = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "OPTIONS",
         f"{docs_server.url}/streaming/tus/"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert probe.stdout == "204", f"the tus routes do not answer OPTIONS: {probe.stdout}"
    from docs.examples.tus_tuspy import upload

    source = tmp_path / "video.bin"
    source.write_bytes(os.urandom(3 << 20))
    url = upload(str(source), docs_server.url)
    upload_id = url.rstrip("/").rsplit("/", 1)[-1]
    stored = Path(docs_server.env["INSTANCE_PATH"], "streaming-uploads", upload_id, "data")
    assert (
        hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    )


# -- reference pages are complete ----------------------------------------------------
def _config_ext() -> Any:
    """The docs' ``streaming_config`` Sphinx extension module."""
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        return importlib.import_module("streaming_config")
    finally:
        sys.path.remove(str(DOCS / "_ext"))


def test_config_reference_lists_every_settings_field() -> None:
    text = "\n".join(_config_ext().config_rst())
    import dataclasses

    for field in dataclasses.fields(Settings):
        key = f"STREAMING_{field.name.upper()}"
        assert f".. data:: {key}\n" in text
        assert "Not documented yet" not in text, f"{key} has no #: comment in settings.py"


def test_config_reference_shows_byte_counts_as_sizes() -> None:
    from flask_streaming.settings import check_of

    sized = {
        key: default
        for key, _, default, _ in _config_ext().config_fields()
        if re.search(r"\(\d+ (KiB|MiB|GiB|bytes)\)", default)
    }
    import dataclasses

    byte_counts = {
        f"STREAMING_{f.name.upper()}"
        for f in dataclasses.fields(Settings)
        if check_of(f.name).unit == "bytes" and isinstance(f.default, int)
    }
    assert set(sized) == byte_counts
    assert sized["STREAMING_MAX_UPLOAD_SIZE"] == "``4294967296`` (4 GiB)"


def test_signals_reference_lists_every_signal() -> None:
    page = (DOCS / "reference" / "signals.rst").read_text()
    names = {
        attr: value.name
        for attr, value in vars(signals).items()
        if hasattr(value, "receivers") and hasattr(value, "name") and not attr.startswith("_")
    }
    assert names, "no signals found"
    for attr, name in names.items():
        assert f".. data:: {attr}\n" in page, f"signal {attr} is not documented"
        assert f'``"{name}"``' in page


def test_http_reference_lists_every_route(tmp_path: Path) -> None:
    from flask_streaming import Streaming

    app = Flask("routes", instance_path=str(tmp_path))
    Streaming(app)
    page = (DOCS / "reference" / "http.rst").read_text()
    normal = re.sub(r"<[^>]*>", "<>", page)
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("streaming."):
            path = re.sub(r"<[^>]*>", "<>", rule.rule.replace("/streaming", "{prefix}", 1))
            documented = re.search(re.escape(path) + r"(``|\s|\?)", normal)
            assert documented, f"{rule.rule} is not documented"
            for method in rule.methods - {"OPTIONS"}:
                if method == "HEAD" and "GET" in rule.methods:
                    continue
                assert method in page


def test_sphinx_build_passes_with_warnings_as_errors(tmp_path: Path) -> None:
    import furo  # noqa: F401  (dev extra: a missing theme fails, never skips)
    import sphinx  # noqa: F401

    out = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(DOCS), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-5000:]
    config = (tmp_path / "html" / "reference" / "config.html").read_text()
    import dataclasses

    for field in dataclasses.fields(Settings):
        assert f"STREAMING_{field.name.upper()}" in config


# -- Python client, CLI and live testing recipes ------------------------------------------
@pytest.mark.live
def test_python_client_recipe(docs_server: GunicornServer, tmp_path: Path) -> None:
    import httpx  # noqa: F401  (client extra, in dev)
    import tqdm  # noqa: F401

    from docs.examples.python_client import first_events, send

    source = tmp_path / "clip.bin"
    source.write_bytes(os.urandom(300_000))
    final = send(str(source), docs_server.url)
    assert final["done"] is True
    assert final["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    ((event, data),) = first_events(docs_server.url + "/clock", 1)
    assert event == "tick" and "time" in data


@pytest.mark.live
def test_cli_commands_in_the_clients_guide(docs_server: GunicornServer, tmp_path: Path) -> None:
    import httpx  # noqa: F401  (client extra, in dev)

    blocks = [
        b for b in code_blocks("guides/clients.rst", "sh") if "python -m flask_streaming" in b
    ]
    upload_cmd, listen_cmd = blocks[0].replace("8000", str(docs_server.port)).splitlines()
    (tmp_path / "video.mp4").write_bytes(b"\x00" * 100_000)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    up = subprocess.run(
        upload_cmd.replace("python ", f"{sys.executable} ", 1) + " --no-progress",
        shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    listen = subprocess.run(
        listen_cmd.replace("python ", f"{sys.executable} ", 1),
        shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listen.returncode == 0, listen.stderr
    assert len(listen.stdout.strip().splitlines()) == 3


@pytest.mark.live
def test_live_testing_recipe(tmp_path: Path) -> None:
    mod = importlib.import_module("docs.examples.testing_live")
    mod.test_clock_under_gunicorn(
        "tests.test_docs:docs_app()",
        cwd=str(ROOT),
        env={"PYTHONPATH": str(ROOT), "INSTANCE_PATH": str(tmp_path / "instance")},
        log_path=str(tmp_path / "server.log"),
    )
