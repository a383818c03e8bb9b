"""The real tus-js-client (from the npm registry, ``tests/js``) in Debian's
Chromium, driven by Playwright, against a real gunicorn with 2 gevent
workers: a file uploaded in chunks, one in two parallel partial uploads
concatenated by the server, and a stream of unknown length
(``uploadLengthDeferred``). Each must arrive byte-identical, with one
``upload-completed``.

Needs ``npm ci --prefix tests/js`` (``scripts/test`` runs it when npm is on
PATH) and ``/usr/bin/chromium``; skips with the reason otherwise. Never
downloads a browser.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flask_streaming.testing import GunicornServer
from tests.apps.tus_app import TUS_DIST
from tests.browser import chromium, new_page

pytestmark = [pytest.mark.browser, pytest.mark.live]

APP = "tests.apps.tus_app:create_app()"
KiB, MiB = 1 << 10, 1 << 20


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (TUS_DIST / "tus.min.js").exists():
        how = "npm ci --prefix tests/js" if shutil.which("npm") else "install npm, then npm ci"
        pytest.skip(f"tus-js-client is not installed in tests/js: {how} (scripts/test does)")
    with chromium() as b:
        yield b


@pytest.fixture
def server(live_server: Callable[..., GunicornServer]) -> GunicornServer:
    return live_server(APP, workers=2)


@pytest.fixture
def page(browser: Any, server: GunicornServer) -> Iterator[Any]:
    with new_page(browser, timeout_ms=60_000) as page:
        page.goto(server.url + "/tus-page")
        page.wait_for_function("typeof tus !== 'undefined' && tus.isSupported")
        yield page


def upload(page: Any, how: str, seed: int, size: int, options: dict[str, Any]) -> str:
    """Run ``how(seed, size, options)`` on the page; the upload's URL."""
    url: str = page.evaluate(f"([s, n, o]) => {how}(s, n, o)", [seed, size, options])
    return url


def expected(seed: int, size: int) -> str:
    return hashlib.sha256(random.Random(seed).randbytes(size)).hexdigest()


def check(server: GunicornServer, tmp_path: Path, url: str, seed: int, size: int) -> Any:
    """The upload at *url* holds the fixture's bytes; one upload-completed."""
    import http.client

    upload_id = url.rstrip("/").rsplit("/", 1)[1]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", f"/upload-info/{upload_id}")
        rv = conn.getresponse()
        assert rv.status == 200
        info = json.loads(rv.read())
    finally:
        conn.close()
    assert info["state"] == "completed" and info["offset"] == size
    assert info["data_sha256"] == expected(seed, size)
    lines = (tmp_path / "instance" / "signals.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    completed = [r for r in records if r["signal"] == "upload-completed"]
    assert [r["id"] for r in completed] == [upload_id], "one upload-completed, for this upload"
    assert completed[0]["sha256"] == expected(seed, size)
    return info, records


def test_tus_js_client_uploads_a_file_in_chunks(
    page: Any, server: GunicornServer, tmp_path: Path
) -> None:
    size = 5 * MiB + 4321
    url = upload(page, "uploadBlob", 1, size, {"chunkSize": MiB})
    info, records = check(server, tmp_path, url, 1, size)
    assert info["filename"] == "blob-1.bin"
    assert info["content_type"] == "application/octet-stream"
    ranges = [r for r in records if r["signal"] == "segment-received"]
    assert [(r["offset"], r["end"]) for r in ranges] == [
        (i * MiB, min((i + 1) * MiB, size)) for i in range(6)
    ]


def test_tus_js_client_parallel_uploads(page: Any, server: GunicornServer, tmp_path: Path) -> None:
    size = 3 * MiB + 777
    url = upload(page, "uploadBlob", 2, size, {"parallelUploads": 2, "chunkSize": MiB})
    info, records = check(server, tmp_path, url, 2, size)
    assert info["concat"] == "final" and len(info["parts"]) == 2
    created = [r["id"] for r in records if r["signal"] == "upload-created"]
    assert len(created) == 3  # two partial uploads and the final one


def test_tus_js_client_stream_with_deferred_length(
    page: Any, server: GunicornServer, tmp_path: Path
) -> None:
    size = 2 * MiB + 99
    url = upload(page, "uploadStream", 3, size, {"chunkSize": 256 * KiB})
    info, _ = check(server, tmp_path, url, 3, size)
    assert info["length"] == size


def test_example_page_resumes_after_a_reload(
    browser: Any, live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    # Each PATCH's hook sleeps, so the page can be reloaded mid-upload.
    server = live_server(
        "tests.apps.tus_app:create_example_app()", workers=2, env={"TUS_SLOW_SECONDS": "0.5"}
    )
    source = tmp_path / "movie.bin"
    source.write_bytes(random.Random(4).randbytes(12 * MiB + 3))
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(60_000)
    log = tmp_path / "instance" / "signals.log"

    def recorded(kind: str) -> list[dict[str, Any]]:
        lines = log.read_text().splitlines() if log.exists() else []
        return [r for r in map(json.loads, lines) if r["signal"] == kind]

    try:
        page.goto(server.url + "/tus")
        page.set_input_files("#file", str(source))
        page.wait_for_function("document.getElementById('status').textContent === 'uploading'")
        deadline = time.monotonic() + 30
        while not recorded("segment-received"):  # the first 5 MiB arrived
            assert time.monotonic() < deadline, "no PATCH reached the server"
            time.sleep(0.05)
        page.reload()
        page.set_input_files("#file", str(source))
        page.wait_for_function(
            "['resuming', 'complete'].includes(document.getElementById('status').textContent)"
        )
        page.wait_for_function("document.getElementById('status').textContent === 'complete'")
        href = page.get_attribute("#result a", "href")
        assert href is not None
        upload_url = "/streaming/tus/" + href.rsplit("/", 1)[1]
        check(server, tmp_path, upload_url, 4, source.stat().st_size)
        assert len(recorded("upload-created")) == 1, "the reload started a new upload"
        assert recorded("segment-received")[0]["offset"] == 0
        assert all(r["offset"] > 0 for r in recorded("segment-received")[1:])
    finally:
        context.close()
