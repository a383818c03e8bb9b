"""Event streams of an app's own: a generator, and the producer API."""

import time

from flask import Flask, request

from flask_streaming import ServerSentEvent, Streaming, produce, sse_response

app = Flask(__name__)
Streaming(app)


@app.get("/countdown")
def countdown():
    start = request.args.get("from", 5, type=int)

    def events():
        try:
            for n in range(start, 0, -1):
                # Yield str, bytes, a dict of event fields, or a ServerSentEvent.
                yield ServerSentEvent({"n": n}, event="tick", id=n)
                time.sleep(0.1)
            yield {"event": "done", "data": "lift-off"}
        finally:
            # Runs when the generator ends, and when the client goes away.
            app.logger.info("countdown stream ended")

    return sse_response(events(), ping=5, retry=2000)


@app.get("/jobs/<int:job_id>/progress")
def job_progress(job_id):
    def start(stream):
        # Runs in its own greenlet. emit() never raises for a client that
        # left: it returns an error value instead.
        for percent in range(0, 101, 25):
            if stream.emit({"job": job_id, "percent": percent}, event="progress"):
                return None  # the client is gone: stop working
            time.sleep(0.05)
        stream.close()  # end the stream; the browser sees it end
        return lambda: app.logger.info("job %s: stream over", job_id)  # cancel callback

    return produce(start, stop=lambda: None)
