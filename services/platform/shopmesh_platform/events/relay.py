"""The outbox relay: publishes a service's committed events to Kafka.

One relay per service publishes at a time: it first takes the store's lease
(PostgreSQL: a session advisory lock); a second relay waits on standby and
takes over when the first one's process dies. The leader reads pending events
in publish order, pipelines them to an idempotent, acks=all producer, and marks
them published only after the broker acknowledged them. Killed at any point,
it loses nothing: an event acknowledged but not yet marked is published again
by the next leader, and consumers deduplicate by event id.

Kafka being down is not a row's fault: the relay keeps its lease, retries the
producer with backoff and keeps `outbox_pending_events` current, so the backlog
shows while requests keep succeeding. A row that cannot be published is the
row's fault: an undeclared topic or a record too large for the producer (both
certain to fail again) is parked at once; a record the broker refuses or a
declared topic missing from the cluster is retried `max_attempts` times, then
parked. Parked rows are counted (`outbox_parked_total`, `outbox_parked_events`)
and listed and unparked by `make dlq`.

Per-key order: while a row is being retried, later rows of its aggregate wait
behind it. Once parked it no longer blocks them: later events of that
aggregate are published without it (availability over strict order for a row
that may never be publishable); the parked row stays visible to operators, and
unparking publishes it after the events that overtook it. (A refusal that the
broker reports only after later records of the key were already sent in the
same batch lets those overtake the refused one too; it is then retried.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field

from aiokafka.errors import (
    BrokerResponseError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
    UnknownTopicOrPartitionError,
)
from prometheus_client import CollectorRegistry, Counter, Gauge

from shopmesh_platform.events.attempts import RetryPolicy
from shopmesh_platform.events.outbox import OutboxEvent, OutboxSession, OutboxStore
from shopmesh_platform.events.producer import BrokerUnreachable, EventProducer
from shopmesh_platform.events.topics import TopicCatalog
from shopmesh_platform.kafka import KafkaConfig
from shopmesh_platform.retry import keep_running

logger = logging.getLogger("shopmesh.outbox")


@dataclass(frozen=True)
class RelaySettings:
    """How the relay polls, batches and gives up on a row."""

    # The longest wait for new events when the outbox is empty; a commit wakes it sooner.
    poll_interval: float = 0.2
    batch_size: int = 100
    # Failed attempts of one row before it is parked (broker refusals, missing topics).
    max_attempts: int = 5
    # Backoff of the producer while Kafka is unreachable, and of whole-relay restarts.
    kafka_backoff: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(max_attempts=1, initial_delay=0.2, max_delay=5.0)
    )
    max_request_size: int = 1_048_576


def describe(error: BaseException) -> str:
    """An error for `last_error` and logs: its type and Kafka's message (never the record)."""
    return f"{type(error).__name__}: {error}"[:500]


class _RowFailed(Exception):
    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


