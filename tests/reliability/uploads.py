"""Upload scenarios: workers killed mid-upload (native and tus), many
concurrent uploads, a full disk, a client that stalls mid-body."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .common import (
    UPLOADS,
    Result,
    Uploader,
    file_sha256,
    gunicorn,
    request,
    sha256,
)


def _whoami(sock: socket.socket) -> int:
    """Ask the worker serving this keep-alive connection for its pid."""
    sock.sendall(b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    length = int(next(
        line.split(b":", 1)[1] for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    ))  # fmt: skip
    while len(body) < length:
        body += sock.recv(4096)
    return int(json.loads(body)["pid"])


def _kill_during(port: int, head: bytes, body: bytes, rng: random.Random, errors: Any) -> str:
    """Send *head* and part (or all) of *body* on a connection pinned to a
    worker, then SIGKILL that worker: mid-body, or a few ms after the body
    (during the commit, the hook or the response)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            pid = _whoami(sock)
        except OSError:
            errors["whoami failed"] += 1
            return "none"
        if rng.random() < 0.5:
            mode = "mid-body"
            sock.sendall(head + body[: int(len(body) * rng.random())])
            time.sleep(0.01)
        else:
            mode = "after-body"
            sock.sendall(head + body)
            time.sleep(rng.random() * 0.005)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return mode


def native_sigkill(workdir: Path, runs: int, *, seed: int = 8) -> Result:
    """Worker SIGKILL at random points of native segmented uploads; every
    upload resumes, completes, and its sha256 equals the source's."""
    res = Result("native upload, worker SIGKILL")
    rng = random.Random(seed)
    modes: dict[str, int] = {}
    with gunicorn(workdir, workers=2, env={"MAX_SESSIONS": "0"}) as server:
        folder = workdir / "instance" / "streaming-uploads"
        for _ in range(runs):
            res.runs += 1
            data = rng.randbytes(rng.randint(256 << 10, 3 << 20))
            up = Uploader(server.port, data, rng.choice([64 << 10, 256 << 10, 1 << 20]))
            up.create(time.monotonic() + 30)
            k = rng.randrange(len(up.segments))
            for i in range(k):
                up.send(i)
            seg = up.segments[k]
            head = (
                f"POST {UPLOADS} HTTP/1.1\r\nHost: x\r\nX-Stream-Id: {up.sid}\r\n"
                f"X-Stream-Segment: {k}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {len(seg)}\r\n\r\n"
            ).encode()
            mode = _kill_during(server.port, head, seg, rng, res.errors)
            modes[mode] = modes.get(mode, 0) + 1
            done = up.run(timeout=60)
            res.errors.update(up.errors)
            if done and up.verified(folder):
                res.passed += 1
            else:
                res.lost_bytes += len(data)
    res.notes.append("kills " + ", ".join(f"{k} {v}" for k, v in sorted(modes.items())))
    return res


