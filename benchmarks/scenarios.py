"""Scenarios of issue 3: SSE events/s, NDJSON throughput, file download.

Each measures flask_streaming against a peer on the same gunicorn gevent
worker in the same run (routes in :mod:`benchmarks.apps`).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from benchmarks.client import Fetched, fetch
from benchmarks.harness import Check, Context, Measurement, Result, alternate, scenario

#: flask_streaming's default ``STREAMING_FLUSH_INTERVAL`` (s): the NDJSON
#: time-to-first-byte must not exceed it.
FLUSH_INTERVAL = 0.05
MiB = 1 << 20


def _alternate(
    ctx: Context, run_ours: Callable[[], Measurement], run_peer: Callable[[], Measurement]
) -> tuple[Measurement, Measurement]:
    """:func:`benchmarks.harness.alternate` with ``ctx.repeat``."""
    return alternate(ctx.repeat, run_ours, run_peer)


def same_output(ctx: Context, paths: tuple[str, str], *, max_bytes: int) -> Check:
    """Fetch both views of a pair once (untimed) and compare the sha256 of
    their payloads (chunk framing removed): a paired view is timed only if
    it sends exactly the same bytes as ours.

    :raises RuntimeError: they differ (the scenario is not run).
    """
    got = [
        fetch(ctx.port, path, max_bytes=max_bytes, timeout=ctx.timeout, digest=True)
        for path in paths
    ]
    ok = all(f.status == 200 and f.clean_end for f in got) and got[0].sha256 == got[1].sha256
    detail = "; ".join(
        f"{path}: {f.status}, sha256 {f.sha256[:16]}…" for path, f in zip(paths, got, strict=True)
    )
    if not ok:
        raise RuntimeError(f"the paired views do not send the same output: {detail}")
    return Check("same output (sha256) before timing", True, detail)


def _done(name: str, m: Measurement) -> Check:
    """A check that *m* saw the whole body, ended cleanly."""
    return Check(name, m.complete, "" if m.complete else m.note)


def _items(f: Fetched, *, impl: str, n: int, unit: str, size: str, note: str = "") -> Measurement:
    """A measurement of a stream of *n* items counted by marker."""
    complete = f.status == 200 and f.clean_end and f.count == n
    if not complete:
        note = (
            f"status {f.status}, {f.count:,} of {n:,} items, clean end: {f.clean_end}. {note}"
        ).strip()
    return Measurement(
        impl=impl,
        size=size,
        seconds=f.elapsed,
        rate=f.count / f.elapsed if f.elapsed else 0.0,
        unit=unit,
        ttfb=f.t_first,
        complete=complete,
        note=note,
    )


@scenario("sse", "single-stream SSE events/s: sse_response vs a hand-written generator")
def sse(ctx: Context) -> Result:
    """One client reads *n* small events; rate = events/s over the whole stream."""
    n = ctx.size(300_000, 20_000)
    max_bytes = n * 64 + MiB  # generous: an event is ~35 bytes on the wire
    same = same_output(ctx, (f"/ours/sse?n={n}", f"/peer/sse?n={n}"), max_bytes=max_bytes)

    def measure(who: str, impl: str) -> Measurement:
        f = fetch(
            ctx.port,
            f"/{who}/sse?n={n}",
            marker=b"data: ",
            max_bytes=max_bytes,
            timeout=ctx.timeout,
        )
        return _items(f, impl=impl, n=n, unit="events/s", size=f"{n:,} events")

    ours, peer = _alternate(
        ctx,
        lambda: measure("ours", "ours: sse_response(generator)"),
        lambda: measure("peer", "peer: Response(generator), one str per event"),
    )
    checks = [
        same,
        _done("ours: every event arrived, stream ended cleanly", ours),
        _done("peer: every event arrived, stream ended cleanly", peer),
    ]
    return Result("sse", ours=ours, peer=peer, checks=checks)


@scenario("ndjson", "NDJSON of 1,000,000 small records: ndjson_response vs json.dumps per yield")
def ndjson(ctx: Context) -> Result:
    """One client reads *n* records; reports seconds, records/s and the time
    until the first record arrived."""
    n = ctx.size(1_000_000, 50_000)
    max_bytes = n * 64 + MiB  # a record is ~40 bytes on the wire
    same = same_output(ctx, (f"/ours/ndjson?n={n}", f"/peer/ndjson?n={n}"), max_bytes=max_bytes)

    def measure(who: str, impl: str) -> Measurement:
        f = fetch(
            ctx.port,
            f"/{who}/ndjson?n={n}",
            marker=b"}\n",
            max_bytes=max_bytes,
            timeout=ctx.timeout,
        )
        return _items(
            f,
            impl=impl,
            n=n,
            unit="records/s",
            size=f"{n:,} records",
            note=f"headers after {f.t_headers * 1000:.1f} ms,"
            f" {f.body_bytes / 1e6:.1f} MB on the wire",
        )

    ours, peer = _alternate(
        ctx,
        lambda: measure("ours", "ours: ndjson_response(generator)"),
        lambda: measure("peer", "peer: Response(json.dumps(rec, compact)+'\\n' per yield)"),
    )
    ttfb_ok = ours.ttfb is not None and ours.ttfb <= FLUSH_INTERVAL
    checks = [
        same,
        _done("ours: every record arrived, stream ended cleanly", ours),
        _done("peer: every record arrived, stream ended cleanly", peer),
        Check(
            f"ours: first record within flush_interval ({FLUSH_INTERVAL * 1000:.0f} ms)",
            ttfb_ok,
            f"{(ours.ttfb or 0) * 1000:.1f} ms",
        ),
    ]
    return Result("ndjson", ours=ours, peer=peer, aim=5.0, checks=checks)


def _make_file(path: str, size: int) -> None:
    """A sparse file of *size* bytes with random 1 MiB blocks at the start,
    at an unaligned offset in the middle and at the end (so that Range checks
    compare real data, not just zeros)."""
    with open(path, "wb") as f:
        f.truncate(size)
        for offset in (0, size // 2 - 12_345, size - MiB):
            f.seek(offset)
            f.write(os.urandom(MiB))


def _range_checks(ctx: Context, path: str, name: str, size: int) -> list[Check]:
    """Range requests on our download route return exactly the file's bytes."""
    mid = size // 2 - 12_345
    ranges = [
        (0, 99),
        (mid - 1000, mid + 2 * MiB),  # a hole, the middle block, a hole again
        (size - 4096, size - 1),
        (size - MiB - 10, size - 1),
    ]
    checks: list[Check] = []
    with open(path, "rb") as f:
        fd = f.fileno()
        for first, last in ranges:
            want = os.pread(fd, last - first + 1, first)
            r = fetch(
                ctx.port,
                f"/ours/download/{name}",
                headers={"Range": f"bytes={first}-{last}"},
                max_bytes=len(want) + 1,
                timeout=30,
                keep_body=True,
            )
            expect_range = f"bytes {first}-{last}/{size}"
            got_range = r.headers.get("content-range", "")
            ok = r.status == 206 and got_range == expect_range and r.body == want
            checks.append(
                Check(
                    f"ours: Range bytes={first}-{last} returns the file's bytes",
                    ok,
                    "" if ok else f"status {r.status}, {got_range!r}, {len(r.body)} bytes",
                )
            )
    return checks


