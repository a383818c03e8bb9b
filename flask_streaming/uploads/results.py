"""What the upload service returns to protocol views."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from ..errors import StreamingError
from .segments import Segment
from .sessions import UploadSession


@dataclasses.dataclass
class SegmentResult:
    """What :meth:`UploadService.append_segment` returns."""

    session: UploadSession
    segment: Segment
    #: The receivers' dicts, merged in connection order.
    results: dict[str, Any]
    #: An identical retry of an accepted segment: nothing was sent again.
    duplicate: bool = False
    #: Set when the segment also completed the upload.
    completion: CompletionResult | None = None


@dataclasses.dataclass
class CompletionResult:
    """What :meth:`UploadService.complete` returns."""

    session: UploadSession
    results: dict[str, Any]
    duplicate: bool = False


class HookFailed(StreamingError):
    """500: a signal receiver raised (logged with its traceback)."""

    status, code = 500, "hook_failed"


def merge_results(results: list[tuple[Any, Any]], what: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for receiver, value in results:
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise TypeError(f"{what} receiver {receiver!r} returned {type(value).__name__}")
        merged.update(value)
    json.dumps(merged)  # must be JSON-serialisable
    return merged
