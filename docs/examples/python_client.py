"""The Python client (``pip install 'flask-streaming[client]'``)."""

from flask_streaming.client import UploadFailed, events, upload


def send(path: str, server: str = "http://127.0.0.1:8000") -> dict:
    try:
        # A progress bar on stderr; each request retried with backoff.
        return upload(path, f"{server}/streaming", segment_size=8 << 20)
    except UploadFailed as err:
        # Later (or after a restart): go on where the server stopped.
        return upload(path, f"{server}/streaming", resume=err.resume)


def first_events(url: str, count: int) -> list:
    received = []
    for event in events(url):  # reconnects with Last-Event-ID by itself
        received.append((event.event, event.data))
        if len(received) == count:
            break
    return received
