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
def _sessions_command(as_json: bool) -> None:
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
        state = "expired" if s.expired() else s.state
        click.echo(
            f"{s.id:24} {s.protocol:8} {state:9} {s.received:>8} {s.offset:>14}  "
            f"{_when(s.expires_at)}"
        )


@streaming_cli.command("cleanup")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
def _cleanup_command(dry_run: bool) -> None:
    """Remove expired (unfinished, idle) upload sessions and their data
    (sends upload-expired); completed uploads only when
    STREAMING_COMPLETED_RETENTION is set and has passed."""
    from .uploads import get_upload_service

    removed = get_upload_service().cleanup(dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for s in removed:
        click.echo(f"{verb} {s.id} ({s.protocol}, {s.state}, {s.offset} bytes)")
    click.echo(f"{len(removed)} session(s) {verb}")


@streaming_cli.command("remove")
@click.argument("session_ids", nargs=-1, required=True)
def _remove_command(session_ids: tuple[str, ...]) -> None:
    """Remove the given upload sessions and their data, completed ones
    included (sends upload-removed, or upload-aborted for unfinished ones)."""
    from .errors import StreamingError
    from .uploads import get_upload_service

    service = get_upload_service()
    failed = False
    for sid in session_ids:
        try:
            s = service.remove(sid)
        except StreamingError as exc:
            click.echo(f"{sid}: {exc.message}", err=True)
            failed = True
            continue
        click.echo(f"removed {s.id} ({s.protocol}, {s.state}, {s.offset} bytes)")
    if failed:
        raise SystemExit(1)
