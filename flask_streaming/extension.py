"""The :class:`Streaming` extension object."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from .settings import Settings
from .views import create_blueprint

ViewDecorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class _State:
    """What the extension keeps per app, in ``app.extensions["streaming"]``."""

    def __init__(self, extension: Streaming, settings: Settings) -> None:
        self.extension = extension
        self.settings = settings


class Streaming:
    """Streaming in both directions for a Flask app.

    ::

        streaming = Streaming()
        streaming.init_app(app)  # or Streaming(app)

    Options given here are defaults for the app's config; a ``STREAMING_*``
    key in ``app.config`` wins. The keys (see :class:`~flask_streaming.settings.Settings`):

    ``STREAMING_URL_PREFIX``
        where the blueprint is mounted (``"/streaming"``).
    ``STREAMING_ROUTES``
        route groups to register (all of ``index``, ``events``, ``uploads``,
        ``tus``, ``client``); an empty set registers none.
    ``STREAMING_PING_INTERVAL``
        seconds between SSE heartbeats while idle (``15``).
    ``STREAMING_RETRY``
        ``retry:`` (ms) sent when an event stream opens (``None``).
    ``STREAMING_ERROR_MESSAGE``
        the message of the ``stream-error`` event sent when a source raises.
    ``STREAMING_CORS_ORIGINS``
        allowed origins (list, comma-separated string, or ``"*"``); empty,
        the default, allows no cross-origin access.
    ``STREAMING_CORS_CREDENTIALS``
        allow credentials for the allowed origins (``False``).
    ``STREAMING_CORS_MAX_AGE``
        seconds a preflight answer may be cached (``600``).
    ``STREAMING_BUFFER_SIZE``
        bytes chunked responses coalesce into one write (``65536``).
    ``STREAMING_FLUSH_INTERVAL``
        the longest time (s) chunked data is held back (``0.05``).

    :param app: an app to register with at once.
    :param view_decorators: decorators applied to every view of the
        blueprint, innermost first (e.g. ``[login_required]``).
    :param register_blueprint: ``False`` registers no routes at all.
    :param options: defaults for the config keys, by lower-case name
        without the prefix (``ping_interval=5``).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        view_decorators: Iterable[ViewDecorator] = (),
        register_blueprint: bool = True,
        **options: Any,
    ) -> None:
        self.view_decorators = list(view_decorators)
        self.register_blueprint = register_blueprint
        self.options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the extension with *app*: read the config, mount the
        blueprint.

        :raises RuntimeError: when *app* already has a Streaming extension.
        """
        if "streaming" in app.extensions:
            raise RuntimeError(
                "A 'Streaming' instance has already been registered on this Flask app."
                " Import and use that instance instead."
            )
        settings = Settings.from_app(app, self.options)
        app.extensions["streaming"] = _State(self, settings)
        if self.register_blueprint and settings.routes:
            app.register_blueprint(
                create_blueprint(settings, self.view_decorators),
                url_prefix=settings.url_prefix,
            )
