"""The test infrastructure itself: flask_streaming.testing's servers and the
no-silent-skips-in-CI hook (tests/ci_skips.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flask_streaming.testing import (
    GunicornServer,
    RedisServer,
    free_port,
    http_request,
    stop_process,
)

ROOT = Path(__file__).resolve().parent.parent

TINY = """
import pytest

def test_passes():
    pass

def test_allowed():
    pytest.skip("needs root")

def test_not_allowed():
    pytest.skip("tool missing")
"""


def run_pytest(
    folder: Path, *, ci: str | None, allow: str = "", select: str = ""
) -> tuple[int, str]:
    """A pytest subprocess over *folder*'s tiny test file with our hooks."""
    (folder / "test_tiny.py").write_text(TINY)
    (folder / "allow.txt").write_text(allow)
    (folder / "pytest.ini").write_text("[pytest]\nskip_allowlist = allow.txt\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if ci is not None:
        env["CI"] = ci
    cmd = [sys.executable, "-m", "pytest", "-p", "tests.ci_skips", "-p", "no:cacheprovider"]
    cmd += ["--rootdir", str(folder), "-c", str(folder / "pytest.ini"), str(folder)]
    if select:
        cmd += ["-k", select]
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


def test_skips_fail_the_run_in_ci(tmp_path: Path) -> None:
    rc, out = run_pytest(tmp_path, ci="true", allow="test_tiny.py::test_allowed | needs root\n")
    assert rc == 1, out
    assert "1 skips not allowed in CI" in out
    assert "SKIPPED IN CI test_tiny.py::test_not_allowed: tool missing" in out
    assert "test_tiny.py::test_allowed:" not in out


def test_allowed_skips_pass_in_ci(tmp_path: Path) -> None:
    allow = "# comment\n\ntest_tiny.py::test_*allowed | both are fine here\n"
    rc, out = run_pytest(tmp_path, ci="true", allow=allow)
    assert rc == 0, out


def test_only_allowed_skip_selected_passes_in_ci(tmp_path: Path) -> None:
    allow = "test_tiny.py::test_allowed | needs root\n"
    rc, out = run_pytest(tmp_path, ci="true", allow=allow, select="not not_allowed")
    assert rc == 0, out


@pytest.mark.parametrize("ci", [None, "", "0", "false"])
def test_skips_are_only_reported_outside_ci(tmp_path: Path, ci: str | None) -> None:
    rc, out = run_pytest(tmp_path, ci=ci)
    assert rc == 0, out
    assert "2 skipped" in out


def test_allowlist_entry_without_reason_is_an_error(tmp_path: Path) -> None:
    rc, out = run_pytest(tmp_path, ci="1", allow="test_tiny.py::test_allowed\n")
    assert rc != 0 and "want '<node id glob> | <reason>'" in out, out


def test_module_skip_fails_in_ci(tmp_path: Path) -> None:
    (tmp_path / "test_mod.py").write_text("import pytest\npytest.importorskip('no_such_mod_x')\n")
    rc, out = run_pytest(tmp_path, ci="true", allow="test_tiny.py::* | all of them\n")
    assert rc == 1, out
    assert "SKIPPED IN CI test_mod.py" in out


def test_the_repository_allowlist_parses() -> None:
    from tests.ci_skips import load_allowlist

    for pattern, reason in load_allowlist(ROOT / "tests" / "skip_allowlist.txt").items():
        assert pattern.startswith("tests/") and reason


# -- flask_streaming.testing's servers ----------------------------------------


def test_stop_process_terminates_then_kills(tmp_path: Path) -> None:
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
         "print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
        assert stop_process(stubborn, timeout=0.5) == -9
        assert stop_process(stubborn) == -9  # already gone: no error
        assert stop_process(None) is None
    finally:
        stubborn.kill()
        stubborn.wait()
        assert stubborn.stdout is not None
        stubborn.stdout.close()


@pytest.mark.live
def test_gunicorn_server_restarts_on_its_port(tmp_path: Path) -> None:
    server = GunicornServer(
        "tests.apps.live_app:create_app()",
        env={"PYTHONPATH": str(ROOT), "INSTANCE_PATH": str(tmp_path / "i")},
        cwd=str(ROOT),
        log_path=str(tmp_path / "log"),
        ready_path="/",
    )
    with server:
        port, pid = server.port, server.pid
        assert server.worker_pids()
    assert server.proc is None
    try:
        server.start()
        assert (server.port, server.pid != pid) == (port, True)
    finally:
        server.stop()


def test_gunicorn_start_failure_names_the_log(tmp_path: Path) -> None:
    server = GunicornServer(
        "no_such_module:app", cwd=str(ROOT), log_path=str(tmp_path / "g.log"), ready_path="/"
    )
    with pytest.raises(RuntimeError, match=r"g\.log") as info:
        server.start(timeout=20)
    assert "no_such_module" in str(info.value)
    assert server.proc is None


@pytest.mark.redis
@pytest.mark.parametrize(
    ("persistence", "survives", "fsync"),
    [("none", False, None), ("everysec", True, "everysec"), ("always", True, "always")],
)
def test_redis_server_kill_and_restart(
    redis_factory: object, persistence: str, survives: bool, fsync: str | None
) -> None:
    import redis

    rs = redis_factory(persistence=persistence)  # type: ignore[operator]
    port, folder = rs.port, rs.dir
    with redis.Redis.from_url(rs.url) as r:
        assert r.config_get("appendonly")["appendonly"] == ("no" if fsync is None else "yes")
        if fsync:
            assert r.config_get("appendfsync")["appendfsync"] == fsync
        r.set("k", "v")
        if persistence == "everysec":
            # Give the once-a-second fsync its second: a kill right after a
            # write may lose it, which is what this mode trades for speed.
            import time

            time.sleep(1.5)
    rs.kill()
    assert rs.proc is None
    rs.restart()
    assert (rs.port, rs.dir) == (port, folder)
    with redis.Redis.from_url(rs.url) as r:
        assert (r.get("k") == b"v") is survives
    pid = rs.pid
    rs.restart(kill=True)  # a crash and a start in one call
    assert rs.pid != pid and rs.port == port
    with redis.Redis.from_url(rs.url) as r:
        assert (r.get("k") == b"v") is survives


def test_redis_persistence_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="persistence"):
        RedisServer(tmp_path, persistence="yes")


