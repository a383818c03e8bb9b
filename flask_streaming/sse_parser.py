"""The event-stream parser, kept as an import path: :class:`Event`,
:class:`EventParser` and :data:`BOM` are defined in
:mod:`flask_streaming.sse_wire`, with the rest of the wire format."""

from __future__ import annotations

from .sse_wire import BOM, Event, EventParser

__all__ = ["BOM", "Event", "EventParser"]
