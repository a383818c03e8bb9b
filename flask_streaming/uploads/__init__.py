"""Segmented upload sessions: the native protocol's views, the
protocol-independent :class:`UploadService`, the :class:`Segment` type
hooks receive, the :class:`Storage` protocol with :class:`FileStorage`, and
the tus 1.0 views (:mod:`.tus`) on the same store."""

from __future__ import annotations

from .results import CompletionResult, HookFailed, SegmentResult
from .segments import Segment
from .service import UploadService
from .sessions import UploadSession
from .storage import FileStorage, Storage
from .tus import register_tus_views
from .views import create_upload_service, get_upload_service, register_upload_views

__all__ = [
    "CompletionResult",
    "FileStorage",
    "HookFailed",
    "Segment",
    "SegmentResult",
    "Storage",
    "UploadService",
    "UploadSession",
    "create_upload_service",
    "get_upload_service",
    "register_tus_views",
    "register_upload_views",
]
