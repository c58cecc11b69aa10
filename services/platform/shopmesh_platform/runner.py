"""Process entry points: `run_service`, and the deprecated callback-shaped entry.

`run_service` turns an async `serve(env)` into a process main: it reads the
environment once, runs until drained (exit 0), and reports a ConfigError by
naming the variable (exit 2) instead of a traceback.

`ServiceRuntime` and `serve_with_postgres` are the old shape (bindings built
in a callback): thin wrappers over shopmesh_platform.runtime.Runtime, kept
until every service's `__main__` is ported. Porting one:

    runtime = Runtime.from_env("inventory", env)
    postgres = await runtime.postgres()
    await runtime.serve([binding(InventoryServicer(postgres.pool))], consumers=[...])

(`runtime.channel(...)`, `runtime.tokens` and `runtime.auth` replace the
wrapper's `channel`, `tokens` and `verifier()`; a Mongo service calls
`runtime.mongo()` instead of building its own client and probe.)
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import asyncpg

from shopmesh_platform.auth.tokens import JwtVerifier, TokenConfig
from shopmesh_platform.config import ConfigError, PlatformConfig
from shopmesh_platform.kafka import KafkaConfig
from shopmesh_platform.runtime import Runtime
from shopmesh_platform.server import ReadinessProbe, ServiceBinding

EXIT_CONFIG_ERROR = 2


def run_service(serve: Callable[[Mapping[str, str]], Coroutine[Any, Any, None]]) -> None:
    """Run `serve(os.environ)` to completion; exit 2 on a configuration error."""
    try:
        asyncio.run(serve(dict(os.environ)))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    sys.exit(0)


class ServiceRuntime:
    """Deprecated: the old entry shape over Runtime (see the module docstring)."""

    def __init__(self, service: str, env: Mapping[str, str]) -> None:
        self.runtime = Runtime.from_env(service, env)

    @property
    def config(self) -> PlatformConfig:
        return self.runtime.config

    @property
    def kafka(self) -> KafkaConfig:
        return self.runtime.kafka

    @property
    def tokens(self) -> TokenConfig:
        return self.runtime.tokens

    def channel(self, target: str) -> Any:
        return self.runtime.channel(target)

    def verifier(self) -> JwtVerifier:
        return self.runtime.auth

    async def serve(self, bindings: Sequence[ServiceBinding], readiness: ReadinessProbe, verifier: JwtVerifier) -> None:
        if verifier is not self.runtime.auth:
            raise ConfigError("ServiceRuntime.serve: only the runtime's own verifier is supported")
        await self.runtime.serve(bindings, readiness=readiness)


async def serve_with_postgres(
    service: str,
    env: Mapping[str, str],
    bindings: Callable[[ServiceRuntime, asyncpg.Pool], Sequence[ServiceBinding]],
) -> None:
    """Deprecated: serve a PostgreSQL-backed service whose bindings a callback builds."""
    legacy = ServiceRuntime(service, env)
    postgres = await legacy.runtime.postgres()
    await legacy.runtime.serve(bindings(legacy, postgres.pool))
