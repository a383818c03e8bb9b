"""The SSE guide's sveltekit-sse example, run with the real client:
sveltekit-sse 0.14 (pinned in tests/js/package-lock.json, bundled by
esbuild with ``--conditions=svelte``) in Debian's Chromium, against
``docs/examples/sveltekit_sse.py`` under gunicorn -k gevent.

The page and the bundle are handed to the browser by Playwright's router
(they are test assets, not part of the example); the event stream is the
real server's.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flask_streaming.testing import GunicornServer
from tests.browser import chromium, new_page
from tests.interop.conftest import JS, require_npm_clients

ROOT = Path(__file__).resolve().parents[1]
APP = "docs.examples.sveltekit_sse:app"

pytestmark = [pytest.mark.live, pytest.mark.browser]

PAGE = """<!doctype html><meta charset="utf-8"><title>sveltekit-sse</title>
<script src="/__test__/sveltekit_sse.js"></script>"""

#: The guide's client line, as a Svelte component would run it.
SUBSCRIBE = """() => new Promise((resolve) => {
  const got = [];
  const price = SKS.source("/prices").select("price").json();
  const message = SKS.source("/prices", {cache: false}).select("message");
  const unnamed = [];
  const offMessage = message.subscribe((v) => { if (v) unnamed.push(v); });
  const off = price.subscribe((v) => {
    if (v) got.push(v);
    if (got.length === 3) { off(); offMessage(); resolve({got, unnamed}); }
  });
  setTimeout(() => resolve({got, unnamed, timedOut: true}), 15000);
})"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_npm_clients()
    out = tmp_path_factory.mktemp("sks") / "sveltekit_sse.js"
    subprocess.run(
        [
            str(JS / "node_modules" / ".bin" / "esbuild"),
            "interop/sveltekit_sse.js",
            "--bundle",
            "--format=iife",
            "--global-name=SKS",
            "--conditions=svelte",
            "--log-level=warning",
            f"--outfile={out}",
        ],
        cwd=JS,
        check=True,
    )
    return out


@pytest.fixture
def server(tmp_path: Path) -> Iterator[GunicornServer]:
    s = GunicornServer(
        APP,
        env={"PYTHONPATH": str(ROOT)},
        cwd=str(ROOT),
        log_path=str(tmp_path / "server.log"),
    )
    s.start()
    try:
        yield s
    finally:
        s.stop()


def test_sveltekit_sse_source_selects_the_named_events(
    server: GunicornServer, bundle: Path
) -> None:
    with chromium() as browser, new_page(browser, timeout_ms=30_000) as page:
        methods: list[str] = []
        page.on("request", lambda r: methods.append(r.method) if "/prices" in r.url else None)
        page.route(
            f"{server.url}/__test__/page.html",
            lambda route: route.fulfill(body=PAGE, content_type="text/html"),
        )
        page.route(
            f"{server.url}/__test__/sveltekit_sse.js",
            lambda route: route.fulfill(path=str(bundle), content_type="text/javascript"),
        )
        page.goto(f"{server.url}/__test__/page.html")
        result: Any = page.evaluate(SUBSCRIBE)
    assert not result.get("timedOut"), result
    assert [(p["symbol"], p["price"]) for p in result["got"]] == [
        ("ACME", 101.5),
        ("ACME", 101.75),
        ("ACME", 102.0),
    ]
    assert result["unnamed"] == []  # named events are not "message" events
    assert "POST" in methods  # its default method, answered like GET
