"""The adversarial probe's cases that held (issue 18), kept in the suite so
that they keep holding: method override, look-alike channel names, replay
isolation — against a real gunicorn gevent worker serving
tests/apps/security_app.py. (Cross-protocol ids: test_security_live.py's
authorization test; chunked framing: test_malformed.py's corpus.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from flask_streaming.testing import GunicornServer
from tests.test_security_live import call, error, tus_create, tus_patch
from tests.test_security_revocation import Stream, post

pytestmark = pytest.mark.live

APP = "tests.apps.security_app:create_app()"


def test_method_override_never_bypasses_authorization(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    port = live_server(APP).port
    url = tus_create(port, "alice", 10)
    assert tus_patch(port, "alice", url, 0, b"12345")[0] == 204
    octets = {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "5"}
    for user in ("mallory", None):
        h = {"X-User": user} if user else {}
        for override, extra in (("PATCH", octets), ("DELETE", {}), ("patch", octets)):
            status, _, body = call(
                port, "POST", url, b"evil", {**h, **extra, "X-HTTP-Method-Override": override}
            )
            assert status == 403 and error(body) == "forbidden", (override, user, body)
    status, _, body = call(port, "POST", url, b"", {"X-User": "alice",
                                                    "X-HTTP-Method-Override": "GET"})  # fmt: skip
    assert status == 400 and error(body) == "bad_method_override"
    # The native routes know no override: a POST stays a segment request.
    sid = json.loads(
        call(port, "POST", "/streaming/uploads", b'{"metadata": {"owner": "alice"}}',
             {"X-User": "alice", "Content-Type": "application/json"}, tus=False)[2]
    )["streamId"]  # fmt: skip
    status, _, _ = call(
        port, "POST", f"/streaming/uploads/{sid}", b"", {"X-User": "mallory",
        "X-HTTP-Method-Override": "DELETE", "X-Stream-Segment": "0"}, tus=False,
    )  # fmt: skip
    assert status == 403
    status, _, body = call(
        port, "POST", f"/streaming/uploads/{sid}", b"",
        {"X-User": "alice", "X-HTTP-Method-Override": "DELETE"}, tus=False,
    )  # fmt: skip
    assert status == 400, body  # no segment number: not a delete
    status, _, body = call(port, "GET", f"/streaming/uploads/{sid}", headers={"X-User": "a"},
                           tus=False)  # fmt: skip
    assert status == 200 and json.loads(body)["state"] == "open"
    status, h, _ = call(port, "HEAD", url, headers={"X-User": "alice"})
    assert status == 200 and h["Upload-Offset"] == "5"


LOOK_ALIKES = [
    ("/streaming/events/private-alice/", 403),
    ("/streaming/events/private-%61lice", 403),  # percent-encoded: the same name
    ("/streaming/events/%70rivate-alice", 403),
    ("/streaming/events/private-alice%20", 400),
    ("/streaming/events/private-alice%00", 400),
    ("/streaming/events/private-%D0%B0lice", 400),  # a Cyrillic a
    ("/streaming/events/private-alice%2F..%2Fprivate-mallory", 403),
    ("/streaming/events?channel=news&channel=private-alice", 403),
    ("/streaming/events?channel=private-mallory&channel=private-alice", 403),
    ("/streaming/events/Private-alice", 200),  # another (public) channel
    ("/streaming/events/./private-alice", 200),  # another (public) channel
    ("/streaming/events/private-alicex", 403),
]


def test_look_alike_channel_names_and_replay_never_leak(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    port = live_server(APP).port
    alice = Stream(port, "private-alice", "alice")
    streams = [alice]
    try:
        assert alice.status == 200
        assert post(port, "/publish/news", "n1") == 200
        open_ones = []
        for path, status in LOOK_ALIKES:
            s = Stream(port, "", "mallory", path=path)
            streams.append(s)
            assert s.status == status, (path, s.status)
            if status == 200:
                open_ones.append((s, path[len("/streaming/events/") :]))
        # Replay isolation: an id from before alice's secret, on a public channel.
        assert post(port, "/publish/private-alice", "secret") == 200
        alice.wait_for("secret")
        position = alice.last_id().rsplit("-", 1)[0] + "-1"
        replay = Stream(port, "news", "mallory", position)
        streams.append(replay)
        assert replay.status == 200
        for s, name in open_ones:
            assert post(port, f"/publish/{name}", "marker") == 200
            s.wait_for("marker")
        assert post(port, "/publish/news", "marker") == 200
        replay.wait_for("marker")
        for s in [replay, *(s for s, _ in open_ones)]:
            assert b"secret" not in s.data and b"channel: private-alice\n" not in s.data
    finally:
        for s in streams:
            s.close()
