"""Every SSE client of the matrix behind one small interface.

A client is started on a URL and collects, in a list of :class:`Got`, every
event it hands to the application, including any it should not have
(phantoms); the test polls :meth:`SSEClient.received`. Each one resumes
after the stream ends or the server goes away through its own documented
mechanism where it has one; where it has none the adapter holds the few
lines of app code a user would write (resend the last id, wait the
``retry`` the server asked for). ``matrix.CLIENTS`` says which, for the
table of docs/interop.rst.

Python clients run in a thread of the test process; the ``eventsource``
package runs under Node (``tests/js/interop/eventsource_client.mjs``); the
browser clients run in Debian's Chromium through Playwright, bundled by
esbuild (``tests/js/interop/*.js``, see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import subprocess
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

JS = Path(__file__).resolve().parents[1] / "js"


@dataclasses.dataclass(frozen=True)
class Got:
    """One event as the client handed it to the app."""

    type: str
    data: str
    id: str


class SSEClient:
    """Base: ``start(url)``, ``received()``, ``stop()``."""

    #: The package name (npm or PyPI).
    name = ""
    #: Where it runs: ``Python``, ``Node`` or ``Chromium``.
    runtime = ""

    def start(self, url: str) -> None:
        raise NotImplementedError

    def received(self) -> list[Got]:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class ThreadClient(SSEClient):
    """A Python client consuming in a daemon thread until :meth:`stop`."""

    runtime = "Python"

    def start(self, url: str) -> None:
        self._got: list[Got] = []
        self._stop = threading.Event()
        self._error: str | None = None
        self._close: Callable[[], Any] = lambda: None
        self._thread = threading.Thread(target=self._guard, args=(url,), daemon=True)
        self._thread.start()

    def _guard(self, url: str) -> None:
        try:
            self.run(url)
        except BaseException as exc:  # reported by received()
            if not self._stop.is_set():
                self._error = f"{type(exc).__name__}: {exc}"

    def run(self, url: str) -> None:
        raise NotImplementedError

    def add(self, type_: str | None, data: str | None, id_: str | None) -> None:
        self._got.append(Got(type_ or "message", data or "", id_ or ""))

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def received(self) -> list[Got]:
        if self._error is not None:
            raise AssertionError(f"{self.name} failed: {self._error}")
        return list(self._got)

    def stop(self) -> None:
        self._stop.set()
        # Closing from another thread may race with the reader; it ends anyway.
        with contextlib.suppress(Exception):
            self._close()
        self._thread.join(2)


class HttpxSSE(ThreadClient):
    name = "httpx-sse"

    def run(self, url: str) -> None:
        import httpx
        from httpx_sse import connect_sse

        last_id, wait = "", 3.0
        with httpx.Client(timeout=httpx.Timeout(30.0, connect=5.0)) as http:
            self._close = http.close
            while not self.stopping:
                headers = {"Last-Event-ID": last_id} if last_id else {}
                try:
                    with connect_sse(http, "GET", url, headers=headers) as source:
                        source.response.raise_for_status()
                        for sse in source.iter_sse():
                            if sse.retry is not None:
                                wait = sse.retry / 1000
                            last_id = sse.id
                            self.add(sse.event, sse.data, sse.id)
                            if self.stopping:
                                return
                except httpx.TransportError:
                    pass
                self._stop.wait(wait)


class SseclientPy(ThreadClient):
    name = "sseclient-py"

    def run(self, url: str) -> None:
        import requests
        import sseclient

        last_id, wait = "", 3.0
        with requests.Session() as http:
            self._close = http.close
            while not self.stopping:
                headers = {"Accept": "text/event-stream"}
                if last_id:
                    headers["Last-Event-ID"] = last_id
                try:
                    response = http.get(url, stream=True, headers=headers, timeout=(5, 30))
                    response.raise_for_status()
                    for event in sseclient.SSEClient(response).events():
                        if event.retry is not None:
                            wait = int(event.retry) / 1000
                        if event.id is not None:
                            last_id = event.id
                        self.add(event.event, event.data, event.id or last_id)
                        if self.stopping:
                            return
                except requests.ConnectionError:
                    pass
                self._stop.wait(wait)


class RequestsSSE(ThreadClient):
    name = "requests-sse"

    def run(self, url: str) -> None:
        from requests_sse import EventSource

        with EventSource(
            url, reconnection_time=timedelta(seconds=1), max_connect_retry=8, timeout=30
        ) as source:
            self._close = source.close
            for event in source:
                self.add(event.type, event.data, event.last_event_id)
                if self.stopping:
                    return


class AiohttpSSEClient(ThreadClient):
    name = "aiohttp-sse-client"

    def run(self, url: str) -> None:
        asyncio.run(self._main(url))

    async def _main(self, url: str) -> None:
        import aiohttp
        from aiohttp_sse_client.client import EventSource

        timeout = aiohttp.ClientTimeout(total=None, sock_read=30)
        last_id = ""
        while not self.stopping:
            # Its own reconnect after a stream ends makes one attempt and
            # raises if the server is still down: then the app opens a new
            # EventSource with the last id.
            headers = {"Last-Event-Id": last_id} if last_id else {}
            try:
                async with EventSource(
                    url,
                    reconnection_time=timedelta(seconds=1),
                    max_connect_retry=8,
                    timeout=timeout,
                    headers=headers,
                ) as source:
                    async for event in source:
                        last_id = event.last_event_id
                        self.add(event.type, event.data, event.last_event_id)
                        if self.stopping:
                            return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(1)  # the reconnection_time the app chose


class NodeEventSource(SSEClient):
    """The ``eventsource`` npm package (the WHATWG ``EventSource`` for Node)."""

    name = "eventsource"
    runtime = "Node"

    def start(self, url: str) -> None:
        self._got: list[Got] = []
        self._lines: list[str] = []
        self.proc = subprocess.Popen(
            ["node", str(JS / "interop" / "eventsource_client.mjs"), url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=str(JS),
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            record = json.loads(line)
            self._got.append(Got(record["type"], record["data"], record["id"]))

    def received(self) -> list[Got]:
        if self.proc.poll() is not None and self.proc.returncode != 0:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"node eventsource client exited {self.proc.returncode}: {err}")
        return list(self._got)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class BrowserClient(SSEClient):
    """A client bundled by esbuild, in a Chromium page of the test's app.

    The page script (``START``) pushes ``{type, data, id}`` into
    ``window.got`` for every event the client hands the app and defines
    ``window.stopClient()``.
    """

    runtime = "Chromium"
    bundle = ""
    START = ""

    def __init__(self, browser: Any, retry_ms: int) -> None:
        self.browser = browser
        self.retry_ms = retry_ms

    def start(self, url: str) -> None:
        self.context = self.browser.new_context()
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        origin = url.split("/", 3)[:3]
        self.page.goto("/".join(origin) + "/interop-page")
        self.page.add_script_tag(url=f"/interop-js/{self.bundle}")
        self.page.evaluate(
            f"([url, retry]) => {{ window.got = []; {self.START} }}", [url, self.retry_ms]
        )

    def received(self) -> list[Got]:
        assert self.errors == [], f"JavaScript errors: {self.errors}"
        return [Got(e["type"], e["data"], e["id"]) for e in self.page.evaluate("window.got")]

    def stop(self) -> None:
        try:
            self.page.evaluate("window.stopClient && window.stopClient()")
        finally:
            self.context.close()


class FetchEventSource(BrowserClient):
    name = "@microsoft/fetch-event-source"
    bundle = "fetch_event_source.js"
    START = """
      const ctrl = new AbortController();
      window.stopClient = () => ctrl.abort();
      FES.fetchEventSource(url, {
        signal: ctrl.signal,
        openWhenHidden: true,
        onmessage(e) { window.got.push({type: e.event, data: e.data, id: e.id}); },
        // Documented: throw from onclose to retry after the server closed.
        onclose() { throw new Error('server closed the stream: retry'); },
        // Returning nothing retries after the server's retry interval.
        onerror(err) {},
      });
    """


class SveltekitSSE(BrowserClient):
    name = "sveltekit-sse"
    bundle = "sveltekit_sse.js"

    def selected(self) -> list[Any]:
        """What ``select('tick').json()`` (a Svelte store) handed the app."""
        values: list[Any] = self.page.evaluate("window.selected")
        return values

    START = """
      const headers = {};
      let lastId = '', stopped = false;
      const src = SKS.source(url, {
        cache: false,
        // options go to its fetch: the headers object is the one it sends.
        options: {
          headers,
          onmessage(e) {
            if (e.id) lastId = e.id;
            window.got.push({type: e.event, data: e.data, id: e.id});
          },
        },
        close({connect}) {
          if (stopped) return;
          if (lastId) headers['Last-Event-ID'] = lastId;
          // connect() rejects (and calls no callback) while the server is down.
          const again = () => { if (!stopped) connect().catch(() => setTimeout(again, retry)); };
          setTimeout(again, retry);
        },
      });
      // A subscriber opens the connection (a Svelte store); null until the first event.
      window.selected = [];
      const off = src.select('tick').json().subscribe((v) => { if (v) window.selected.push(v); });
      window.stopClient = () => { stopped = true; off(); src.close(); };
    """


#: The SSE clients of the matrix, in table order.
PYTHON_CLIENTS: list[type[ThreadClient]] = [HttpxSSE, SseclientPy, RequestsSSE, AiohttpSSEClient]
BROWSER_CLIENTS: list[type[BrowserClient]] = [SveltekitSSE, FetchEventSource]
