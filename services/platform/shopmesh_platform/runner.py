"""Process entry points: wiring shared by every service, and clear config errors.

`run_service` turns an async `serve(env)` into a process main: it reads the
environment once, runs until drained (exit 0), and reports a ConfigError by
naming the variable (exit 2) instead of a traceback.

`ServiceRuntime` holds what every service gets from the platform: its config,
the user-token verifier (JWKS from the users service, deny-list fed from
Kafka, or a service's own revocation check: the users service asks its
sessions table), the metrics registry the server exposes, and background tasks
(the revocation feed when the deny-list is used, the outbox relay, and any a
service adds with `add_background`), started with the server and cancelled when
it has drained.

`serve_with_postgres` and `serve_with_mongo` wire a service to its database:
health follows the database, and the service's outbox (the PostgreSQL `outbox`
table, or a docstore `TransitionLog`) is relayed to Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from google.protobuf import json_format
from grpc import aio
from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase

from shopmesh.user.v1 import user_service_pb2, user_service_pb2_grpc
from shopmesh_platform.channel import create_channel
from shopmesh_platform.config import ConfigError, PlatformConfig
from shopmesh_platform.docstore import MongoOutboxStore, MongoRelay, SlotLease, TransitionLog, ensure_indexes
from shopmesh_platform.docstore.records import Document
from shopmesh_platform.docstore.schema import Indexed
from shopmesh_platform.events.outbox import PostgresOutboxStore
from shopmesh_platform.events.relay import OutboxRelay
from shopmesh_platform.events.topics import TopicCatalog
from shopmesh_platform.kafka import KafkaConfig
from shopmesh_platform.logs import configure_logging
from shopmesh_platform.mongo import MongoConfig, MongoReadiness, create_client
from shopmesh_platform.postgres import PostgresConfig, PostgresReadiness, create_pool
from shopmesh_platform.revocation_feed import RevocationFeed, issuer_replay_window
from shopmesh_platform.revocations import RevocationList
from shopmesh_platform.server import ReadinessProbe, ServiceBinding, create_server
from shopmesh_platform.tokens import JwksSource, JwtVerifier, RevocationCheck, TokenConfig

logger = logging.getLogger("shopmesh.runner")
EXIT_CONFIG_ERROR = 2
BackgroundTask = Callable[[CollectorRegistry], Coroutine[Any, Any, None]]


def run_service(serve: Callable[[Mapping[str, str]], Coroutine[Any, Any, None]]) -> None:
    """Run `serve(os.environ)` to completion; exit 2 on a configuration error."""
    try:
        asyncio.run(serve(dict(os.environ)))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    sys.exit(0)


def users_jwks_source(channel: aio.Channel) -> JwksSource:
    """Fetch the JWKS from the users service over gRPC (GetJwks is public)."""
    stub = user_service_pb2_grpc.UserServiceStub(channel)

    async def fetch() -> Mapping[str, Any]:
        reply = await stub.GetJwks(user_service_pb2.GetJwksRequest())
        return json_format.MessageToDict(reply, preserving_proto_field_name=True)

    return fetch


@dataclass
class ServiceRuntime:
    """The platform pieces of one running service."""

    service: str
    env: Mapping[str, str]
    config: PlatformConfig = field(init=False)
    kafka: KafkaConfig = field(init=False)
    tokens: TokenConfig = field(init=False)
    revocations: RevocationList = field(default_factory=RevocationList)
    # The server's metrics registry, there before the server so services can register their own metrics.
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    _channels: list[aio.Channel] = field(default_factory=list)
    # Set when the verifier uses the deny-list: the JWKS that also says how far back to replay.
    _feed_jwks: JwksSource | None = None
    _background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.config = PlatformConfig.from_env(self.service, self.env)
        self.kafka = KafkaConfig.from_env(self.env)
        self.tokens = TokenConfig.from_env(self.env)
        configure_logging(self.service, self.config.log_level)

    def channel(self, target: str) -> aio.Channel:
        channel = create_channel(self.config, target)
        self._channels.append(channel)
        return channel

    def add_background(self, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `run()` beside the server (e.g. a service's reaper), cancelled when it has drained."""
        self._background.append(run)

    def verifier(
        self, jwks_source: JwksSource | None = None, revocations: RevocationCheck | None = None
    ) -> JwtVerifier:
        """The user-token verifier; revocations come from the Kafka-fed deny-list unless `revocations` is given."""
        source = jwks_source or users_jwks_source(self.channel("users"))
        if revocations is None:
            self._feed_jwks = source
            revocations = self.revocations
        return JwtVerifier(self.tokens, source, revocations)

    async def serve(
        self,
        bindings: Sequence[ServiceBinding],
        readiness: ReadinessProbe,
        verifier: JwtVerifier,
        background: Sequence[BackgroundTask] = (),
    ) -> None:
        """Serve until drained, with the revocation feed and `background` tasks running beside.

        Each background task is built with the server's metrics registry.
        """
        server = create_server(self.config, bindings, readiness=readiness, user_tokens=verifier, registry=self.registry)
        coroutines = [make(server.registry) for make in background]
        coroutines.extend(run() for run in self._background)
        if self._feed_jwks is not None:
            window = issuer_replay_window(self._feed_jwks)
            coroutines.append(RevocationFeed(self.kafka, self.revocations, window, server.registry).run())
        running = [asyncio.create_task(coroutine) for coroutine in coroutines]
        try:
            await server.serve()
        finally:
            for task in running:
                task.cancel()
            for task in running:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for channel in self._channels:
                await channel.close()


