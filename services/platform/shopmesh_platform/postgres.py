"""PostgreSQL access for services that own a PostgreSQL database.

The pool is created lazily (no connection at start), so a service starts even
while its database is down and reports NOT_SERVING until the readiness probe
can run a query again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from shopmesh_platform.config import ConfigError, EnvReader


@dataclass(frozen=True)
class PostgresConfig:
    """Where the service's own database is, and how many connections to keep."""

    dsn: str
    pool_max_size: int
    query_timeout_seconds: float

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PostgresConfig:
        read = EnvReader(env)
        dsn = read.optional("SHOPMESH_DATABASE_URL")
        if dsn is None:
            raise ConfigError("SHOPMESH_DATABASE_URL must be set (postgresql://user@host:port/db)")
        if not dsn.startswith(("postgresql://", "postgres://")):
            raise ConfigError("SHOPMESH_DATABASE_URL must be a postgresql:// URL")
        return cls(
            dsn=dsn,
            pool_max_size=read.integer("SHOPMESH_DATABASE_POOL_SIZE", 10, minimum=1, maximum=200),
            query_timeout_seconds=read.number("SHOPMESH_DATABASE_TIMEOUT_SECONDS", 5.0, minimum=0.1, maximum=120.0),
        )


async def create_pool(config: PostgresConfig) -> asyncpg.Pool:
    """A pool that opens connections on demand."""
    return await asyncpg.create_pool(
        config.dsn,
        min_size=0,
        max_size=config.pool_max_size,
        command_timeout=config.query_timeout_seconds,
    )


class PostgresReadiness:
    """Readiness probe: the database answers `SELECT 1` within the timeout."""

    def __init__(self, pool: asyncpg.Pool, timeout_seconds: float = 2.0) -> None:
        self._pool = pool
        self._timeout = timeout_seconds

    async def __call__(self) -> bool:
        try:
            async with self._pool.acquire(timeout=self._timeout) as connection:
                return bool(await connection.fetchval("SELECT 1", timeout=self._timeout) == 1)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
