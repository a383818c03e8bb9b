"""What the interoperability matrix proves: clients, scenarios, and the
table of docs/interop.rst (``docs/_interop_table.rst``) rendered from the
outcomes of a run.

The table is written by the test run itself (``conftest.py``): when every
cell of :data:`CELLS` ran and none failed, the rendered table must equal the
committed file; if it does not (a client version changed, a known failure
got fixed), the run writes the new table and fails, so that the change is
committed and reviewed, never silent. ``test_table.py`` checks on every run,
even a partial one, that the committed table names exactly these cells with
the installed versions.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "_interop_table.rst"
JS_MODULES = ROOT / "tests" / "js" / "node_modules"

#: SSE scenarios: key -> what the table says. Every SSE scenario also
#: asserts that the client handed the app no phantom event.
SSE_SCENARIOS = {
    "order": "20 events in order with ids; the stream ends after 10 and the client "
    "resumes with Last-Event-ID: 10, no sooner than the retry (700 ms)",
    "restart": "server stopped (SIGTERM) mid-stream, down for 2 s, started again: the "
    "client resumes by Last-Event-ID, no event lost or repeated",
    "channel": "a channel subscription (/streaming/events/<channel>): events with the "
    "``channel:`` field arrive intact, in order, across 1 s pauses of heartbeats",
    "channel-restart": "a channel through Redis while another process publishes every 0.1 s: "
    "the server stopped (SIGTERM) for 2 s and started again; the client resumes by "
    "Last-Event-ID from the broker's history, no event lost or repeated",
    "idle": "heartbeats every 0.2 s, 1.5 s idle after an id: no phantom event",
}
#: Upload scenarios.
UPLOAD_SCENARIOS = {
    "sha256": "upload in chunks: the stored file is byte-identical (sha256)",
    "sigkill": "server SIGKILLed mid-upload and restarted: the client resumes from the "
    "server's offset, byte-identical",
}

#: client -> (runtime, package(s) whose versions the table shows, kind,
#: how it reconnects and resumes). Where a client has no reconnect of its
#: own, the test holds the few lines of app code a user would write.
CLIENTS: dict[str, tuple[str, tuple[str, ...], str, str]] = {
    "sveltekit-sse": (
        "Chromium", ("sveltekit-sse",), "sse",
        "app code: its close() callback sets Last-Event-ID in options.headers and calls "
        "connect() after the retry, again while connect() rejects (server down); the client "
        "exposes no retry, the app uses the one it configured",
    ),
    "@microsoft/fetch-event-source": (
        "Chromium", ("@microsoft/fetch-event-source",), "sse",
        "own retry with Last-Event-ID and retry; after a clean close only when onclose "
        "throws (its documented way)",
    ),
    "eventsource": (
        "Node", ("eventsource",), "sse", "own: reconnects with Last-Event-ID after retry",
    ),
    "httpx-sse": (
        "Python", ("httpx-sse",), "sse", "app loop: resend the last id, wait retry",
    ),
    "sseclient-py": (
        "Python", ("sseclient-py",), "sse", "app loop: resend the last id, wait retry",
    ),
    "requests-sse": (
        "Python", ("requests-sse",), "sse",
        "own: reconnects with Last-Event-ID (waits twice the retry)",
    ),
    "aiohttp-sse-client": (
        "Python", ("aiohttp-sse-client",), "sse",
        "own after a stream ends: Last-Event-ID, waits twice the retry; its one attempt "
        "raises while the server is down: app loop opens a new EventSource with the last id "
        "after 1 s",
    ),
    "tus-js-client": (
        "Node", ("tus-js-client",), "upload",
        "own: retryDelays, then HEAD for the offset and PATCH on",
    ),
    "@uppy/core + @uppy/tus": (
        "Chromium", ("@uppy/core", "@uppy/tus"), "upload",
        "own (@uppy/tus retryDelays); the demo page /uppy",
    ),
    "tuspy": (
        "Python", ("tuspy",), "upload", "own: Uploader retries, HEAD for the offset",
    ),
}  # fmt: skip

#: Every cell of the matrix: (client, scenario).
CELLS: list[tuple[str, str]] = [
    (client, scenario)
    for client, (_, _, kind, _) in CLIENTS.items()
    for scenario in (SSE_SCENARIOS if kind == "sse" else UPLOAD_SCENARIOS)
]

#: Cells that fail because of a known bug, with the reason: their tests are
#: strict xfails (a fix makes them fail until the entry is removed here).
KNOWN_FAILURES: dict[tuple[str, str], str] = {}

#: The PyPI packages among the clients (the others are npm packages).
PYPI = {"httpx-sse", "sseclient-py", "requests-sse", "aiohttp-sse-client", "tuspy"}


def version(package: str) -> str:
    """The installed version of a PyPI package, or of an npm package in tests/js."""
    try:
        if package in PYPI:
            return metadata.version(package)
        return str(json.loads((JS_MODULES / package / "package.json").read_text())["version"])
    except (OSError, metadata.PackageNotFoundError):
        return "not installed"


def versions(client: str) -> str:
    return ", ".join(version(p) for p in CLIENTS[client][1])


def result_text(outcome: str, client: str, scenario: str) -> str:
    if outcome == "passed":
        return "pass"
    if outcome == "xfailed":
        return "fails: " + KNOWN_FAILURES[(client, scenario)]
    raise ValueError(outcome)


def render(outcomes: dict[tuple[str, str], str]) -> str:
    """The tables (reStructuredText ``list-table``) for *outcomes*, one
    ``"passed"`` or ``"xfailed"`` per cell of :data:`CELLS`: SSE clients,
    then upload clients; a row per client, a column per scenario."""
    lines = [
        ".. This file is generated by the interoperability tests (tests/interop/);",
        "   do not edit it: run ``python -m pytest tests/interop`` and commit the result.",
        "",
        "Scenarios:",
    ]
    for name, what in {**SSE_SCENARIOS, **UPLOAD_SCENARIOS}.items():
        lines += ["", f"``{name}``", f"   {what}"]
    for kind, scenarios, caption in (
        ("sse", SSE_SCENARIOS, "SSE clients (no phantom event in any scenario)"),
        ("upload", UPLOAD_SCENARIOS, "Upload clients (tus 1.0)"),
    ):
        lines += [
            "",
            f".. list-table:: {caption}",
            "   :header-rows: 1",
            "",
            "   * - client",
            "     - version",
            "     - runs in",
            *(f"     - {scenario}" for scenario in scenarios),
            "     - reconnect / resume",
        ]
        for client, (runtime, _, client_kind, reconnect) in CLIENTS.items():
            if client_kind != kind:
                continue
            lines += [
                f"   * - {client}",
                f"     - {versions(client)}",
                f"     - {runtime}",
                *(f"     - {result_text(outcomes[(client, s)], client, s)}" for s in scenarios),
                f"     - {reconnect}",
            ]
    return "\n".join(lines) + "\n"
