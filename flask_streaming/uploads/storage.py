"""Where upload bytes and records live: the :class:`Storage` protocol and
:class:`FileStorage`, the default, a folder on a local (or shared POSIX)
file system.

A store knows nothing of HTTP or signals. It keeps, per session, the session
record, one record per accepted segment, and the bytes. Every record is
written to a temporary name and renamed over the old one, so a reader in
another worker never sees half a record, and a worker killed at any point
leaves either the old record or the new one.

Layout of :class:`FileStorage`::

    <folder>/<id>/session.json     the session record
    <folder>/<id>/lock             the session lock (flock)
    <folder>/<id>/append.lock      held while a request writes into ``data``
    <folder>/<id>/data             the upload's bytes, at their offsets
    <folder>/<id>/segments/<n>.json   the record of accepted segment n
    <folder>/<id>/segments/<n>.bin    its bytes when it arrived out of order
    <folder>/<id>/acks.log         post-commit signals sent (one token a line)
    <folder>/<id>/tmp/             bodies being received
    <folder>/.clients/<key>/<id>   which sessions a client opened

A segment whose offset is known when its body starts (every earlier segment
is there, the common in-order case) is written straight into ``data``: no
copy at the end. Others are staged in ``tmp/`` and renamed to
``segments/<n>.bin``; completion copies them to their offsets. A segment
exists only once its record exists; bytes without a record (a worker killed
mid-body) are ignored and overwritten by the resent segment.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterable
from typing import IO, Any, Protocol, runtime_checkable

from .locks import FileLock, Lock
from .private_files import (
    DIR_MODE,
    NOFOLLOW,
    make_private_dir,
    open_fd,
    open_private,
    warn_if_shared,
)
from .segments import BLOCK_SIZE
from .sessions import UploadSession, valid_session_id

logger = logging.getLogger(__name__)

#: A post-commit signal's token (:attr:`.delivery.Pending.token`).
_TOKEN = re.compile(r"[0-9a-f]{16}")


class Staging(Protocol):
    """Bytes of one request on their way into a store."""

    #: Bytes written so far.
    size: int
    #: Whether the bytes go straight to their final place at ``offset``.
    in_place: bool
    offset: int | None

    def write(self, block: bytes | bytearray | memoryview) -> None: ...

    def close(self) -> None:
        """Flush the bytes written (they stay until placed or released)."""

    def open(self) -> IO[bytes]:
        """Read back the bytes written."""

    def release(self) -> None:
        """Let go: remove bytes not placed, drop the append lock."""


#: What ``splice(2)`` answers for a file or socket it cannot take part in.
NO_SPLICE_ERRNOS = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)


@runtime_checkable
class PipeWritable(Protocol):
    """A :class:`Staging` that takes bytes straight from a pipe (a file
    store: ``splice(2)``), so a body never passes through the process."""

    size: int

    def write(self, block: bytes | bytearray | memoryview) -> None: ...

    def write_from_pipe(self, pipe: int, count: int) -> None: ...


class SessionRecords(Protocol):
    """Session records and their locks."""

    def create(self, session: UploadSession) -> None:
        """Store a new session atomically: it exists for every worker with
        its record, or not at all. :raises FileExistsError: the id exists."""

    def load(self, session_id: str) -> UploadSession | None:
        """The stored record (``None``: unknown), its ``path``/``open()`` set."""

    def save(self, session: UploadSession) -> None:
        """Replace the record atomically (a reader sees the old or the new)."""

    def delete(self, session_id: str) -> bool:
        """Remove the session and its bytes for every worker at once;
        ``False`` when it was not there."""

    def session_ids(self) -> list[str]:
        """Every stored session's id."""

    def lock(self, session_id: str, timeout: float | None = None) -> Lock:
        """The session's lock (all changes to it are made holding it).
        :raises FileNotFoundError: the session does not exist."""

    def remove_orphans(self, older_than: float) -> list[str]:
        """Remove debris no record accounts for, older than *older_than*
        (Unix time); returns what was removed."""


