"""Browser tests: Debian's Chromium, driven by Playwright's sync API.

Chromium's real ``EventSource`` must receive what :func:`sse_response` sent
(after the spec's line-ending normalisation), and see the stream open before
the first event; the demo's index page must render its examples.

Never downloads a browser: Chromium comes from Debian (``apt-get install
chromium``, done by ``scripts/test`` in CI); without it these tests skip.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flask_streaming import ServerSentEvent
from flask_streaming.testing import GunicornServer
from tests.apps.browser_app import SENT
from tests.browser import chromium, new_page

pytestmark = [pytest.mark.browser, pytest.mark.live]

BROWSER_APP = "tests.apps.browser_app:create_app()"
DEMO_APP = "examples.demo:create_app()"
FIELDS = {"data", "event", "id", "retry", "comment"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    with new_page(browser, viewport={"width": 1280, "height": 720}) as page:
        yield page


def normalise(text: str) -> str:
    """The spec's line-ending normalisation: CRLF and lone CR become LF."""
    return re.sub(r"\r\n|\r", "\n", text)


def expected_events(sent: list[Any]) -> list[dict[str, Any]]:
    """What an ``EventSource`` must report for each item of *sent*, worked
    out from the WHATWG rules independently of the library's encoder. JSON
    data is compared parsed (``json`` holds the object)."""
    out: list[dict[str, Any]] = []
    last_id = ""
    for item in sent:
        event: str | None = None
        if isinstance(item, ServerSentEvent):
            data, event, id_ = item.data, item.event, item.id
        elif isinstance(item, dict) and item and FIELDS.issuperset(item):
            data, event, id_ = item.get("data"), item.get("event"), item.get("id")
        else:
            data, id_ = item, None
        if id_ is not None:
            last_id = str(id_)
        want: dict[str, Any] = {"type": event or "message", "lastEventId": last_id}
        if isinstance(data, bytes):
            want["data"] = normalise(data.decode("utf-8"))
        elif isinstance(data, str):
            want["data"] = normalise(data)
        else:
            want["json"] = data
        out.append(want)
    return out


def received_events(page: Any) -> list[dict[str, Any]]:
    page.wait_for_function("window.finished === true")
    errors = page.evaluate("window.errors")
    assert errors == [], f"EventSource errored (connection dropped or reconnected): {errors}"
    return list(page.evaluate("window.received"))


def comparable(got: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
    got = {k: got[k] for k in ("type", "lastEventId", "data")}
    if "json" in want:
        got["json"] = json.loads(got.pop("data"))
    return got


def test_event_source_receives_tricky_payloads_identical(
    live_server: Callable[..., GunicornServer], page: Any
) -> None:
    server = live_server(BROWSER_APP)
    page.goto(server.url + "/")
    page.evaluate("connect('/events')")
    received = received_events(page)
    expected = expected_events(SENT)

    got_types = [e["type"] for e in received]
    assert len(received) == len(expected), f"{len(expected)} events sent, got {got_types}"
    for i, (got, want) in enumerate(zip(received, expected, strict=True)):
        assert comparable(got, want) == want, f"event {i} differs; sent {SENT[i]!r:.120}"

    # Spot checks that the table above really covers the tricky cases.
    by_data = {e["data"]: e for e in received}
    assert "lone\ncr" in by_data and "cr\nlf" in by_data
    assert by_data["trailing newline\n"]["type"] == "message"
    assert "" in by_data and "\n" in by_data
    assert "nul\x00inside" in by_data
    assert "line\u2028separator\u2029paragraph" in by_data
    assert "next\u0085line" in by_data and "vertical\vtab\fform feed" in by_data
    assert by_data["id zero"]["lastEventId"] == "0"
    assert by_data["id kept from before"]["lastEventId"] == "0"
    assert by_data["empty id resets"]["lastEventId"] == ""
    assert by_data["unicode type"]["type"] == "événement-😀"
    long_event = next(e for e in received if e["type"] == "long")
    assert len(long_event["data"].encode("utf-8")) > 100_000
    assert "\r" not in long_event["data"]


def test_event_source_opens_before_the_first_event(
    live_server: Callable[..., GunicornServer], page: Any
) -> None:
    server = live_server(BROWSER_APP)
    page.goto(server.url + "/")
    page.evaluate("connect('/slow-events')")
    received = received_events(page)
    opened_at = page.evaluate("window.openedAt")

    assert [(e["data"], e["lastEventId"]) for e in received] == [("after two seconds", "slow-1")]
    first_at = received[0]["at"]
    assert opened_at is not None, "onopen never fired"
    assert opened_at < 1000, f"onopen fired {opened_at:.0f} ms after connecting"
    # The generator sleeps 2 s before its first yield: the event must come
    # later, or this test would not show that headers went out first.
    assert first_at >= 1500, f"first event after {first_at:.0f} ms; expected about 2000"
    assert opened_at < first_at


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_demo_index_screenshot(
    live_server: Callable[..., GunicornServer], page: Any, tmp_path: Path
) -> None:
    server = live_server(DEMO_APP)
    response = page.goto(server.url + "/")
    assert response is not None and response.status == 200

    links = {
        "clock": "Clock",
        "progress": "Task progress",
        "logtail": "Log tail",
        "dataset": "NDJSON dataset",
        "download": "File download",
    }
    for slug, title in links.items():
        link = page.locator(f"a#example-{slug}")
        assert link.is_visible(), f"no visible link to the {slug} example"
        assert link.get_attribute("href") == f"/{slug}"
        assert title in link.inner_text()

    shot = tmp_path / "demo-index.png"
    page.screenshot(path=str(shot), full_page=True)
    width, height = png_size(shot)
    assert width == 1280 and height >= 720
    # A blank 1280x720 page compresses to a few KB; text and cards do not.
    assert shot.stat().st_size > 20_000, f"screenshot only {shot.stat().st_size} bytes"
