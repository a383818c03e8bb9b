"""No silent skips in CI.

When the environment variable ``CI`` is set (to anything but ``""``,
``"0"`` or ``"false"``), a test or a test module that skips fails the run
(exit status 1, and a "skips not allowed in CI" section in the summary)
unless its node id matches an entry of the allow-list, ``tests/skip_allowlist.txt``
(the ini option ``skip_allowlist`` names another file). A missing install
step must never turn into a green run. Outside CI, skips only show in the
``-ra`` summary as usual.

Allow-list format, one entry a line: ``<node id glob> | <reason>``, e.g.
``tests/test_x.py::test_tmpfs* | mounting a tmpfs needs root``; ``#``
comments and blank lines are ignored; an entry without a reason is a usage
error. ``tests/conftest.py`` loads these hooks.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import pytest

ALLOWLIST_INI = "skip_allowlist"
DEFAULT_ALLOWLIST = "tests/skip_allowlist.txt"


def in_ci() -> bool:
    """Whether ``$CI`` asks for the strict mode."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def load_allowlist(path: Path) -> dict[str, str]:
    """The allow-list at *path* as ``{node id glob: reason}`` (``{}`` when
    the file does not exist).

    :raises pytest.UsageError: an entry has no reason.
    """
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}
    entries: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pattern, bar, reason = (part.strip() for part in line.partition("|"))
        if not bar or not pattern or not reason:
            raise pytest.UsageError(f"{path}:{n}: want '<node id glob> | <reason>', got {raw!r}")
        entries[pattern] = reason
    return entries


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        ALLOWLIST_INI,
        "file of '<node id glob> | <reason>' lines: the skips allowed when $CI is set",
        default=DEFAULT_ALLOWLIST,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipGuard(config), "flask-streaming-ci-skips")


class SkipGuard:
    """Records every skip (tests and collection), and fails the session in
    CI for those not on the allow-list."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.skips: list[tuple[str, str]] = []
        self.refused: list[tuple[str, str]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skips.append((report.nodeid, _reason(report)))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.skipped:
            self.skips.append((report.nodeid, _reason(report)))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not in_ci() or not self.skips:
            return
        allow = load_allowlist(self.config.rootpath / str(self.config.getini(ALLOWLIST_INI)))
        self.refused = [
            (nodeid, why)
            for nodeid, why in self.skips
            if not any(fnmatch.fnmatchcase(nodeid, pattern) for pattern in allow)
        ]
        ok = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        if self.refused and session.exitstatus in ok:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.refused:
            return
        where = self.config.getini(ALLOWLIST_INI)
        n = len(self.refused)
        terminalreporter.write_sep("=", f"{n} skips not allowed in CI ($CI is set)", red=True)
        for nodeid, why in self.refused:
            terminalreporter.write_line(f"SKIPPED IN CI {nodeid}: {why}")
        terminalreporter.write_line(
            f"Install what they need (scripts/test does), or add '<node id> | <reason>' to {where}."
        )
