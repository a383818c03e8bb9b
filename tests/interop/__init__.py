"""The interoperability matrix: real SSE and upload clients from npm and
PyPI against a real gunicorn + gevent server (see docs/interop.rst)."""
