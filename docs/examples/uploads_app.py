"""Segmented uploads: hooks, a refusal, authorization, limits."""

import shutil
from pathlib import Path

from flask import Flask, request

from flask_streaming import Streaming, segment_received, upload_completed
from flask_streaming.errors import BadRequest

app = Flask(__name__)
app.config.update(
    STREAMING_MAX_SEGMENT_SIZE=8 << 20,  # 413 above 8 MiB per segment
    STREAMING_MAX_UPLOAD_SIZE=1 << 30,  # 413 above 1 GiB per upload
    STREAMING_SESSION_TIMEOUT=600,  # idle seconds before a session expires
)
streaming = Streaming(app)


@streaming.authorize_upload
def may_upload(action, session):
    # action: create, append, complete, status, abort. Runs in the request.
    return request.headers.get("Authorization") == "Bearer let-me-in"


@segment_received.connect_via(app)
def check_segment(app, session, segment, **kwargs):
    if session.content_type == "audio/webm" and segment.index == 0:
        with segment.open() as f:
            head = f.read(4)
        if not head.startswith(b"\x1a\x45\xdf\xa3"):
            # A StreamingError refuses the segment: it is discarded, and this
            # error (400 JSON) is the response.
            raise BadRequest("not a WebM recording", code="not_webm")
    # segment.end: the offset after it (None while an earlier one is missing)
    return {"segment": segment.index, "bytes_so_far": segment.end}


@upload_completed.connect_via(app)
def keep_upload(app, session, **kwargs):
    target = Path(app.instance_path, "recordings", f"{session.id}.webm")
    target.parent.mkdir(parents=True, exist_ok=True)
    with session.open() as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return {"saved_as": target.name, "size": session.offset}
