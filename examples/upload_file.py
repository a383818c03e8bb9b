"""Upload a (large) file in segments to a flask_streaming server, with a
progress bar; resumes an interrupted upload with ``--resume ID``.

    python examples/upload_file.py big.iso --url http://127.0.0.1:8000/streaming

Needs the ``client`` extra (httpx, tqdm). It is a few lines around
:func:`flask_streaming.client.upload`, which does the protocol: every segment
carries an ``X-Stream-Checksum`` so the server discards a damaged one, a
failed request is retried with backoff (the server acknowledges an identical
retry once), and after a lost connection the upload asks the server where it
stands and goes on. ``python -m flask_streaming upload FILE URL`` is the same
as a command.
"""

from __future__ import annotations

import argparse
import sys

from flask_streaming.client import UploadFailed, upload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--url", default="http://127.0.0.1:8000/streaming")
    parser.add_argument("--segment-size", type=float, default=8, help="MiB (default 8)")
    parser.add_argument("--resume", metavar="ID", help="continue this upload session")
    args = parser.parse_args(argv)
    try:
        final = upload(
            args.file,
            args.url,
            segment_size=int(args.segment_size * 1024 * 1024),
            resume=args.resume,
        )
    except UploadFailed as exc:
        raise SystemExit(f"{exc}; continue with --resume {exc.resume}") from None
    print(final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