class UploadBytes(Protocol):
    """The bytes of uploads: staged while a body arrives, then in place."""

    def stage(self, session_id: str, offset: int | None) -> Staging:
        """Somewhere to write a body: in place at *offset* of the upload's
        bytes when given and no other request writes there (the append
        lock), else a temporary place. :raises FileNotFoundError: no session."""

    def open_data(self, session_id: str, offset: int = 0, size: int | None = None) -> IO[bytes]:
        """Read *size* bytes (``None``: to the end) of the upload from *offset*."""

    def assemble(self, session_id: str, records: Iterable[dict[str, Any]], size: int) -> None:
        """Copy every segment kept apart (``location == "file"``) to its
        offset and cut the upload's bytes to *size*."""


class SegmentRecords(Protocol):
    """Native segments: one record per accepted segment, bytes in place or
    kept apart until completion."""

    def place_segment(self, session_id: str, index: int, staging: Staging) -> str:
        """Keep a staged segment; returns its ``location``: ``"data"`` (in
        place) or ``"file"`` (kept apart until :meth:`assemble`)."""

    def drop_segment(self, session_id: str, index: int, location: str) -> None:
        """Undo :meth:`place_segment` (a hook refused the segment)."""

    def save_segment(self, session_id: str, record: dict[str, Any]) -> None:
        """Store segment ``record["index"]``'s record atomically."""

    def load_segment(self, session_id: str, index: int) -> dict[str, Any] | None:
        """Segment *index*'s record (``None``: not received)."""

    def segment_records(self, session_id: str) -> list[dict[str, Any]]:
        """Every segment record, by index."""

    def open_segment(self, session_id: str, record: dict[str, Any]) -> IO[bytes]:
        """Read the bytes of the segment *record* describes."""

    def drop_segment_bodies(self, session_id: str) -> None:
        """After completion: remove the copies kept apart."""


class Acknowledgements(Protocol):
    """Post-commit signals sent (see :mod:`.delivery`), noted without the
    session lock and read under it. The notes form a log that only grows:
    a reader passes the cursor it got last time (kept in the session
    record) and reads what was noted since."""

    def acknowledge(self, session_id: str, token: str) -> None:
        """Note that the signal *token* (16 hexadecimal digits) was sent
        (the session may be gone)."""

    def acknowledged(self, session_id: str, since: int = 0) -> tuple[set[str], int]:
        """The tokens noted after cursor *since* (``0``: every one), and the
        cursor after them (pass it next time)."""

    def forget_acknowledged(self, session_id: str, tokens: Iterable[str]) -> None:
        """*tokens* were read and their markers dropped from the record: a
        store that keeps each note apart may remove them."""


class ClientIndex(Protocol):
    """Which sessions each client address opened (for the per-client limits)."""

    def client_lock(self, client: str) -> Lock:
        """The lock serialising the creations of one client."""

    def client_sessions(self, client: str) -> list[str]:
        """The session ids *client* opened and that were not removed."""

    def add_client_session(self, client: str, session_id: str) -> None: ...

    def remove_client_session(self, client: str, session_id: str) -> None: ...


class Storage(SessionRecords, UploadBytes, SegmentRecords, Acknowledgements, ClientIndex, Protocol):
    """What the upload service needs from a store: these five groups and
    nothing else (no paths, no HTTP, no signals). Every method may be called
    from any worker process; :meth:`~SessionRecords.lock` serialises changes
    to one session across all of them. :class:`FileStorage` implements it
    on a folder; an object store would keep records and acknowledgements in
    a database (or Redis) and the bytes as multipart parts (``stage`` →
    a part, ``assemble`` → complete the multipart upload)."""


class _Range(io.RawIOBase):
    """Reads at most *size* bytes of *f* from *offset* (``None``: to EOF)."""

    def __init__(self, f: IO[bytes], offset: int, size: int | None) -> None:
        self._f = f
        f.seek(offset)
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b)
        if self._left is not None:
            view = view[: self._left]
        n = self._f.readinto(view)  # type: ignore[attr-defined]
        if self._left is not None:
            self._left -= n
        return int(n)

    def close(self) -> None:
        self._f.close()
        super().close()


