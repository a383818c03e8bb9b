"""tus: ``GET`` on a finished upload streams it (issue 14): Range and
conditional requests, behind the upload authorization hook (``read``);
an unfinished upload answers 409 JSON."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_streaming import Streaming
from flask_streaming.testing import GunicornServer, http_request

TUS = "/streaming/tus/"
T = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"
DATA = bytes(range(256)) * 40  # 10240 bytes


def b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def make(tmp_path: Path, actions: list[str] | None = None, deny: str = "") -> Flask:
    app = Flask("tusget", instance_path=str(tmp_path / "instance"))
    app.config["TESTING"] = True
    ext = Streaming(app)
    if actions is not None:

        @ext.authorize_upload
        def may(action: str, session: Any) -> bool:
            actions.append(action)
            return action != deny

    return app


def upload(c: Any, data: bytes = DATA, send: int | None = None, **headers: str) -> str:
    name = 'report "1".pdf'
    meta = f"filename {b64(name)},filetype {b64('application/pdf')}"
    rv = c.post(
        TUS, headers={**T, "Upload-Length": str(len(data)), "Upload-Metadata": meta, **headers}
    )
    assert rv.status_code == 201, rv.data
    url: str = rv.headers["Location"]
    body = data if send is None else data[:send]
    rv = c.patch(url, data=body, headers={**T, "Upload-Offset": "0", "Content-Type": OCTETS})
    assert rv.status_code == 204
    return url


class Closing:
    """A test client whose GET responses are read and closed (a 304 or 416
    leaves the file open until the response is closed, as a server does)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def get(self, url: str, **kwargs: Any) -> Any:
        rv = self.client.get(url, **kwargs)
        rv.get_data()
        rv.close()
        return rv

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_get_streams_a_finished_upload(tmp_path: Path) -> None:
    c = Closing(make(tmp_path).test_client())
    url = upload(c)
    rv = c.get(url)  # a plain GET: no Tus-Resumable needed
    assert rv.status_code == 200 and rv.data == DATA
    assert rv.headers["Content-Type"] == "application/pdf"
    assert rv.headers["Content-Disposition"].startswith("attachment;")
    assert "report" in rv.headers["Content-Disposition"]
    assert rv.headers["X-Content-Type-Options"] == "nosniff"
    assert rv.headers["Content-Length"] == str(len(DATA))
    # Range
    rv = c.get(url, headers={"Range": "bytes=100-199"})
    assert rv.status_code == 206 and rv.data == DATA[100:200]
    assert rv.headers["Content-Range"] == f"bytes 100-199/{len(DATA)}"
    assert c.get(url, headers={"Range": "bytes=-10"}).data == DATA[-10:]
    assert c.get(url, headers={"Range": f"bytes={len(DATA)}-"}).status_code == 416
    # conditional
    etag = rv.headers["ETag"]
    assert c.get(url, headers={"If-None-Match": etag}).status_code == 304
    last = c.get(url).headers["Last-Modified"]
    assert c.get(url, headers={"If-Modified-Since": last}).status_code == 304
    assert c.get(url, headers={"If-Range": '"other"', "Range": "bytes=0-0"}).status_code == 200


def test_an_unfinished_upload_is_409_json(tmp_path: Path) -> None:
    c = make(tmp_path).test_client()
    url = upload(c, send=1000)
    rv = c.get(url)
    assert rv.status_code == 409 and rv.is_json
    assert rv.json["error"] == "upload_unfinished" and rv.json["offset"] == 1000
    # an unfinished final concatenation too
    part = c.post(TUS, headers={**T, "Upload-Length": "5", "Upload-Concat": "partial"})
    final = c.post(TUS, headers={**T, "Upload-Concat": f"final;{part.headers['Location']}"})
    assert c.get(final.headers["Location"]).status_code == 409
    h = {**T, "Upload-Offset": "0", "Content-Type": OCTETS}
    assert c.patch(part.headers["Location"], data=b"whole", headers=h).status_code == 204
    rv = c.get(final.headers["Location"])
    assert rv.status_code == 200 and rv.data == b"whole"
    assert rv.headers["Content-Type"] == "application/octet-stream"  # no filetype given


def test_unknown_and_native_ids_are_404(tmp_path: Path) -> None:
    c = make(tmp_path).test_client()
    assert c.get(TUS + "nosuchupload").status_code == 404
    sid = c.get("/streaming/uploads").json["streamId"]
    assert c.get(TUS + sid).status_code == 404


def test_get_asks_read_before_anything(tmp_path: Path) -> None:
    actions: list[str] = []
    c = make(tmp_path, actions, deny="read").test_client()
    url = upload(c)
    unfinished = upload(c, send=3)
    actions.clear()
    for target in (url, unfinished):
        rv = c.get(target)
        assert rv.status_code == 403 and rv.json["error"] == "forbidden", rv.json
        assert DATA[:10] not in rv.data
    assert actions == ["read", "read"]


def test_a_dangerous_filetype_is_not_served_as_given(tmp_path: Path) -> None:
    c = make(tmp_path).test_client()
    meta = f"filename {b64('x.html')},filetype {b64('text/html; charset=utf-8')}"
    rv = c.post(TUS, headers={**T, "Upload-Length": "5", "Upload-Metadata": meta})
    url = rv.headers["Location"]
    c.patch(url, data=b"<b>x", headers={**T, "Upload-Offset": "0", "Content-Type": OCTETS})
    c.patch(url, data=b"!", headers={**T, "Upload-Offset": "4", "Content-Type": OCTETS})
    rv = c.get(url)
    assert rv.status_code == 200
    assert rv.headers["Content-Disposition"].startswith("attachment;")
    assert rv.headers["X-Content-Type-Options"] == "nosniff"
    assert rv.headers["Content-Type"].startswith("application/octet-stream")


@pytest.mark.live
def test_get_under_gunicorn_sendfile_range_and_304(
    live_server: Callable[..., GunicornServer], tmp_path: Path
) -> None:
    server = live_server("tests.apps.tus_app:create_app()", workers=2)
    data = os.urandom(3 << 20)

    def call(method: str, path: str, body: bytes = b"", **headers: str) -> Any:
        return http_request(server.port, method, path, body, headers)

    status, headers, _ = call("POST", TUS, **T, **{"Upload-Length": str(len(data))})
    path = (
        "/" + headers["Location"].split("/", 3)[3]
        if "://" in headers["Location"]
        else headers["Location"]
    )
    assert call("GET", path)[0] == 409
    h = {**T, "Upload-Offset": "0", "Content-Type": OCTETS}
    assert call("PATCH", path, data, **h)[0] == 204
    status, headers, body = call("GET", path)
    assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    status, _, body = call("GET", path, Range="bytes=1000000-1999999")
    assert status == 206 and body == data[1000000:2000000]
    assert call("GET", path, **{"If-None-Match": headers["ETag"]})[0] == 304
