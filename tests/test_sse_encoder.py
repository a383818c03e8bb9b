"""The SSE encoder, byte for byte, and round trips through two parsers.

The table pins every encoding rule of the WHATWG event-stream format that
:class:`~flask_streaming.ServerSentEvent` promises. The property tests check
that arbitrary text survives an encode/parse round trip (line endings
normalised to LF, as the spec requires) through our spec-exact
:class:`~flask_streaming.sse_wire.EventParser` and through ``httpx-sse``.
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime
import re
import uuid
from collections.abc import Iterable
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.json.provider import DefaultJSONProvider, JSONProvider
from httpx_sse._decoders import SSEDecoder, SSELineDecoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_streaming import ServerSentEvent
from flask_streaming.sse_wire import Event, EventParser
from flask_streaming.testing import parse_events

E = ServerSentEvent

# When a property fails, Hypothesis imports libcst to suggest a patch, and
# libcst trips a DeprecationWarning of mypy_extensions: keep that from turning
# the failure report into an INTERNALERROR under ``filterwarnings = error``.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)

# (event, exact bytes). One row per rule; the id says which.
TABLE: list[tuple[str, ServerSentEvent, bytes]] = [
    ("plain", E("hello"), b"data: hello\n\n"),
    ("one space after colon", E("a b"), b"data: a b\n\n"),
    ("leading space kept", E(" x"), b"data:  x\n\n"),
    ("LF splits", E("a\nb"), b"data: a\ndata: b\n\n"),
    ("CR splits", E("a\rb"), b"data: a\ndata: b\n\n"),
    ("CRLF is one break", E("a\r\nb"), b"data: a\ndata: b\n\n"),
    ("LF CR is two breaks", E("a\n\rb"), b"data: a\ndata:\ndata: b\n\n"),
    ("blank lines inside", E("a\n\nb"), b"data: a\ndata:\ndata: b\n\n"),
    ("U+2028 stays in data", E("a\u2028b"), b"data: a\xe2\x80\xa8b\n\n"),
    ("U+2029 stays in data", E("a\u2029b"), b"data: a\xe2\x80\xa9b\n\n"),
    ("U+0085 stays in data", E("a\x85b"), b"data: a\xc2\x85b\n\n"),
    ("VT and FF stay in data", E("a\vb\fc"), b"data: a\x0bb\x0cc\n\n"),
    ("FS/GS/RS stay in data", E("a\x1c\x1d\x1eb"), b"data: a\x1c\x1d\x1eb\n\n"),
    ("NUL allowed in data", E("a\x00b"), b"data: a\x00b\n\n"),
    ("empty string dispatches", E(""), b"data:\n\n"),
    ("trailing LF survives", E("a\n"), b"data: a\ndata:\n\n"),
    ("trailing CRLF survives", E("a\r\n"), b"data: a\ndata:\n\n"),
    ("only a newline", E("\n"), b"data:\ndata:\n\n"),
    ("emoji as UTF-8", E("\U0001f600"), b"data: \xf0\x9f\x98\x80\n\n"),
    ("non-ASCII unescaped", E("d\u00e9j\u00e0"), b"data: d\xc3\xa9j\xc3\xa0\n\n"),
    ("BOM in data is not a stream BOM", E("\ufeffx"), b"data: \xef\xbb\xbfx\n\n"),
    ("bytes decoded as UTF-8", E("caf\u00e9".encode()), b"data: caf\xc3\xa9\n\n"),
    ("bytes split too", E(b"a\r\nb"), b"data: a\ndata: b\n\n"),
    ("dict as compact JSON", E({"a": 1, "b": [1, 2]}), b'data: {"a":1,"b":[1,2]}\n\n'),
    ("JSON keeps key order", E({"b": 1, "a": 2}), b'data: {"b":1,"a":2}\n\n'),
    ("JSON non-ASCII raw", E({"k": "\u00e9"}), b'data: {"k":"\xc3\xa9"}\n\n'),
    ("JSON newline escaped", E({"k": "a\nb"}), b'data: {"k":"a\\nb"}\n\n'),
    ("list as JSON", E([1, "x", None]), b'data: [1,"x",null]\n\n'),
    ("int 0 as JSON", E(0), b"data: 0\n\n"),
    ("False as JSON", E(False), b"data: false\n\n"),
    ("None: no data line", E(None, event="x"), b"event: x\n\n"),
    ("event name", E("d", event="update"), b"event: update\ndata: d\n\n"),
    ("event name non-ASCII", E("d", event="\u00e9v"), b"event: \xc3\xa9v\ndata: d\n\n"),
    ("id", E("d", id="abc"), b"id: abc\ndata: d\n\n"),
    ("id int", E("d", id=42), b"id: 42\ndata: d\n\n"),
    ("id=0 kept", E("d", id=0), b"id: 0\ndata: d\n\n"),
    ("empty id resets", E("d", id=""), b"id:\ndata: d\n\n"),
    ("retry", E("d", retry=3000), b"data: d\nretry: 3000\n\n"),
    ("retry 0 kept", E(retry=0), b"retry: 0\n\n"),
    ("comment", E(comment="keep-alive"), b": keep-alive\n\n"),
    ("empty comment", E(comment=""), b":\n\n"),
    (
        "every field",
        E("x\ny", event="e", id=7, retry=10, comment="c"),
        b": c\nid: 7\nevent: e\ndata: x\ndata: y\nretry: 10\n\n",
    ),
]


@pytest.mark.parametrize(("event", "expected"), [r[1:] for r in TABLE], ids=[r[0] for r in TABLE])
def test_encode_exact_bytes(event: ServerSentEvent, expected: bytes) -> None:
    assert event.encode() == expected


@pytest.mark.parametrize(("event", "expected"), [r[1:] for r in TABLE], ids=[r[0] for r in TABLE])
def test_encode_never_starts_with_bom_and_ends_with_blank_line(
    event: ServerSentEvent, expected: bytes
) -> None:
    raw = event.encode()
    assert not raw.startswith(codecs.BOM_UTF8)
    assert raw.endswith(b"\n\n")
    raw.decode("utf-8")  # valid UTF-8


def _spec_data(text: str) -> str:
    return re.sub(r"\r\n|\r", "\n", text)


@pytest.mark.parametrize(
    ("text"),
    ["", "\n", "a\n", "a\r\nb\rc\nd", "\u2028\x85\v\f", "x\x00y", "\U0001f600\r\n"],
)
def test_table_texts_parse_back(text: str) -> None:
    (event,) = parse_events(E(text, event="t", id="1").encode())
    assert (event.data, event.event, event.id) == (_spec_data(text), "t", "1")


@pytest.mark.parametrize("field", ["event", "id", "comment"])
@pytest.mark.parametrize("bad", ["\r", "\n", "\r\n", "\x00", "a\nretry: 1", "x\rdata: injected"])
def test_breaking_characters_in_fields_raise(field: str, bad: str) -> None:
    with pytest.raises(ValueError, match=field):
        E("d", **{field: bad})


@pytest.mark.parametrize("field", ["event", "id", "comment"])
def test_unicode_line_separators_allowed_in_fields(field: str) -> None:
    # Only CR, LF and NUL break the format; U+2028 is an ordinary character.
    raw = E("d", **{field: "a\u2028b"}).encode()
    assert "a\u2028b".encode() in raw


@pytest.mark.parametrize("retry", [-1, 1.5, 3.0, "10", True, False])
def test_retry_must_be_a_non_negative_int(retry: Any) -> None:
    with pytest.raises(ValueError, match="retry"):
        E("d", retry=retry)


@pytest.mark.parametrize("retry", [0, 1, 2**40])
def test_retry_accepted(retry: int) -> None:
    parser = EventParser()
    parser.feed(E("d", retry=retry).encode())
    assert parser.retry == retry


def test_invalid_utf8_bytes_rejected() -> None:
    with pytest.raises(UnicodeDecodeError):
        E(b"\xff\xfe").encode()


# --- JSON through the app's provider -------------------------------------


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


@dataclasses.dataclass
class Pair:
    a: int
    b: str


class PointProvider(DefaultJSONProvider):
    @staticmethod
    def default(o: Any) -> Any:
        if isinstance(o, Point):
            return [o.x, o.y]
        return DefaultJSONProvider.default(o)


class UpperProvider(JSONProvider):
    """A provider that is not a DefaultJSONProvider: its dumps must be used."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return "JSON<" + str(sorted(obj)) + ">"

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        raise NotImplementedError


