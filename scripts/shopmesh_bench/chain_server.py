"""A benchmark-only users server: the real servicer, database and token checks, with the
platform's interceptor chain built without one of its interceptors.

Never used by the product: the harness starts one per chain variant, beside the
stack, with the users service's own environment (database, keys, certificate)
and a free port, to measure what each interceptor costs per call. Removing
`auth` would make GetMe fail for want of a caller, so that variant replaces it
with an interceptor that sets a fixed caller (the benchmark's user); the token
check's cost is what it saves. A fixed caller has no checked session, so its
GetMe reads the account itself (with auth, the session check's query reads it):
that variant's saving is the token check and the session query's extra cost
over a plain read of the account.

Environment beyond the users service's: BENCH_WITHOUT (an interceptor name from
`interceptor_name`, `all`, or empty for the full chain), BENCH_USER_ID.
Prints `{"port": N}` on one line once serving; drains on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from grpc import aio

from shopmesh_platform.auth.jwks import OwnKeys
from shopmesh_platform.auth.tokens import JwtVerifier, TokenConfig
from shopmesh_platform.config import PlatformConfig
from shopmesh_platform.context import Caller, caller_var
from shopmesh_platform.interceptors import default_chain
from shopmesh_platform.interceptors.access_log import AccessLogInterceptor
from shopmesh_platform.interceptors.auth import AuthInterceptor
from shopmesh_platform.interceptors.base import AroundInterceptor, CallInfo, NextCall
from shopmesh_platform.interceptors.deadline import DeadlineInterceptor
from shopmesh_platform.interceptors.metrics import MetricsInterceptor
from shopmesh_platform.interceptors.request_id import RequestIdInterceptor
from shopmesh_platform.interceptors.status import StatusInterceptor
from shopmesh_platform.interceptors.validation import ValidationInterceptor
from shopmesh_platform.logs import configure_logging
from shopmesh_platform.postgres import PostgresConfig, PostgresReadiness, create_pool
from shopmesh_platform.server import ShopmeshServer, create_server
from shopmesh_users.domain import Users
from shopmesh_users.issuer import TokenIssuer
from shopmesh_users.keys import KeyStore
from shopmesh_users.passwords import Passwords
from shopmesh_users.servicer import UserServicer, binding
from shopmesh_users.sessions import SessionTable

_NAMES: dict[type[Any], str] = {
    RequestIdInterceptor: "request_id",
    AccessLogInterceptor: "access_log",
    MetricsInterceptor: "metrics",
    StatusInterceptor: "status",
    DeadlineInterceptor: "deadline",
    AuthInterceptor: "auth",
    ValidationInterceptor: "validation",
}


def interceptor_name(interceptor: Any) -> str:
    """The platform's name for an interceptor of the chain (anything else is OTel's tracing)."""
    return _NAMES.get(type(interceptor), "tracing")  # OTel's interceptor or TraceContextInterceptor


class FixedCaller(AroundInterceptor):
    """Stands in for auth: every call is the benchmark's user, unchecked."""

    def __init__(self, caller: Caller) -> None:
        self._caller = caller

    async def around(self, call: CallInfo, proceed: NextCall) -> Any:
        token = caller_var.set(self._caller)
        try:
            return await proceed()
        finally:
            caller_var.reset(token)


def chain_without(name: str, caller: Caller) -> Any:
    """A chain factory like default_chain, without the interceptor `name` (`all`: none)."""

    def build(**kwargs: Any) -> list[aio.ServerInterceptor]:
        chain = default_chain(**kwargs)
        if name == "all":
            return [FixedCaller(caller)]
        kept: list[aio.ServerInterceptor] = []
        for interceptor in chain:
            if interceptor_name(interceptor) != name:
                kept.append(interceptor)
            elif name == "auth":
                kept.append(FixedCaller(caller))
        return kept

    return build


async def build_server(env: Mapping[str, str]) -> tuple[ShopmeshServer, Any]:
    config = PlatformConfig.from_env("users", env)
    configure_logging("users", config.log_level)
    tokens = TokenConfig.from_env(env)
    keys = KeyStore(Path(env["SHOPMESH_JWT_KEY_DIR"]), generate_if_missing=False)
    pool = await create_pool(PostgresConfig.from_env(env))
    sessions = SessionTable(pool)
    users = Users(pool, Passwords(), TokenIssuer(tokens, keys), sessions)
    servicer = UserServicer(users, keys, token_lifetime_seconds=tokens.ttl_seconds)
    caller = Caller(user_id=env.get("BENCH_USER_ID", ""), role="customer")
    server = create_server(
        config,
        [binding(servicer)],
        readiness=PostgresReadiness(pool),
        user_tokens=JwtVerifier(tokens, OwnKeys(keys), sessions),
        interceptors=chain_without(env.get("BENCH_WITHOUT", ""), caller),
    )
    return server, pool


async def main() -> None:
    server, pool = await build_server(dict(os.environ))
    try:
        await server.serve(lambda s: print(json.dumps({"port": s.grpc_port}), flush=True))
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
