"""The seed-000 scenario: record the microphone in the browser, stream a
segment every second, see each partial response, play the final recording.

Hook it into an app with ``register(app)`` (after ``Streaming(app)``);
``/record`` is the page, ``/recordings/<id>`` plays a finished upload.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, abort, render_template, url_for

from flask_streaming import download_response
from flask_streaming.signals import segment_received, upload_completed
from flask_streaming.uploads import Segment, UploadSession, get_upload_service

#: Types a recording may be served back as; anything else is a download.
_MEDIA = ("audio/", "video/")


def register(app: Flask) -> None:
    """Add the recorder page, its hooks and the playback route to *app*."""

    @segment_received.connect_via(app)
    def on_segment(sender: Flask, session: UploadSession, segment: Segment, **kw: Any) -> Any:
        # The partial hook: a real app would transcribe here, in a process
        # pool (the hook runs in the request's greenlet).
        return {"message": f"partial {session.id} {segment.index} ({segment.size} bytes)"}

    @upload_completed.connect_via(app)
    def on_complete(sender: Flask, session: UploadSession, **kw: Any) -> Any:
        return {
            "message": f"final {session.id} ({session.size} bytes)",
            "url": url_for("recording", session_id=session.id),
        }

    @app.get("/record")
    def record() -> str:
        return render_template("record.html")

    @app.get("/recordings/<session_id>")
    def recording(session_id: str) -> Any:
        session = get_upload_service().status(session_id)  # 404/410 JSON when unknown
        if not session.completed or session.path is None:
            abort(404)
        kind = (session.content_type or "").split(";")[0].strip()
        mimetype = kind if kind.startswith(_MEDIA) else "application/octet-stream"
        name = session.filename or f"recording-{session.id}"
        return download_response(
            session.path, filename=name, mimetype=mimetype, as_attachment=False
        )
