"""One exception tree with the spec's stable codes; the edge maps each to an HTTP status and the error body."""

from __future__ import annotations

from typing import Any, ClassVar


class ConfigurationError(RuntimeError):
    """The server cannot start with these settings."""


class DomainError(Exception):
    """A refusal the client can understand: `{"error": {"code", "message", "details"}}`."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400

    def __init__(self, message: str, details: dict[str, Any] | None = None, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        if code is not None:
            self.code = code  # type: ignore[misc]

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r}, {self.details!r})"


class ValidationError(DomainError):
    """The payload is not of the expected shape; `details.field` names the offending field."""

    code = "validation_error"
    status = 400

    def __init__(self, message: str, field: str | None = None, details: dict[str, Any] | None = None) -> None:
        merged = dict(details or {})
        if field is not None:
            merged.setdefault("field", field)
        super().__init__(message, merged)


class ReadOnlyField(DomainError):
    """The client sent a server-owned field (price, amount, owner, status, ...); nothing changes."""

    code = "read_only_field"
    status = 400

    def __init__(self, field: str, message: str | None = None) -> None:
        super().__init__(message or f"'{field}' is set by the server and may not be sent", {"field": field})


class MalformedBody(DomainError):
    code = "malformed_body"
    status = 400


class PayloadTooLarge(DomainError):
    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(DomainError):
    code = "unsupported_media_type"
    status = 415


class NotAcceptable(DomainError):
    code = "not_acceptable"
    status = 406


class UnsupportedProtocol(DomainError):
    code = "unsupported_protocol"
    status = 400


class NotAuthenticated(DomainError):
    code = "not_authenticated"
    status = 401


class InvalidCredentials(DomainError):
    code = "invalid_credentials"
    status = 401


class InvalidToken(DomainError):
    code = "invalid_token"
    status = 401


class TokenExpired(DomainError):
    code = "token_expired"
    status = 401


class TokenReused(DomainError):
    code = "token_reused"
    status = 401


class TooManyAttempts(DomainError):
    code = "too_many_attempts"
    status = 429


class Forbidden(DomainError):
    code = "forbidden"
    status = 403


class NotFound(DomainError):
    code = "not_found"
    status = 404


class MethodNotAllowed(DomainError):
    code = "method_not_allowed"
    status = 405


class InvalidState(DomainError):
    """The record's life cycle does not allow this (confirmed is immutable, inactive cannot be used...)."""

    code = "invalid_state"
    status = 409


class InsufficientStock(DomainError):
    """A depot or truck quantity would go below zero; details name the place, equipment and shortfall."""

    code = "insufficient_stock"
    status = 409


class MeterRegression(DomainError):
    code = "meter_regression"
    status = 409


class IdempotencyKeyReuse(DomainError):
    code = "idempotency_key_reuse"
    status = 409


class DependencyRejected(DomainError):
    code = "dependency_rejected"
    status = 409


class UnknownReference(DomainError):
    code = "unknown_reference"
    status = 400


class RolledBack(DomainError):
    code = "rolled_back"
    status = 409


class Conflict(DomainError):
    code = "conflict"
    status = 409


class EmailFailed(DomainError):
    code = "email_failed"
    status = 502


class ServiceUnavailable(DomainError):
    code = "service_unavailable"
    status = 503


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


# Every code a client may meet, with its HTTP status: the OpenAPI document and the edge handler read this.
ERROR_STATUS: dict[str, int] = {
    cls.code: cls.status
    for cls in DomainError.__subclasses__()  # direct subclasses carry the codes
}
ERROR_STATUS.update({"internal_error": 500, "not_found": 404, "method_not_allowed": 405})
