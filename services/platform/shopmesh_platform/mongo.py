"""MongoDB-wire access (FerretDB locally) with PyMongo's own async API.

Motor is deprecated and past end of life; `pymongo.AsyncMongoClient` is its
successor. The client connects lazily, so the service starts while the
database is down and reports NOT_SERVING until `ping` answers. The client is
made only after PyMongo's condition wait is made cancellation-safe (see
`mongo_condition_wait`), and the readiness `ping` is bounded, so a probe never hangs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from shopmesh_platform.config import ConfigError, EnvReader
from shopmesh_platform.mesh import StorageDecl, StorageKind
from shopmesh_platform.mongo_condition_wait import install as make_condition_wait_cancellation_safe


@dataclass(frozen=True)
class MongoConfig:
    """Where the service's own database is."""

    url: str
    database: str
    timeout_ms: int

    @classmethod
    def from_env(cls, env: Mapping[str, str], storage: StorageDecl | None = None) -> MongoConfig:
        """The database is SHOPMESH_MONGODB_DATABASE, else the one the service's mesh.yaml `storage` declares."""
        read = EnvReader(env)
        url = read.optional("SHOPMESH_MONGODB_URL")
        if url is None or not url.startswith("mongodb://"):
            raise ConfigError("SHOPMESH_MONGODB_URL must be set to a mongodb:// URL")
        if storage is not None and storage.kind is not StorageKind.MONGO:
            raise ConfigError(f"the service's declared storage is {storage.kind.value}, not mongo")
        database = read.optional("SHOPMESH_MONGODB_DATABASE") or (storage.database if storage else None)
        if database is None:
            raise ConfigError("SHOPMESH_MONGODB_DATABASE must be set (no storage declared for the service)")
        return cls(
            url=url,
            database=database,
            timeout_ms=read.integer("SHOPMESH_MONGODB_TIMEOUT_MS", 2000, minimum=100, maximum=120_000),
        )


def create_client(config: MongoConfig) -> AsyncMongoClient[dict[str, Any]]:
    make_condition_wait_cancellation_safe()
    return AsyncMongoClient(
        config.url,
        serverSelectionTimeoutMS=config.timeout_ms,
        connectTimeoutMS=config.timeout_ms,
        socketTimeoutMS=config.timeout_ms * 5,
        uuidRepresentation="standard",
    )


class MongoReadiness:
    """Readiness probe: the server answers `ping` within `timeout_s`; anything else is not ready."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], timeout_s: float) -> None:
        self._client = client
        self._timeout_s = timeout_s

    async def __call__(self) -> bool:
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for would run the ping in another task.
            async with asyncio.timeout(self._timeout_s):
                await self._client.admin.command("ping")
            return True
        except (PyMongoError, TimeoutError):
            return False
