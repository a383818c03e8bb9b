"""What the protocol modules (:mod:`.ranges`, :mod:`.tus_concat`) need of
the upload service: a narrow, public interface, so that they depend on it
and not on :class:`~.service.UploadService` itself (no import cycle: the
service imports them, they import only this)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from blinker import Signal
from flask import Flask

from ..settings import Settings
from .sessions import UploadSession
from .storage import Storage
from .transaction import Transaction


class UploadCore(Protocol):
    """The upload service as the protocol modules see it."""

    app: Flask
    storage: Storage
    settings: Settings

    def authorized(self, session_id: str, action: str) -> UploadSession:
        """The live session once the hook allowed *action* (404/410/403)."""

    def authorize(self, action: str, session: UploadSession | None) -> None:
        """Ask the hook; 403 when it says no."""

    def get(self, session_id: str) -> UploadSession:
        """The live session (404 unknown, 410 expired)."""

    def transaction(self, session_id: str, timeout: float | None = None) -> Transaction:
        """One locked transaction on the session."""

    def send_hook(self, signal: Signal, what: str, **kwargs: Any) -> dict[str, Any]:
        """Send a pre-commit signal: a refusal propagates, a failure is
        500 ``hook_failed``; returns the receivers' merged dicts."""

    def create(
        self,
        *,
        client: str = "",
        protocol: str = "native",
        filename: str | None = None,
        content_type: str | None = None,
        length: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        session_id: str | None = None,
        tus_metadata: str | None = None,
        concat: str | None = None,
        concat_header: str | None = None,
        parts: list[str] | None = None,
    ) -> UploadSession:
        """Open a session."""
