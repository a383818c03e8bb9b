"""A hypothesis fuzz run of every request handler of the blueprint through
Flask's test client: random methods, paths, protocol headers and bodies;
the server must never answer 5xx, and every error must be the JSON shape."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_streaming import Streaming

from .common import Result

HEADER_NAMES = [
    "X-Stream-Id", "X-Stream-Segment", "X-Stream-Done", "X-Stream-Checksum",
    "X-Svelte-Stream-Id", "X-Svelte-Stream-Segment", "X-Svelte-Stream-Done",
    "Content-Type", "Content-Length", "Transfer-Encoding", "Last-Event-ID", "Origin",
    "Access-Control-Request-Method", "Tus-Resumable", "Upload-Length", "Upload-Offset",
    "Upload-Metadata", "Upload-Defer-Length", "Upload-Concat", "Upload-Checksum",
    "X-HTTP-Method-Override",
]  # fmt: skip
PATHS = [
    "/streaming/", "/streaming/uploads", "/streaming/uploads/{id}", "/streaming/tus/",
    "/streaming/tus/{id}", "/streaming/events?channel={id}", "/streaming/events/{id}",
    "/streaming/events/{id}?last_event_id={id}", "/streaming/client.js", "/streaming/{id}",
]  # fmt: skip
METHODS = ["GET", "POST", "PUT", "PATCH", "HEAD", "DELETE", "OPTIONS"]

# Values that look like what the parsers expect, and anything else.
_numbers = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["", " ", "1e3", "0x10", "+1", "-0", "١٢", "1_000", "NaN", "00000000001"]),
)
_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=60,
)
_values = st.one_of(_numbers, _text, st.sampled_from(["true", "false", "sha256=AAAA", "1.0.0"]))


def make_app(folder: str) -> tuple[Flask, str]:
    """An app with every route group, and the id of one open session."""
    app = Flask("fuzz", instance_path=folder)
    app.config.update(TESTING=True, STREAMING_MAX_SESSIONS_PER_CLIENT=0)
    Streaming(app)
    client = app.test_client()
    sid = client.post("/streaming/uploads").get_json()["streamId"]
    return app, sid


def requests_strategy(sid: str) -> Any:
    ids = st.one_of(st.just(sid), _text.filter(lambda t: "/" not in t and "?" not in t))
    return st.tuples(
        st.sampled_from(METHODS),
        st.sampled_from(PATHS),
        ids,
        st.dictionaries(st.sampled_from(HEADER_NAMES), _values, max_size=6),
        st.binary(max_size=1024),
    )


def send(
    client: Any, method: str, path: str, ident: str, headers: dict[str, str], body: bytes
) -> Any:
    from urllib.parse import quote

    url = path.replace("{id}", quote(ident, safe=""))
    headers = dict(headers)
    headers.pop("Content-Length", None)  # the test client computes it
    headers.pop("Transfer-Encoding", None)
    return client.open(url, method=method, headers=headers, data=body)


def check(rv: Any) -> str | None:
    """``None`` when the answer is acceptable, else what is wrong."""
    if rv.status_code >= 500:
        return f"{rv.status_code}"
    if rv.status_code >= 400 and rv.request.method != "HEAD":
        body = rv.get_json(silent=True)
        if not (isinstance(body, dict) and "error" in body and "message" in body):
            return f"{rv.status_code} not JSON"
    return None


def fuzz_handlers(examples: int) -> Result:
    res = Result("hypothesis fuzz of the request handlers")
    statuses: Counter[int] = Counter()
    with tempfile.TemporaryDirectory() as folder:
        app, sid = make_app(str(Path(folder) / "instance"))
        client = app.test_client()

        @settings(
            max_examples=examples, deadline=None, database=None,
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        @given(requests_strategy(sid))
        def run(case: tuple[str, str, str, dict[str, str], bytes]) -> None:
            rv = send(client, *case)
            try:
                res.runs += 1
                statuses[rv.status_code // 100 * 100] += 1
                problem = check(rv)
                if problem is None:
                    res.passed += 1
                else:
                    res.errors[problem] += 1
            finally:
                rv.close()

        run()
    res.notes.append(", ".join(f"{k // 100}xx {v}" for k, v in sorted(statuses.items())))
    return res
