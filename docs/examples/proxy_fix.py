"""Behind nginx: trust one proxy's X-Forwarded-* headers."""

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_streaming import Streaming

app = Flask(__name__)
Streaming(app)
# request.remote_addr becomes the browser's address (the per-client upload
# session limit counts by it) and url_for() builds https:// URLs.
app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)
