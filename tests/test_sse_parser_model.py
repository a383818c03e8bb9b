"""Both event-stream parsers against a plain model of the WHATWG algorithm.

The model (:func:`model`) is the spec's text done the simple way: decode
the *whole* stream as UTF-8, skip one leading BOM, split it into lines,
and run "interpreting an event stream" line by line with a string data
buffer (``value + LF`` per data line, the final LF removed at dispatch),
exactly as the spec words it. The parsers under test are incremental and
keep their state across chunks; hypothesis builds streams from the pieces
where state and order matter (field names, colons, spaces, every line end,
BOM bytes, NUL, digits, cut and invalid UTF-8) and cuts them anywhere.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flask_streaming
from tests.browser import chromium, new_page
from tests.sse_cases import parse

# When a property fails, Hypothesis imports libcst to suggest a patch, and
# libcst trips a DeprecationWarning of mypy_extensions (see test_sse_encoder).
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)

NAMES = [b"data"] * 4 + [
    b"event",
    b"id",
    b"id",
    b"retry",
    b"retry",
    b"channel",
    b"Data",
    b"foo",
    b"",
]
KINDS = [0, 0, 0, 0, 1, 2, 3, 3, 3]  # mostly fields and blank lines
VALUES = [
    b"x", b" ", b"12", b"12", b"0", b"7", b"-", b":", b"\x00", b"\xef\xbb\xbf", b"\xff",
    "é".encode(), "\u2026".encode(), b"\xe2\x80", "😀".encode()[:3],
]  # fmt: skip
ENDS = [b"\n", b"\r", b"\r\n"]
HEADS = [b"", b"", b"\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf", b"\xef\xbb"]


def build(head: bytes, lines: list[tuple[int, bytes, int, bytes, int]], tail: bytes) -> bytes:
    """A stream from drawn parts: each line is (kind, name, spaces, value,
    end): 0 ``name:value``, 1 a bare name, 2 a comment, 3 a blank line."""
    out = [head]
    for kind, name, spaces, value, end in lines:
        if kind == 0:
            out.append(name + b":" + b" " * spaces + value)
        elif kind == 1:
            out.append(name)
        elif kind == 2:
            out.append(b":" + value)
        out.append(ENDS[end])
    out.append(tail)
    return b"".join(out)


def model(stream: bytes, last_event_id: str = "") -> dict[str, Any]:
    """What a spec-exact client reports for the whole *stream*."""
    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = re.split(r"\r\n|\r|\n", text)[:-1]  # an unterminated last line is never parsed
    data, type_, id_buffer, id_string = "", "", last_event_id, last_event_id
    retry: int | None = None
    comments = 0
    events: list[list[str]] = []
    channels: list[str | None] = []
    channel: str | None = None
    for line in lines:
        if line == "":
            id_string = id_buffer
            if data == "":
                type_, channel = "", None
                continue
            if data.endswith("\n"):
                data = data[:-1]
            events.append([type_ or "message", data, id_string])
            channels.append(channel)
            data, type_, channel = "", "", None
            continue
        if line.startswith(":"):
            comments += 1
            continue
        if ":" in line:
            field, value = line.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            field, value = line, ""
        if field == "data":
            data += value + "\n"
        elif field == "event":
            type_ = value
        elif field == "id":
            if "\0" not in value:
                id_buffer = value
        elif field == "retry":
            if value and all(c in "0123456789" for c in value):
                retry = int(value)
        elif field == "channel":
            channel = value
    return {
        "events": events,
        "channels": channels,
        "resent": id_string,
        "retry": retry,
        "comments": comments,
    }


values = st.lists(st.sampled_from(VALUES), max_size=4).map(b"".join)
streams = st.builds(
    build,
    st.sampled_from(HEADS),
    st.lists(
        st.tuples(
            st.sampled_from(KINDS),
            st.sampled_from(NAMES),
            st.integers(0, 2),
            values,
            st.integers(0, len(ENDS) - 1),
        ),
        max_size=16,
    ),
    st.sampled_from([b"", b"data: cut", b"id: 9", b"retry: 7"]),
)


def cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(c % (len(stream) + 1) for c in cuts), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=400, deadline=None)
@given(streams, st.lists(st.integers(0, 10_000), max_size=10), st.sampled_from(["", "5", "é"]))
def test_python_parser_matches_the_model(stream: bytes, cuts: list[int], resumed: str) -> None:
    assert parse(cut(stream, cuts), resumed) == model(stream, resumed)


def test_model_agrees_with_itself_on_the_issue_stream() -> None:
    """A sanity row: the model gives the WPT format-bom result."""
    stream = b"\xef\xbb\xbfdata:1\n\n\xef\xbb\xbfdata:2\n\ndata:3\n\n\n"
    assert [e[1] for e in model(stream)["events"]] == ["1", "3"]


# --- the JavaScript parser, same model, in Chromium ----------------------------------


def random_streams(count: int, seed: int = 13) -> Iterator[tuple[bytes, list[int]]]:
    """*count* streams drawn like :data:`streams`, from a fixed seed, and cuts."""
    rng = random.Random(seed)
    for _ in range(count):
        lines = [
            (
                rng.choice(KINDS),
                rng.choice(NAMES),
                rng.randrange(3),
                b"".join(rng.choice(VALUES) for _ in range(rng.randrange(5))),
                rng.randrange(len(ENDS)),
            )
            for _ in range(rng.randrange(17))
        ]
        tail = rng.choice([b"", b"data: cut", b"id: 9", b"retry: 7"])
        stream = build(rng.choice(HEADS), lines, tail)
        yield stream, sorted(rng.randrange(len(stream) + 1) for _ in range(rng.randrange(8)))


JS_PARSE = """(runs) => runs.map(({bytes, cuts}) => {
  const data = new Uint8Array(bytes);
  const got = [], channels = [];
  let retry = null, comments = 0;
  const p = new fs.EventStreamParser({
    onComment: () => { comments += 1; },
    onEvent: (e) => { got.push([e.type, e.data, e.lastEventId]); channels.push(e.channel); },
    onRetry: (ms) => { retry = ms; },
  });
  let at = 0;
  for (const c of [...cuts, data.length]) { p.feed(data.subarray(at, c)); at = c; }
  p.end();
  return {events: got, channels, resent: p.lastEventId, retry, comments};
})"""


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    """A blank page with the JS client module inlined from the package file
    (no server needed: the parser does no I/O)."""
    source = Path(flask_streaming.__file__).parent / "static" / "flask-streaming.js"
    module = source.read_text() + "\nwindow.fs = { EventStreamParser };\nwindow.ready = true;\n"
    with chromium() as browser, new_page(browser, timeout_ms=60_000) as page:
        page.goto("about:blank")
        page.add_script_tag(content=module, type="module")
        page.wait_for_function("window.ready === true")
        yield page


@pytest.mark.browser
def test_js_parser_matches_the_model(page: Any) -> None:
    runs = list(random_streams(400))
    results = page.evaluate(JS_PARSE, [{"bytes": list(s), "cuts": c} for s, c in runs])
    failures = [
        (stream, cuts, got, model(stream))
        for (stream, cuts), got in zip(runs, results, strict=True)
        if got != model(stream)
    ]
    assert failures == []
