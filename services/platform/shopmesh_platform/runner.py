"""Process entry points: wiring shared by every service, and clear config errors.

`run_service` turns an async `serve(env)` into a process main: it reads the
environment once, runs until drained (exit 0), and reports a ConfigError by
naming the variable (exit 2) instead of a traceback.

`ServiceRuntime` holds what every service gets from the platform: its config,
the user-token verifier (JWKS from the users service, deny-list fed from
Kafka, or a service's own revocation check: the users service asks its
sessions table), and background tasks (the revocation feed when the deny-list
is used, the outbox relay), started with the server and cancelled when it has
drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from google.protobuf import json_format
from grpc import aio
from prometheus_client import CollectorRegistry

from shopmesh.user.v1 import user_service_pb2, user_service_pb2_grpc
from shopmesh_platform.channel import create_channel
from shopmesh_platform.config import ConfigError, PlatformConfig
from shopmesh_platform.events.outbox import PostgresOutboxStore
from shopmesh_platform.events.relay import OutboxRelay
from shopmesh_platform.events.topics import TopicCatalog
from shopmesh_platform.kafka import KafkaConfig
from shopmesh_platform.logs import configure_logging
from shopmesh_platform.postgres import PostgresConfig, PostgresReadiness, create_pool
from shopmesh_platform.revocation_feed import RevocationFeed, issuer_replay_window
from shopmesh_platform.revocations import RevocationList
from shopmesh_platform.server import ReadinessProbe, ServiceBinding, create_server
from shopmesh_platform.tokens import JwksSource, JwtVerifier, RevocationCheck, TokenConfig

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
    _channels: list[aio.Channel] = field(default_factory=list)
    # Set when the verifier uses the deny-list: the JWKS that also says how far back to replay.
    _feed_jwks: JwksSource | None = None

    def __post_init__(self) -> None:
        self.config = PlatformConfig.from_env(self.service, self.env)
        self.kafka = KafkaConfig.from_env(self.env)
        self.tokens = TokenConfig.from_env(self.env)
        configure_logging(self.service, self.config.log_level)

    def channel(self, target: str) -> aio.Channel:
        channel = create_channel(self.config, target)
        self._channels.append(channel)
        return channel

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
        server = create_server(self.config, bindings, readiness=readiness, user_tokens=verifier)
        coroutines = [make(server.registry) for make in background]
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
    background: Callable[[ServiceRuntime, asyncpg.Pool], Sequence[BackgroundTask]] | None = None,
) -> None:
    """Serve a PostgreSQL-backed service: health follows its database; its outbox is relayed.

    `revocations` replaces the Kafka-fed deny-list (the users service checks its own sessions).
    `background` adds the service's own background tasks (e.g. the payments reconciler).
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

        services = bindings(runtime, pool)
        extra = background(runtime, pool) if background else ()
        await runtime.serve(services, PostgresReadiness(pool), verifier, background=[relay, *extra])
    finally:
        await pool.close()
