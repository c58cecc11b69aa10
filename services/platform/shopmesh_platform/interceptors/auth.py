"""Per-method access control, shaped by the mesh declaration (DESIGN §6).

Every call is checked against its method's access class and the caller's mesh
identity (the SPIFFE id of its certificate, see shopmesh_platform.transport):
`internal` methods only for their declared callers; `public` and `user`
methods for the edge and the developer identity, plus their declared service
callers (who then act as services and need no user token); `user` methods also
need a verified user token (and a declared role, if any). A role-restricted
method is only for the front door with a user holding the role: declared
callers never bypass the role. A method missing
from the declaration cannot be called (default deny). Health checks and
reflection are allowed for the edge and the developer identity (the stack's
probes use it). Everything else is PERMISSION_DENIED, logged with the caller
identity, the method and the reason.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, Protocol

from grpc import aio

from shopmesh_platform.context import Caller, caller_var
from shopmesh_platform.errors import DomainError, PermissionDenied, Unauthenticated
from shopmesh_platform.interceptors.base import AroundInterceptor, CallInfo, NextCall
from shopmesh_platform.mesh import AccessClass, MeshDeclaration, MethodDecl

logger = logging.getLogger("shopmesh.auth")

PLATFORM_SERVICE_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


class UserTokenVerifier(Protocol):
    """Turns a bearer token into the calling user, or raises Unauthenticated."""

    async def verify(self, token: str) -> Caller: ...


PeerIdentityResolver = Callable[[aio.ServicerContext[Any, Any]], "str | None"]


def no_peer_identity(context: aio.ServicerContext[Any, Any]) -> str | None:
    """Plaintext transport: no peer carries a verifiable identity."""
    return None


def bearer_token(call: CallInfo) -> str | None:
    header = call.metadata("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class AuthInterceptor(AroundInterceptor):
    """Enforces the declared access class and callers of every method."""

    def __init__(
        self,
        mesh: MeshDeclaration,
        *,
        user_tokens: UserTokenVerifier | None = None,
        peer_identity: PeerIdentityResolver = no_peer_identity,
        identities_enforced: bool = False,
    ) -> None:
        self._mesh = mesh
        self._user_tokens = user_tokens
        self._peer_identity = peer_identity
        # With mutual TLS every caller has an identity and only declared ones pass;
        # in plaintext (MESH_TLS=sidecar/off) the sidecar enforces who may connect.
        self._identities_enforced = identities_enforced

    async def around(self, call: CallInfo, proceed: NextCall) -> Any:
        identity = self._peer_identity(call.context)
        try:
            if call.method.startswith(PLATFORM_SERVICE_PREFIXES):
                self._check_caller(identity, self._mesh.front_door, call.method)
                return await proceed()
            caller = await self.authorize(self._mesh.method(call.method), call, identity)
        except DomainError as refusal:
            logger.warning(
                "call refused",
                extra={"caller_identity": identity, "reason": refusal.reason, "detail": refusal.message},
            )
            raise
        token = caller_var.set(caller)
        try:
            return await proceed()
        finally:
            caller_var.reset(token)

    def _check_caller(self, identity: str | None, allowed: frozenset[str], method: str) -> None:
        if identity is None and not self._identities_enforced:
            return
        if identity not in allowed:
            raise PermissionDenied(
                f"caller identity {identity or '(none)'} may not call {method}", reason="CALLER_NOT_PERMITTED"
            )

    async def authorize(self, method: MethodDecl | None, call: CallInfo, identity: str | None) -> Caller:
        """The caller, if `method` may be called by it; raises otherwise."""
        if method is None:
            raise PermissionDenied(f"method {call.method} is not declared in the mesh", reason="METHOD_NOT_DECLARED")
        if method.access is AccessClass.INTERNAL:
            if identity is None or identity not in method.callers:
                raise PermissionDenied(
                    f"{method.name} is internal; caller identity {identity or '(none)'} is not permitted",
                    reason="CALLER_NOT_PERMITTED",
                )
            return Caller(service_identity=identity)
        if identity is not None and identity in method.callers and not method.roles:
            # A declared service caller acts as a service, not as a user: no token.
            # It has no role, so it never passes a role-restricted method (the
            # declaration refuses that combination; this holds even if it got through).
            return Caller(service_identity=identity)
        self._check_caller(identity, self._mesh.front_door, call.method)
        if method.access is AccessClass.PUBLIC:
            return Caller(service_identity=identity)
        token = bearer_token(call)
        if token is None:
            raise Unauthenticated("a bearer token is required", reason="TOKEN_MISSING")
        if self._user_tokens is None:
            raise Unauthenticated("user authentication is not configured on this service", reason="AUTH_UNAVAILABLE")
        caller = await self._user_tokens.verify(token)
        if method.roles and caller.role not in method.roles:
            raise PermissionDenied(
                f"{method.name} requires role {' or '.join(sorted(method.roles))}", reason="ROLE_REQUIRED"
            )
        return dataclasses.replace(caller, service_identity=identity)
