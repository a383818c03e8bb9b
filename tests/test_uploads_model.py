"""Native segmented uploads against a plain reference model (hypothesis
state machine): any order of segments, identical and conflicting retries,
completions with the right and the wrong count, before and after
completion. The model is a dict of segment number → bytes and the count
the upload was completed with."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from flask import Flask
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from flask_streaming import Streaming
from flask_streaming.uploads import get_upload_service

URL = "/streaming/uploads"
INDEXES = st.integers(min_value=0, max_value=5)
DATA = st.binary(min_size=1, max_size=4)


class NativeUploads(RuleBasedStateMachine):
    tmp: Path

    @initialize()
    def start(self) -> None:
        folder = tempfile.mkdtemp(dir=NativeUploads.tmp)  # one store per run
        app = Flask("model", instance_path=folder)
        app.config["TESTING"] = True
        Streaming(app)
        self.app = app
        self.client = app.test_client()
        self.sid = self.client.get(URL).json["streamId"]
        self.segments: dict[int, bytes] = {}
        self.completed: int | None = None

    def post(self, index: int, data: bytes, done: bool = False) -> Any:
        h = {"X-Stream-Id": self.sid, "X-Stream-Segment": str(index)}
        h["X-Stream-Done"] = "true" if done else "false"
        return self.client.post(URL, data=data, headers=h)

    @rule(index=INDEXES, data=DATA)
    def send(self, index: int, data: bytes) -> None:
        rv = self.post(index, data)
        known = self.segments.get(index)
        if known == data:
            assert rv.status_code == 200 and rv.json["duplicate"] is True, rv.json
        elif known is not None:
            assert rv.status_code == 409 and rv.json["error"] == "segment_conflict", rv.json
        elif self.completed is not None:
            assert rv.status_code == 409 and rv.json["error"] == "upload_completed", rv.json
        else:
            assert rv.status_code == 200 and rv.json["duplicate"] is False, rv.json
            assert rv.json["size"] == len(data) and rv.json["segment"] == index
            self.segments[index] = data

    @rule(count=st.integers(min_value=0, max_value=7))
    def complete(self, count: int) -> None:
        rv = self.post(count, b"", done=True)
        if self.completed is not None:
            if count == self.completed:
                assert rv.status_code == 200 and rv.json["duplicate"] is True, rv.json
            else:
                assert rv.status_code == 409 and rv.json["error"] == "upload_completed"
            return
        missing = [i for i in range(count) if i not in self.segments]
        beyond = [i for i in self.segments if i >= count]
        if missing:
            assert rv.status_code == 409 and rv.json["error"] == "missing_segments", rv.json
            assert rv.json["missing"] == missing
        elif beyond:
            assert rv.status_code == 409 and rv.json["error"] == "segments_beyond_end", rv.json
        else:
            whole = b"".join(self.segments[i] for i in range(count))
            assert rv.status_code == 200 and rv.json["done"] is True, rv.json
            assert rv.json["size"] == len(whole) and rv.json["segments"] == count
            with self.app.app_context():
                session = get_upload_service(self.app).storage.load(self.sid)
                assert session is not None
                with session.open() as f:
                    assert f.read() == whole
            self.completed = count

    @invariant()
    def status_matches_the_model(self) -> None:
        if not hasattr(self, "sid"):
            return
        st_ = self.client.get(f"{URL}/{self.sid}").json
        assert st_["received"] == len(self.segments)
        assert st_["bytes"] == sum(map(len, self.segments.values()))
        contiguous = 0
        while contiguous in self.segments:
            contiguous += 1
        if self.completed is None:
            assert st_["state"] == "open" and st_["contiguous"] == contiguous
        else:
            assert st_["state"] == "completed" and st_["segments"] == self.completed


def test_native_uploads_follow_the_model(tmp_path: Path) -> None:
    NativeUploads.tmp = tmp_path
    run = NativeUploads.TestCase
    run.settings = settings(max_examples=40, stateful_step_count=20, deadline=None)
    run().runTest()
