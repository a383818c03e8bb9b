"""Channel subscriptions as event streams, and the ``/events`` routes.

A subscriber costs no greenlet of its own: the connection's greenlet waits on
its outbox, the broker puts each event's bytes (encoded once per process)
into every subscriber's outbox, and the writer drains all that is new with
one write.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import Blueprint, Response, current_app, request

from .brokers import Broker, Subscriber, check_channel
from .errors import BadRequest, Forbidden, TooManyRequests
from .revocation import GuardedSubscription
from .settings import Settings
from .sse import SSE_HEADERS, event_body, event_stream_response
from .sse_wire import DEFAULT_RETRY, ServerSentEvent, jittered_retry
from .state import Hooks, get_state
from .transport import Outbox

logger = logging.getLogger(__name__)
_warned_memory_multiprocess = False


def get_broker() -> Broker:
    """The current app's broker in this process."""
    return get_state().broker


def _refusal(settings: Settings, headers: Mapping[str, str] | None) -> Response:
    """A 200 stream that only says "come back later": an ``EventSource``
    gives up for good on any other status. The caller's *headers* win, as on
    the stream it would have got."""
    retry = jittered_retry(settings.retry or DEFAULT_RETRY)
    err = ServerSentEvent(
        {"message": "Too many connections; retrying later."}, event="stream-error"
    ).encode()
    rv = Response([b": busy\n" + retry + err], headers={**SSE_HEADERS, "Retry-After": "5"})
    if headers:
        rv.headers.update(headers)
    return rv


def subscribe_response(
    channels: Iterable[str],
    *,
    last_event_id: str | None = None,
    ping: float | None = None,
    retry: int | None = None,
    headers: Mapping[str, str] | None = None,
    user: str | None = None,
    recheck: Callable[[], bool] | None = None,
) -> Response:
    """An event stream of *channels* through the app's broker.

    :param last_event_id: resume after this id: missed events are replayed
        from the broker's history; when some are no longer known, a
        ``stream-reset`` event comes first.
    :param retry: ``retry:`` sent first (default ``STREAMING_RETRY``, else
        3000 ms, so that a stream after a shutdown resets the jittered value).
    :param user: whom the stream belongs to, for
        :meth:`Streaming.end_streams <flask_streaming.Streaming.end_streams>`
        (default: the ``stream_user`` hook's answer).
    :param recheck: ``fn() -> bool`` run every
        ``STREAMING_REAUTHORIZE_INTERVAL`` seconds (when set); ``False``
        ends the stream (see :mod:`flask_streaming.revocation`).
    :raises TooManyRequests: the client address already holds
        ``STREAMING_MAX_CONNECTIONS_PER_CLIENT`` streams in this worker (429
        with ``Retry-After``; the per-worker limit instead answers a 200
        stream with a retry hint, since an ``EventSource`` gives up for good
        on any other status).
    """
    names = tuple(dict.fromkeys(check_channel(c) for c in channels))
    state = get_state()
    settings = state.settings
    broker = state.broker
    _warn_memory_multiprocess(broker)
    if broker.connections >= settings.max_connections:
        return _refusal(settings, headers)
    client = request.remote_addr or ""
    quota = settings.max_connections_per_client
    if quota and broker.clients.get(client, 0) >= quota:
        raise TooManyRequests(
            f"At most {quota} open event streams per client.",
            code="too_many_connections",
            limit=quota,
            headers={"Retry-After": "5"},
        )
    outbox = Outbox()
    sub = Subscriber(broker, names, outbox, last_event_id, client)
    sub.retry = settings.retry or DEFAULT_RETRY
    # end_streams compares strings (an app may name a user by an int id)
    user = state.hooks.current_stream_user() if user is None else str(user)
    source = GuardedSubscription(sub, state.streams, user, recheck)
    body = event_body(
        outbox,
        ping=ping,
        retry=retry if retry is not None else (settings.retry or DEFAULT_RETRY),
        producer=source,
        channels=names,
    )
    return event_stream_response(body, headers=headers)


def _warn_memory_multiprocess(broker: Broker) -> None:
    global _warned_memory_multiprocess
    if (
        broker.name == "memory"
        and request.environ.get("wsgi.multiprocess")
        and not _warned_memory_multiprocess
    ):
        _warned_memory_multiprocess = True
        logger.warning(
            "flask_streaming: STREAMING_BROKER_URL is memory:// but the server runs "
            "several worker processes: each worker has its own channels and a publish "
            "reaches only the subscribers of its own worker. Use redis://."
        )


#: The methods of the ``/events`` routes. ``POST`` has no side effect: it
#: subscribes exactly as ``GET`` does.
EVENTS_METHODS = ("GET", "POST")
#: The events view as Flask-WTF's ``CSRFProtect.exempt`` names it
#: (``csrf.exempt(EVENTS_VIEW)``), so that a ``POST`` subscription is not
#: refused for a missing CSRF token.
EVENTS_VIEW = "flask_streaming.channels.events"


def register_event_views(
    bp: Blueprint,
    route: Callable[..., Callable[[Callable[..., Any]], Callable[..., Any]]],
    settings: Settings,
) -> None:
    """``GET /events/<channel>`` and ``GET /events?channel=a&channel=b``.

    ``POST`` is answered the same way (sveltekit-sse's ``source()`` POSTs by
    default): the body is ignored, nothing changes on the server and the
    same authorization applies. CSRF protection that guards every ``POST``
    (Flask-WTF's ``CSRFProtect``) must exempt :data:`EVENTS_VIEW`.
    """

    @route("/events", methods=EVENTS_METHODS)
    @route("/events/<path:channel>", methods=EVENTS_METHODS)
    def events(channel: str | None = None) -> Response:
        names = [channel] if channel is not None else request.args.getlist("channel")
        if not names:
            raise BadRequest("Name at least one channel.", code="no_channel")
        if len(names) > settings.max_channels:
            raise BadRequest(
                f"At most {settings.max_channels} channels per connection.",
                code="too_many_channels",
            )
        for name in names:
            check_channel(name)
        hooks = get_state().hooks
        for name in names:
            if not hooks.channel_allowed(name, "subscribe"):
                raise Forbidden(f"Not allowed to subscribe to {name!r}.", channel=name)
        # The header wins: a reconnecting browser resends the old query string.
        last_id = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
        recheck = None
        if settings.reauthorize_interval > 0:
            recheck = _recheck(hooks, tuple(names))
        return subscribe_response(names, last_event_id=last_id, recheck=recheck)


def _recheck(hooks: Hooks, names: tuple[str, ...]) -> Callable[[], bool]:
    """Ask the channel hook again for *names*, later and from another
    greenlet, in a request context like the current one (same headers,
    cookies and address; no body, no socket)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    environ = {
        k: v for k, v in request.environ.items() if k not in ("gunicorn.socket", "wsgi.input")
    }
    environ.update({"wsgi.input": io.BytesIO(), "CONTENT_LENGTH": "0"})

    def allowed() -> bool:
        with app.request_context(environ):
            return all(hooks.channel_allowed(name, "subscribe") for name in names)

    return allowed