def test_json_uses_flask_default_for_dates_uuids_dataclasses() -> None:
    app = Flask(__name__)
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    day = datetime.date(2024, 2, 29)
    with app.app_context():
        raw = E({"u": u, "d": day, "p": Pair(1, "z")}).encode()
    assert raw == (
        b'data: {"d":"Thu, 29 Feb 2024 00:00:00 GMT","p":{"a":1,"b":"z"},'
        b'"u":"12345678-1234-5678-1234-567812345678"}\n\n'
    )


def test_json_follows_the_providers_sort_keys_and_ensure_ascii() -> None:
    app = Flask(__name__)
    with app.app_context():
        assert E({"b": "\u00e9", "a": 1}).encode() == b'data: {"a":1,"b":"\\u00e9"}\n\n'
        app.json.sort_keys = False  # type: ignore[attr-defined]
        app.json.ensure_ascii = False  # type: ignore[attr-defined]
        assert E({"b": "\u00e9", "a": 1}).encode() == 'data: {"b":"\u00e9","a":1}\n\n'.encode()


def test_json_uses_the_apps_provider_default_hook() -> None:
    app = Flask(__name__)
    app.json = PointProvider(app)
    with app.app_context():
        assert E({"p": Point(1, 2)}).encode() == b'data: {"p":[1,2]}\n\n'
    # Without the app, the stdlib encoder does not know the type.
    with pytest.raises(TypeError):
        E({"p": Point(1, 2)}).encode()


