"""Per-call context shared between interceptors and handlers via ContextVars.

grpc.aio runs each call in its own task, so a ContextVar set by an interceptor
is seen by the handler and by log records emitted during that call, and by
nothing else.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """Who is calling: a user (from a verified token) and/or a mesh identity."""

    user_id: str | None = None
    role: str | None = None
    token_id: str | None = None
    token_expires_at: float | None = None
    service_identity: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


request_id_var: ContextVar[str | None] = ContextVar("shopmesh_request_id", default=None)
method_var: ContextVar[str | None] = ContextVar("shopmesh_method", default=None)
caller_var: ContextVar[Caller | None] = ContextVar("shopmesh_caller", default=None)


def current_caller() -> Caller:
    """The caller of the current RPC (anonymous outside an authenticated call)."""
    return caller_var.get() or Caller()
