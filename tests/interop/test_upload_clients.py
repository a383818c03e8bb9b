"""Every upload client of the matrix, unmodified, against a real gunicorn +
gevent server (tests/interop/app.py, built on tests/apps/tus_app.py): the
stored file is byte-identical (sha256), and after the server is SIGKILLed
mid-upload and started again the client resumes from the server's offset
(no new upload, no byte sent twice from 0) and the file is byte-identical.

* tuspy (PyPI) in the test process, its own ``retries``;
* tus-js-client (npm) under Node (``tests/js/interop/tus_upload.mjs``),
  its own ``retryDelays``;
* Uppy (@uppy/core + @uppy/drag-drop + @uppy/tus) in Chromium: the demo's
  ``/uppy`` page itself (``examples/uppy.py``, its committed bundle), the
  file dropped on through its file input.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from flask_streaming.testing import GunicornServer
from tests.interop import matrix
from tests.interop.conftest import APP, JS, require_npm_clients

pytestmark = [pytest.mark.live]

KiB, MiB = 1 << 10, 1 << 20


def cell(client: str, scenario: str, *extra: Any) -> list[Any]:
    marks = [pytest.mark.matrix(client, scenario), *extra]
    known = matrix.KNOWN_FAILURES.get((client, scenario))
    if known:
        marks.append(pytest.mark.xfail(strict=True, reason=known))
    return marks


def start_server(
    live_server: Callable[..., GunicornServer], *, slow: float = 0.0
) -> GunicornServer:
    return live_server(APP, workers=1, env={"TUS_SLOW_SECONDS": str(slow)})


def signals(tmp_path: Path, kind: str) -> list[dict[str, Any]]:
    log = tmp_path / "instance" / "signals.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [r for r in map(json.loads, lines) if r["signal"] == kind]


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"{what} within {timeout}s"
        time.sleep(0.05)
    return value


def sigkill_and_restart(server: GunicornServer) -> None:
    """SIGKILL the workers and the master (no graceful anything), then
    start a new server on the same port."""
    assert server.proc is not None
    for pid in server.worker_pids():
        os.kill(pid, signal.SIGKILL)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    server.stop()  # closes the log; the process is gone
    server.start()


def check_upload(server: GunicornServer, tmp_path: Path, url: str, data: bytes) -> None:
    upload_id = url.rstrip("/").rsplit("/", 1)[1]
    info = httpx.get(f"{server.url}/upload-info/{upload_id}", timeout=30).json()
    assert info["state"] == "completed" and info["offset"] == len(data), info
    assert info["data_sha256"] == hashlib.sha256(data).hexdigest(), "not byte-identical"
    completed = signals(tmp_path, "upload-completed")
    assert [r["id"] for r in completed] == [upload_id]
    assert [r["id"] for r in signals(tmp_path, "upload-created")] == [upload_id]


def wait_segments(tmp_path: Path, n: int) -> int:
    """Wait until *n* segments reached the hooks (the hooks run before a
    segment's offset is committed, so the kill may lose the last one, never
    the ones before)."""
    found = wait_until(lambda: len(signals(tmp_path, "segment-received")) >= n, 30, f"{n} segments")
    assert found
    return len(signals(tmp_path, "segment-received"))


def check_resumed(tmp_path: Path, killed_after: int) -> None:
    """After the kill, the first segment the new server stored started past 0."""
    segments = signals(tmp_path, "segment-received")
    later = segments[killed_after:]
    assert later and later[0]["offset"] > 0, f"restarted from 0: {segments}"


# -- tuspy -----------------------------------------------------------------


def tuspy_upload(server: GunicornServer, data: bytes, chunk: int) -> str:
    from tusclient import client as tus_client

    uploader = tus_client.TusClient(server.url + "/streaming/tus/").uploader(
        file_stream=io.BytesIO(data),
        chunk_size=chunk,
        metadata={"filename": "tuspy.bin"},
        retries=20,
        retry_delay=0.5,
    )
    uploader.upload()
    return str(uploader.url)


@pytest.mark.parametrize("_", [pytest.param(0, marks=cell("tuspy", "sha256"), id="tuspy")])
def test_tuspy_byte_identical(
    _: int, live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    server = start_server(live_server)
    data = random.Random(11).randbytes(3 * MiB + 1234)
    check_upload(server, tmp_path, tuspy_upload(server, data, 512 * KiB), data)


@pytest.mark.parametrize("_", [pytest.param(0, marks=cell("tuspy", "sigkill"), id="tuspy")])
def test_tuspy_resumes_after_sigkill(
    _: int, live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    server = start_server(live_server, slow=0.2)
    data = random.Random(12).randbytes(4 * MiB + 77)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["url"] = tuspy_upload(server, data, 256 * KiB)
        except BaseException as exc:
            result["error"] = repr(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    n = wait_segments(tmp_path, 2)
    sigkill_and_restart(server)
    thread.join(90)
    assert "url" in result, result
    check_upload(server, tmp_path, result["url"], data)
    check_resumed(tmp_path, n)


# -- tus-js-client under Node ------------------------------------------------


def node_upload(server: GunicornServer, path: Path, chunk: int) -> subprocess.Popen[str]:
    require_npm_clients()
    return subprocess.Popen(
        ["node", "interop/tus_upload.mjs", server.url + "/streaming/tus/", str(path), str(chunk)],
        cwd=JS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def node_result(proc: subprocess.Popen[str], timeout: float) -> str:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    last = json.loads(out.splitlines()[-1]) if out.strip() else {}
    assert "url" in last, f"tus-js-client: {out[-2000:]} {err[-2000:]}"
    return str(last["url"])


@pytest.mark.parametrize(
    "_", [pytest.param(0, marks=cell("tus-js-client", "sha256"), id="tus-js-client")]
)
def test_tus_js_client_byte_identical(
    _: int, live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    server = start_server(live_server)
    data = random.Random(21).randbytes(3 * MiB + 4321)
    (tmp_path / "file.bin").write_bytes(data)
    url = node_result(node_upload(server, tmp_path / "file.bin", 512 * KiB), 60)
    check_upload(server, tmp_path, url, data)


@pytest.mark.parametrize(
    "_", [pytest.param(0, marks=cell("tus-js-client", "sigkill"), id="tus-js-client")]
)
def test_tus_js_client_resumes_after_sigkill(
    _: int, live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    server = start_server(live_server, slow=0.2)
    data = random.Random(22).randbytes(4 * MiB + 99)
    (tmp_path / "file.bin").write_bytes(data)
    proc = node_upload(server, tmp_path / "file.bin", 256 * KiB)
    try:
        n = wait_segments(tmp_path, 2)
        sigkill_and_restart(server)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    url = node_result(proc, 90)
    check_upload(server, tmp_path, url, data)
    check_resumed(tmp_path, n)


# -- Uppy in Chromium: the demo page -------------------------------------------


def uppy_upload(
    browser: Any, server: GunicornServer, path: Path, during: Callable[[], None]
) -> str:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(90_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(server.url + "/uppy")
        page.wait_for_function("window.uppy !== undefined")
        page.set_input_files(".uppy-DragDrop-input", str(path))
        during()
        page.wait_for_function("document.getElementById('status').textContent === 'complete'")
        url = page.get_attribute("#files a", "data-upload-url")
        assert url is not None
        assert errors == [], errors
        return url
    finally:
        context.close()


@pytest.mark.parametrize(
    "_",
    [
        pytest.param(
            0, marks=cell("@uppy/core + @uppy/tus", "sha256", pytest.mark.browser), id="uppy"
        )
    ],
)
def test_uppy_byte_identical(
    _: int, browser: Any, live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    server = start_server(live_server)
    data = random.Random(31).randbytes(7 * MiB + 5)
    (tmp_path / "dropped.bin").write_bytes(data)
    url = uppy_upload(browser, server, tmp_path / "dropped.bin", lambda: None)
    check_upload(server, tmp_path, url, data)


@pytest.mark.parametrize(
    "_",
    [
        pytest.param(
            0, marks=cell("@uppy/core + @uppy/tus", "sigkill", pytest.mark.browser), id="uppy"
        )
    ],
)
def test_uppy_resumes_after_sigkill(
    _: int, browser: Any, live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    server = start_server(live_server, slow=0.5)
    data = random.Random(32).randbytes(12 * MiB + 3)
    (tmp_path / "dropped.bin").write_bytes(data)
    killed_after: list[int] = []

    def kill() -> None:
        killed_after.append(wait_segments(tmp_path, 2))
        sigkill_and_restart(server)

    url = uppy_upload(browser, server, tmp_path / "dropped.bin", kill)
    check_upload(server, tmp_path, url, data)
    check_resumed(tmp_path, killed_after[0])


@pytest.mark.browser
def test_uppy_page_resumes_after_a_reload(
    browser: Any, live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    """The demo page's promise: reload (or close the tab) mid-upload, drop
    the same file again, and the upload resumes (``@uppy/tus`` keeps its URL
    in ``localStorage``)."""
    server = start_server(live_server, slow=0.5)
    data = random.Random(33).randbytes(12 * MiB + 7)
    source = tmp_path / "dropped.bin"
    source.write_bytes(data)
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(90_000)
    try:
        page.goto(server.url + "/uppy")
        page.wait_for_function("window.uppy !== undefined")
        page.set_input_files(".uppy-DragDrop-input", str(source))
        n = wait_segments(tmp_path, 2)
        page.reload()
        page.wait_for_function("window.uppy !== undefined")
        page.set_input_files(".uppy-DragDrop-input", str(source))
        page.wait_for_function("document.getElementById('status').textContent === 'complete'")
        url = page.get_attribute("#files a", "data-upload-url")
        assert url is not None
    finally:
        context.close()
    check_upload(server, tmp_path, url, data)
    check_resumed(tmp_path, n)
