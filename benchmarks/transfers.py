"""Registers the upload benchmarks (:mod:`benchmarks.uploads`,
:mod:`benchmarks.tus`) as scenarios of ``benchmarks/run.py``: their rows
become the runner's measurements, ratios and checks."""

from __future__ import annotations

from typing import Any

from benchmarks import tus, uploads
from benchmarks.harness import Check, Context, Measurement, Result, scenario


def _measurement(row: dict[str, Any]) -> Measurement:
    return Measurement(
        impl=row["name"],
        size=f"{row['bytes'] / (1 << 20):,.0f} MiB",
        seconds=row["seconds"],
        rate=row["mb_s"],
        unit="MB/s",
        note=f"peak RSS {row['peak_rss_mib']} MiB (+{row['rss_growth_mib']} MiB)",
        rates=tuple(row.get("runs", ())),
    )


def _sha_checks(rows: list[dict[str, Any]], cpu: int | None = None) -> list[Check]:
    """sha256 of what each side stored; with *cpu*, that each server ran
    pinned to that core alone."""
    checks = [
        Check(f"{r['name']}: sha256 of the stored bytes", bool(r["check"]))
        for r in rows
        if "check" in r
    ]
    if cpu is not None:
        checks += [
            Check(
                f"{r['name']}: server pinned to cpu {cpu}",
                r.get("server_cpus") == str(cpu),
                f"Cpus_allowed_list {r.get('server_cpus')}",
            )
            for r in rows
        ]
    return checks


def _rss_check(row: dict[str, Any]) -> Check:
    return Check(
        f"{row['name']}: server RSS growth <= 64 MiB",
        row["rss_growth_mib"] <= 64,
        f"+{row['rss_growth_mib']} MiB",
    )


@scenario("uploads", "1 GiB in 8 MiB segments vs a raw streaming PUT to disk")
def uploads_scenario(ctx: Context) -> list[Result]:
    raw, many, seg, *_ = uploads.run(quick=ctx.quick, repeat=ctx.repeat, cpu=ctx.server_cpu)
    ours = _measurement(seg)
    checks = [_rss_check(seg), *_sha_checks([raw, many, seg], ctx.server_cpu)]
    faster, slower = sorted((raw, many), key=lambda r: r["mb_s"], reverse=True)
    return [
        Result("uploads", ours, _measurement(faster), aim=1.2, checks=checks),
        Result("uploads", ours, _measurement(slower)),
    ]


@scenario("tus", "tuspy, 1 GiB in 8 MiB chunks: ours vs a raw PUT and @tus/server")
def tus_scenario(ctx: Context) -> list[Result]:
    rows = tus.run(quick=ctx.quick, repeat=ctx.repeat, cpu=ctx.server_cpu)
    measured = {r["name"]: r for r in rows if "mb_s" in r}
    ours_row = next(r for r in measured.values() if "tus" in r["name"] and "ours" in r["name"])
    ours = _measurement(ours_row)
    checks = [_rss_check(ours_row), *_sha_checks(list(measured.values()), ctx.server_cpu)]
    results = []
    for row in measured.values():
        if row is ours_row:
            continue
        results.append(Result("tus", ours, _measurement(row), aim=1.1, checks=checks))
        checks = []
    for r in rows:
        if "skipped" in r:
            results[-1].checks.append(Check(f"{r['name']} skipped: {r['skipped']}", True))
    return results
