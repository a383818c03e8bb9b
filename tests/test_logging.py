"""One logging channel: every module of the package logs through
``logging.getLogger(__name__)`` (a child of ``flask_streaming``), never
through ``app.logger`` or a logger of another name."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from flask import Flask

from flask_streaming import produce

PACKAGE = Path(__file__).parent.parent / "flask_streaming"


def test_every_logger_is_the_modules_own() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        for call in re.findall(r"getLogger\(([^)]*)\)", text):
            if call != "__name__":
                offenders.append(f"{path.name}: getLogger({call})")
        if re.search(r"\.logger\.(debug|info|warning|error|exception|critical)\(", text):
            offenders.append(f"{path.name}: logs on an app's logger")
    assert offenders == []


def test_a_raising_produce_start_logs_on_the_package_logger(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = Flask("logs", instance_path=str(tmp_path))

    def start(stream: object) -> None:
        raise RuntimeError("boom")

    @app.get("/p")
    def p() -> object:
        return produce(start)

    with caplog.at_level(logging.ERROR, "flask_streaming"):
        r = app.test_client().get("/p", buffered=False)
        try:
            with pytest.raises(BrokenPipeError):
                for _ in r.response:
                    pass
        finally:
            r.close()
    names = [rec.name for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert names == ["flask_streaming.sse"]