async def serve_with_postgres(
    service: str,
    env: Mapping[str, str],
    bindings: Callable[[ServiceRuntime, asyncpg.Pool], Sequence[ServiceBinding]],
    *,
    jwks_source: Callable[[ServiceRuntime], JwksSource] | None = None,
    revocations: Callable[[asyncpg.Pool], RevocationCheck] | None = None,
) -> None:
    """Serve a PostgreSQL-backed service: health follows its database; its outbox is relayed.

    `revocations` replaces the Kafka-fed deny-list (the users service checks its own sessions).
    """
    runtime = ServiceRuntime(service, env)
    database = PostgresConfig.from_env(env)
    pool = await create_pool(database)
    try:
        verifier = runtime.verifier(
            jwks_source(runtime) if jwks_source else None, revocations(pool) if revocations else None
        )

        def relay(registry: CollectorRegistry) -> Coroutine[Any, Any, None]:
            store = PostgresOutboxStore(database.dsn, service)
            return OutboxRelay(
                service, store, kafka=runtime.kafka, catalog=TopicCatalog.load(), registry=registry
            ).run()

        await runtime.serve(bindings(runtime, pool), PostgresReadiness(pool), verifier, background=[relay])
    finally:
        await pool.close()


@dataclass(frozen=True)
class MongoService:
    """What a MongoDB-backed service hands `serve_with_mongo`.

    `prepare` (indexes, rebuilding derived caches) runs at start, retried until
    it succeeds; health is NOT_SERVING until it has. `outbox` is the transition
    log whose events are relayed to Kafka (one relay per service: `SlotLease`).
    """

    bindings: Sequence[ServiceBinding]
    prepare: Callable[[], Coroutine[Any, Any, None]] | None = None
    outbox: TransitionLog | None = None


class _PreparedReadiness:
    """Ready when the database answers and the service's preparation has finished."""

    def __init__(self, database: ReadinessProbe) -> None:
        self._database = database
        self.prepared = asyncio.Event()

    async def __call__(self) -> bool:
        return self.prepared.is_set() and await self._database()

    async def prepare(self, prepare: Callable[[], Coroutine[Any, Any, None]], *, max_backoff: float = 10.0) -> None:
        backoff = 0.5
        while True:
            try:
                await prepare()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("preparing the database failed; retrying", extra={"error": type(exc).__name__})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, max_backoff)
                continue
            self.prepared.set()
            return


async def serve_with_mongo(
    service: str,
    env: Mapping[str, str],
    build: Callable[[ServiceRuntime, AsyncDatabase[Document]], MongoService],
) -> None:
    """Serve a MongoDB-backed service (FerretDB locally): health follows the `ping` of its
    database and its preparation; its transition log is relayed to Kafka."""
    runtime = ServiceRuntime(service, env)
    database_config = MongoConfig.from_env(env)
    client = create_client(database_config)
    try:
        database = client.get_database(database_config.database)
        wiring = build(runtime, database)
        relay_parts: list[Indexed] = []
        if wiring.outbox is not None:
            lease = SlotLease(database, service)
            store = MongoOutboxStore(database, wiring.outbox, publisher=lease.holder)
            relay_parts = [lease, store]
            runtime.add_background(MongoRelay(store, lease, runtime.kafka, registry=runtime.registry).run)

        async def prepare() -> None:
            await ensure_indexes(*relay_parts)
            if wiring.prepare is not None:
                await wiring.prepare()

        readiness = _PreparedReadiness(MongoReadiness(client))
        runtime.add_background(lambda: readiness.prepare(prepare))
        await runtime.serve(wiring.bindings, readiness, runtime.verifier())
    finally:
        await client.close()
