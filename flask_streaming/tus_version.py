"""The tus protocol version this package speaks, defined once for the
server (:mod:`flask_streaming.uploads.tus`), the client
(:mod:`flask_streaming.client`) and the test helpers. A leaf module: it
imports nothing, so the client can use it without loading Flask."""

#: The only tus protocol version served and spoken (https://tus.io/protocols/resumable-upload).
TUS_VERSION = "1.0.0"