def test_json_uses_a_custom_provider_dumps() -> None:
    app = Flask(__name__)
    app.json = UpperProvider(app)
    with app.app_context():
        assert E({"b": 1, "a": 2}).encode() == b"data: JSON<['a', 'b']>\n\n"


def test_explicit_dumps_argument_wins() -> None:
    assert E([1]).encode(lambda o: "X\nY") == b"data: X\ndata: Y\n\n"


# --- round trips ------------------------------------------------------------

# Text with every character class that matters to the format.
TRICKY = st.sampled_from(
    ["\r", "\n", "\r\n", "\n\r", "\u2028", "\u2029", "\x85", "\x00", "\v", "\f", " ", ":",
     "\ufeff", "\U0001f600", "\U0001f1eb\U0001f1f7", "data: x", "é"]
)  # fmt: skip
TEXT = st.lists(st.one_of(TRICKY, st.text(max_size=8)), max_size=12).map("".join)
# Field values: anything but CR, LF and NUL.
FIELD = st.text(st.characters(exclude_characters="\r\n\x00", exclude_categories=["Cs"]), max_size=8)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[ServerSentEvent], list[bytes]]:
    """A list of events and comments, and its encoding cut at random places."""
    items: list[ServerSentEvent] = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["event", "event", "comment"]))
        if kind == "comment":
            items.append(E(comment=draw(FIELD)))
        else:
            items.append(
                E(
                    draw(TEXT),
                    event=draw(st.none() | FIELD),
                    id=draw(st.none() | FIELD | st.integers(0, 10**6)),
                )
            )
    raw = b"".join(item.encode() for item in items)
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    return items, chunks


def expected_events(items: Iterable[ServerSentEvent]) -> list[Event]:
    """What a spec-exact client dispatches for *items*."""
    out: list[Event] = []
    last_id = ""
    for item in items:
        if item.id is not None:
            last_id = item.id
        if item.data is not None:
            out.append(Event(_spec_data(item.data), item.event or "message", last_id))
    return out


