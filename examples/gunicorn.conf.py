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


# Prometheus metrics (STREAMING_METRICS = True) with several workers: each
# worker writes its numbers into files in this folder and a scrape, whichever
# worker answers it, sums them (prometheus_client's multiprocess mode). It must
# be set before the workers import the app, and start empty.
# PROMETHEUS_MULTIPROC_DIR=/run/myapp-metrics gunicorn -c examples/gunicorn.conf.py
def on_starting(server):
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            if name.endswith(".db"):
                os.remove(os.path.join(folder, name))


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        # A dead worker's open-stream gauge no longer counts.
        multiprocess.mark_process_dead(worker.pid)