def test_free_port_is_bindable() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", free_port()))


def test_mutation_slices_name_files_that_exist() -> None:
    """scripts/mutation.py's slices point at real modules, test files and
    tests (``file::name``): a renamed test file or test must not silently
    shrink a slice."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mutation", ROOT / "scripts" / "mutation.py")
    assert spec is not None and spec.loader is not None
    mutation = importlib.util.module_from_spec(spec)
    sys.modules["mutation"] = mutation  # dataclasses look their module up
    try:
        spec.loader.exec_module(mutation)
    finally:
        del sys.modules["mutation"]
    for s in mutation.SLICES.values():
        for path in (*s.modules, *s.tests):
            file, _, name = path.partition("::")
            assert (ROOT / file).exists(), (s.name, path)
            if name:
                source = (ROOT / file).read_text()
                assert re.search(rf"^def {re.escape(name)}\(", source, re.M), (s.name, path)
        assert 'module-path = ["' in mutation._config(s)


def test_http_request_sends_exactly_what_it_is_given() -> None:
    """One request on a fresh connection: the method, path, headers and body
    arrive as given; status, headers and body come back."""
    import http.server
    import json
    import threading

    seen: list[dict[str, object]] = []

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_PATCH(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.append({"path": self.path, "x": self.headers.get("X-Test"), "body": body})
            self.send_response(207)
            self.send_header("X-Answer", "42")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        status, headers, body = http_request(
            port, "PATCH", "/p?q=1", b"payload", {"X-Test": "yes"}, timeout=5
        )
        assert (status, headers["X-Answer"], body) == (207, "42", b"ok")
        assert seen == [{"path": "/p?q=1", "x": "yes", "body": b"payload"}]
        assert json.dumps(headers)  # a plain dict of str
    finally:
        server.shutdown()
        server.server_close()
