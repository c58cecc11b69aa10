"""Helpers for the events tests: a database and topics of a test's own on the
session stack, appending test events, in-process relays and consumers, and
worker subprocesses (tests/integration/events_worker.py) to kill.

Test events are `UserRegistered` messages: the aggregate id in `user_id`, a
per-aggregate sequence number in `first_name`. The consumer's effect is a row
in `effects` (no unique key, so an effect applied twice would show).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from prometheus_client import CollectorRegistry

from shopmesh.user.v1 import events_pb2 as user_events
from shopmesh_platform.events.attempts import RetryPolicy
from shopmesh_platform.events.consumer import ConsumerSettings, EventConsumer, EventContext, Handlers
from shopmesh_platform.events.envelope import EventHeaders
from shopmesh_platform.events.inbox import PostgresInbox
from shopmesh_platform.events.outbox import PostgresOutboxStore, append_event
from shopmesh_platform.events.relay import OutboxRelay, RelaySettings
from shopmesh_platform.events.topics import TopicCatalog, TopicSpec
from shopmesh_platform.kafka import KafkaConfig
from shopmesh_platform.migrations import MIGRATIONS_ROOT, migrate
from shopmesh_stack.settings import REPO
from shopmesh_stack.topics import create_topics

EFFECTS_SQL = """CREATE TABLE effects (
    id           bigserial PRIMARY KEY,
    event_id     uuid NOT NULL,
    aggregate_id text NOT NULL,
    seq          integer NOT NULL
);
"""
FAST_RELAY = RelaySettings(
    poll_interval=0.05, max_attempts=3, kafka_backoff=RetryPolicy(max_attempts=1, initial_delay=0.1, max_delay=1.0)
)
FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05)


@dataclass(frozen=True)
class EventsEnv:
    """One test's database (with the platform tables and `effects`) and its topic."""

    dsn: str
    kafka: KafkaConfig
    topic: str
    service: str

    @property
    def catalog(self) -> TopicCatalog:
        return TopicCatalog.from_names([self.topic])


async def make_env(admin_dsn: str, bootstrap: str, tmp_path: Path, *, partitions: int = 3) -> EventsEnv:
    """A fresh database migrated with the platform migrations (plus `effects`) and a fresh topic."""
    suffix = uuid.uuid4().hex[:10]
    database = f"events_{suffix}"
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{database}"')
    finally:
        await connection.close()
    root = tmp_path / "migrations"
    (root / "events_test").mkdir(parents=True)
    (root / "platform").symlink_to(MIGRATIONS_ROOT / "platform")
    (root / "events_test" / "0001_effects.sql").write_text(EFFECTS_SQL)
    dsn = admin_dsn.rsplit("/", 1)[0] + f"/{database}"
    await migrate(dsn, "events_test", root)
    topic = f"test-events-{suffix}"
    specs = [TopicSpec(name, partitions, 1, {"local": 1}, {"local": 1}) for name in (topic, f"{topic}.dlq")]
    await create_topics(bootstrap, specs, replication=1)
    return EventsEnv(dsn, KafkaConfig(bootstrap, 10_000), topic, f"svc-{suffix}")


def sample_event(aggregate_id: str, seq: int) -> user_events.UserRegistered:
    return user_events.UserRegistered(user_id=aggregate_id, first_name=str(seq), email=f"{seq}@example.com")


async def append(connection: asyncpg.Connection, env: EventsEnv, aggregate_id: str, seq: int) -> str:
    async with connection.transaction():
        return await append_event(connection, env.topic, aggregate_id, sample_event(aggregate_id, seq))


async def append_many(env: EventsEnv, events: list[tuple[str, int]]) -> list[str]:
    connection = await asyncpg.connect(env.dsn)
    try:
        return [await append(connection, env, aggregate_id, seq) for aggregate_id, seq in events]
    finally:
        await connection.close()


async def fetch_value(dsn: str, query: str, *args: object) -> object:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval(query, *args)
    finally:
        await connection.close()


async def fetch_rows(dsn: str, query: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


def make_relay(env: EventsEnv, registry: CollectorRegistry, *, standby_interval: float = 0.1) -> OutboxRelay:
    store = PostgresOutboxStore(env.dsn, env.service, standby_interval=standby_interval)
    return OutboxRelay(env.service, store, kafka=env.kafka, catalog=env.catalog, registry=registry, settings=FAST_RELAY)


async def record_effect(event: user_events.UserRegistered, context: EventContext[asyncpg.Connection]) -> None:
    await context.transaction.execute(
        "INSERT INTO effects (event_id, aggregate_id, seq) VALUES ($1, $2, $3)",
        uuid.UUID(context.event_id),
        event.user_id,
        int(event.first_name),
    )


def make_consumer(
    env: EventsEnv,
    pool: asyncpg.Pool,
    registry: CollectorRegistry,
    group: str,
    handlers: Handlers[asyncpg.Connection] | None = None,
) -> EventConsumer[asyncpg.Connection]:
    if handlers is None:
        handlers = Handlers()
        handlers.register(user_events.UserRegistered, record_effect)
    settings = ConsumerSettings(group=group, topics=(env.topic,), retry=FAST_RETRY, poll_timeout_ms=100)
    return EventConsumer(
        env.kafka,
        settings=settings,
        handlers=handlers,
        inbox=PostgresInbox(pool),
        catalog=env.catalog,
        registry=registry,
    )


@contextlib.asynccontextmanager
async def running(coroutine: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    """Run a relay's or consumer's `run()` beside the test; cancelled at the end."""
    task = asyncio.ensure_future(coroutine)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def read_topic(env: EventsEnv, topic: str, *, until: int, timeout: float = 60) -> list[ConsumerRecord]:
    """Every record of `topic` from the beginning, once at least `until` arrived."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=env.kafka.bootstrap_servers, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < until:
                for batch in (await consumer.getmany(timeout_ms=300)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


def sequences_by_key(records: list[ConsumerRecord]) -> dict[str, list[int]]:
    """Per aggregate, the sequence numbers in the order a consumer of the topic sees them."""
    ordered = sorted(records, key=lambda r: (r.partition, r.offset))
    found: dict[str, list[int]] = {}
    for record in ordered:
        event = user_events.UserRegistered.FromString(record.value)
        found.setdefault(event.user_id, []).append(int(event.first_name))
    return found


def event_ids(records: list[ConsumerRecord]) -> list[str]:
    return [EventHeaders.decode(record.headers).event_id for record in records]


class Worker:
    """A relay or consumer in a subprocess of its own, to SIGKILL or SIGTERM."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        self._file = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.events_worker", *args],
            cwd=REPO,
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def said(self, prefix: str) -> list[str]:
        return [line for line in self.lines() if line.startswith(prefix)]

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def close(self) -> None:
        self.kill()
        self.process.wait(timeout=30)
        self._file.close()


@contextlib.contextmanager
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    try:
        yield started
    finally:
        for worker in started:
            worker.close()
