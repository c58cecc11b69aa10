"""Domain exceptions: what went wrong, in terms a client can act on.

Domain code raises these and never imports grpc; the status interceptor maps each
one to a `google.rpc.Status` with one `ErrorInfo` (reason, domain) and, for invalid
input, `BadRequest` field violations. Anything that is not a DomainError becomes
INTERNAL with a generic message, so internals never leak to clients.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

ERROR_DOMAIN_SUFFIX = ".shopmesh.dev"


class ErrorCode(enum.Enum):
    """The gRPC status a domain error maps to (names match grpc.StatusCode)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNIMPLEMENTED = "UNIMPLEMENTED"


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field: its path (`items[0].quantity`), why, and the rule id."""

    field: str
    description: str
    reason: str = ""


class DomainError(Exception):
    """Base of every error a client is meant to see.

    `reason` is a stable UPPER_SNAKE_CASE identifier clients may switch on;
    `message` is for humans; `domain` names the service that decided
    (e.g. "orders" becomes "orders.shopmesh.dev").
    """

    code: ClassVar[ErrorCode] = ErrorCode.FAILED_PRECONDITION

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        domain: str = "platform",
        metadata: Mapping[str, str] | None = None,
        field_violations: Sequence[FieldViolation] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.code.value
        self.domain = domain
        self.metadata: Mapping[str, str] = dict(metadata or {})
        self.field_violations = tuple(field_violations)

    @property
    def error_domain(self) -> str:
        return self.domain if "." in self.domain else self.domain + ERROR_DOMAIN_SUFFIX

    def __str__(self) -> str:
        return f"{self.code.value} {self.reason}: {self.message}"


class InvalidArgument(DomainError):
    """The request is malformed; `field_violations` says where."""

    code = ErrorCode.INVALID_ARGUMENT


class NotFound(DomainError):
    """The resource does not exist, or the caller may not know that it does."""

    code = ErrorCode.NOT_FOUND


class AlreadyExists(DomainError):
    """A resource with the same unique key exists."""

    code = ErrorCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    """The request is valid but the system's state does not allow it."""

    code = ErrorCode.FAILED_PRECONDITION


class Aborted(DomainError):
    """A concurrent change won; the client may retry the whole operation."""

    code = ErrorCode.ABORTED


class PermissionDenied(DomainError):
    """The caller is known but not allowed to do this."""

    code = ErrorCode.PERMISSION_DENIED


class Unauthenticated(DomainError):
    """The caller's credentials are missing or invalid."""

    code = ErrorCode.UNAUTHENTICATED


class ResourceExhausted(DomainError):
    """A quota or limit was reached."""

    code = ErrorCode.RESOURCE_EXHAUSTED


class Unavailable(DomainError):
    """A dependency is down; the client may retry later."""

    code = ErrorCode.UNAVAILABLE


class DeadlineExceeded(DomainError):
    """The call ran out of its time budget; what it started may or may not have taken effect."""

    code = ErrorCode.DEADLINE_EXCEEDED


class Unimplemented(DomainError):
    """The method is declared in the contract but not built yet."""

    code = ErrorCode.UNIMPLEMENTED
