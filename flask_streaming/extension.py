"""The :class:`Streaming` extension object."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, current_app, has_app_context, request

from .brokers import Broker
from .errors import BrokerUnavailable
from .revocation import end_streams_message
from .server import check_server
from .settings import Settings
from .signals import event_published
from .sse import EVENT_STREAM_TYPE, json_dumps
from .state import AppState, Hooks, find_state, register_state
from .transport import BODY_ENVIRON_KEY
from .views import create_blueprint

ViewDecorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def keep_event_streams_raw(response: Response) -> Response:
    """An ``after_request`` hook (run after every other): when a hook
    compressed one of our event streams (Flask-Compress with
    ``text/event-stream`` in ``COMPRESS_MIMETYPES``), give the stream its own
    body back, uncompressed. A compressor holds events back until its buffer
    fills (and without the body's ``close()`` it would never release the
    stream's subscription). Other responses are left alone."""
    body = request.environ.get(BODY_ENVIRON_KEY)
    if (
        body is not None
        and response.response is not body
        and not body.started
        and response.mimetype == EVENT_STREAM_TYPE
        and "Content-Encoding" in response.headers
    ):
        response.response = body
        response.direct_passthrough = True
        del response.headers["Content-Encoding"]
        response.headers.pop("Content-Length", None)
    return response


def _broker_unavailable(exc: BrokerUnavailable) -> Response:
    return exc.response()


class Streaming:
    """Streaming in both directions for a Flask app.

    ::

        streaming = Streaming()
        streaming.init_app(app)  # or Streaming(app)

    Options given here are defaults for the app's config; a ``STREAMING_*``
    key in ``app.config`` wins. Every key is checked here: a bad value (or
    an unknown ``STREAMING_*`` key) raises
    :class:`~flask_streaming.ConfigError` naming it. Each key's meaning,
    unit and default are in the :doc:`config reference </reference/config>`
    (generated from :class:`~flask_streaming.settings.Settings`). The keys:

    * where and what: ``STREAMING_URL_PREFIX``, ``STREAMING_ROUTES``,
      ``STREAMING_METRICS``;
    * event streams: ``STREAMING_PING_INTERVAL``, ``STREAMING_RETRY``,
      ``STREAMING_ERROR_MESSAGE``, ``STREAMING_SEND_TIMEOUT``,
      ``STREAMING_PARK_AFTER``;
    * CORS: ``STREAMING_CORS_ORIGINS``, ``STREAMING_CORS_CREDENTIALS``,
      ``STREAMING_CORS_MAX_AGE``;
    * chunked responses: ``STREAMING_BUFFER_SIZE``,
      ``STREAMING_FLUSH_INTERVAL``;
    * channels: ``STREAMING_BROKER_URL``, ``STREAMING_REDIS_PREFIX``,
      ``STREAMING_HISTORY_SIZE``, ``STREAMING_HISTORY_CHANNELS``,
      ``STREAMING_HISTORY_TTL``, ``STREAMING_MAX_QUEUE``,
      ``STREAMING_MAX_QUEUE_BYTES``, ``STREAMING_MAX_CHANNELS``,
      ``STREAMING_MAX_CONNECTIONS``, ``STREAMING_MAX_CONNECTIONS_PER_CLIENT``,
      ``STREAMING_REAUTHORIZE_INTERVAL``;
    * uploads: ``STREAMING_UPLOAD_FOLDER``, ``STREAMING_MAX_SEGMENT_SIZE``,
      ``STREAMING_MAX_UPLOAD_SIZE``, ``STREAMING_MAX_SEGMENTS``,
      ``STREAMING_SESSION_TIMEOUT``, ``STREAMING_MAX_SESSIONS_PER_CLIENT``,
      ``STREAMING_MAX_UPLOADS_PER_CLIENT``, ``STREAMING_BODY_TIMEOUT``,
      ``STREAMING_UPLOAD_LOCK_TIMEOUT``, ``STREAMING_UPLOAD_FSYNC``,
      ``STREAMING_TUS_EXPIRY``, ``STREAMING_COMPLETED_RETENTION``.

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
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        #: The hooks set with the decorators below, shared by every app.
        self.hooks = Hooks()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the extension with *app*: read the config, mount the
        blueprint.

        :raises RuntimeError: when *app* already has a Streaming extension.
        :raises ConfigError: naming each ``STREAMING_*`` key whose value
            cannot work, the value and what the key accepts.
        """
        state = register_state(
            app, lambda: AppState(self, Settings.from_app(app, self.options), self.hooks)
        )
        settings = state.settings
        self._apps.add(app)
        check_server(settings)
        # Index 0 runs last (Flask runs after_request hooks in reverse), so
        # it sees what any compressor registered before or after did.
        app.after_request_funcs.setdefault(None, []).insert(0, keep_event_streams_raw)
        if BrokerUnavailable not in app.error_handler_spec[None][None]:
            # A publish from any view of the app: JSON 503 + Retry-After,
            # not an HTML 500 (a handler of the app's own, set before or after, wins).
            app.register_error_handler(BrokerUnavailable, _broker_unavailable)
        if settings.metrics:
            from .metrics import install, metrics_view

            install(app)
            # An app route, not the blueprint's: no view_decorators, no CORS.
            app.add_url_rule(
                f"{settings.url_prefix}/metrics",
                endpoint="flask_streaming_metrics",
                view_func=metrics_view(lambda: self.hooks.metrics),
            )
        if self.register_blueprint and settings.routes:
            app.register_blueprint(
                create_blueprint(settings, self.view_decorators),
                url_prefix=settings.url_prefix,
            )

    # -- uploads ---------------------------------------------------------

    def authorize_upload(self, fn: Callable[[str, Any], bool]) -> Callable[[str, Any], bool]:
        """Decorator: ``fn(action, session) -> bool`` decides, inside the
        request, whether the current client may act on an upload. *action*
        is ``"create"`` (*session* ``None``), ``"append"``, ``"complete"``,
        ``"status"``, ``"read"`` (the upload's bytes, e.g. a partial upload
        listed in a tus final upload) or ``"abort"`` (*session* the
        :class:`~flask_streaming.uploads.UploadSession`; its ``client`` and
        ``metadata`` help decide); see ``UPLOAD_ACTIONS`` in
        :mod:`flask_streaming.uploads.service` and the security guide. The
        hook is asked before anything else about the upload is checked.
        Denied: 403 JSON. Without a hook every upload action is allowed
        (subject to the limits)."""
        self.hooks.upload = fn
        return fn

    # -- metrics ---------------------------------------------------------

    def authorize_metrics(self, fn: Callable[[], bool]) -> Callable[[], bool]:
        """Decorator: ``fn() -> bool`` decides, inside the request, whether
        ``{prefix}/metrics`` (``STREAMING_METRICS``) is answered (e.g. check
        a bearer token). Denied: 403 JSON. Without a hook only loopback
        clients are answered (behind a local proxy, mind ``ProxyFix``: without
        it every request comes from the proxy's loopback address)."""
        self.hooks.metrics = fn
        return fn

    # -- channels --------------------------------------------------------

    def authorize_channel(self, fn: Callable[[str, str], bool]) -> Callable[[str, str], bool]:
        """Decorator: ``fn(channel, action) -> bool`` decides, inside the
        request, whether the current user may ``"subscribe"`` to *channel*.
        Denied: 403 JSON. Without a hook, ``private-*`` channels are refused
        and all others are public."""
        self.hooks.channel = fn
        return fn

    def channel_allowed(self, channel: str, action: str) -> bool:
        """Ask the authorization hook."""
        return self.hooks.channel_allowed(channel, action)

    def stream_user(self, fn: Callable[[], str | None]) -> Callable[[], str | None]:
        """Decorator: ``fn() -> str | None`` names, inside the request, the
        user an event stream belongs to (``None``: nobody), so that
        :meth:`end_streams` can end that user's streams."""
        self.hooks.stream_user = fn
        return fn

    def current_stream_user(self) -> str | None:
        """The user of a stream opened by the current request (the
        :meth:`stream_user` hook's answer; ``None`` without a hook)."""
        return self.hooks.current_stream_user()

    def end_streams(
        self,
        channels: Iterable[str] | None = None,
        *,
        user: str | None = None,
        app: Flask | None = None,
    ) -> None:
        """End the open event streams of *channels* (any of them) and/or of
        *user* (as named by :meth:`stream_user`; both given: that user's
        streams of those channels), in every worker: through Redis with a
        ``redis://`` broker, in this process only with ``memory://``.

        Each stream ends like a graceful shutdown (a jittered ``retry``, its
        position, ``stream-closed`` reason ``revoked``); its client
        reconnects and is authorized again: one still allowed resumes by
        ``Last-Event-ID`` without a gap, one no longer allowed gets 403.
        Call it after the change that withdraws access (logout, role change),
        so that the reconnect sees it. Works from a view, a CLI command, a
        greenlet or a real thread; the streams end asynchronously (with
        Redis, within the pub/sub round trip).

        :raises ValueError: neither *channels* nor *user* given.
        :raises BrokerUnavailable: Redis could not be reached or did not
            answer in time; nothing was ended.
        """
        message = end_streams_message(channels, user)
        self.broker(app).send_control(message)

    def _registered(self, app: Flask | None) -> tuple[Flask, AppState]:
        """*app* (default: the current or only app) and its state."""
        if app is None and has_app_context():
            app = current_app._get_current_object()  # type: ignore[attr-defined]
        if app is None:
            apps = list(self._apps)
            if len(apps) == 1:
                app = apps[0]
            elif not apps:
                raise RuntimeError(
                    "This Streaming extension was never registered with an app:"
                    " call streaming.init_app(app) (or Streaming(app)) first."
                )
            else:
                raise RuntimeError(
                    "Pass app=...: there is no app context and this Streaming extension"
                    f" is registered with {len(apps)} apps."
                )
        state = find_state(app)
        if state is None or state.extension is not self:
            raise RuntimeError(
                f"This Streaming extension is not registered with app {app.name!r}:"
                " call streaming.init_app(app) first."
            )
        return app, state

    def state(self, app: Flask | None = None) -> AppState:
        """What this extension keeps for *app* (default: the current or only
        app): its settings, its broker, its upload service.

        :raises RuntimeError: when the extension was never ``init_app``-ed
            with that app.
        """
        return self._registered(app)[1]

    def broker(self, app: Flask | None = None) -> Broker:
        """The broker of *app* (default: the current or only app) in this process.

        :raises RuntimeError: when the extension was never ``init_app``-ed
            with that app.
        """
        return self.state(app).broker

    def publish(
        self,
        channel: str,
        data: Any,
        *,
        event: str | None = None,
        id: int | str | None = None,
        retry: int | None = None,
        app: Flask | None = None,
    ) -> str:
        """Publish *data* on *channel* to every subscriber, on every worker
        (and machine, with Redis). Works from a view, a CLI command, a
        greenlet, or a real thread; returns the event id assigned.

        :param data: ``str`` as is, anything else as compact JSON.
        :param event: the event type (``message`` when ``None``).
        :param id: an explicit id, an integer above every id so far (default:
            the broker's next).
        :param retry: a ``retry:`` field for the subscribers.
        :raises BrokerUnavailable: the broker (Redis) could not be reached or
            did not answer within its socket timeout; the event was not
            published. (A JSON 503 with ``Retry-After`` when not caught.)
        :raises RuntimeError: when :meth:`init_app` was never called for the
            app.
        """
        target, state = self._registered(app)
        event_id = state.broker.publish(
            channel, data, event=event, id=id, retry=retry, dumps=json_dumps(target.json)
        )
        event_published.send(target, channel=channel, id=event_id, event=event, data=data)
        return event_id
