"""tus concatenation against a plain reference model (hypothesis
RuleBasedStateMachine): in any order of partial uploads, their data and
final uploads (with repeats, reuse, unfinished parts), a partial serves at
most one final upload (repeating the request that created it answers the
same final upload), every refusal is the model's 4xx, a final holds
exactly its parts' bytes once they are all there, and the store never holds
more than twice what the client uploaded."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from flask_streaming import Streaming, get_upload_service

T = {"Tus-Resumable": "1.0.0"}
TUS = "/streaming/tus/"


class Concatenation(RuleBasedStateMachine):
    partials = Bundle("partials")

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp())
        self.app = Flask("concat_model", instance_path=str(self.tmp))
        self.app.config.update(TESTING=True, STREAMING_MAX_SESSIONS_PER_CLIENT=0)
        Streaming(self.app)
        self.client = self.app.test_client()
        #: partial url -> {"data", "sent", "used" (the final url using it, or None)}
        self.model: dict[str, dict[str, Any]] = {}
        #: final url -> its partial urls
        self.finals: dict[str, list[str]] = {}
        self.uploaded = 0

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    @rule(target=partials, data=st.binary(max_size=40), send=st.booleans())
    def create_partial(self, data: bytes, send: bool) -> str:
        rv = self.client.post(
            TUS, headers={**T, "Upload-Length": str(len(data)), "Upload-Concat": "partial"}
        )
        assert rv.status_code == 201
        url = rv.headers["Location"]
        self.model[url] = {"data": data, "sent": not data, "used": None}
        if send:
            self.send(url)
        return url

    @rule(url=partials)
    def send(self, url: str) -> None:
        part = self.model[url]
        if part["sent"]:
            return
        rv = self.client.patch(
            url, data=part["data"],
            headers={**T, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        )  # fmt: skip
        assert rv.status_code == 204, rv.get_json()
        part["sent"] = True
        self.uploaded += len(part["data"])

    @rule(urls=st.lists(partials, min_size=1, max_size=4))
    def final(self, urls: list[str]) -> None:
        expected = (201, None)
        users = {self.model[url]["used"] for url in urls}
        repeat = next(iter(users)) if len(users) == 1 else None
        if repeat is not None and self.finals[repeat] != urls:
            repeat = None  # a repeat names the same parts in the same order
        if len(set(urls)) < len(urls):
            expected = (400, "partial_listed_twice")
        elif any(self.model[url]["used"] for url in urls) and repeat is None:
            expected = (409, "partial_used")
        rv = self.client.post(TUS, headers={**T, "Upload-Concat": "final;" + " ".join(urls)})
        got = (rv.status_code, None if rv.status_code == 201 else rv.get_json()["error"])
        assert got == expected, (urls, got, expected)
        if rv.status_code == 201 and repeat is not None:  # the same final upload again
            assert rv.headers["Location"] == repeat
        elif rv.status_code == 201:
            for url in urls:
                self.model[url]["used"] = rv.headers["Location"]
            self.finals[rv.headers["Location"]] = list(urls)

    @invariant()
    def finals_hold_their_parts(self) -> None:
        service = get_upload_service(self.app)
        for url, parts in self.finals.items():
            session = service.storage.load(url.rsplit("/", 1)[1])
            assert session is not None
            if all(self.model[p]["sent"] for p in parts):
                with session.open() as f:
                    assert f.read() == b"".join(self.model[p]["data"] for p in parts)
                assert session.state == "completed"

    @invariant()
    def the_store_holds_at_most_twice_what_was_uploaded(self) -> None:
        stored = sum(p.stat().st_size for p in self.tmp.rglob("data") if p.is_file())
        assert stored <= 2 * self.uploaded


# filter_too_much: a rule drawing from the empty ``partials`` bundle is
# filtered out; on a loaded machine that tripped the health check (a flaky
# failure of the unmutated code, seen by the mutation baseline).
Concatenation.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
test_concatenation_model = Concatenation.TestCase
