"""What the extension keeps per app: one :class:`AppState`, made by
:meth:`Streaming.init_app <flask_streaming.Streaming.init_app>`, reached with
:func:`get_state`.

The state owns the app's settings, its broker and open streams (one of each
per worker process, made on first use, after gunicorn forked) and its upload
service; the extension's hooks (:class:`Hooks`) are shared by every app of
one extension. :func:`get_state` is the one place the rest of the package
looks the state up, and the one error for an app that was never registered.
(:func:`~flask_streaming.settings.get_settings`, below the brokers, reads the
same entry and falls back to the defaults, so that the response helpers work
without the extension.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from .brokers import Broker, create_broker
from .revocation import StreamRegistry
from .settings import EXTENSION_KEY, Settings

if TYPE_CHECKING:
    from .uploads.service import Authorizer, UploadService


def default_channel_authorizer(channel: str, action: str) -> bool:
    """Without a hook of the app's, channels named ``private-*`` are refused
    and every other channel is public (as in Pusher's naming)."""
    return not channel.startswith("private-")


class Hooks:
    """The app's hooks, set with the extension's decorators
    (:meth:`~flask_streaming.Streaming.authorize_channel`,
    :meth:`~flask_streaming.Streaming.authorize_upload`,
    :meth:`~flask_streaming.Streaming.authorize_metrics`,
    :meth:`~flask_streaming.Streaming.stream_user`). ``None``: not set."""

    __slots__ = ("channel", "metrics", "stream_user", "upload")

    def __init__(self) -> None:
        #: ``fn(channel, action) -> bool``
        self.channel: Callable[[str, str], bool] = default_channel_authorizer
        #: ``fn(action, session) -> bool``
        self.upload: Authorizer | None = None
        #: ``fn() -> bool``
        self.metrics: Callable[[], bool] | None = None
        #: ``fn() -> str | None``
        self.stream_user: Callable[[], str | None] | None = None

    def channel_allowed(self, channel: str, action: str) -> bool:
        """Ask the channel hook."""
        return bool(self.channel(channel, action))

    def current_stream_user(self) -> str | None:
        """The :attr:`stream_user` hook's answer as a string (``None``
        without a hook)."""
        if self.stream_user is None:
            return None
        user = self.stream_user()
        return None if user is None else str(user)


class AppState:
    """The extension's state of one app, in ``app.extensions["streaming"]``.

    :ivar extension: the :class:`~flask_streaming.Streaming` registered.
    :ivar settings: the app's :class:`~flask_streaming.settings.Settings`.
    :ivar hooks: the extension's :class:`Hooks`.
    :ivar uploads: the app's upload service, made on first use by
        :func:`~flask_streaming.get_upload_service` (or set by
        :func:`~flask_streaming.uploads.create_upload_service`).
    """

    def __init__(self, extension: Any, settings: Settings, hooks: Hooks) -> None:
        self.extension = extension
        self.settings = settings
        self.hooks = hooks
        self.uploads: UploadService | None = None
        self._broker: Broker | None = None
        self._broker_pid = 0
        self._streams: StreamRegistry | None = None

    @property
    def broker(self) -> Broker:
        """This process's broker, made on first use (after gunicorn forked)."""
        if self._broker is None or self._broker_pid != os.getpid():
            self._broker = create_broker(self.settings)
            self._broker_pid = os.getpid()
            self._streams = StreamRegistry(self.settings.reauthorize_interval)
            self._broker.control_handler = self._streams.on_control
        return self._broker

    @property
    def streams(self) -> StreamRegistry:
        """This process's open channel streams (for revocation)."""
        self.broker  # noqa: B018 -- made together, per process
        assert self._streams is not None
        return self._streams


def register_state(app: Flask, make: Callable[[], AppState]) -> AppState:
    """Keep the state *make* returns as *app*'s (by :meth:`Streaming.init_app
    <flask_streaming.Streaming.init_app>`); *make* runs only once the app is
    known to have none.

    :raises RuntimeError: *app* already has a state.

    :meta private:
    """
    if EXTENSION_KEY in app.extensions:
        raise RuntimeError(
            "A 'Streaming' instance has already been registered on this Flask app."
            " Import and use that instance instead."
        )
    state = app.extensions[EXTENSION_KEY] = make()
    return state


def find_state(app: Flask) -> AppState | None:
    """*app*'s state, ``None`` when no extension is registered with it.

    :meta private:
    """
    state = app.extensions.get(EXTENSION_KEY)
    return state if isinstance(state, AppState) else None


def get_state(app: Flask | None = None) -> AppState:
    """The extension's state of *app* (default: the current app).

    :raises RuntimeError: no Streaming extension was registered with the app.
    """
    if app is None:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    assert app is not None
    state = find_state(app)
    if state is None:
        raise RuntimeError(
            f"No Streaming extension is registered with app {app.name!r}:"
            " call streaming.init_app(app) (or Streaming(app)) first."
        )
    return state
