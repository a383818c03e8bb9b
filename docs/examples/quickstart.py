"""Quickstart: the extension, a first event stream and a first upload hook.

Run it with ``gunicorn -k gevent 'quickstart:app'`` from this folder.
"""

import hashlib
import time

from flask import Flask

from flask_streaming import Streaming, segment_received, sse_response, upload_completed

app = Flask(__name__)
streaming = Streaming(app)  # mounts the built-in routes under /streaming


# -- a first event stream --------------------------------------------------
@app.get("/clock")
def clock():
    def ticks():
        while True:
            yield {"event": "tick", "data": {"time": time.strftime("%H:%M:%S")}}
            time.sleep(1)

    # Headers go out at once, heartbeats while ticks() sleeps, and the
    # generator is stopped when the browser goes away.
    return sse_response(ticks())


# -- a first upload hook ---------------------------------------------------
@segment_received.connect_via(app)
def on_segment(app, session, segment, **kwargs):
    # The partial hook: what it returns goes back in this segment's response.
    return {"received": f"segment {segment.index}: {segment.size} bytes"}


@upload_completed.connect_via(app)
def on_upload(app, session, **kwargs):
    # The final hook: session.open() reads the assembled upload.
    digest = hashlib.sha256()
    with session.open() as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"sha256": digest.hexdigest()}
