"""Fixtures of the interoperability matrix, and the table it writes.

* ``bundles``: the browser clients bundled by esbuild (pinned in
  tests/js/package-lock.json) into a temporary folder the app serves;
* ``browser``: Debian's Chromium (tests/browser.py);
* ``interop_server``: ``tests.interop.app`` under gunicorn -k gevent.

Each matrix test carries ``@pytest.mark.matrix(client, scenario)``; the
outcome of every cell is recorded, and when the whole matrix ran without a
failure the table (docs/_interop_table.rst) is rendered from it: if that
differs from the committed file, the file is rewritten and the run fails
(commit the new table).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flask_streaming.testing import GunicornServer
from tests.browser import chromium
from tests.interop import matrix

JS = matrix.ROOT / "tests" / "js"
APP = "tests.interop.app:create_app()"
RETRY_MS = 700
PING = 0.2

#: esbuild entry (tests/js/interop) -> (global name, extra esbuild arguments)
BUNDLES = {
    "fetch_event_source.js": ("FES", []),
    "sveltekit_sse.js": ("SKS", ["--conditions=svelte"]),
}

_outcomes: dict[tuple[str, str], str] = {}


def require_npm_clients() -> None:
    if not (JS / "node_modules" / ".bin" / "esbuild").exists():
        how = "npm ci --prefix tests/js" if shutil.which("npm") else "install npm, then npm ci"
        pytest.skip(f"the npm clients are not installed in tests/js: {how} (scripts/test does)")


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_npm_clients()
    out = tmp_path_factory.mktemp("bundles")
    for entry, (name, extra) in BUNDLES.items():
        subprocess.run(
            [
                str(JS / "node_modules" / ".bin" / "esbuild"),
                f"interop/{entry}",
                "--bundle",
                "--format=iife",
                f"--global-name={name}",
                "--log-level=warning",
                f"--outfile={out / entry}",
                *extra,
            ],
            cwd=JS,
            check=True,
        )
    return out


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def interop_server(live_server: Callable[..., GunicornServer], bundles: Path) -> GunicornServer:
    env = {"RETRY": str(RETRY_MS), "PING": str(PING), "INTEROP_BUNDLES": str(bundles)}
    return live_server(APP, env=env)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "matrix(client, scenario): a cell of the interoperability matrix"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("matrix")
    if marker is None:
        return
    cell = (marker.args[0], marker.args[1])
    if report.when == "call" or report.outcome != "passed":
        if hasattr(report, "wasxfail"):
            result = "xfailed" if report.skipped else "failed"  # a strict XPASS fails
        else:
            result = report.outcome
        if _outcomes.get(cell) in (None, "passed", "xfailed"):
            _outcomes[cell] = result


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if set(_outcomes) != set(matrix.CELLS):
        return  # a partial run proves nothing about the whole table
    if any(v not in ("passed", "xfailed") for v in _outcomes.values()):
        return  # the run fails anyway; the committed table stays
    table = matrix.render(_outcomes)
    old = matrix.TABLE.read_text() if matrix.TABLE.exists() else ""
    if table != old:
        matrix.TABLE.write_text(table)
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"{matrix.TABLE.relative_to(matrix.ROOT)} did not match what this run proved: "
                "rewritten, commit it",
                red=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
