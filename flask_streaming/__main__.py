"""``python -m flask_streaming``: upload a file, or listen to an event stream.

::

    python -m flask_streaming upload big.iso http://127.0.0.1:8000/streaming
    python -m flask_streaming upload big.iso http://127.0.0.1:8000/streaming --protocol tus
    python -m flask_streaming listen http://127.0.0.1:8000/streaming/events/news

Exit codes: ``0`` done; ``1`` the server refused (an HTTP error answer);
``2`` bad usage (also a URL that is not ``http://`` or ``https://``) or the
``client`` extra is missing; ``3`` the server could not be reached or the
upload was interrupted (the message prints the whole command that resumes
it); ``4`` the file cannot be read; ``130`` interrupted by Ctrl-C (an upload
prints its id and the command that resumes it).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_NETWORK, EXIT_FILE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flask_streaming",
        description="Talk to a flask_streaming server: upload files, listen to events.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("upload", help="upload a file in resumable segments")
    up.add_argument("file", help="the file to upload ('-' is not supported: it must seek)")
    up.add_argument(
        "url",
        help="the blueprint's prefix (http://host/streaming) or the protocol's endpoint "
        "(.../streaming/uploads, .../streaming/tus/)",
    )
    up.add_argument("--protocol", choices=("native", "tus"), default="native")
    up.add_argument(
        "--segment-size",
        type=float,
        metavar="MIB",
        help="MiB per segment (8; with --resume: the size the upload started with, read"
        " from the server's session when left out)",
    )
    up.add_argument(
        "--resume", metavar="ID", help="continue an interrupted upload (session id or tus URL)"
    )
    up.add_argument(
        "--metadata", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    up.add_argument("--content-type", help="the file's media type")
    up.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    up.add_argument("--no-progress", action="store_true", help="no progress bar")
    up.add_argument("--retries", type=int, default=5, help="retries per request (5)")

    ls = sub.add_parser("listen", help="print the events of an event stream")
    ls.add_argument("url", help="e.g. http://host/streaming/events/news")
    ls.add_argument("--last-event-id", metavar="ID", help="resume after this event id")
    ls.add_argument("--no-reconnect", action="store_true", help="stop when the stream ends")
    ls.add_argument("--json", action="store_true", help="one JSON object per event")
    ls.add_argument("--count", type=int, metavar="N", help="stop after N events")
    ls.add_argument("--event", action="append", metavar="TYPE", help="only these event types")
    ls.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    return parser


def _headers(items: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, str]:
    headers = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            parser.error(f"--header needs NAME:VALUE, not {item!r}")
        headers[name.strip()] = value.strip()
    return headers


def _error(message: str) -> None:
    print(f"flask_streaming: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        import httpx

        from . import client
    except ImportError as exc:
        _error(f"{exc.name} is missing: pip install 'flask-streaming[client]'")
        return EXIT_USAGE
    headers = _headers(args.header, parser)
    url = urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        _error(f"bad URL {args.url!r}: give an http:// or https:// URL with a host")
        return EXIT_USAGE
    try:
        if args.command == "upload":
            return _upload(args, parser, headers)
        return _listen(args, headers)
    except client.ServerError as exc:
        if args.command == "listen" and exc.status == 200:
            _error(
                f"{args.url} is not an event stream: it answered 200 without"
                " Content-Type: text/event-stream (an events URL looks like"
                " http://host/streaming/events/<channel>)"
            )
        else:
            _error(f"the server refused: {exc}")
        return EXIT_REFUSED
    except client.UploadFailed as exc:
        _error(str(exc))
        if exc.resume:
            print(f"resume with: {resume_command(args, exc.resume)}", file=sys.stderr)
        return EXIT_NETWORK
    except httpx.InvalidURL as exc:
        _error(f"bad URL {args.url!r}: {exc}")
        return EXIT_USAGE
    except httpx.UnsupportedProtocol as exc:
        _error(f"bad URL {args.url!r}: {exc}")
        return EXIT_USAGE
    except httpx.TransportError as exc:
        _error(f"cannot reach {args.url}: {exc or type(exc).__name__}")
        return EXIT_NETWORK
    except KeyboardInterrupt as exc:
        print(file=sys.stderr)
        resume = getattr(exc, "resume", None)
        if args.command == "upload" and resume:
            _error(f"interrupted; the upload is {resume}")
            print(f"resume with: {resume_command(args, resume)}", file=sys.stderr)
        return EXIT_INTERRUPTED


def resume_command(args: argparse.Namespace, resume: str) -> str:
    """The command line that continues an interrupted upload: the same
    file, URL, protocol, segment size, type, metadata, headers and retries,
    plus ``--resume``."""
    argv = ["python", "-m", "flask_streaming", "upload", args.file, args.url]
    # repr: the exact float, so that the segments line up with those sent.
    size = args.segment_size if args.segment_size is not None else 8.0
    argv += ["--protocol", args.protocol, "--segment-size", repr(size)]
    if args.content_type:
        argv += ["--content-type", args.content_type]
    for item in args.metadata:
        argv += ["--metadata", item]
    for item in args.header:
        argv += ["--header", item]
    if args.retries != 5:
        argv += ["--retries", str(args.retries)]
    if args.no_progress:
        argv.append("--no-progress")
    return shlex.join([*argv, "--resume", resume])


def _upload(
    args: argparse.Namespace, parser: argparse.ArgumentParser, headers: dict[str, str]
) -> int:
    from .client import Retry, upload

    metadata: dict[str, Any] = {}
    for item in args.metadata:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--metadata needs KEY=VALUE, not {item!r}")
        metadata[key] = value
    if args.segment_size is not None and args.segment_size <= 0:
        parser.error("--segment-size must be positive")
    try:
        f = open(args.file, "rb")  # noqa: SIM115
    except OSError as exc:
        _error(f"cannot read {args.file}: {exc.strerror}")
        return EXIT_FILE
    with f:
        if args.segment_size is None:
            f.seek(0, os.SEEK_END)
            args.segment_size = _segment_size(args, f.tell(), headers)
            f.seek(0)
        final = upload(
            f,
            args.url,
            segment_size=max(1, int(args.segment_size * 1024 * 1024)),
            protocol=args.protocol,
            progress=not args.no_progress,
            resume=args.resume,
            content_type=args.content_type,
            metadata=metadata,
            retry=Retry(retries=max(0, args.retries)),
            headers=headers,
        )
    print(json.dumps(final, ensure_ascii=False))
    return EXIT_OK


def _segment_size(args: argparse.Namespace, size: int, headers: dict[str, str]) -> float:
    """MiB per segment when ``--segment-size`` is left out: 8, or for a
    native ``--resume`` the size the upload started with, read from the
    server's session: its ``received`` segments are ``contiguous`` (no
    gap) and hold ``bytes`` bytes, so each held ``bytes / received``; when
    all of the file is there, any size that makes the same count of
    segments will do. Otherwise the user must say.

    :raises UploadFailed: the session cannot tell (names the option).
    """
    from .client import ServerError, UploadFailed, upload_endpoint

    default = 8.0
    if not args.resume or args.protocol != "native":
        return default
    import httpx

    endpoint = upload_endpoint(args.url, "native").rstrip("/")
    url = f"{endpoint}/{args.resume}"
    response = httpx.get(url, headers=headers, timeout=30)
    if response.status_code != 200:
        raise ServerError(response.status_code, _json_or_none(response), url)
    status = response.json()
    received, contiguous = int(status.get("received", 0)), int(status.get("contiguous", 0))
    held = int(status.get("bytes", 0))
    if received == 0:
        return default
    if contiguous == received and held == size:
        return -(-size // received) / (1 << 20)
    if contiguous == received and held % received == 0 and held < size:
        return held // received / (1 << 20)
    raise UploadFailed(
        f"cannot tell the segment size of upload {args.resume} from its session"
        " (segments missing in between): pass the --segment-size it started with",
        args.resume,
    )


def _json_or_none(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _listen(args: argparse.Namespace, headers: dict[str, str]) -> int:
    from .client import events

    seen = 0
    wanted = set(args.event or ())
    for event in events(
        args.url,
        last_event_id=args.last_event_id,
        reconnect=not args.no_reconnect,
        headers=headers,
    ):
        if wanted and event.event not in wanted:
            continue
        if args.json:
            line = json.dumps(
                {
                    "event": event.event,
                    "id": event.id,
                    "channel": event.channel,
                    "data": event.data,
                },
                ensure_ascii=False,
            )
        else:
            where = f" [{event.channel}]" if event.channel else ""
            ident = f" #{event.id}" if event.id else ""
            line = f"{event.event}{ident}{where}: {event.data}"
        print(line, flush=True)
        seen += 1
        if args.count is not None and seen >= args.count:
            break
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