class TusUpload:
    """A tus upload that resumes from ``HEAD`` after any failure."""

    def __init__(self, port: int, data: bytes, chunk: int) -> None:
        self.port, self.data, self.chunk = port, data, chunk
        self.url = ""
        self.errors: dict[str, int] = {}

    def _call(self, *args: Any, **kw: Any) -> tuple[int, Any, dict[str, str]]:
        try:
            return request(self.port, *args, **kw)
        except (OSError, http.client.HTTPException) as exc:
            name = type(exc).__name__
            self.errors[name] = self.errors.get(name, 0) + 1
            return 0, None, {}

    def create(self) -> None:
        for _ in range(100):
            status, _, headers = self._call(
                "POST", "/streaming/tus/",
                headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(len(self.data))},
            )  # fmt: skip
            if status == 201:
                self.url = headers["location"]
                return
            time.sleep(0.1)
        raise TimeoutError("tus creation failed")

    def patch_head(self, offset: int) -> tuple[bytes, bytes]:
        body = self.data[offset : offset + self.chunk]
        head = (
            f"PATCH {self.url} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: {offset}\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        return head, body

    def offset(self) -> int | None:
        status, _, headers = self._call("HEAD", self.url, headers={"Tus-Resumable": "1.0.0"})
        return int(headers["upload-offset"]) if status == 200 else None

    def run(self, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            offset = self.offset()
            if offset is None:
                time.sleep(0.1)
                continue
            if offset == len(self.data):
                return True
            body = self.data[offset : offset + self.chunk]
            status, _, _ = self._call("PATCH", self.url, body, {
                "Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            })  # fmt: skip
            if status not in (0, 204):
                self.errors[f"patch {status}"] = self.errors.get(f"patch {status}", 0) + 1
                time.sleep(0.05)
        return False


def tus_sigkill(workdir: Path, runs: int, *, seed: int = 9) -> Result:
    """Worker SIGKILL at random points of tus PATCHes; every upload resumes
    from ``HEAD``'s offset, completes, and its sha256 equals the source's."""
    res = Result("tus PATCH, worker SIGKILL")
    rng = random.Random(seed)
    with gunicorn(workdir, workers=2, env={"MAX_SESSIONS": "0"}) as server:
        folder = workdir / "instance" / "streaming-uploads"
        for _ in range(runs):
            res.runs += 1
            data = rng.randbytes(rng.randint(256 << 10, 3 << 20))
            up = TusUpload(server.port, data, rng.choice([128 << 10, 512 << 10, 1 << 20]))
            up.create()
            chunks = (len(data) + up.chunk - 1) // up.chunk
            k = rng.randrange(chunks)
            for i in range(k):
                up._call("PATCH", up.url, data[i * up.chunk : (i + 1) * up.chunk], {
                    "Tus-Resumable": "1.0.0", "Upload-Offset": str(i * up.chunk),
                    "Content-Type": "application/offset+octet-stream",
                })  # fmt: skip
            offset = up.offset() or 0
            _kill_during(server.port, *up.patch_head(offset), rng, res.errors)
            ok = up.run()
            for name, n in up.errors.items():
                res.errors[name] += n
            sid = up.url.rstrip("/").rsplit("/", 1)[1]
            path = folder / sid / "data"
            if ok and path.exists() and file_sha256(path) == sha256(data):
                res.passed += 1
            else:
                res.lost_bytes += len(data)
    return res


def concurrent_uploads(workdir: Path, count: int, size: int, *, segment: int = 1 << 20) -> Result:
    """*count* concurrent segmented uploads of *size* bytes on 2 workers;
    all complete and their sha256 (computed by the server's final hook from
    the stored file) equals the source's."""
    res = Result(f"{count} concurrent uploads x {size >> 20} MiB, 2 workers")
    base = random.Random(3).randbytes(size)
    env = {"MAX_SESSIONS": "0"}
    with gunicorn(workdir, workers=2, env=env) as server:

        def one(i: int) -> tuple[bool, int, dict[str, int]]:
            data = i.to_bytes(8, "big") + base[8:]
            up = Uploader(server.port, data, segment)
            ok = up.run(timeout=600) and up.verified()
            if ok:  # free the disk
                request(server.port, "DELETE", f"{UPLOADS}/{up.sid}")
            return ok, len(data), dict(up.errors)

        t0 = time.monotonic()
        with ThreadPoolExecutor(count) as pool:
            outcomes = list(pool.map(one, range(count)))
        elapsed = time.monotonic() - t0
    for ok, n, errors in outcomes:
        res.runs += 1
        res.passed += ok
        res.lost_bytes += 0 if ok else n
        res.errors.update(errors)
    res.notes.append(f"{count * size / elapsed / 1e6:.0f} MB/s aggregate in {elapsed:.1f} s")
    return res


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Any:
    """Mount a tmpfs of *size* at *path* (``None`` when not permitted)."""
    path.mkdir(parents=True, exist_ok=True)
    rv = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
    )
    if rv.returncode != 0:
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def disk_full(workdir: Path, runs: int, *, seed: int = 5) -> Result:
    """A full disk while storing segments: 507 JSON, the session unharmed
    (status counts only accepted segments), and once space is back the
    client resends and completes with the right sha256."""
    res = Result("disk full while storing a segment (tmpfs)")
    rng = random.Random(seed)
    with small_tmpfs(workdir / "tmpfs", "24m") as mnt:
        if mnt is None:
            res.notes.append("mount -t tmpfs not permitted here: not run")
            return res
        env = {"UPLOAD_FOLDER": str(mnt / "store"), "MAX_SESSIONS": "0"}
        with gunicorn(workdir, workers=1, env=env) as server:
            for run in range(runs):
                res.runs += 1
                filler = mnt / "filler"
                free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
                room = rng.randint(256 << 10, 2 << 20)
                with open(filler, "wb") as f:
                    f.write(b"\0" * max(0, free - room))
                data = rng.randbytes(room + rng.randint(1 << 20, 4 << 20))
                up = Uploader(server.port, data, rng.choice([128 << 10, 512 << 10]))
                up.create(time.monotonic() + 10)
                statuses = []
                bodies = []
                for i in range(len(up.segments)):
                    status, body, _ = request(server.port, "POST", UPLOADS, up.segments[i], {
                        "X-Stream-Id": up.sid, "X-Stream-Segment": str(i),
                        "Content-Type": "application/octet-stream",
                    })  # fmt: skip
                    statuses.append(status)
                    bodies.append(body)
                accepted = [i for i, s in enumerate(statuses) if s == 200]
                refused = [i for i, s in enumerate(statuses) if s != 200]
                for i in refused:
                    body = bodies[i]
                    kind = body.get("error") if isinstance(body, dict) else "not json"
                    res.errors[f"{statuses[i]} {kind}"] += 1
                _, status_body, _ = request(server.port, "GET", f"{UPLOADS}/{up.sid}")
                consistent = (
                    bool(refused)
                    and all(statuses[i] == 507 for i in refused)
                    and status_body["received"] == len(accepted)
                    and status_body["bytes"] == sum(len(up.segments[i]) for i in accepted)
                )
                filler.unlink()  # space is back
                done = up.run(timeout=30)
                if consistent and done and up.verified():
                    res.passed += 1
                else:
                    res.lost_bytes += len(data)
                    res.notes.append(f"run {run}: statuses {statuses} status {status_body}")
                request(server.port, "DELETE", f"{UPLOADS}/{up.sid}")
    return res


def stalled_upload(workdir: Path, runs: int, *, timeout: float = 1.0) -> Result:
    """Clients that stall mid-body: others keep uploading unhindered, and the
    stalled one gets 408 JSON and a closed connection after the body
    timeout; its session is unharmed and a resend completes it."""
    res = Result("stalled upload body (body timeout)")
    env = {"BODY_TIMEOUT": str(timeout), "MAX_SESSIONS": "0"}
    cut_after: list[float] = []
    others_worst = 0.0
    with gunicorn(workdir, workers=1, env=env) as server:
        for _ in range(runs):
            res.runs += 1
            data = os.urandom(3 << 20)
            up = Uploader(server.port, data, 1 << 20)
            up.create(time.monotonic() + 10)
            up.send(0)
            seg = up.segments[1]
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout + 10)
            sock.sendall((
                f"POST {UPLOADS} HTTP/1.1\r\nHost: x\r\nX-Stream-Id: {up.sid}\r\n"
                f"X-Stream-Segment: 1\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {len(seg)}\r\n\r\n"
            ).encode() + seg[: len(seg) // 3])  # fmt: skip
            t0 = time.monotonic()
            # Meanwhile others upload: each must be quick.
            worst = 0.0
            ok_others = True

            def other() -> float:
                t = time.monotonic()
                other_up = Uploader(server.port, os.urandom(256 << 10), 64 << 10)
                if not other_up.run(timeout=10) or not other_up.verified():
                    raise AssertionError("another upload failed")
                return time.monotonic() - t

            try:
                with ThreadPoolExecutor(4) as pool:
                    worst = max(pool.map(lambda _: other(), range(8)))
            except AssertionError:
                ok_others = False
            others_worst = max(others_worst, worst)
            answer = b""
            with contextlib.suppress(OSError):
                while chunk := sock.recv(65536):
                    answer += chunk
            cut = time.monotonic() - t0
            cut_after.append(cut)
            sock.close()
            timed_out = answer.startswith(b"HTTP/1.1 408") and b'"body_timeout"' in answer
            if not timed_out:
                res.errors[f"stalled got {answer[:12]!r}"] += 1
            _, status, _ = request(server.port, "GET", f"{UPLOADS}/{up.sid}")
            intact = status["received"] == 1 and status["bytes"] == len(up.segments[0])
            done = up.run(timeout=20) and up.verified()
            if timed_out and ok_others and intact and done and cut < timeout + 3:
                res.passed += 1
            else:
                res.lost_bytes += len(data)
    if cut_after:
        res.notes.append(
            f"cut off after {max(cut_after):.1f} s (timeout {timeout:g} s); "
            f"others' slowest upload {others_worst * 1000:.0f} ms"
        )
    return res
