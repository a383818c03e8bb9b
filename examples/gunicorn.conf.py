"""gunicorn settings for flask_streaming apps: the gevent worker, many
connections per worker, and timeouts that suit long-lived streams.

Run the demo with ``gunicorn -c examples/gunicorn.conf.py``.
"""

import os

wsgi_app = os.environ.get("STREAMING_APP", "examples.demo:create_app()")
bind = os.environ.get("BIND", "127.0.0.1:8000")
worker_class = "gevent"
workers = int(os.environ.get("WORKERS", "1"))
# Every open event stream holds a connection: raise gunicorn's default of 1000.
worker_connections = 10000
# With gevent the worker heartbeats while streams are open, so this only
# catches a worker that hangs the hub; it does not limit stream length.
timeout = 60
# On shutdown or reload, open streams get this long to receive their final
# retry hint and close.
graceful_timeout = 10
keepalive = 5


def when_ready(server):
    host, _, port = bind.rpartition(":")
    print(f"\n  flask_streaming demo running at http://{host}:{port}/\n", flush=True)
