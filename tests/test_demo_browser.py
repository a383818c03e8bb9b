"""Every demo page in Debian's Chromium at a phone's and a desktop's width,
with screenshots (issue 15): nothing wider than the screen, no failed
request (no favicon 404), and the polish items: chat fits 390 px and its
join error does not stick, log tail sends on Enter and refuses empty lines,
the recorder's player knows its duration."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flask_streaming.testing import GunicornServer
from tests.browser import FAKE_MEDIA_ARGS, chromium, new_page
from tests.test_browser import png_size

pytestmark = [pytest.mark.browser, pytest.mark.live]

DEMO_APP = "examples.demo:create_app()"
PAGES = ["/", "/clock", "/progress", "/logtail", "/dataset", "/download", "/record",
         "/chat", "/tus", "/uppy"]  # fmt: skip
SIZES = {"phone": (390, 844), "desktop": (1280, 800)}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium(*FAKE_MEDIA_ARGS) as b:
        yield b


@pytest.fixture
def server(live_server: Callable[..., GunicornServer]) -> GunicornServer:
    return live_server(DEMO_APP)


def fits(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


@pytest.mark.parametrize("size", list(SIZES))
def test_every_page_fits_and_loads_everything(
    browser: Any, server: GunicornServer, tmp_path: Path, size: str
) -> None:
    width, height = SIZES[size]
    with new_page(browser, viewport={"width": width, "height": height}) as page:
        failed: list[str] = []
        page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
        page.on("requestfailed", lambda r: "events" not in r.url and failed.append(r.url))
        for path in PAGES:
            page.goto(server.url + path, wait_until="load")
            time.sleep(0.3)  # let late requests (favicon, scripts) come in
            assert fits(page), f"{path} is wider than {width} px"
            icon = page.evaluate("document.querySelector('link[rel=icon]')?.href")
            assert icon == server.url + "/favicon.ico", path
            shot = tmp_path / f"{size}{path.replace('/', '-') or '-index'}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert png_size(shot)[0] == width
            assert shot.stat().st_size > 5_000, f"{shot.name}: a blank page?"
        # The chat's rooms and messages, once signed in.
        page.goto(server.url + "/chat")
        page.fill("#name", "ann")
        page.press("#name", "Enter")
        page.wait_for_function("window.chatRoom === 'general'")
        assert fits(page), f"the chat is wider than {width} px"
        time.sleep(0.3)
        assert "no longer available" not in page.inner_text("#messages")  # nothing was lost
        page.screenshot(path=str(tmp_path / f"{size}-chat-signed-in.png"), full_page=True)
        assert failed == []
        icon = page.request.get(server.url + "/favicon.ico")
        assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")


def test_chat_join_error_does_not_stick(browser: Any, server: GunicornServer) -> None:
    with new_page(browser, viewport={"width": 390, "height": 844}) as page:
        page.goto(server.url + "/chat")
        page.fill("#name", "bob")
        page.press("#name", "Enter")
        page.wait_for_function("document.getElementById('status').textContent === 'live'")
        page.once("dialog", lambda d: d.accept("wrong code"))
        page.click("#room-team")
        page.wait_for_selector(".msg.note.error")
        assert "invite code" in page.inner_text(".msg.note.error")
        assert page.inner_text("#status") == "live"  # the connection is fine
        page.fill("#text", "hello")
        page.press("#text", "Enter")
        page.wait_for_function("document.getElementById('messages').innerText.includes('hello')")
        assert page.inner_text("#status") == "live"


def test_log_tail_sends_on_enter_and_refuses_empty_lines(
    browser: Any, server: GunicornServer
) -> None:
    with new_page(browser, viewport={"width": 390, "height": 844}) as page:
        posts: list[str] = []
        page.on("request", lambda r: r.url.endswith("/logtail/append") and posts.append(r.url))
        page.goto(server.url + "/logtail")
        page.wait_for_function("document.getElementById('state').textContent === 'live'")
        page.press("#line", "Enter")  # empty: nothing sent
        page.fill("#line", "   ")
        page.press("#line", "Enter")
        page.fill("#line", "first line")
        page.press("#line", "Enter")
        page.wait_for_function("document.getElementById('log').innerText.includes('first line')")
        assert len(posts) == 1
        assert page.input_value("#line") == ""


def test_recorder_player_knows_its_duration(browser: Any, server: GunicornServer) -> None:
    with new_page(browser, viewport={"width": 390, "height": 844}, timeout_ms=30_000) as page:
        page.goto(server.url + "/record")
        page.click("#start")
        page.wait_for_function("document.getElementById('state').textContent === 'recording'")
        time.sleep(2.2)
        page.click("#stop")
        page.wait_for_function("document.getElementById('state').textContent === 'finished'")
        page.wait_for_function(
            "(() => { const d = document.getElementById('player').duration;"
            " return Number.isFinite(d) && d > 1; })()"
        )
        assert page.evaluate("document.getElementById('player').currentTime") < 1
