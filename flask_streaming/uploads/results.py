"""What the upload service returns to protocol views."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
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
    """500: a signal receiver raised (logged with its traceback). Code
    ``hook_failed`` is transient (the client may send again: the receivers
    run again); ``hook_result_invalid`` is not (a receiver returned what the
    app's JSON provider cannot serialise: a server bug that sending again
    cannot fix)."""

    status, code = 500, "hook_failed"


class HookResultInvalid(TypeError):
    """A receiver returned something that is not a dict the app's JSON
    provider can serialise. :attr:`receiver` is that receiver."""

    def __init__(self, message: str, receiver: Any) -> None:
        super().__init__(message)
        self.receiver = receiver


def merge_results(
    results: list[tuple[Any, Any]], what: str, dumps: Callable[[Any], str] = json.dumps
) -> dict[str, Any]:
    """Merge the receivers' dicts in connection order, each made plain JSON
    through *dumps* (the app's JSON provider: a ``datetime`` becomes its
    string there), so that what is stored and what is answered agree.

    :raises HookResultInvalid: naming the receiver whose value is not a
        mapping or cannot be serialised.
    """
    merged: dict[str, Any] = {}
    for receiver, value in results:
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise HookResultInvalid(
                f"{what} receiver {receiver!r} returned {type(value).__name__}, not a dict",
                receiver,
            )
        try:
            plain = json.loads(dumps(dict(value)))
        except (TypeError, ValueError) as exc:
            raise HookResultInvalid(
                f"{what} receiver {receiver!r} returned a value the app's JSON"
                f" provider cannot serialise: {exc}",
                receiver,
            ) from exc
        merged.update(plain)
    return merged
