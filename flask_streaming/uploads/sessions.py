"""The upload session record: what the store keeps about one upload."""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable
from typing import IO, Any

#: Session states. ``open`` accepts data; ``completed`` holds the whole.
OPEN, COMPLETED = "open", "completed"


def new_session_id() -> str:
    """128 random bits, URL-safe base64 without padding (22 characters).

    Never starts with ``-``, so that an id can be given to a command line
    (``flask streaming remove ID``) without being read as an option.
    """
    while (session_id := secrets.token_urlsafe(16)).startswith("-"):
        pass
    return session_id


def valid_session_id(value: str) -> bool:
    """Whether *value* has the shape of a session id (so that it can never
    name anything but a session folder)."""
    return 0 < len(value) <= 64 and value.isascii() and all(c.isalnum() or c in "-_" for c in value)


@dataclasses.dataclass
class UploadSession:
    """One upload, native or tus. Stored as JSON; hooks receive it.

    Field names are tus's: ``length`` is the size the client announced
    (``None``: not known, a deferred length); ``offset`` the bytes received
    so far (``size`` is a deprecated alias). Native sessions also count
    ``received`` segments and keep ``contiguous``, the number of segments
    0..n-1 all present, with ``prefix_end``, the byte offset where segment
    ``contiguous`` starts. After completion ``segments`` is the number of
    segments assembled and ``results`` what the final hooks returned.
    """

    id: str
    protocol: str = "native"
    state: str = OPEN
    created_at: float = dataclasses.field(default_factory=time.time)
    updated_at: float = dataclasses.field(default_factory=time.time)
    timeout: float = 600.0
    client: str = ""
    filename: str | None = None
    content_type: str | None = None
    length: int | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    offset: int = 0
    received: int = 0
    contiguous: int = 0
    prefix_end: int = 0
    max_index: int = -1
    segments: int | None = None
    completed_at: float | None = None
    results: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Post-commit signals not yet acknowledged
    #: (:class:`~flask_streaming.uploads.delivery.Pending` records).
    pending: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: How far the store's acknowledgements of those signals were read (a
    #: cursor of :meth:`~.storage.Acknowledgements.acknowledged`).
    acks_read: int = 0
    # -- tus --------------------------------------------------------------
    #: ``Upload-Metadata`` as the client sent it (echoed by ``HEAD``).
    tus_metadata: str | None = None
    #: Concatenation: ``"partial"``, ``"final"`` or ``None`` (neither).
    concat: str | None = None
    #: ``Upload-Concat`` of a final upload as received (echoed by ``HEAD``).
    concat_header: str | None = None
    #: A final upload's partial upload ids, in order.
    parts: list[str] = dataclasses.field(default_factory=list)
    #: A partial upload's final upload (each partial serves one).
    used_by: str | None = None
    #: Final uploads waiting for this unfinished partial to complete.
    finals: list[str] = dataclasses.field(default_factory=list)
    #: Where the assembled upload is (set by the store; ``None`` until the
    #: storage backend has a local file for it).
    path: str | None = dataclasses.field(default=None, compare=False)
    _opener: Callable[[], IO[bytes]] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )

    @property
    def expires_at(self) -> float | None:
        """When an unfinished session expires unless it sees activity (a
        Unix time in seconds); ``None`` once completed: a completed upload
        never expires (tus's expiration extension concerns unfinished
        uploads only), it stays until the app removes it."""
        if self.state != OPEN:
            return None
        return self.updated_at + self.timeout

    def expired(self, now: float | None = None) -> bool:
        """Whether the session is unfinished and idle past its timeout.
        Always ``False`` for a completed upload."""
        expires_at = self.expires_at
        return expires_at is not None and (time.time() if now is None else now) >= expires_at

    def retention_over(self, retention: float | None, now: float | None = None) -> bool:
        """Whether a completed upload was completed at least *retention*
        seconds ago (``STREAMING_COMPLETED_RETENTION``; ``None``: never)."""
        if retention is None or self.state != COMPLETED or self.completed_at is None:
            return False
        return (time.time() if now is None else now) >= self.completed_at + retention

    @property
    def completed(self) -> bool:
        return self.state == COMPLETED

    def open(self) -> IO[bytes]:
        """The bytes received so far (the whole upload once completed)."""
        if self._opener is None:
            raise RuntimeError("this session's storage gives no access to its bytes")
        return self._opener()

    def to_record(self) -> dict[str, Any]:
        """What the store writes (every field but the transient ones)."""
        rv = dataclasses.asdict(self)
        rv.pop("path")
        rv.pop("_opener")
        return rv

    @property
    def size(self) -> int:
        """Deprecated alias of :attr:`offset` (the bytes received so far)."""
        return self.offset

    @size.setter
    def size(self, value: int) -> None:
        self.offset = value

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> UploadSession:
        """A session from a stored record (records of 0.1, with ``size``
        and an ``extra`` dict, are read too)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"path", "_opener"}
        values = {k: v for k, v in record.items() if k in names}
        if "size" in record and "offset" not in record:
            values["offset"] = record["size"]
        for key, value in (record.get("extra") or {}).items():  # 0.1 records
            if key in names and key not in values:
                values[key] = value
        return cls(**values)

    def status(self) -> dict[str, Any]:
        """The public status a client uses to resume (no client identity)."""
        return {
            "streamId": self.id,
            "state": self.state,
            "protocol": self.protocol,
            "filename": self.filename,
            "contentType": self.content_type,
            "length": self.length,
            "metadata": self.metadata,
            "bytes": self.offset,
            "received": self.received,
            "contiguous": self.contiguous,
            "maxSegment": self.max_index,
            "segments": self.segments,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "expiresAt": self.expires_at,
        }