def open_range(path: str, offset: int = 0, size: int | None = None) -> IO[bytes]:
    """A buffered binary reader of ``size`` bytes of *path* from *offset*."""
    raw = _Range(open_private(path, "rb"), offset, size)
    return io.BufferedReader(raw, BLOCK_SIZE)


class FileStaging:
    """A request body being written to a file (see :class:`Staging`)."""

    def __init__(
        self, path: str, offset: int | None, append_lock: FileLock | None, fsync: bool
    ) -> None:
        self.path = path
        self.offset = offset
        self.in_place = offset is not None
        self.size = 0
        self._lock = append_lock
        self._fsync = fsync
        self._fd: int | None = open_fd(path, os.O_WRONLY | os.O_CREAT)
        if offset is not None:
            os.lseek(self._fd, offset, os.SEEK_SET)
        self.placed = False

    def write(self, block: bytes | bytearray | memoryview) -> None:
        assert self._fd is not None, "staging closed"
        view = memoryview(block)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.size += len(block)

    def write_from_pipe(self, pipe: int, count: int) -> None:
        """Move exactly *count* bytes waiting in the pipe *pipe* (a file
        descriptor) into the file with ``splice(2)``: the kernel copies them
        into the page cache, never through this process's memory (where the
        file system cannot take a splice, they are read and written).

        :raises OSError: the write failed (the bytes moved before count).
        """
        assert self._fd is not None, "staging closed"
        left = count
        while left:
            try:
                n = os.splice(pipe, self._fd, left)
            except OSError as exc:
                if exc.errno not in NO_SPLICE_ERRNOS:
                    raise
                # A file system that cannot be spliced to: through memory.
                while left:
                    block = os.read(pipe, min(left, BLOCK_SIZE))
                    self.write(block)
                    left -= len(block)
                return
            if not n:  # pragma: no cover (the pipe holds count bytes)
                raise OSError(errno.EIO, "the pipe ran dry before its bytes were written")
            left -= n
            self.size += n

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def open(self) -> IO[bytes]:
        return open_range(self.path, self.offset or 0, self.size)

    def release(self) -> None:
        self.close()
        if not self.in_place and not self.placed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        if self._lock is not None:
            self._lock.release()
            self._lock = None


