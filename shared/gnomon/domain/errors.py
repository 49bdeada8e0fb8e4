"""Domain errors, one per error code of CONTRACT.md §3.

They are raised by services and stores and mapped to HTTP status codes once, at the API's edge
(`gnomon.api.errors`); nothing in between catches them to translate.
"""

from __future__ import annotations

from typing import Any, ClassVar


class GnomonError(Exception):
    """Base of every error the API answers in the contract's shape."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details if details is not None else {}

    def body(self) -> dict[str, Any]:
        """The JSON error body: `{"error": {"code", "message", "details"}}`."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(GnomonError):
    """The body is not JSON / not an object, or `page_size` is invalid."""

    status = 400
    code = "bad_request"


class InvalidPageToken(GnomonError):
    """A page token that was forged, corrupted or reused with other filters."""

    status = 400
    code = "invalid_page_token"


class Forbidden(GnomonError):
    status = 403
    code = "forbidden"


class NotFound(GnomonError):
    """`details.resource` names what is missing, e.g. `definition/nightly`."""

    status = 404
    code = "not_found"

    def __init__(self, resource: str, message: str | None = None) -> None:
        super().__init__(message or f"{resource} not found", {"resource": resource})
        self.resource = resource


class MethodNotAllowed(GnomonError):
    status = 405
    code = "method_not_allowed"


class AlreadyExists(GnomonError):
    status = 409
    code = "already_exists"


class Conflict(GnomonError):
    """A failed precondition; `current` is the resource as it is now (or None when deleted)."""

    status = 409
    code = "conflict"

    def __init__(self, message: str, current: Any = None) -> None:
        super().__init__(message, {"current": current})
        self.current = current


class AlreadyClosed(GnomonError):
    status = 409
    code = "already_closed"


class AlreadyDone(GnomonError):
    status = 409
    code = "already_done"


class WrongOwner(GnomonError):
    status = 409
    code = "wrong_owner"


class LeaseExpired(GnomonError):
    status = 409
    code = "lease_expired"


class InUse(GnomonError):
    status = 409
    code = "in_use"


class PayloadTooLarge(GnomonError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(GnomonError):
    status = 415
    code = "unsupported_media_type"


class InvalidArgument(GnomonError):
    """422: `details` is a list of `{"field", "message"}`."""

    status = 422
    code = "invalid_argument"

    def __init__(self, field: str, message: str, more: list[dict[str, str]] | None = None) -> None:
        errors = [{"field": field, "message": message}, *(more or [])]
        super().__init__(f"{field}: {message}", errors)
        self.field = field

    @classmethod
    def many(cls, errors: list[dict[str, str]]) -> InvalidArgument:
        """One error listing several invalid fields (the first names the message)."""
        first, *rest = errors
        return cls(first["field"], first["message"], rest)


class RateLimited(GnomonError):
    status = 429
    code = "rate_limited"
