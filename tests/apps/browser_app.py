"""The app behind tests/test_browser.py: tricky SSE payloads for Chromium.

``/`` serves a page whose ``EventSource`` records what it receives;
``/events`` streams :data:`SENT` with :func:`~flask_streaming.sse_response`
and ends with a ``done`` event; ``/slow-events`` waits two seconds before
its first event (``onopen`` must fire long before that).

Serve it with ``gunicorn -k gevent "tests.apps.browser_app:create_app()"``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, render_template_string

from flask_streaming import ServerSentEvent, Streaming, sse_response


def _long_text() -> str:
    """About 100 KB of text: multi-byte characters (so UTF-8 sequences get
    split across writes) and a CRLF every few hundred characters."""
    unit = "lorem ünïcödé 😀 ✓ "
    parts = []
    for i in range(250):
        parts.append(unit * 20)
        parts.append("\r\n" if i % 3 else "\n")
    return "".join(parts)


LONG = _long_text()

#: What ``/events`` yields, in order: every kind of item ``sse_response``
#: takes (str, bytes, dict of fields, plain dict, list, ServerSentEvent).
SENT: list[Any] = [
    "plain",
    ServerSentEvent("lone\rcr"),
    ServerSentEvent("line\nfeed"),
    ServerSentEvent("cr\r\nlf"),
    ServerSentEvent("mixed\r\r\n\n\rend"),
    ServerSentEvent("trailing newline\n"),
    ServerSentEvent("trailing crlf\r\n"),
    ServerSentEvent("\n"),
    ServerSentEvent(""),
    ServerSentEvent("line\u2028separator\u2029paragraph"),
    ServerSentEvent("next\u0085line"),
    ServerSentEvent("vertical\vtab\fform feed"),
    ServerSentEvent("nul\x00inside"),
    ServerSentEvent(" leading space"),
    ServerSentEvent(":colon first"),
    ServerSentEvent("data: not a field\n\nevent: injected\nid: injected"),
    ServerSentEvent("emoji 😀👍🏽🇫🇷 and 👩‍👩‍👧"),
    ServerSentEvent("\ufeffbom inside data"),
    ServerSentEvent(LONG, event="long"),
    b"bytes caf\xc3\xa9",
    {"user": "zoë", "n": 3, "ok": True, "none": None, "nested": {"list": [1, 2.5, "x\ny"]}},
    [1, "two", None, {"three": 3}],
    ServerSentEvent({"data": "json whose keys look like fields", "id": 5}),
    ServerSentEvent("unicode type", event="événement-😀"),
    ServerSentEvent("explicit message", event="message"),
    ServerSentEvent("id zero", id=0),
    ServerSentEvent("id kept from before"),
    ServerSentEvent("unicode id", id="ïd-😀 with space"),
    ServerSentEvent("empty id resets", id=""),
    {"data": "fields as a dict", "event": "dict-event", "id": "7"},
    ServerSentEvent("id and type", event="typed", id="8"),
]

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>browser SSE test</title>
<body>
<script>
  const TYPES = {{ types|tojson }};
  window.received = [];
  window.errors = [];
  window.finished = false;
  function connect(url) {
    window.t0 = performance.now();
    const source = new EventSource(url);
    window.source = source;
    source.onopen = () => { window.openedAt = performance.now() - window.t0; };
    source.onerror = () => {
      window.errors.push({readyState: source.readyState, at: performance.now() - window.t0});
      source.close();
      window.finished = true;
    };
    const record = (e) => {
      window.received.push({
        data: e.data, type: e.type, lastEventId: e.lastEventId,
        at: performance.now() - window.t0,
      });
    };
    source.onmessage = record;
    for (const type of TYPES) source.addEventListener(type, record);
    source.addEventListener("done", () => { source.close(); window.finished = true; });
  }
</script>
"""


def _event_types() -> list[str]:
    types = {"stream-error"}
    for item in SENT:
        if isinstance(item, ServerSentEvent) and item.event not in (None, "message"):
            types.add(item.event)
        elif isinstance(item, dict) and isinstance(item.get("event"), str):
            types.add(item["event"])
    return sorted(types)


def create_app() -> Flask:
    app = Flask(__name__)
    Streaming(app)

    @app.get("/")
    def page() -> str:
        return render_template_string(PAGE, types=_event_types())

    @app.get("/events")
    def events():  # type: ignore[no-untyped-def]
        def generate() -> Iterator[Any]:
            yield from SENT
            yield ServerSentEvent("end", event="done")

        return sse_response(generate(), ping=0.5)

    @app.get("/slow-events")
    def slow_events():  # type: ignore[no-untyped-def]
        def generate() -> Iterator[Any]:
            time.sleep(2)
            yield ServerSentEvent("after two seconds", id="slow-1")
            yield ServerSentEvent("end", event="done")

        return sse_response(generate(), ping=0.3)

    return app
