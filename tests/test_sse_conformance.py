"""The conformance table (tests/sse_cases.py: web-platform-tests
``eventsource/`` cases restated, plus one row per parsing rule) against
every parser and client of the project, and Chromium's ``EventSource`` as
the reference:

* the Python :class:`~flask_streaming.sse_wire.EventParser` and the
  JavaScript ``EventStreamParser`` (in Chromium), each fed every stream
  whole, cut in two at every byte, and one byte at a time: chunk boundaries
  never change a parse;
* the clients on a live gunicorn: :func:`flask_streaming.client.events` and
  the JS ``source()``, the streams sent whole and one byte per write; what
  each resends as ``Last-Event-ID`` is recorded by the server, byte for byte;
* Chromium's ``EventSource`` on the same server;
* the answers a client must refuse (a 2xx other than 200, a wrong
  ``Content-Type``) or may retry (a 503: a documented deviation).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_streaming.client import ServerError, events
from flask_streaming.testing import GunicornServer
from tests.sse_cases import CASES, RESPONSES, Case, ResponseCase, cases_server, parse

# When a property fails, Hypothesis imports libcst to suggest a patch, and
# libcst trips a DeprecationWarning of mypy_extensions (see test_sse_encoder).
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)


def expected(case: Case) -> dict[str, Any]:
    return {
        "events": [list(e) for e in case.events],
        "channels": list(case.channels or [None] * len(case.events)),
        "resent": case.resent,
        "retry": case.retry,
    }


def parse_py(chunks: list[bytes]) -> dict[str, Any]:
    got = parse(chunks)
    del got["comments"]  # not a column of the table
    return got


# --- the Python parser ----------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_python_parser_whole_cut_anywhere_and_bytewise(case: Case) -> None:
    want = expected(case)
    stream = case.stream
    assert parse_py([stream]) == want
    for k in range(len(stream) + 1):
        assert parse_py([stream[:k], b"", stream[k:]]) == want, f"cut at byte {k}"
    assert parse_py([stream[i : i + 1] for i in range(len(stream))]) == want


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(CASES), st.data())
def test_python_parser_any_chunking(case: Case, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(case.stream)), max_size=8)))
    bounds = [0, *cuts, len(case.stream)]
    chunks = [case.stream[a:b] for a, b in itertools.pairwise(bounds)]
    assert parse_py(chunks) == expected(case)


def test_table_has_the_wpt_cases_and_each_rule() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    wpt = {c.source.split(":")[0].split(" (")[0] for c in CASES if c.wpt}
    assert len(wpt) >= 12, wpt
    assert {r.status for r in RESPONSES} >= {205, 210, 299, 404, 410, 503}


# --- the live server ------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    with cases_server(tmp_path_factory.mktemp("sse-cases")) as s:
        yield s


def token() -> str:
    return uuid.uuid4().hex


def seen(server: GunicornServer, tok: str) -> list[dict[str, Any]]:
    rv: list[dict[str, Any]] = httpx.get(f"{server.url}/seen/{tok}").json()
    return rv


def resent_header(server: GunicornServer, tok: str) -> str | None:
    """What the client sent as Last-Event-ID when it reconnected (decoded
    from its UTF-8 bytes; ``None``: no header)."""
    requests = seen(server, tok)
    if len(requests) < 2:
        return f"<no reconnect: {requests}>"
    raw = requests[1]["last_event_id"]
    return None if raw is None else bytes.fromhex(raw).decode("utf-8", "backslashreplace")


def want_header(case: Case) -> str | None:
    return case.resent or None


# --- the JavaScript parser, in Chromium ------------------------------------------

JS_PARSE_ALL = """(cases) => {
  const run = (chunks) => {
    const got = [], channels = [];
    let retry = null;
    const p = new fs.EventStreamParser({
      onEvent: (e) => { got.push([e.type, e.data, e.lastEventId]); channels.push(e.channel); },
      onRetry: (ms) => { retry = ms; },
    });
    for (const c of chunks) p.feed(c);
    p.end();
    return {events: got, channels, resent: p.lastEventId, retry};
  };
  const out = {};
  for (const c of cases) {
    const bytes = new Uint8Array(c.bytes);
    const whole = run([bytes]);
    const key = JSON.stringify(whole);
    const cuts = [];
    for (let k = 0; k <= bytes.length; k++) {
      const r = run([bytes.subarray(0, k), new Uint8Array(0), bytes.subarray(k)]);
      if (JSON.stringify(r) !== key) cuts.push(k);
    }
    const bytewise = run(Array.from(bytes, (b) => new Uint8Array([b])));
    out[c.name] = {whole, cuts, bytewise};
  }
  return out;
}"""


@pytest.mark.browser
def test_js_parser_whole_cut_anywhere_and_bytewise(client_page: Any) -> None:
    cases = [{"name": c.name, "bytes": list(c.stream)} for c in CASES]
    results = client_page.evaluate(JS_PARSE_ALL, cases)
    for case in CASES:
        got = results[case.name]
        assert got["whole"] == expected(case), case.name
        assert got["cuts"] == [], f"{case.name}: cut at these bytes changes the parse"
        assert got["bytewise"] == expected(case), case.name


# --- the clients on a live server ------------------------------------------------


@pytest.mark.live
@pytest.mark.parametrize("split", [0, 1], ids=["whole", "byte-per-write"])
def test_python_client_against_every_case(server: GunicornServer, split: int) -> None:
    failures = []
    with httpx.Client(timeout=10) as http:
        for case in CASES:
            tok = token()
            url = f"{server.url}/case/{case.name}?token={tok}&split={split}"
            got = list(events(url, retry=0.05, client=http))  # ends at the 204
            seen_events = [[e.event, e.data, e.id] for e in got]
            header = resent_header(server, tok)
            if seen_events != expected(case)["events"] or header != want_header(case):
                failures.append((case.name, seen_events, header))
    assert failures == []


JS_SOURCE_ALL = """async ({cases, base}) =>
 Promise.all(cases.map((c) => new Promise((resolve) => {
  const got = [], channels = [];
  const src = fs.source(`${base}/case/${c.name}?token=${c.token}&split=${c.split}`,
                        {cache: false, retry: 50});
  src.on("*", (e) => { got.push([e.type, e.data, e.lastEventId]); channels.push(e.channel); });
  const deadline = Date.now() + 20000;
  const poll = setInterval(() => {
    if (src.readyState === 2 || Date.now() > deadline) {
      clearInterval(poll);
      src.close();
      resolve({name: c.name, split: c.split, events: got, channels,
               retry: src.connection.retry, timedOut: Date.now() > deadline});
    }
  }, 20);
})))"""


@pytest.mark.live
@pytest.mark.browser
def test_js_source_against_every_case(server: GunicornServer, client_page: Any) -> None:
    runs = [{"name": c.name, "token": token(), "split": split} for c in CASES for split in (0, 1)]
    results = client_page.evaluate(JS_SOURCE_ALL, {"cases": runs, "base": server.url})
    by_name = {c.name: c for c in CASES}
    failures = []
    for run, got in zip(runs, results, strict=True):
        case = by_name[run["name"]]
        want = expected(case)
        header = resent_header(server, run["token"])
        retry = want["retry"] if want["retry"] is not None else 50
        if (
            got["timedOut"]
            or got["events"] != want["events"]
            or got["channels"] != want["channels"]
            or got["retry"] != retry
            or header != want_header(case)
        ):
            failures.append((run, got, header))
    assert failures == []


JS_EVENT_SOURCE_ALL = """async ({cases, base}) =>
 Promise.all(cases.map((c) => new Promise((resolve) => {
  const got = [];
  const es = new EventSource(`${base}/case/${c.name}?token=${c.token}&split=${c.split}`);
  for (const type of new Set(["message", ...c.types])) {
    es.addEventListener(type, (e) => got.push([e.type, e.data, e.lastEventId]));
  }
  const timer = setTimeout(() => { es.close(); resolve({events: got, timedOut: true}); }, 20000);
  es.onerror = () => {
    // CONNECTING: it reconnects (the server then answers 204); CLOSED: done.
    if (es.readyState === EventSource.CLOSED) {
      clearTimeout(timer);
      resolve({events: got, timedOut: false});
    }
  };
})))"""


@pytest.mark.live
@pytest.mark.browser
def test_chromium_event_source_is_the_reference(server: GunicornServer, client_page: Any) -> None:
    """Chromium's own EventSource agrees with every row (events, their
    lastEventId, and the Last-Event-ID bytes it resends): the table states
    what browsers do, not only what we think the spec says."""
    runs = [
        {
            "name": c.name,
            "token": token(),
            "split": split,
            "types": sorted({e[0] for e in c.events}),
        }
        for c in CASES
        for split in (0, 1)
    ]
    results = client_page.evaluate(JS_EVENT_SOURCE_ALL, {"cases": runs, "base": server.url})
    by_name = {c.name: c for c in CASES}
    failures = []
    for run, got in zip(runs, results, strict=True):
        case = by_name[run["name"]]
        if case.chromium_fails:  # a known departure of Chromium's: it fails the connection
            ok = got["events"] == [] and len(seen(server, run["token"])) == 1
        else:
            header = resent_header(server, run["token"])
            events_ok = got["events"] == expected(case)["events"]
            ok = not got["timedOut"] and events_ok and header == want_header(case)
        if not ok:
            failures.append((run["name"], run["split"], got, seen(server, run["token"])))
    assert failures == []


# --- answers a client must refuse ---------------------------------------------------


def _wait_quiet(server: GunicornServer, tok: str, count: int, seconds: float = 0.6) -> int:
    """How many requests the token saw, after waiting long enough for a
    client that (wrongly) reconnects after ``retry: 50`` to show up."""
    time.sleep(seconds)
    n = len(seen(server, tok))
    assert n >= count
    return n


@pytest.mark.live
@pytest.mark.parametrize("response", RESPONSES, ids=[r.name for r in RESPONSES])
def test_python_client_refuses_what_event_source_refuses(
    server: GunicornServer, response: ResponseCase
) -> None:
    tok = token()
    url = f"{server.url}/response/{response.name}?token={tok}"
    if response.opens:
        assert [e.data for e in events(url, retry=0.05)] == ["body"]
        assert len(seen(server, tok)) == 2  # reconnected, then the 204
    elif response.retried_by_default:
        # retried like a broken connection; on the first connection that
        # fails fast (documented), never as a refusal
        with pytest.raises(httpx.TransportError):
            list(events(url, retry=0.05))
        assert _wait_quiet(server, tok, 1) == 1
        # retry_on_status=False: refused exactly as EventSource refuses it
        strict = f"{server.url}/response/{response.name}?token={token()}"
        with pytest.raises(ServerError) as info:
            list(events(strict, retry=0.05, retry_on_status=False))
        assert info.value.status == response.status
    else:
        with pytest.raises(ServerError) as info:
            list(events(url, retry=0.05))
        assert info.value.status == response.status
        assert _wait_quiet(server, tok, 1) == 1


JS_RESPONSES = """async ({cases, base}) =>
 Promise.all(cases.map((c) => new Promise((resolve) => {
  const got = [], errors = [];
  const options = {cache: false, retry: 50, onError: (e) => errors.push(String(e.status ?? e))};
  if (c.strict) options.retryOnStatus = false;
  const src = fs.source(`${base}/response/${c.name}?token=${c.token}`, options);
  src.on("*", (e) => got.push(e.data));
  // Every run ends CLOSED: failed for good, or closed by the server's 204.
  const deadline = Date.now() + 20000;
  const poll = setInterval(() => {
    if (src.readyState === 2 || Date.now() > deadline) {
      clearInterval(poll);
      resolve({events: got, errors, readyState: src.readyState, timedOut: Date.now() > deadline});
      src.close();
    }
  }, 20);
})))"""


@pytest.mark.live
@pytest.mark.browser
def test_js_source_refuses_what_event_source_refuses(
    server: GunicornServer, client_page: Any
) -> None:
    runs = [
        {"name": r.name, "token": token(), "strict": strict}
        for r in RESPONSES
        for strict in (False, True)
    ]
    results = client_page.evaluate(JS_RESPONSES, {"cases": runs, "base": server.url})
    time.sleep(0.5)  # ten times the retry: a client that reconnects wrongly shows up
    by_name = {r.name: r for r in RESPONSES}
    failures = []
    for run, got in zip(runs, results, strict=True):
        r = by_name[run["name"]]
        requests = len(seen(server, run["token"]))
        if got["timedOut"]:
            failures.append((run, got, requests))
            continue
        if r.opens:
            ok = got["events"] == ["body"] and requests == 2 and got["errors"] == []
        elif r.retried_by_default and not run["strict"]:
            ok = got["events"] == [] and requests == 2 and got["errors"] == [str(r.status)]
        else:
            # failed for good: no event, no reconnect, one error, CLOSED
            ok = (
                got["events"] == []
                and requests == 1
                and got["errors"] == [str(r.status)]
                and got["readyState"] == 2
            )
        if not ok:
            failures.append((run, got, requests))
    assert failures == []


JS_EVENT_SOURCE_RESPONSES = """async ({cases, base}) =>
 Promise.all(cases.map((c) => new Promise((resolve) => {
  const got = [];
  const es = new EventSource(`${base}/response/${c.name}?token=${c.token}`);
  es.onmessage = (e) => got.push(e.data);
  const timer = setTimeout(() => { resolve({events: got, timedOut: true}); es.close(); }, 20000);
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) {
      clearTimeout(timer);
      resolve({events: got, timedOut: false});
    }
  };
})))"""


@pytest.mark.live
@pytest.mark.browser
def test_chromium_event_source_response_reference(server: GunicornServer, client_page: Any) -> None:
    runs = [{"name": r.name, "token": token()} for r in RESPONSES]
    results = client_page.evaluate(JS_EVENT_SOURCE_RESPONSES, {"cases": runs, "base": server.url})
    time.sleep(0.5)  # ten times the retry: a reconnect would show up
    by_name = {r.name: r for r in RESPONSES}
    failures = []
    for run, got in zip(runs, results, strict=True):
        r = by_name[run["name"]]
        requests = len(seen(server, run["token"]))
        if r.opens:  # CLOSED by the 204 of the reconnect
            ok = got["events"] == ["body"] and requests == 2 and not got["timedOut"]
        else:  # 503 too: EventSource fails the connection on any status but 200
            ok = got["events"] == [] and requests == 1 and not got["timedOut"]
        if not ok:
            failures.append((run["name"], got, requests))
    assert failures == [], json.dumps(failures)
