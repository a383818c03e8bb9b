"""The JavaScript client in Debian's Chromium (Playwright), against a real
gunicorn + gevent server: source() parsing, stores, the shared connection,
reconnect after a server restart, uploads that survive network failures,
and the recorder and chat examples.

Never downloads a browser; without /usr/bin/chromium these tests skip.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flask_streaming.testing import GunicornServer
from tests.apps.browser_app import SENT
from tests.browser import FAKE_MEDIA_ARGS, chromium, new_page
from tests.test_browser import comparable, expected_events, png_size

pytestmark = [pytest.mark.browser, pytest.mark.live]

APP = "tests.apps.clients_app:create_app()"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium(*FAKE_MEDIA_ARGS) as b:
        yield b


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    with new_page(browser, viewport={"width": 1280, "height": 800}, timeout_ms=15_000) as page:
        yield page


@pytest.fixture
def server(live_server: Callable[..., GunicornServer]) -> GunicornServer:
    return live_server(APP)


def open_client(page: Any, server: GunicornServer) -> None:
    page.goto(server.url + "/client-test")
    page.wait_for_function("window.ready === true")


def test_client_js_is_served_versioned_and_immutable(server: GunicornServer) -> None:
    page_html = httpx.get(server.url + "/client-test").text
    url = page_html.split('from "', 1)[1].split('"', 1)[0]
    assert url.startswith("/streaming/client.js?v=")
    versioned = httpx.get(server.url + url)
    assert versioned.status_code == 200
    assert versioned.headers["content-type"].startswith("text/javascript")
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    plain = httpx.get(server.url + "/streaming/client.js")
    assert plain.headers["cache-control"] == "no-cache"
    assert plain.content == versioned.content
    etag = plain.headers["etag"]
    again = httpx.get(server.url + "/streaming/client.js", headers={"If-None-Match": etag})
    assert again.status_code == 304
    dts = httpx.get(server.url + "/streaming/client.d.ts")
    assert dts.status_code == 200 and "export function source" in dts.text


def test_source_parses_tricky_payloads_like_event_source(server: GunicornServer, page: Any) -> None:
    open_client(page, server)
    received = page.evaluate(
        """() => new Promise((resolve, reject) => {
          const got = [];
          const src = fs.source('/tricky', {reconnect: false, cache: false,
                                            onError: (e) => reject(String(e))});
          const off = src.on('*', (e) => {
            if (e.type === 'done') { off(); resolve(got); } else got.push(e);
          });
        })"""
    )
    expected = expected_events(SENT)
    assert len(received) == len(expected), [e["type"] for e in received]
    for i, (got, want) in enumerate(zip(received, expected, strict=True)):
        assert comparable(got, want) == want, f"event {i} differs; sent {SENT[i]!r:.120}"


def test_select_json_transform_share_one_connection(server: GunicornServer, page: Any) -> None:
    open_client(page, server)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/counter" in r.url else None)
    result = page.evaluate(
        """async () => {
          const url = '/counter?every=0.05&limit=1000';
          const a = fs.source(url), b = fs.source(url);
          const raw = [], parsed = [], doubled = [];
          const offs = [
            a.select('count').subscribe((v) => raw.push(v)),
            b.select('count').json().subscribe((v) => parsed.push(v)),
            a.select('count').json().transform((v) => v.n * 2).subscribe((v) => doubled.push(v)),
          ];
          while (parsed.length < 6) await new Promise((r) => setTimeout(r, 20));
          const openState = a.readyState;
          offs.forEach((off) => off());
          const closedState = a.readyState;
          // Subscribing again opens a new connection.
          const again = [];
          const off = b.select('count').subscribe((v) => again.push(v));
          while (again.length < 2) await new Promise((r) => setTimeout(r, 20));
          off();
          return {raw, parsed, doubled, openState, closedState, again};
        }"""
    )
    # The Svelte store contract: the current value at once ("" / null / undefined before any event).
    assert result["raw"][0] == "" and result["parsed"][0] is None
    assert result["doubled"][0] is None  # undefined in JS
    ns = [p["n"] for p in result["parsed"][1:]]
    assert ns == list(range(1, len(ns) + 1))
    assert [json.loads(r)["n"] for r in result["raw"][1:]][: len(ns)] == ns
    assert result["doubled"][1:4] == [2, 4, 6]
    assert result["openState"] == 1 and result["closedState"] == 2
    # One connection for both sources, closed with the last unsubscribe,
    # reopened by the next subscriber.
    assert len(requests) == 2, requests


def test_close_hook_can_reconnect(server: GunicornServer, page: Any) -> None:
    open_client(page, server)
    result = page.evaluate(
        """async () => {
          const calls = [];
          const src = fs.source('/counter?every=0.05', {
            cache: false,
            close({connect, local, lastEventId}) { calls.push({local, lastEventId}); connect(); },
          });
          const seen = [];
          const off = src.on('count', (e) => seen.push(Number(e.lastEventId)));
          while (seen.length < 3) await new Promise((r) => setTimeout(r, 20));
          src.close();
          const at = seen.length;
          while (seen.length < at + 3) await new Promise((r) => setTimeout(r, 20));
          off();
          return {calls, seen};
        }"""
    )
    assert result["calls"][0]["local"] is True
    # connect() resumed with Last-Event-ID: the ids go on without a gap.
    assert result["seen"] == list(range(1, len(result["seen"]) + 1))


def test_source_post_headers_body_and_channels(server: GunicornServer, page: Any) -> None:
    open_client(page, server)
    echo = page.evaluate(
        """() => new Promise((resolve) => {
          const src = fs.source('/echo-events', {method: 'POST', headers: {'X-Token': 'sekrit'},
                                                 body: {hello: 'world'}, reconnect: false});
          const off = src.select('echo').json().subscribe((v) => { if (v) { off(); resolve(v); } });
        })"""
    )
    assert echo["method"] == "POST" and echo["token"] == "sekrit"
    assert json.loads(echo["body"]) == {"hello": "world"}

    page.evaluate(
        """() => {
          window.chan = [];
          const src = fs.source(fs.channelUrl(['news', 'sport']),
                                {onOpen: () => { window.chanOpen = true; }});
          window.offChan = src.on('*', (e) =>
            window.chan.push({type: e.type, channel: e.channel, data: e.data}));
        }"""
    )
    page.wait_for_function("window.chanOpen === true")
    for channel, text in (("news", "n1"), ("sport", "s1")):
        httpx.post(f"{server.url}/publish/{channel}", json={"data": text, "event": "update"})
    page.wait_for_function("window.chan.length >= 2")
    got = page.evaluate("window.chan")
    assert got == [
        {"type": "update", "channel": "news", "data": "n1"},
        {"type": "update", "channel": "sport", "data": "s1"},
    ]


def test_source_reconnects_after_server_restart_without_losing_events(
    server: GunicornServer, page: Any
) -> None:
    open_client(page, server)
    last_event_ids: list[str | None] = []
    page.on(
        "request",
        lambda r: (
            last_event_ids.append(r.headers.get("last-event-id")) if "/counter" in r.url else None
        ),
    )
    page.evaluate(
        """() => {
          window.counts = []; window.errors = 0;
          const src = fs.source('/counter?every=0.05', {onError: () => { window.errors++; }});
          src.on('count', (e) => window.counts.push(JSON.parse(e.data)));
        }"""
    )
    page.wait_for_function("window.counts.length >= 10")
    server.stop()
    time.sleep(0.5)
    server.start()
    before = page.evaluate("window.counts.length")
    page.wait_for_function(f"window.counts.length >= {before + 15}", timeout=30_000)
    counts = page.evaluate("window.counts")
    ns = [c["n"] for c in counts]
    assert ns == list(range(1, len(ns) + 1)), "an event was lost or repeated"
    assert len({c["pid"] for c in counts}) >= 2, "the server did not really restart"
    assert last_event_ids[0] is None
    resumed = [i for i in last_event_ids[1:] if i]
    assert resumed and int(resumed[-1]) >= 10, last_event_ids


def test_upload_resumes_after_network_failures(server: GunicornServer, page: Any) -> None:
    open_client(page, server)
    aborted: list[str] = []

    def flaky(route: Any) -> None:
        req = route.request
        if req.method == "POST" and req.headers.get("x-stream-segment") == "2" and len(aborted) < 3:
            aborted.append(req.headers["x-stream-segment"])
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/streaming/uploads", flaky)
    result = page.evaluate(
        """async () => {
          const bytes = new Uint8Array(5 * 65536 + 1234);
          for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919 + (i >> 8)) & 255;
          const blob = new Blob([bytes], {type: 'application/octet-stream'});
          const client = new fs.StreamingClient('/streaming/uploads', {},
                                                {retries: 1, initial: 20});
          const progress = [];
          const final = await client.upload(blob, {segmentSize: 65536, filename: 'data.bin',
                                                   onProgress: (p) => progress.push(p.loaded)});
          const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
          const hex = [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
          return {final, progress, hex, size: bytes.length};
        }"""
    )
    assert len(aborted) == 3, "the network failures were not injected"
    final = result["final"]
    assert final["done"] is True and final["segments"] == 6 and final["size"] == result["size"]
    assert result["progress"][-1] == result["size"]
    stored = httpx.get(f"{server.url}/recorded/{final['streamId']}").json()
    assert stored["sha256"] == result["hex"]


def test_send_has_svelte_streams_shape(server: GunicornServer, page: Any) -> None:
    open_client(page, server)
    result = page.evaluate(
        """async () => {
          const client = new fs.StreamingClient('/streaming/uploads');
          const id = await client.getStarted();
          const parts = ['one ', 'two ', 'three'];
          const readable = new ReadableStream({
            start(c) { parts.forEach((p) => c.enqueue(p)); c.close(); },
          });
          const partials = [];
          const res = await client.send(id, readable, async (r) => partials.push(await r.json()));
          return {id, partials, final: await res.json()};
        }"""
    )
    assert [p["segment"] for p in result["partials"]] == [0, 1, 2]
    assert all(p["message"].startswith("partial ") for p in result["partials"])
    assert result["final"]["done"] is True and result["final"]["segments"] == 3
    stored = httpx.get(f"{server.url}/recorded/{result['id']}").json()
    assert stored["head"] == b"one two three".hex()


def test_recorder_example_streams_microphone_segments(
    server: GunicornServer, page: Any, tmp_path: Path
) -> None:
    page.goto(server.url + "/record")
    page.click("#start")
    page.wait_for_function("document.getElementById('state').textContent === 'recording'")
    time.sleep(3.4)
    page.click("#stop")
    page.wait_for_function(
        "['finished', 'failed'].includes(document.getElementById('state').textContent)",
        timeout=30_000,
    )
    assert page.inner_text("#state") == "finished", page.inner_text("#log")
    rows = page.locator("#segments tr.segment")
    assert rows.count() >= 3
    texts = rows.all_inner_texts()
    assert all("partial" in t for t in texts), texts
    final = page.evaluate("window.finalResponse")
    assert final["segments"] >= 3 and final["segments"] == rows.count()
    stored = httpx.get(f"{server.url}/recorded/{final['streamId']}").json()
    assert stored["segments"] >= 3
    assert stored["head"].startswith("1a45dfa3"), f"not WebM/EBML: {stored['head']}"
    assert page.locator("#player").is_visible()

    # The hooks' progress, over SSE on upload-<session id>: one segment event
    # per segment, then the completion event.
    page.wait_for_function("window.sseEvents.some((e) => e.type === 'complete')", timeout=15_000)
    events = page.evaluate("window.sseEvents")
    segments = [e for e in events if e["type"] == "segment"]
    complete = [e for e in events if e["type"] == "complete"]
    assert len(segments) >= 3, events
    assert sorted({e["index"] for e in segments}) == list(range(final["segments"]))
    assert len(complete) == 1 and events[-1] == complete[0], events
    assert max(e["total"] for e in segments) == final["size"] == complete[0]["size"]
    assert max(e["segments"] for e in segments) == final["segments"]
    assert complete[0]["segments"] == final["segments"]
    assert complete[0]["duration"] > 3 and complete[0]["url"] == final["url"]
    # ... and the page shows them: a log line per event, the status, a
    # per-segment column beside the HTTP partial responses.
    lines = page.inner_text("#events").splitlines()
    assert sum(" segment: #" in line for line in lines) == len(segments), lines
    assert sum(" complete: " in line for line in lines) == 1, lines
    assert page.inner_text("#sse-state") == "complete"
    assert f"assembled {final['segments']} segments" in page.inner_text("#progress")
    sse_cells = page.locator("#segments tr.segment td:nth-child(4)").all_inner_texts()
    assert len(sse_cells) == final["segments"] and all("stored" in c for c in sse_cells)
    page.screenshot(path=str(tmp_path / "record.png"), full_page=True)


def test_chat_page_receives_server_messages_and_history(
    server: GunicornServer, page: Any, tmp_path: Path
) -> None:
    page.goto(server.url + "/chat")
    page.fill("#name", "ada")
    page.click("#login button")
    page.wait_for_function("document.getElementById('status').textContent === 'live'")

    message = {"user": "server", "text": "hello from the server", "at": time.time()}
    httpx.post(f"{server.url}/publish/chat-general", json={"data": message, "event": "message"})
    page.wait_for_selector("#messages >> text=hello from the server")

    page.fill("#text", "hi from ada")
    page.press("#text", "Enter")
    page.wait_for_selector("#messages >> text=hi from ada")
    shot = tmp_path / "chat.png"
    page.screenshot(path=str(shot), full_page=True)
    assert png_size(shot)[0] == 1280

    # History: a new page (a reconnect from scratch) gets the room's messages.
    page.reload()
    page.wait_for_selector("#messages >> text=hi from ada")
    assert page.locator("#messages >> text=hello from the server").count() == 1

    # Membership is checked on the server: no cookie, or not a member, 403.
    refused = httpx.get(f"{server.url}/streaming/events/chat-general")
    assert refused.status_code == 403
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    team = httpx.get(f"{server.url}/streaming/events/chat-team", cookies=cookies)
    assert team.status_code == 403
    # Channels outside chat-* keep the default policy.
    assert httpx.get(f"{server.url}/streaming/events/private-x").status_code == 403

    # Joining #team with the invite code makes ada a member: now she may read it.
    page.once("dialog", lambda dialog: dialog.accept("flask"))
    page.click("#room-team")
    page.wait_for_function("window.chatRoom === 'team'")
    page.wait_for_selector("#messages >> text=ada joined")
    with httpx.stream(
        "GET", f"{server.url}/streaming/events/chat-team", cookies=cookies, timeout=5
    ) as rv:
        assert rv.status_code == 200
