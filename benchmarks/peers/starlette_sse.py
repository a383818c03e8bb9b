"""Peer: sse-starlette under uvicorn, one ``asyncio.Queue`` per subscriber.

Served by uvicorn (one process, asyncio)::

    python -m uvicorn benchmarks.peers.starlette_sse:app
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from benchmarks.fanout_common import next_slot, payload, publish_args

subscribers: set[asyncio.Queue[str]] = set()


async def health(request: Request) -> PlainTextResponse:
    """Readiness probe."""
    return PlainTextResponse("ok")


async def stats(request: Request) -> JSONResponse:
    """This process's pid and how many subscribers it holds."""
    return JSONResponse({"pid": os.getpid(), "subscribers": len(subscribers)})


async def events(request: Request) -> EventSourceResponse:
    """One subscriber: a queue and an async generator draining it."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    subscribers.add(queue)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        try:
            yield ServerSentEvent(comment="open")
            while True:
                yield ServerSentEvent(data=await queue.get())
        finally:
            subscribers.discard(queue)

    return EventSourceResponse(stream(), ping=15)


async def publish(request: Request) -> JSONResponse:
    """Put ``n`` events into every subscriber's queue (burst or paced)."""
    n, interval = publish_args(dict(request.query_params))
    first = start = time.monotonic()
    for seq in range(n):
        if interval:
            await asyncio.sleep(next_slot(start, seq, interval))
        if seq == 0:
            first = time.monotonic()
        data = payload(seq)
        for queue in tuple(subscribers):
            queue.put_nowait(data)
    return JSONResponse({"first": first, "last": time.monotonic()})


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/stats", stats),
        Route("/events", events),
        Route("/publish", publish),
    ]
)
