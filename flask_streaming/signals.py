"""Blinker signals sent by flask_streaming.

Every signal is sent with the real application object as sender, so connect
with ``signal.connect_via(app)`` or ``signal.connect(receiver)``.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: Sent when a streaming response starts sending (its headers and first bytes
#: are on their way). Kwargs: ``stream`` (the :class:`~flask_streaming.transport.StreamInfo`),
#: ``channels`` (a tuple of channel names; empty for an app's own stream).
stream_opened = _signals.signal("stream-opened")

#: Sent once when a streaming response ends, whatever the cause. Kwargs:
#: ``stream``, ``channels`` and ``reason``: ``"complete"`` (the source ended),
#: ``"closed"`` (the app closed it), ``"disconnect"`` (the client went away),
#: ``"error"`` (the source raised) or ``"shutdown"`` (the worker is stopping).
stream_closed = _signals.signal("stream-closed")
