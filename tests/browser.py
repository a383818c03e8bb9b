"""Debian's Chromium driven by Playwright's sync API, for the browser tests.

Never a downloaded browser: ``/usr/bin/chromium`` (``apt-get install
chromium``; ``scripts/test`` does), headless, without sandbox, GPU or
background networking. A test skips with the reason when it is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
#: A real MediaRecorder on a fake microphone, without a permission prompt.
FAKE_MEDIA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


_driver: Any = None


def _playwright() -> Any:
    """The session's one Playwright driver, started on first use.

    Playwright's sync API cannot nest: a second ``sync_playwright()`` while a
    session-scoped browser holds the first fails with "using Playwright Sync
    API inside the asyncio loop". Every launcher shares this driver instead;
    :func:`stop_playwright` ends it when the test session ends.
    """
    global _driver
    if _driver is None:
        sync_api = pytest.importorskip("playwright.sync_api")
        _driver = sync_api.sync_playwright().start()
    return _driver


def stop_playwright() -> None:
    """Stop the shared driver (conftest calls this at the end of the session)."""
    global _driver
    if _driver is not None:
        driver, _driver = _driver, None
        driver.stop()


@contextmanager
def chromium(*extra_args: str) -> Iterator[Any]:
    """A launched Chromium (a Playwright ``Browser``), closed afterwards."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does)")
    browser = _playwright().chromium.launch(
        executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, *extra_args]
    )
    try:
        yield browser
    finally:
        browser.close()


@contextmanager
def new_page(
    browser: Any, *, viewport: dict[str, int] | None = None, timeout_ms: int = 10_000
) -> Iterator[Any]:
    """A page in a fresh context; fails the test on any JavaScript error."""
    context = browser.new_context(**({"viewport": viewport} if viewport else {}))
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
        assert errors == [], f"JavaScript errors on the page: {errors}"
    finally:
        context.close()


@contextmanager
def client_page(browser: Any, url: str, *, timeout_ms: int = 60_000) -> Iterator[Any]:
    """A :func:`new_page` on *url*'s ``/client-page`` (the test apps' page
    that loads the JS client), once its script set ``window.ready``."""
    with new_page(browser, timeout_ms=timeout_ms) as page:
        page.goto(url + "/client-page")
        page.wait_for_function("window.ready === true")
        yield page