class FileStorage:
    """The default store: a folder (created if missing).

    :param folder: where sessions live; one folder per session.
    :param lock_timeout: seconds to wait for a session's lock.
    :param fsync: ``fsync`` bodies and records before they count as written
        (survives power loss, not only a killed worker; slower).
    """

    def __init__(self, folder: str, *, lock_timeout: float = 30.0, fsync: bool = False) -> None:
        # The operator's own link (a volume mounted elsewhere) is resolved once;
        # links planted inside the store are never followed.
        self.folder = os.path.realpath(folder)
        self.lock_timeout = lock_timeout
        self.fsync = fsync
        make_private_dir(self.folder)
        warn_if_shared(self.folder)
        make_private_dir(os.path.join(self.folder, ".clients"))
        make_private_dir(os.path.join(self.folder, ".trash"))

    # -- paths -----------------------------------------------------------
    def _dir(self, session_id: str) -> str:
        if not valid_session_id(session_id):
            raise ValueError(f"not a session id: {session_id!r}")
        return os.path.join(self.folder, session_id)

    def _seg(self, session_id: str, index: int, ext: str) -> str:
        return os.path.join(self._dir(session_id), "segments", f"{int(index)}.{ext}")

    def data_path(self, session_id: str) -> str | None:
        return os.path.join(self._dir(session_id), "data")

    def _write_json(self, path: str, value: Any) -> None:
        tmp = f"{path}.{secrets.token_hex(6)}.tmp"
        try:
            with open_private(tmp, "xb") as f:
                f.write(json.dumps(value, separators=(",", ":")).encode("utf-8"))
                if self.fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:  # a full disk: leave the old record, no debris
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @staticmethod
    def _read_json(path: str) -> Any:
        try:
            with open_private(path, "rb") as f:
                return json.loads(f.read())
        except (FileNotFoundError, NotADirectoryError):
            return None

    # -- sessions --------------------------------------------------------
    def create(self, session: UploadSession) -> None:
        """Make the session's folder, complete with its record, in one step:
        it is built under a hidden name and renamed into place, so a failure
        at any point (a record that cannot be written, a killed worker)
        leaves no session folder without a record (hidden debris is removed
        by :meth:`remove_orphans`)."""
        root = self._dir(session.id)
        building = os.path.join(self.folder, f".new-{session.id}")
        try:
            os.mkdir(building, DIR_MODE)
            os.mkdir(os.path.join(building, "segments"), DIR_MODE)
            os.mkdir(os.path.join(building, "tmp"), DIR_MODE)
            open_private(os.path.join(building, "data"), "xb").close()
            self._write_json(os.path.join(building, "session.json"), session.to_record())
            os.rename(building, root)  # an existing root (ids never repeat): OSError
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise

    def remove_orphans(self, older_than: float) -> list[str]:
        """Remove what no session record accounts for and was last changed
        before *older_than* (a ``time.time()``): folders being built or
        deleted by a worker that died (``.new-*``, ``.trash/*``), and
        session folders without a record (left by older versions). Returns
        the paths removed, relative to the store."""
        trash = os.path.join(self.folder, ".trash")
        candidates = [e for e in _scan(self.folder) if _orphan_name(e.name)]
        candidates += _scan(trash)
        removed = []
        for entry in candidates:
            if not entry.is_dir(follow_symlinks=False):
                continue
            if valid_session_id(entry.name) and os.path.exists(
                os.path.join(entry.path, "session.json")
            ):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime >= older_than:
                    continue
            except FileNotFoundError:
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(os.path.relpath(entry.path, self.folder))
        return removed

    def load(self, session_id: str) -> UploadSession | None:
        if not valid_session_id(session_id):
            return None
        record = self._read_json(os.path.join(self._dir(session_id), "session.json"))
        if record is None:
            return None
        session = UploadSession.from_record(record)
        session.path = self.data_path(session_id)
        session._opener = lambda: self.open_data(session_id)
        return session

    def save(self, session: UploadSession) -> None:
        self._write_json(os.path.join(self._dir(session.id), "session.json"), session.to_record())

    def delete(self, session_id: str) -> bool:
        """Remove a session and its bytes: renamed away first, so it
        vanishes for every worker at once."""
        if not valid_session_id(session_id):
            return False
        trash = os.path.join(self.folder, ".trash")
        make_private_dir(trash)
        target = os.path.join(trash, f"{session_id}.{secrets.token_hex(4)}")
        try:
            os.rename(self._dir(session_id), target)
        except FileNotFoundError:
            return False
        shutil.rmtree(target, ignore_errors=True)
        return True

    def session_ids(self) -> list[str]:
        with os.scandir(self.folder) as it:
            return sorted(
                e.name
                for e in it
                if e.is_dir() and not e.name.startswith(".") and valid_session_id(e.name)
            )

    def lock(self, session_id: str, timeout: float | None = None) -> FileLock:
        path = os.path.join(self._dir(session_id), "lock")
        return FileLock(path, timeout=self.lock_timeout if timeout is None else timeout)

    # -- bytes -----------------------------------------------------------
    def stage(self, session_id: str, offset: int | None) -> FileStaging:
        """Stage a body: in place at *offset* of ``data`` when given and no
        other request writes there, else in a temporary file."""
        root = self._dir(session_id)
        if offset is not None:
            lock = FileLock(os.path.join(root, "append.lock"), timeout=0)
            if lock.acquire():
                try:
                    return FileStaging(os.path.join(root, "data"), offset, lock, self.fsync)
                except BaseException:
                    lock.release()
                    raise
        tmp = os.path.join(root, "tmp", f"{secrets.token_hex(8)}.part")
        return FileStaging(tmp, None, None, self.fsync)

    def place_segment(self, session_id: str, index: int, staging: Staging) -> str:
        """Put a staged segment where it stays; returns its ``location``."""
        staging.close()
        if staging.in_place:
            return "data"
        assert isinstance(staging, FileStaging)
        os.replace(staging.path, self._seg(session_id, index, "bin"))
        staging.placed = True
        return "file"

    def drop_segment(self, session_id: str, index: int, location: str) -> None:
        if location == "file":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._seg(session_id, index, "bin"))

    def save_segment(self, session_id: str, record: dict[str, Any]) -> None:
        self._write_json(self._seg(session_id, record["index"], "json"), record)

    def load_segment(self, session_id: str, index: int) -> dict[str, Any] | None:
        record: dict[str, Any] | None = self._read_json(self._seg(session_id, index, "json"))
        return record

    def segment_records(self, session_id: str) -> list[dict[str, Any]]:
        folder = os.path.join(self._dir(session_id), "segments")
        records = []
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.endswith(".json"):
                    record = self._read_json(entry.path)
                    if record is not None:
                        records.append(record)
        return sorted(records, key=lambda r: int(r["index"]))

    def open_segment(self, session_id: str, record: dict[str, Any]) -> IO[bytes]:
        if record["location"] == "file":
            return open_range(self._seg(session_id, record["index"], "bin"), 0, record["size"])
        return self.open_data(session_id, record["offset"], record["size"])

    def assemble(self, session_id: str, records: Iterable[dict[str, Any]], size: int) -> None:
        """Copy every out-of-order segment to its offset in ``data``, then
        cut ``data`` to *size* (bytes of an interrupted body beyond it)."""
        path = os.path.join(self._dir(session_id), "data")
        with open_private(path, "r+b") as out:
            for record in records:
                if record["location"] != "file":
                    continue
                with open_private(self._seg(session_id, record["index"], "bin"), "rb") as src:
                    _copy_range(src.fileno(), out.fileno(), record["offset"], record["size"])
            out.truncate(size)
            if self.fsync:
                os.fsync(out.fileno())

    def drop_segment_bodies(self, session_id: str) -> None:
        folder = os.path.join(self._dir(session_id), "segments")
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.endswith(".bin"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)

    def open_data(self, session_id: str, offset: int = 0, size: int | None = None) -> IO[bytes]:
        return open_range(os.path.join(self._dir(session_id), "data"), offset, size)

    # -- post-commit signal acknowledgements ---------------------------------
    # One line per signal sent, appended to ``acks.log`` (an append to an
    # existing file, not a new file per signal: creating a file is the
    # costliest call of a request on ext4). The log only grows; the session
    # record keeps how far it was read (``acks_read``), so nothing is ever
    # removed from it while a worker may be appending (no lost note).
    def _acks(self, session_id: str) -> str:
        return os.path.join(self._dir(session_id), "acks.log")

    def acknowledge(self, session_id: str, token: str) -> None:
        """Note that the post-commit signal *token* was sent: one line
        appended (no lock: one short ``O_APPEND`` write; a session removed
        meanwhile is ignored, a planted link is not followed)."""
        if not _TOKEN.fullmatch(token):
            raise ValueError(f"not a signal token: {token!r}")
        try:
            fd = open_fd(self._acks(session_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        except (FileNotFoundError, NotADirectoryError):
            return  # the session is gone (its folder is not made again)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            logger.warning("flask_streaming: %s is a symbolic link; not followed", exc.filename)
            return
        try:
            os.write(fd, f"{token}\n".encode("ascii"))
        finally:
            os.close(fd)

    def acknowledged(self, session_id: str, since: int = 0) -> tuple[set[str], int]:
        """The tokens noted after byte *since* of ``acks.log`` and the
        offset after the last whole line (a line being written is read next
        time), plus, while nothing was read yet (*since* ``0``), any left as
        files in ``acks/`` by an older version."""
        tokens = self._legacy_acknowledged(session_id) if since == 0 else set()
        try:
            fd = open_fd(self._acks(session_id), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return tokens, since
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            logger.warning("flask_streaming: %s is a symbolic link; not followed", exc.filename)
            return tokens, since
        try:
            chunks = []
            pos = since
            while True:  # usually one read: a few lines since the last commit
                block = os.pread(fd, 1 << 16, pos)
                chunks.append(block)
                pos += len(block)
                if len(block) < 1 << 16:
                    break
        finally:
            os.close(fd)
        data = b"".join(chunks)
        end = data.rfind(b"\n") + 1
        for line in data[:end].split(b"\n"):
            # the last 16 digits: a line a killed worker left half-written
            # only prefixes the next one
            token = line[-16:].decode("ascii", "replace")
            if _TOKEN.fullmatch(token):
                tokens.add(token)
        return tokens, since + end

    def _legacy_acknowledged(self, session_id: str) -> set[str]:
        """Tokens an older version left as empty files in ``acks/`` (a link
        planted there is not followed)."""
        try:
            fd = os.open(self._legacy_acks(session_id), os.O_RDONLY | os.O_DIRECTORY | NOFOLLOW)
        except OSError:  # none (the usual case), or a link
            return set()
        try:
            return {name for name in os.listdir(fd) if _TOKEN.fullmatch(name)}
        finally:
            os.close(fd)

    def _legacy_acks(self, session_id: str) -> str:
        return os.path.join(self._dir(session_id), "acks")

    def forget_acknowledged(self, session_id: str, tokens: Iterable[str]) -> None:
        """Remove the files an older version left in ``acks/`` for *tokens*
        (the log itself is read past by the cursor, never rewritten)."""
        try:
            fd = os.open(self._legacy_acks(session_id), os.O_RDONLY | os.O_DIRECTORY | NOFOLLOW)
        except OSError:
            return
        try:
            for token in tokens:
                if _TOKEN.fullmatch(token):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(token, dir_fd=fd)
        finally:
            os.close(fd)

    # -- per-client index --------------------------------------------------
    def _client_dir(self, client: str) -> str:
        key = hashlib.sha256(client.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return os.path.join(self.folder, ".clients", key)

    def client_lock(self, client: str) -> FileLock:
        folder = self._client_dir(client)
        make_private_dir(folder)
        return FileLock(folder + ".lock", timeout=self.lock_timeout)

    def client_sessions(self, client: str) -> list[str]:
        try:
            return sorted(os.listdir(self._client_dir(client)))
        except FileNotFoundError:
            return []

    def add_client_session(self, client: str, session_id: str) -> None:
        folder = self._client_dir(client)
        make_private_dir(folder)
        open_private(os.path.join(folder, session_id), "wb").close()

    def remove_client_session(self, client: str, session_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self._client_dir(client), session_id))


def _scan(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except FileNotFoundError:
        return []


def _orphan_name(name: str) -> bool:
    """A session folder's name, or one being built (``.new-<id>``)."""
    return valid_session_id(name) or (
        name.startswith(".new-") and valid_session_id(name[len(".new-") :])
    )


def _copy_range(src: int, dst: int, offset: int, size: int) -> None:
    """Copy *size* bytes from the start of *src* to *offset* of *dst*, in the
    kernel where it can, else in :data:`BLOCK_SIZE` blocks."""
    done = 0
    try:
        while done < size:
            n = os.copy_file_range(src, dst, size - done, done, offset + done)
            if n == 0:
                break
            done += n
        if done == size:
            return
    except OSError:
        pass
    while done < size:
        block = os.pread(src, min(BLOCK_SIZE, size - done), done)
        if not block:
            raise OSError(f"segment body ended at {done} of {size} bytes")
        os.pwrite(dst, block, offset + done)
        done += len(block)
