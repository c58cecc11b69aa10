"""The runtime: what a service's entry point asks the platform for, and how it runs.

A service's `__main__` reads the same everywhere:

    runtime = Runtime.from_env("inventory")        # every setting, once
    postgres = await runtime.postgres()            # its store, by mesh.yaml's `storage`
    products = Products(postgres.pool)             # its domain objects
    handlers = Handlers(); handlers.register(OrderPlaced, products.reserve)
    await runtime.serve(
        [binding(InventoryServicer(products))],
        consumers=[runtime.consumer("reservations", handlers)],
    )

What the runtime derives from the service's mesh.yaml entry: its store kind
(asking for the other one is a ConfigError), the outbox relay (started when
the service `publishes` topics), the topics its consumers may read (those it
`consumes`), and user-token verification (the keys of the `auth.issuer`, and
the deny-list fed by the issuer's revocation events; the issuer itself uses
`issuer_auth` with its own keys and revocation check).

It owns start-up and shutdown. Start: the revocation feed and relays, then the
consumers, then the gRPC server (health follows the store's readiness probe).
SIGTERM or SIGINT (or `stop()`): health NOT_SERVING (and the drain delay),
consumers stop (the effect in flight completes and its offset is committed),
the server stops (in-flight calls finish within the grace period), relays and
the feed stop (a relay is safe to stop anywhere: the outbox keeps what it has
not marked), channels and the store close, queued spans are exported (a
bounded wait); `serve()` returns and `run_service` exits 0.

Traces: with OTEL_EXPORTER_OTLP_ENDPOINT set, the runtime traces the whole
process (calls in and out, asyncpg, PyMongo, aiokafka, consumed events; see
shopmesh_platform.traces); the runtime sets it up before anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from grpc import aio
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from shopmesh_platform.auth.jwks import IssuerJwks, OwnKeys, PublishedKeys
from shopmesh_platform.auth.revocation_feed import RevocationFeed
from shopmesh_platform.auth.revocations import RevocationList
from shopmesh_platform.auth.tokens import JwtVerifier, RevocationCheck, TokenConfig
from shopmesh_platform.channel import create_channel
from shopmesh_platform.config import ConfigError, PlatformConfig
from shopmesh_platform.docstore.inbox import CauseInbox
from shopmesh_platform.docstore.lease import SlotLease
from shopmesh_platform.docstore.outbox import MongoOutboxStore
from shopmesh_platform.docstore.relay import MongoRelay
from shopmesh_platform.docstore.schema import ensure_indexes
from shopmesh_platform.docstore.transitions import TransitionLog
from shopmesh_platform.events.attempts import RetryPolicy
from shopmesh_platform.events.consumer import (
    ConsumerMetrics,
    ConsumerSettings,
    EventConsumer,
    Handlers,
    consumer_group,
)
from shopmesh_platform.events.inbox import Inbox, PostgresInbox
from shopmesh_platform.events.outbox import PostgresOutboxStore
from shopmesh_platform.events.relay import OutboxRelay, RelaySettings
from shopmesh_platform.events.topics import TopicCatalog
from shopmesh_platform.kafka import KafkaConfig
from shopmesh_platform.logs import configure_logging
from shopmesh_platform.mesh import ServiceDecl, StorageKind
from shopmesh_platform.mongo import MongoConfig, MongoReadiness, create_client
from shopmesh_platform.postgres import PostgresConfig, PostgresReadiness, create_pool
from shopmesh_platform.server import ReadinessProbe, ServiceBinding, ShopmeshServer, always_ready, create_server
from shopmesh_platform.traces import Tracing

logger = logging.getLogger("shopmesh.runtime")


class Consumer(Protocol):
    """Something the runtime runs beside the server and drains on shutdown (an EventConsumer)."""

    async def run(self) -> None: ...

    async def stop(self) -> None: ...


class Preparing(Protocol):
    """Something a service sets up in its store before it is ready (indexes, derived caches)."""

    async def prepare(self) -> None: ...


class Worker(Protocol):
    """A service's own background loop (e.g. a reaper): run beside the server, cancelled once drained.

    Its work must be safe to interrupt anywhere (a transaction that never commits).
    """

    async def run(self) -> None: ...


@dataclass(frozen=True)
class RuntimeSettings:
    """Every setting a service's runtime needs, read once from the environment."""

    platform: PlatformConfig
    kafka: KafkaConfig
    tokens: TokenConfig
    storage: PostgresConfig | MongoConfig | None

    @classmethod
    def from_env(cls, service: str, env: Mapping[str, str]) -> RuntimeSettings:
        platform = PlatformConfig.from_env(service, env)
        declared = platform.mesh.service(service).storage
        storage: PostgresConfig | MongoConfig | None = None
        if declared is not None and declared.kind is StorageKind.POSTGRES:
            storage = PostgresConfig.from_env(env)
        elif declared is not None:
            # The database is the declared one unless the environment names another.
            storage = MongoConfig.from_env({"SHOPMESH_MONGODB_DATABASE": declared.database, **env})
        return cls(platform, KafkaConfig.from_env(env), TokenConfig.from_env(env), storage)