@scenario("download", "1 GiB file download: download_response vs Flask's send_file")
def download(ctx: Context) -> Result:
    """One client downloads the whole file; rate = MB/s (10^6 bytes)."""
    size = ctx.size(1 << 30, 64 * MiB)
    name = "bench-download.bin"
    path = str(ctx.data_dir / name)
    _make_file(path, size)
    try:
        paths = (f"/ours/download/{name}", f"/peer/download/{name}")
        same = same_output(ctx, paths, max_bytes=size + 1)

        def measure(who: str, impl: str) -> Measurement:
            f = fetch(
                ctx.port,
                f"/{who}/download/{name}",
                max_bytes=size + 1,
                timeout=ctx.timeout,
            )
            complete = f.status == 200 and f.clean_end and f.body_bytes == size
            return Measurement(
                impl=impl,
                size=f"{size / (1 << 30):g} GiB" if size >= 1 << 30 else f"{size // MiB} MiB",
                seconds=f.elapsed,
                rate=f.body_bytes / 1e6 / f.elapsed if f.elapsed else 0.0,
                unit="MB/s",
                ttfb=f.t_first,
                complete=complete,
                note="" if complete else f"status {f.status}, {f.body_bytes:,} of {size:,} bytes",
            )

        ours, peer = _alternate(
            ctx,
            lambda: measure("ours", "ours: download_response(path)"),
            lambda: measure("peer", "peer: flask.send_file(path)"),
        )
        disposition = fetch(
            ctx.port, f"/ours/download/{name}", headers={"Range": "bytes=0-0"}, timeout=10
        ).headers.get("content-disposition", "")
        checks = [
            same,
            _done("ours: whole file arrived (Content-Length bytes)", ours),
            _done("peer: whole file arrived (Content-Length bytes)", peer),
            Check(
                "ours: Content-Disposition names the file",
                f"filename={name}" in disposition or f'filename="{name}"' in disposition,
                disposition,
            ),
            *_range_checks(ctx, path, name, size),
        ]
    finally:
        os.unlink(path)
    return Result("download", ours=ours, peer=peer, aim=1.5, checks=checks)
