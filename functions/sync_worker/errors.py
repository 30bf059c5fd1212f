"""The four error classes of the design. Every failure is raised as one of these, and each class is
handled in exactly one place (the cycle runner), so a new failure mode only needs classifying.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorClass(StrEnum):
    TRANSIENT = "transient"  # retry with backoff and jitter; the cursor stays
    THROTTLED = "throttled"  # back off, honour Retry-After
    PERMANENT = "permanent"  # bad payload / not authorised: skip, count, alert
    AUTH = "auth"  # renew credentials, then retry


class SyncError(Exception):
    error_class: ErrorClass = ErrorClass.TRANSIENT

    def __init__(self, message: str, *, station_id: str | None = None) -> None:
        super().__init__(message)
        self.station_id = station_id


class TransientError(SyncError):
    error_class = ErrorClass.TRANSIENT


class ThrottledError(SyncError):
    error_class = ErrorClass.THROTTLED

    def __init__(self, message: str, *, retry_after_s: float | None = None, station_id: str | None = None) -> None:
        super().__init__(message, station_id=station_id)
        self.retry_after_s = retry_after_s


class PermanentError(SyncError):
    error_class = ErrorClass.PERMANENT


class AuthError(SyncError):
    error_class = ErrorClass.AUTH
