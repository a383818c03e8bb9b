"""The segment type: one piece of an upload, as hooks see it.

The same :class:`Segment` describes a numbered segment of a native upload
session and the byte range written by one tus ``PATCH``, so a
``segment-received`` receiver written once serves both protocols.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import IO, Any

#: Segments up to this size have their bytes in :attr:`Segment.data`.
SMALL_SEGMENT = 1024 * 1024

#: Block size for reading request bodies and copying files (gunicorn's body
#: reader has a per-call cost, so reads are large).
BLOCK_SIZE = 1024 * 1024


class Segment:
    """One received piece of an upload.

    :param session_id: the upload session it belongs to.
    :param index: its number: the ``X-Stream-Segment`` of a native upload,
        the ``PATCH`` count (0-based) of a tus upload.
    :param offset: where its first byte goes in the whole upload; ``None``
        for a native segment that arrived before one of its predecessors
        (its offset is not known yet).
    :param size: its length in bytes.
    :param checksum: the client's checksum as sent and verified
        (e.g. ``"sha256=..."``), or ``None``.
    :param opener: returns a fresh binary file object positioned at the
        segment's first byte, limited to its size.
    """

    __slots__ = ("_data", "_opener", "checksum", "index", "offset", "session_id", "size")

    def __init__(
        self,
        *,
        session_id: str,
        index: int,
        offset: int | None,
        size: int,
        checksum: str | None,
        opener: Callable[[], IO[bytes]],
    ) -> None:
        self.session_id = session_id
        self.index = index
        self.offset = offset
        self.size = size
        self.checksum = checksum
        self._opener = opener
        self._data: bytes | None = None

    @property
    def end(self) -> int | None:
        """The offset one past its last byte (``None`` when the offset is
        not known)."""
        return None if self.offset is None else self.offset + self.size

    @property
    def data(self) -> bytes | None:
        """The bytes of a small segment (≤ :data:`SMALL_SEGMENT`), read once;
        ``None`` for a larger one: use :meth:`open`."""
        if self.size > SMALL_SEGMENT:
            return None
        if self._data is None:
            with self.open() as f:
                self._data = f.read(self.size)
        return self._data

    def open(self) -> IO[bytes]:
        """A binary file object reading exactly this segment's bytes."""
        return self._opener()

    def sha256(self) -> str:
        """The hex SHA-256 of the bytes (computed on request, in blocks)."""
        h = hashlib.sha256()
        with self.open() as f:
            remaining = self.size
            while remaining > 0:
                block = f.read(min(BLOCK_SIZE, remaining))
                if not block:
                    break
                h.update(block)
                remaining -= len(block)
        return h.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (no bytes)."""
        return {
            "index": self.index,
            "offset": self.offset,
            "end": self.end,
            "size": self.size,
            "checksum": self.checksum,
        }

    def __repr__(self) -> str:
        return f"<Segment {self.session_id}#{self.index} offset={self.offset} size={self.size}>"
