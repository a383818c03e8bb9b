"""``flask streaming ...`` commands (entry point ``flask.commands``)."""

from __future__ import annotations

import datetime
import json

import click
from flask.cli import AppGroup

streaming_cli = AppGroup("streaming", help="flask_streaming: upload sessions and more.")


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).isoformat(timespec="seconds")


@streaming_cli.command("sessions")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def sessions_command(as_json: bool) -> None:
    """List upload sessions (native and tus), expired ones marked."""
    from .uploads import get_upload_service

    service = get_upload_service()
    sessions = service.sessions()
    if as_json:
        for s in sessions:
            click.echo(json.dumps({**s.status(), "expired": s.expired()}))
        return
    if not sessions:
        click.echo("no upload sessions")
        return
    click.echo(f"{'id':24} {'protocol':8} {'state':9} {'segments':>8} {'bytes':>14}  expires")
    for s in sessions:
        state = "expired" if s.state == "open" and s.expired() else s.state
        click.echo(
            f"{s.id:24} {s.protocol:8} {state:9} {s.received:>8} {s.size:>14}  "
            f"{_when(s.expires_at)}"
        )


@streaming_cli.command("cleanup")
def cleanup_command() -> None:
    """Remove expired upload sessions and their data (sends upload-expired)."""
    from .uploads import get_upload_service

    removed = get_upload_service().cleanup()
    for s in removed:
        click.echo(f"removed {s.id} ({s.state}, {s.size} bytes)")
    click.echo(f"{len(removed)} expired session(s) removed")
