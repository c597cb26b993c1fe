"""Errors a client may see, and the one table that maps them to HTTP statuses.

Every error leaves the edge as ``{"error": "<code>", "message": "..."}`` (a 451 adds
``"reason"``); codes are stable.
"""

from __future__ import annotations

from collections.abc import Mapping


class EncoreError(Exception):
    """An error with a stable machine-readable ``code`` and a human ``message``."""

    code = "internal_error"
    # A transient origin failure (timeout, unreachable, 5xx, a body cut short): worth another
    # try of the same idempotent GET, and a strike against the origin's circuit breaker.
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable
        self.headers: Mapping[str, str] = headers or {}

    def details(self) -> dict[str, str]:
        """Fields the JSON body carries besides ``error`` and ``message``."""
        return {}


class BadRequest(EncoreError):
    code = "bad_request"


class NotFound(EncoreError):
    code = "not_found"


class RangeNotSatisfiable(EncoreError):
    code = "range_not_satisfiable"

    def __init__(self, message: str, *, size: int, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"Content-Range": f"bytes */{size}"})


class PreconditionFailed(EncoreError):
    code = "precondition_failed"


class Forbidden(EncoreError):
    """The request lacks a valid signature (``signature_missing``, ``_invalid``, ...)."""

    code = "forbidden"


class NotLicensed(EncoreError):
    """Not licensed for this region or at this time (RFC 7725); ``reason`` says which."""

    code = "not_licensed"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason

    def details(self) -> dict[str, str]:
        return {"reason": self.reason}


class OriginUnavailable(EncoreError):
    """The origin refused, failed, or could not be reached."""

    code = "origin_unavailable"


class OriginTimeout(EncoreError):
    code = "origin_timeout"
    retryable = True


class Unavailable(EncoreError):
    """The edge will not ask the origin right now (circuit open, too many waiters); the client
    may retry after ``Retry-After`` seconds."""

    code = "unavailable"

    def __init__(self, message: str, *, code: str, retry_after_s: int) -> None:
        super().__init__(message, code=code, headers={"Retry-After": str(max(retry_after_s, 1))})


class BadOriginData(EncoreError):
    """The origin answered with something we will not serve (bad manifest, wrong length)."""

    code = "bad_origin_data"


_STATUS: dict[type[EncoreError], int] = {
    BadRequest: 400,
    Forbidden: 403,
    NotFound: 404,
    PreconditionFailed: 412,
    RangeNotSatisfiable: 416,
    NotLicensed: 451,
    OriginUnavailable: 502,
    BadOriginData: 502,
    Unavailable: 503,
    OriginTimeout: 504,
}


def status_of(exc: EncoreError) -> int:
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 500