def httpx_sse_events(chunks: list[bytes]) -> list[Event]:
    """Parse with httpx's text decoding and httpx-sse's decoders, exactly as
    ``EventSource.iter_sse`` does, dropping only httpx-sse's documented quirk:
    once an id was seen, a block of nothing but comments dispatches a phantom
    empty event."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"Content-Type": "text/event-stream; charset=utf-8"},
            content=iter(chunks),
        )

    out: list[Event] = []
    with (
        httpx.Client(transport=httpx.MockTransport(handler)) as client,
        client.stream("GET", "http://test/events") as response,
    ):
        lines = SSELineDecoder()
        decoder = SSEDecoder()
        comments_only = fields = False

        def handle(line: str) -> None:
            nonlocal comments_only, fields
            line = line.rstrip("\n")
            sse = decoder.decode(line)
            if line.startswith(":"):
                comments_only = True
            elif line:
                fields = True
            if sse is not None:
                phantom = comments_only and not fields
                if not (phantom and sse.data == "" and sse.event == "message"):
                    out.append(Event(sse.data, sse.event, sse.id))
            if not line:
                comments_only = fields = False

        for text in response.iter_text():
            for line in lines.decode(text):
                handle(line)
        for line in lines.flush():
            handle(line)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_round_trip_through_event_parser(stream: tuple[list[ServerSentEvent], list[bytes]]) -> None:
    items, chunks = stream
    parser = EventParser()
    got: list[Event] = []
    for chunk in chunks:
        got.extend(parser.feed(chunk))
    assert [(e.data, e.event, e.id) for e in got] == [
        (e.data, e.event, e.id) for e in expected_events(items)
    ]
    assert parser.comments == sum(1 for i in items if i.comment is not None)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_round_trip_through_httpx_sse(stream: tuple[list[ServerSentEvent], list[bytes]]) -> None:
    items, chunks = stream
    got = httpx_sse_events(chunks)
    assert [(e.data, e.event, e.id) for e in got] == [
        (e.data, e.event, e.id) for e in expected_events(items)
    ]


@given(TEXT)
def test_single_event_round_trip(text: str) -> None:
    (event,) = parse_events(E(text).encode())
    assert event.data == _spec_data(text)


def test_httpx_sse_quirk_filter_is_narrow() -> None:
    """The filter drops only comment-block phantoms, never a real empty event."""
    items = [E("a", id="1"), E(comment="ping"), E(""), E(comment="")]
    chunks = [b"".join(i.encode() for i in items)]
    assert [(e.data, e.id) for e in httpx_sse_events(chunks)] == [("a", "1"), ("", "1")]


# --- our parser, on input our encoder never produces ---------------------


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"\xef\xbb\xbfdata: a\n\n"], [("a", "message", "")]),
        ([b"\xef", b"\xbb", b"\xbfdata: a\n\n"], [("a", "message", "")]),
        ([b"data: a\r\r"], [("a", "message", "")]),
        ([b"data: a\r", b"\n", b"data: b\r\n\r\n"], [("a\nb", "message", "")]),
        ([b"data: a\r", b"", b"\ndata: b\n\n"], [("a\nb", "message", "")]),
        ([b"data\n\n"], [("", "message", "")]),
        ([b"data:a\n\n"], [("a", "message", "")]),
        ([b"event: x\n\n", b"data: y\n\n"], [("y", "message", "")]),
        ([b"id: 1\x002\ndata: y\n\n"], [("y", "message", "")]),
        ([b"id: 5\ndata: y\n\n", b"data: z\n\n"], [("y", "message", "5"), ("z", "message", "5")]),
        ([b"data: y\n"], []),
        ([b"foo: bar\n\n", b"data: y\n\n"], [("y", "message", "")]),
    ],
)
def test_event_parser_edge_cases(chunks: list[bytes], expected: list[tuple[str, str, str]]) -> None:
    parser = EventParser()
    got = [e for c in chunks for e in parser.feed(c)]
    assert [(e.data, e.event, e.id) for e in got] == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("100", 100), ("1x", None), ("-1", None), ("", None)]
)
def test_event_parser_retry_only_digits(value: str, expected: int | None) -> None:
    parser = EventParser()
    parser.feed(f"retry: {value}\n\n".encode())
    assert parser.retry == expected
