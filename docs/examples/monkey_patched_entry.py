"""A WSGI entry point for servers that do not patch for you.

gunicorn's gevent worker monkey-patches before it imports your app. A
script that runs gevent on its own (a management command, gevent's own
WSGIServer) must patch first, before anything imports socket, ssl or
threading, or those modules keep their blocking versions.
"""

from gevent import monkey

monkey.patch_all()  # first: before Flask, requests, redis, your app

from gevent.pywsgi import WSGIServer  # noqa: E402
from quickstart import app  # noqa: E402  (your app's module)


def serve(port: int = 8000) -> None:
    WSGIServer(("127.0.0.1", port), app).serve_forever()
