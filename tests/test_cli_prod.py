"""The command line in production mishaps (issue 15): a URL without
``http://`` fails at once with exit 2, ``listen`` on something that is not
an event stream says why, and an upload interrupted by Ctrl-C prints its id
and a command that resumes it as printed (segment size, metadata and
headers included)."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from flask_streaming.__main__ import resume_command
from flask_streaming.testing import GunicornServer

ROOT = Path(__file__).resolve().parents[1]
APP = "tests.apps.prod_app:create_app()"


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flask_streaming", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )  # fmt: skip


@pytest.mark.parametrize("command", ["upload", "listen"])
def test_url_without_scheme_fails_at_once(tmp_path: Path, command: str) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")
    args = [str(path)] if command == "upload" else []
    started = time.monotonic()
    rv = cli(
        command,
        *args,
        "127.0.0.1:9/streaming",
        "--no-progress" if command == "upload" else "--json",
    )
    assert rv.returncode == 2, rv.stderr
    assert "http:// or https://" in rv.stderr
    assert time.monotonic() - started < 30  # a bound for the test: no 6 s of retries expected


@pytest.fixture
def server(live_server: Callable[..., GunicornServer]) -> GunicornServer:
    return live_server(APP)


def test_listen_on_a_non_event_stream_says_why(server: GunicornServer) -> None:
    rv = cli("listen", server.url + "/settings")
    assert rv.returncode == 1
    assert "is not an event stream" in rv.stderr
    assert "text/event-stream" in rv.stderr


@pytest.mark.parametrize("alone", [False, True], ids=["printed-command", "resume-id-alone"])
def test_ctrl_c_prints_the_id_and_a_resume_command_that_works(
    server: GunicornServer, tmp_path: Path, alone: bool
) -> None:
    path = tmp_path / "data.bin"
    data = bytes(range(256)) * 40  # 10240 bytes: 10 segments of 1 KiB
    path.write_bytes(data)
    argv = [
        sys.executable, "-m", "flask_streaming", "upload", str(path), server.url + "/streaming",
        "--segment-size", str(1024 / (1 << 20)), "--metadata", "slow=0.3",
        "--header", "X-Trace: cli test", "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while httpx.get(server.url + "/hook-calls", timeout=10).json()["n"] < 2:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted; the upload is " in err
    line = next(x for x in err.splitlines() if x.startswith("resume with: "))
    command = shlex.split(line.removeprefix("resume with: "))
    assert command[:3] == ["python", "-m", "flask_streaming"]
    assert "--segment-size" in command and "--header" in command and "--metadata" in command
    if alone:
        # Only the file, the URL and the id: the session tells the segment size.
        sid = command[command.index("--resume") + 1]
        command = ["python", "-m", "flask_streaming", "upload", str(path),
                   server.url + "/streaming", "--no-progress", "--resume", sid]  # fmt: skip
    rv = subprocess.run(
        [sys.executable, *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert rv.returncode == 0, rv.stderr
    final = json.loads(rv.stdout)
    assert final["done"] is True and final["size"] == len(data)
    sid = command[command.index("--resume") + 1]
    assert final["streamId"] == sid


def test_resume_command_repeats_every_option() -> None:
    args = argparse.Namespace(
        file="my file.bin", url="http://h/streaming", protocol="tus", segment_size=0.5,
        content_type="audio/webm", metadata=["a=1", "b=two words"],
        header=["Authorization: Bearer x"], retries=9, no_progress=True,
    )  # fmt: skip
    command = shlex.split(resume_command(args, "http://h/streaming/tus/abc"))
    assert command == [
        "python", "-m", "flask_streaming", "upload", "my file.bin", "http://h/streaming",
        "--protocol", "tus", "--segment-size", "0.5", "--content-type", "audio/webm",
        "--metadata", "a=1", "--metadata", "b=two words", "--header", "Authorization: Bearer x",
        "--retries", "9", "--no-progress", "--resume", "http://h/streaming/tus/abc",
    ]  # fmt: skip
