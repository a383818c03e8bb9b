"""Upload a (large) file in segments to a flask_streaming server, with a
progress bar; resumes an interrupted upload with ``--resume ID``.

    python examples/upload_file.py big.iso --url http://127.0.0.1:8000/streaming

Needs the ``client`` extra (httpx, tqdm). Every segment carries an
``X-Stream-Checksum`` so the server discards a damaged one; a failed segment
is retried (the server acknowledges an identical retry once).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import sys
import time
from typing import Any

import httpx
from tqdm import tqdm


def _send(client: httpx.Client, url: str, headers: dict[str, str], body: bytes) -> Any:
    for attempt in range(1, 6):
        try:
            rv = client.post(url, headers=headers, content=body)
        except httpx.TransportError:
            if attempt == 5:
                raise
        else:
            if rv.status_code < 500 or attempt == 5:
                data = rv.json()
                if rv.is_error:
                    raise SystemExit(f"server said {rv.status_code}: {data}")
                return data
        time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def upload(path: str, url: str, segment_size: int, resume: str | None = None) -> Any:
    """Upload *path*; return the server's final response."""
    size = os.path.getsize(path)
    uploads = url.rstrip("/") + "/uploads"
    with httpx.Client(timeout=120) as client:
        if resume:
            status = client.get(f"{uploads}/{resume}").raise_for_status().json()
            sid, first = resume, status["contiguous"]
        else:
            body = {"filename": os.path.basename(path), "size": size}
            sid, first = client.post(uploads, json=body).raise_for_status().json()["streamId"], 0
        count = max(1, -(-size // segment_size))
        with (
            open(path, "rb") as f,
            tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=sid) as bar,
        ):
            bar.update(min(size, first * segment_size))
            f.seek(first * segment_size)
            for index in range(first, count):
                data = f.read(segment_size)
                digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
                headers = {
                    "X-Stream-Id": sid,
                    "X-Stream-Segment": str(index),
                    "X-Stream-Done": "false",
                    "X-Stream-Checksum": f"sha256={digest}",
                    "Content-Type": "application/octet-stream",
                }
                _send(client, uploads, headers, data)
                bar.update(len(data))
        done = {"X-Stream-Id": sid, "X-Stream-Segment": str(count), "X-Stream-Done": "true"}
        return _send(client, uploads, done, b"")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--url", default="http://127.0.0.1:8000/streaming")
    parser.add_argument("--segment-size", type=float, default=8, help="MiB (default 8)")
    parser.add_argument("--resume", metavar="ID", help="continue this upload session")
    args = parser.parse_args(argv)
    final = upload(args.file, args.url, int(args.segment_size * 1024 * 1024), args.resume)
    print(final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
