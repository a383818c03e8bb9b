"""Channels: publish from anywhere, subscribe at /streaming/events/<channel>."""

import os
import threading

from flask import Flask, abort, request, session

from flask_streaming import Streaming

app = Flask(__name__)
app.secret_key = os.environ.get("SECRET_KEY", "dev only")
app.config.update(
    # memory:// inside one process; redis:// for several workers or machines.
    STREAMING_BROKER_URL=os.environ.get("STREAMING_BROKER_URL", "memory://"),
    STREAMING_HISTORY_SIZE=500,  # events kept per channel for Last-Event-ID
    STREAMING_RETRY=3000,  # ms a browser waits before it reconnects
)
streaming = Streaming(app)


@streaming.authorize_channel
def may_subscribe(channel, action):
    # Runs inside the subscribe request: session, headers and g are there.
    if channel.startswith("room-"):
        return channel in session.get("rooms", ())
    return channel == "news"  # everything else is refused (403 JSON)


@app.post("/rooms/<room>/join")
def join(room):
    session["rooms"] = [*session.get("rooms", ()), f"room-{room}"]
    return {"joined": f"room-{room}"}


@app.post("/rooms/<room>/messages")
def send_message(room):
    if f"room-{room}" not in session.get("rooms", ()):
        abort(403)
    text = str(request.get_json(force=True).get("text", ""))[:500]
    event_id = streaming.publish(f"room-{room}", {"text": text}, event="message")
    return {"id": event_id}, 201


def publish_from_a_thread(headline):
    """A real thread (or a job runner) publishes too: the broker hands the
    event over to the worker's event loop."""
    worker = threading.Thread(target=streaming.publish, args=("news", {"headline": headline}))
    worker.start()
    worker.join()
