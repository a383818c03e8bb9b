"""The seed-000 scenario: record the microphone in the browser, stream a
segment every second, see each partial response, play the final recording.

Hook it into an app with ``register(app)`` (after ``Streaming(app)``);
``/record`` is the page, ``/recordings/<id>`` plays a finished upload.

Besides each segment's HTTP response, the hooks publish the upload's
progress as Server-Sent Events on the channel ``upload-<session id>``
(:func:`progress_channel`): ``segment`` after each segment
(``{"index", "bytes", "segments", "total"}``: this segment's number and
size, and the segments and bytes the server holds so far) and ``complete``
once the recording is assembled (``{"segments", "size", "duration", "url"}``).
The page subscribes to it with the JavaScript client's ``source()``. Any
other page, worker or process could subscribe too (a dashboard, a
transcriber): with more than one gunicorn worker, use
``STREAMING_BROKER_URL=redis://...`` so a publish reaches every worker.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, abort, render_template, url_for

from flask_streaming import Streaming, download_response
from flask_streaming.signals import segment_received, upload_completed
from flask_streaming.uploads import Segment, UploadSession, get_upload_service

#: Types a recording may be served back as; anything else is a download.
_MEDIA = ("audio/", "video/")


#: The prefix of the progress channels.
CHANNEL_PREFIX = "upload-"


def progress_channel(session_id: str) -> str:
    """The channel an upload session's progress events go to.

    No authorization hook guards it (the default policy lets anyone
    subscribe to a channel not named ``private-*``): the session id is the
    capability. It is 128 random bits (``secrets.token_urlsafe(16)``), handed
    only to the client that opened the session, so only that client (or
    whoever it shares the id with) can name this channel; the events carry
    nothing that the id does not already give access to (``GET
    /streaming/uploads/<id>``, ``/recordings/<id>``). An app whose uploads
    belong to logged-in users would add an ``authorize_channel`` hook for
    ``upload-*`` that checks the session's owner.
    """
    return CHANNEL_PREFIX + session_id


def register(app: Flask) -> None:
    """Add the recorder page, its hooks and the playback route to *app*."""
    state = app.extensions.get("streaming")
    if state is None:
        raise RuntimeError("call Streaming(app) before examples.uploads.register(app)")
    streaming: Streaming = state.extension

    def publish(session: UploadSession, data: dict[str, Any], event: str) -> None:
        # Only the native protocol (the recorder); tus uploads have their own page.
        if session.protocol != "native":
            return
        try:
            streaming.publish(progress_channel(session.id), data, event=event, app=app)
        except Exception:
            # Progress is a courtesy: a broker that is down (Redis) must not
            # fail the upload (a raising hook would refuse the segment).
            app.logger.warning("could not publish upload progress", exc_info=True)

    @segment_received.connect_via(app)
    def on_segment(sender: Flask, session: UploadSession, segment: Segment, **kw: Any) -> Any:
        # The partial hook: a real app would transcribe here, in a process
        # pool (the hook runs in the request's greenlet). The session's
        # counters are updated after the hooks return, so this segment is
        # not in them yet. An identical retry of a stored segment is
        # answered from the stored results, without running the hooks again.
        publish(
            session,
            {
                "index": segment.index,
                "bytes": segment.size,
                "segments": session.received + 1,
                "total": session.offset + segment.size,
            },
            "segment",
        )
        return {"message": f"partial {session.id} {segment.index} ({segment.size} bytes)"}

    @upload_completed.connect_via(app)
    def on_complete(sender: Flask, session: UploadSession, **kw: Any) -> Any:
        url = url_for("recording", session_id=session.id)
        publish(
            session,
            {
                "segments": session.segments,
                "size": session.offset,
                "duration": round(time.time() - session.created_at, 3),
                "url": url,
            },
            "complete",
        )
        return {"message": f"final {session.id} ({session.offset} bytes)", "url": url}

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
