"""Process entry points: config errors become a clear message and exit code 2.

`run_service` turns an async `serve(env)` into a process main: it reads the
environment once, configures JSON logging, runs until drained (exit 0), and
reports a ConfigError by naming the variable instead of a traceback.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import asyncpg

from shopmesh_platform.config import ConfigError, PlatformConfig
from shopmesh_platform.logs import configure_logging
from shopmesh_platform.postgres import PostgresConfig, PostgresReadiness, create_pool
from shopmesh_platform.server import ServiceBinding, create_server

EXIT_CONFIG_ERROR = 2


def run_service(serve: Callable[[Mapping[str, str]], Coroutine[Any, Any, None]]) -> None:
    """Run `serve(os.environ)` to completion; exit 2 on a configuration error."""
    try:
        asyncio.run(serve(dict(os.environ)))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    sys.exit(0)


async def serve_with_postgres(
    service: str, env: Mapping[str, str], bindings: Callable[[asyncpg.Pool], Sequence[ServiceBinding]]
) -> None:
    """Serve a PostgreSQL-backed service: health follows its database."""
    config = PlatformConfig.from_env(service, env)
    database = PostgresConfig.from_env(env)
    configure_logging(service, config.log_level)
    pool = await create_pool(database)
    try:
        server = create_server(config, bindings(pool), readiness=PostgresReadiness(pool))
        await server.serve()
    finally:
        await pool.close()
