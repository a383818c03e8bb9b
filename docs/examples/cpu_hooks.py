"""CPU-heavy work in a hook runs off the gevent hub."""

import hashlib

from flask import Flask

from flask_streaming import Streaming, segment_received
from flask_streaming.transport import gevent_active

app = Flask(__name__)
Streaming(app)


def fingerprint(data: bytes) -> str:
    """Stands in for real work: transcription, transcoding, hashing."""
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def off_the_hub(fn, *args):
    """Run fn(*args) in a real OS thread of gevent's pool and wait for it
    without blocking the other greenlets of this worker."""
    if gevent_active():
        import gevent

        return gevent.get_hub().threadpool.apply(fn, args)
    return fn(*args)


@segment_received.connect_via(app)
def on_segment(app, session, segment, **kwargs):
    data = segment.data or b""
    return {"fingerprint": off_the_hub(fingerprint, data)}