class OutboxRelay:
    """Publishes one service's outbox; run `run()` as a background task (cancel to stop)."""

    def __init__(
        self,
        service: str,
        store: OutboxStore,
        *,
        kafka: KafkaConfig,
        catalog: TopicCatalog,
        registry: CollectorRegistry,
        settings: RelaySettings | None = None,
    ) -> None:
        self._service = service
        self._store = store
        self._kafka = kafka
        self._catalog = catalog
        self._settings = settings or RelaySettings()
        self._holder = f"outbox-relay:{service}:{socket.gethostname()}:{os.getpid()}"
        self._pending = Gauge("outbox_pending_events", "Outbox events waiting to be published.", registry=registry)
        self._parked_now = Gauge("outbox_parked_events", "Outbox events parked (not published).", registry=registry)
        self._leader = Gauge("outbox_relay_leader", "1 while this relay holds the service's lease.", registry=registry)
        self._published = Counter("outbox_published_total", "Outbox events published.", registry=registry)
        self._parked = Counter("outbox_parked_total", "Outbox events parked after failing.", registry=registry)
        self._failures = Counter(
            "outbox_publish_failures_total", "Failed publish attempts (rows and Kafka outages).", registry=registry
        )

    async def run(self) -> None:
        backoff = self._settings.kafka_backoff
        await keep_running(
            "outbox relay",
            self._lead,
            logger,
            initial_backoff=backoff.initial_delay,
            max_backoff=backoff.max_delay,
            on_failure=self._failures.inc,
        )

    async def _lead(self) -> None:
        async with self._store.lease(self._holder) as session:
            logger.info("outbox relay leads", extra={"service": self._service})
            self._leader.set(1)
            try:
                await self._relay_while_leading(session)
            finally:
                self._leader.set(0)

    async def _relay_while_leading(self, session: OutboxSession) -> None:
        producer: EventProducer | None = None
        outages = 0
        try:
            while True:
                await self._refresh_gauges(session)
                try:
                    if producer is None:
                        producer = await self._start_producer()
                    progressed = await self._relay_batch(session, producer)
                    outages = 0
                except (KafkaError, BrokerUnreachable) as exc:
                    # Kafka's fault, not the rows': keep the lease, count nothing against the rows.
                    outages += 1
                    self._failures.inc()
                    delay = self._settings.kafka_backoff.delay(outages)
                    logger.warning(
                        "outbox relay: kafka unavailable", extra={"error": describe(exc), "retry_in_s": delay}
                    )
                    await _stop_quietly(producer)
                    producer = None
                    await asyncio.sleep(delay)
                    continue
                if not progressed:
                    await session.wait_for_events(self._settings.poll_interval)
        finally:
            await _stop_quietly(producer)

    async def _start_producer(self) -> EventProducer:
        producer = EventProducer(
            self._kafka, client_id=f"{self._service}-outbox", max_request_size=self._settings.max_request_size
        )
        try:
            await producer.start()
        except BaseException:
            await _stop_quietly(producer)
            raise
        return producer

    async def _refresh_gauges(self, session: OutboxSession) -> None:
        counts = await session.counts()
        self._pending.set(counts.pending)
        self._parked_now.set(counts.parked)

    async def _relay_batch(self, session: OutboxSession, producer: EventProducer) -> bool:
        """Publish one batch; True when it published anything (poll again at once)."""
        events = await session.pending(self._settings.batch_size)
        if not events:
            return False
        waiting_behind: set[tuple[str, str]] = set()  # keys with an earlier row failing in this batch
        in_flight: list[tuple[OutboxEvent, asyncio.Future[object]]] = []
        failed = 0
        for event in events:
            key = (event.topic, event.aggregate_id)
            if key in waiting_behind:
                continue
            try:
                in_flight.append((event, await self._enqueue(producer, event)))
            except _RowFailed as failure:
                failed += 1
                waiting_behind.add(key)
                await self._record_failure(session, event, failure)
        acknowledged: list[OutboxEvent] = []
        try:
            for event, future in in_flight:
                try:
                    await future
                except (BrokerResponseError, RecordTooLargeError) as exc:
                    if exc.retriable:
                        raise
                    failed += 1
                    await self._record_failure(session, event, _RowFailed(describe(exc), permanent=False))
                    continue
                acknowledged.append(event)
        finally:
            # Whatever the broker acknowledged is marked, even when a later record failed.
            await session.mark_published(acknowledged)
            self._published.inc(len(acknowledged))
        if failed and not acknowledged:
            # Only failing rows: give them a moment before their next attempt.
            await asyncio.sleep(self._settings.poll_interval)
        return bool(acknowledged)

    async def _enqueue(self, producer: EventProducer, event: OutboxEvent) -> asyncio.Future[object]:
        if not self._catalog.is_declared(event.topic):
            raise _RowFailed(f"topic {event.topic!r} is not declared in kafka/topics.yaml", permanent=True)
        try:
            return await producer.enqueue(event.envelope())
        except (MessageSizeTooLargeError, RecordTooLargeError) as exc:
            raise _RowFailed(describe(exc), permanent=True) from exc
        except UnknownTopicOrPartitionError as exc:
            # Also what a broker outage looks like for a topic not seen yet: ask the cluster.
            if await producer.topic_exists(event.topic):
                raise
            raise _RowFailed(f"topic {event.topic!r} does not exist in the cluster", permanent=False) from exc

    async def _record_failure(self, session: OutboxSession, event: OutboxEvent, failure: _RowFailed) -> None:
        park = failure.permanent or event.attempts + 1 >= self._settings.max_attempts
        await session.record_failure(event, str(failure), park=park)
        self._failures.inc()
        fields = {
            "event_id": event.event_id,
            "topic": event.topic,
            "attempts": event.attempts + 1,
            "error": str(failure),
        }
        if park:
            self._parked.inc()
            logger.error("outbox event parked", extra=fields)
        else:
            logger.warning("outbox event not published; will retry", extra=fields)


async def _stop_quietly(producer: EventProducer | None) -> None:
    if producer is None:
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), timeout=5)