@dataclass(frozen=True)
class PostgresStore:
    """A service's PostgreSQL database: the pool, its readiness probe, its outbox and inbox."""

    config: PostgresConfig
    pool: asyncpg.Pool
    readiness: PostgresReadiness

    def inbox(self) -> PostgresInbox:
        return PostgresInbox(self.pool)

    def outbox(self, service: str) -> PostgresOutboxStore:
        return PostgresOutboxStore(self.config.dsn, service)


@dataclass(frozen=True)
class MongoStore:
    """A service's MongoDB database (FerretDB locally) and its readiness probe."""

    config: MongoConfig
    client: AsyncMongoClient[dict[str, Any]]
    database: AsyncDatabase[dict[str, Any]]
    readiness: MongoReadiness


class Runtime:
    """One running service's platform; see the module docstring."""

    def __init__(self, service: str, settings: RuntimeSettings) -> None:
        self.service = service
        self.settings = settings
        self.registry = CollectorRegistry()
        self.catalog = TopicCatalog.load(settings.platform.topics_file)
        self._consumer_metrics = ConsumerMetrics(self.registry)
        self._channels: list[aio.Channel] = []
        self._store: PostgresStore | MongoStore | None = None
        self._verifier: JwtVerifier | None = None
        self._feed: RevocationFeed | None = None
        self._transition_outbox: TransitionLog | None = None
        self._prepared = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self.server: ShopmeshServer | None = None  # once serve() has built it
        configure_logging(service, settings.platform.log_level)
        # Before any store or channel exists: PyMongo's instrumentation only sees clients made after it.
        self.tracing = Tracing.for_service(service, settings.platform.otlp_endpoint)
        self.tracing.instrument_process()

    @classmethod
    def from_env(cls, service: str, env: Mapping[str, str] | None = None) -> Runtime:
        """Read every setting for `service` (a mesh.yaml name); a bad one is a ConfigError naming it."""
        return cls(service, RuntimeSettings.from_env(service, dict(os.environ) if env is None else env))

    @property
    def config(self) -> PlatformConfig:
        return self.settings.platform

    @property
    def kafka(self) -> KafkaConfig:
        return self.settings.kafka

    @property
    def tokens(self) -> TokenConfig:
        return self.settings.tokens

    @property
    def declaration(self) -> ServiceDecl:
        return self.config.mesh.service(self.service)

    # --- the store -------------------------------------------------------------------------

    async def postgres(self) -> PostgresStore:
        """The service's PostgreSQL pool (connecting on demand) and its readiness probe."""
        if isinstance(self._store, PostgresStore):
            return self._store
        if not isinstance(self.settings.storage, PostgresConfig):
            raise ConfigError(f"{self._storage_declared()}: {self.service} has no PostgreSQL store")
        pool = await create_pool(self.settings.storage)
        self._store = PostgresStore(self.settings.storage, pool, PostgresReadiness(pool))
        return self._store

    def mongo(self) -> MongoStore:
        """The service's MongoDB client and database (connecting on demand) and its readiness probe."""
        if isinstance(self._store, MongoStore):
            return self._store
        if not isinstance(self.settings.storage, MongoConfig):
            raise ConfigError(f"{self._storage_declared()}: {self.service} has no MongoDB store")
        client = create_client(self.settings.storage)
        self._store = MongoStore(
            self.settings.storage,
            client,
            client[self.settings.storage.database],
            MongoReadiness(client, timeout_s=self.settings.storage.timeout_ms / 1000),
        )
        return self._store

    def _storage_declared(self) -> str:
        storage = self.declaration.storage
        declared = f"storage kind {storage.kind.value}" if storage else "no storage"
        return f"mesh.yaml declares {declared} for {self.service}"

    def relay_transitions(self, log: TransitionLog) -> None:
        """Publish `log`'s transitions while serving: the MongoDB outbox (one relay per service, a SlotLease)."""
        self.mongo()
        self._transition_outbox = log

    def _readiness(self) -> ReadinessProbe:
        store_ready = self._store.readiness if self._store is not None else always_ready
        prepared = self._prepared

        async def ready() -> bool:
            # Not before the store is prepared (indexes, caches), then as the store says.
            return prepared.is_set() and await store_ready()

        return ready

    # --- calls to other services -----------------------------------------------------------

    def channel(self, target: str) -> aio.Channel:
        """A channel to the mesh service `target`, closed when the service stops."""
        channel = create_channel(self.config, target, tracing=self.tracing)
        self._channels.append(channel)
        return channel

    # --- user tokens -----------------------------------------------------------------------

    @property
    def auth(self) -> JwtVerifier:
        """The user-token verifier: the issuer's keys, and the deny-list fed by its revocation events."""
        if self._verifier is None:
            auth = self.config.mesh.auth
            if auth is None:
                raise ConfigError("mesh.yaml has no `auth` section: no issuer to verify user tokens with")
            if auth.issuer == self.service:
                raise ConfigError(f"{self.service} issues the tokens: it verifies them with issuer_auth()")
            if auth.revocation_topic not in self.declaration.consumes:
                raise ConfigError(
                    f"mesh.yaml: {self.service} must consume {auth.revocation_topic} (its token deny-list)"
                )
            jwks = IssuerJwks(self.channel(auth.issuer), self.config.mesh, auth)
            revocations = RevocationList()
            self._feed = RevocationFeed(
                self.kafka,
                auth,
                revocations,
                jwks,
                service=self.service,
                catalog=self.catalog,
                registry=self.registry,
                metrics=self._consumer_metrics,
            )
            self._verifier = JwtVerifier(self.tokens, jwks, revocations)
        return self._verifier

    def issuer_auth(self, keys: PublishedKeys, revocations: RevocationCheck) -> JwtVerifier:
        """The issuer's own verifier: its own key set, its own revocation check (e.g. its sessions)."""
        auth = self.config.mesh.auth
        if auth is None or auth.issuer != self.service:
            raise ConfigError(f"mesh.yaml does not name {self.service} as the token issuer (auth.issuer)")
        if self._verifier is not None:
            raise ConfigError("the user-token verifier is already built")
        self._verifier = JwtVerifier(self.tokens, OwnKeys(keys), revocations)
        return self._verifier

    # --- events ----------------------------------------------------------------------------

    def consumer(
        self,
        name: str,
        handlers: Handlers[Any],
        *,
        topics: Sequence[str] | None = None,
        retry: RetryPolicy | None = None,
    ) -> EventConsumer[Any]:
        """An idempotent consumer in group `<service>.<name>` over the store's inbox.

        `topics` default to every topic the service declares it consumes; each must be declared.
        PostgreSQL: the handlers get the inbox transaction's connection (effect and inbox
        row commit together). MongoDB: the handlers get the cause `<group>:<event id>` and
        must make their effect a transition with that cause (`docstore.CauseInbox`): the
        transition's unique cause is the inbox, and nothing else guards against redelivery.
        """
        declared = self.declaration.consumes
        chosen = tuple(sorted(declared) if topics is None else topics)
        undeclared = sorted(set(chosen) - declared)
        if undeclared or not chosen:
            raise ConfigError(f"mesh.yaml: {self.service} does not declare consuming {undeclared or 'any topic'}")
        inbox: Inbox[Any]
        if isinstance(self._store, PostgresStore):
            inbox = self._store.inbox()
        elif isinstance(self._store, MongoStore):
            inbox = CauseInbox()
        else:
            raise ConfigError(f"{self.service}: consumers need the service's store (call postgres() or mongo() first)")
        settings = ConsumerSettings(group=consumer_group(self.service, name), topics=chosen)
        if retry is not None:
            settings = ConsumerSettings(group=settings.group, topics=chosen, retry=retry)
        return EventConsumer(
            self.kafka,
            settings=settings,
            handlers=handlers,
            inbox=inbox,
            catalog=self.catalog,
            metrics=self._consumer_metrics,
        )

    def _relays(self) -> tuple[list[Worker], list[Preparing]]:
        """The outbox relay of a service that publishes topics, and what must be prepared before it runs."""
        if not self.declaration.publishes:
            return [], []
        if isinstance(self._store, PostgresStore):
            relay = OutboxRelay(
                self.service,
                self._store.outbox(self.service),
                kafka=self.kafka,
                catalog=self.catalog,
                registry=self.registry,
                settings=RelaySettings(poll_interval=self.config.outbox_poll_seconds),
            )
            return [relay], []
        if isinstance(self._store, MongoStore):
            if self._transition_outbox is None:
                logger.warning("no outbox relay: the service names no transition log (relay_transitions)")
                return [], []
            lease = SlotLease(self._store.database, self.service)
            store = MongoOutboxStore(self._store.database, self._transition_outbox, publisher=lease.holder)
            mongo_relay = MongoRelay(
                store, lease, self.kafka, poll_interval=self.config.outbox_poll_seconds, registry=self.registry
            )
            return [mongo_relay], [_Indexes(lease, store)]
        return [], []

    async def _prepare(self, parts: Sequence[Preparing], *, max_backoff: float = 10.0) -> None:
        """Run every preparation until all succeed (the store may still be starting); then ready."""
        backoff = 0.5
        for part in parts:
            while True:
                try:
                    await part.prepare()
                    break
                except Exception as exc:
                    logger.warning("preparing the store failed; retrying", extra={"error": type(exc).__name__})
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, max_backoff)
        self._prepared.set()

    async def _run_when_prepared(self, relay: Worker | Consumer) -> None:
        await self._prepared.wait()
        await relay.run()

    # --- running ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Drain and stop, as SIGTERM does."""
        self._stop_requested.set()

    async def serve(
        self,
        servicers: Sequence[ServiceBinding],
        consumers: Sequence[Consumer] = (),
        *,
        workers: Sequence[Worker] = (),
        prepare: Sequence[Preparing] = (),
        on_drain: Sequence[Callable[[], Awaitable[None]]] = (),
        readiness: ReadinessProbe | None = None,
    ) -> None:
        """Serve `servicers`, run `consumers`, `workers`, relays and the revocation feed; return once drained.

        `prepare` (indexes, derived caches) runs first, retried until it succeeds; health
        is NOT_SERVING until it has, and relays and consumers start only then.
        `on_drain` callbacks run once health is NOT_SERVING, before in-flight calls get
        their grace period: they end long-lived streams (which would otherwise hold the
        drain for the whole grace period) so clients reconnect to another replica.
        `readiness` is only for a store the runtime does not manage (the deprecated
        shopmesh_platform.runner shape); otherwise health follows the store's probe.
        """
        verifier = self._verifier if self._verifier is not None else self.auth
        probe = readiness if readiness is not None else self._readiness()
        server = create_server(
            self.config, servicers, readiness=probe, user_tokens=verifier, registry=self.registry, tracing=self.tracing
        )
        self.server = server
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)
        background: list[asyncio.Task[None]] = []
        consuming: list[asyncio.Task[None]] = []
        try:
            if self._feed is not None:
                background.append(asyncio.create_task(self._feed.run(), name="revocation-feed"))
            relays, relay_parts = self._relays()
            background.append(asyncio.create_task(self._prepare([*relay_parts, *prepare]), name="prepare"))
            background += [asyncio.create_task(self._run_when_prepared(relay), name="outbox-relay") for relay in relays]
            background += [asyncio.create_task(worker.run(), name=type(worker).__name__) for worker in workers]
            # Consumers too wait for the store's preparation: a MongoDB consumer's inbox is a unique index.
            consuming = [
                asyncio.create_task(self._run_when_prepared(consumer), name="consumer") for consumer in consumers
            ]
            await server.start()
            await self._stop_requested.wait()
            logger.info("stopping: health NOT_SERVING, then consumers, calls, relays")
            await server.stop_taking_calls()
            await asyncio.gather(*(callback() for callback in on_drain))
            await asyncio.gather(*(consumer.stop() for consumer in consumers))
            await server.stop()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            # Consumers have drained (or never started); relays and the feed may stop anywhere.
            for task in [*consuming, *background]:
                task.cancel()
            for task in [*consuming, *background]:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._close()

    async def _close(self) -> None:
        for channel in self._channels:
            await channel.close()
        if isinstance(self._store, PostgresStore):
            await self._store.pool.close()
        elif isinstance(self._store, MongoStore):
            await self._store.client.close()
        # Last: the spans of everything above are queued by now (bounded wait; see traces).
        await asyncio.to_thread(self.tracing.shutdown)


class _Indexes:
    """The indexes of the MongoDB relay's parts (lease, outbox markers), as a preparation."""

    def __init__(self, *parts: Any) -> None:
        self._parts = parts

    async def prepare(self) -> None:
        await ensure_indexes(*self._parts)
