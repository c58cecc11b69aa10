"""The transactional outbox: events written with the state change, published after.

`append_event` inserts an event into the `outbox` table on the caller's
connection, inside the caller's transaction, so the change and its event
commit together or not at all. `OutboxRelay` publishes committed events in id
order with an idempotent, acks=all producer and marks a row published only
after the broker acknowledged it. Exactly one relay per service is active at a
time (a PostgreSQL advisory lock), so events of one key stay in order. When
Kafka is down the relay retries with backoff and the backlog grows (the
`outbox_backlog` metric); requests never fail because of it. A crash between
publish and mark re-publishes the row: consumers deduplicate by event id.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import zlib

import asyncpg
from google.protobuf.message import Message
from prometheus_client import CollectorRegistry, Counter, Gauge

from shopmesh_platform.kafka import EventEnvelope, EventProducer, KafkaConfig, envelope
from shopmesh_platform.retry import keep_running

logger = logging.getLogger("shopmesh.outbox")
BATCH_SIZE = 100


async def append_event(connection: asyncpg.Connection, topic: str, aggregate_id: str, event: Message) -> str:
    """Write `event` to the outbox in the current transaction; returns its event id.

    `event_id` and `occurred_at` are filled in when the message has them and they are empty.
    """
    fields = event.DESCRIPTOR.fields_by_name
    if "event_id" in fields and not event.event_id:  # type: ignore[attr-defined]
        event.event_id = str(uuid.uuid4())  # type: ignore[attr-defined]
    if "occurred_at" in fields and not event.HasField("occurred_at"):
        event.occurred_at.GetCurrentTime()  # type: ignore[attr-defined]
    event_id = str(getattr(event, "event_id", "") or uuid.uuid4())
    wire = envelope(topic, aggregate_id, event_id, event)
    traceparent = next((value.decode() for key, value in wire.headers if key == "traceparent"), None)
    await connection.execute(
        """INSERT INTO outbox (event_id, topic, aggregate_id, event_type, payload, traceparent)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        uuid.UUID(event_id),
        topic,
        aggregate_id,
        event.DESCRIPTOR.full_name,
        wire.value,
        traceparent,
    )
    return event_id


def _row_to_envelope(row: asyncpg.Record) -> EventEnvelope:
    headers = [
        ("event-id", str(row["event_id"]).encode()),
        ("event-type", row["event_type"].encode()),
        ("content-type", b"application/x-protobuf"),
    ]
    if row["traceparent"]:
        headers.append(("traceparent", row["traceparent"].encode()))
    return EventEnvelope(row["topic"], row["aggregate_id"].encode(), bytes(row["payload"]), headers)


class OutboxRelay:
    """Publishes one service's outbox; run `run()` as a background task."""

    def __init__(
        self,
        service: str,
        dsn: str,
        kafka: KafkaConfig,
        registry: CollectorRegistry,
        *,
        poll_interval: float = 0.2,
        max_backoff: float = 5.0,
    ) -> None:
        self._service = service
        self._dsn = dsn
        self._kafka = kafka
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        # The lock key is derived from the service name: one relay per service.
        self._lock_key = zlib.crc32(f"outbox:{service}".encode())
        self._backlog = Gauge("outbox_backlog", "Outbox events not yet published.", registry=registry)
        self._published = Counter("outbox_published_total", "Outbox events published.", registry=registry)
        self._failures = Counter("outbox_publish_failures_total", "Failed publish attempts.", registry=registry)

    async def run(self) -> None:
        await keep_running(
            "outbox relay",
            self._hold_lock_and_relay,
            logger,
            initial_backoff=self._poll_interval,
            max_backoff=self._max_backoff,
            on_failure=self._failures.inc,
        )

    async def _hold_lock_and_relay(self) -> None:
        connection = await asyncpg.connect(self._dsn, timeout=5)
        try:
            # Another relay of this service may hold the lock (in another process): stand by until it is free.
            while True:
                if await connection.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_key):
                    break
                await asyncio.sleep(1.0)
            producer = EventProducer(self._kafka, client_id=f"{self._service}-outbox")
            await producer.start()
            try:
                while True:
                    published = await self._publish_batch(connection, producer)
                    if published == 0:
                        await asyncio.sleep(self._poll_interval)
            finally:
                await producer.stop()
        finally:
            await connection.close()

    async def _publish_batch(self, connection: asyncpg.Connection, producer: EventProducer) -> int:
        self._backlog.set(await connection.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
        rows = await connection.fetch(
            "SELECT * FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1", BATCH_SIZE
        )
        for row in rows:
            # One at a time, in id order: per-key order survives retries.
            await producer.send(_row_to_envelope(row))
            await connection.execute("UPDATE outbox SET published_at = now() WHERE id = $1", row["id"])
            self._published.inc()
            self._backlog.dec()
        return len(rows)
