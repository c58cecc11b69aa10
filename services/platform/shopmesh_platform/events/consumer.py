"""Idempotent consumers: each event's effect happens once, offsets follow effects.

A consumer has its own group (one per service and purpose), subscribes to
declared topics, and dispatches by the `event-type` header to the handler
registered for that protobuf message type, decoding with its class. Each
effect runs through the inbox (PostgreSQL: `processed_events` in the same
transaction as the effect; the handler gets that transaction's connection),
and a partition's offset is committed only after its effects are durable. A
crash anywhere redelivers at most the uncommitted tail, which the inbox skips.

Failures: a handler error is retried with exponential backoff up to
`retry.max_attempts` times; then the message goes to `<topic>.dlq` with headers
naming the error, the group and the attempt count (see `dlq`), its offset is
committed and the partition moves on. A message that cannot be decoded, or
lacks a valid event id, cannot succeed on retry and is dead-lettered at once.
An event type with no handler is skipped and counted. Infrastructure failures
(the database or Kafka unreachable) are not the message's fault: the consumer
restarts with backoff and the message is redelivered, attempts not counted.

A handler that knows an event can never be applied raises `PoisonEvent`: it
is dead-lettered at once, without retries.

`stop()` drains: no more fetching, the effect in flight completes, the offsets
of finished effects are committed, then `run()` returns (the runtime calls it
on SIGTERM). Lag per partition is the `kafka_consumer_lag` gauge.

The poll, decode and dispatch loop is shared with the broadcast consumer
(`events.broadcast`), where every instance reads every partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError
from google.protobuf.message import DecodeError, Message
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge

from shopmesh_platform.database_errors import UNREACHABLE, is_outage
from shopmesh_platform.events.attempts import RetryPolicy
from shopmesh_platform.events.dlq import dead_letter
from shopmesh_platform.events.envelope import EventHeaders, MalformedEnvelope
from shopmesh_platform.events.inbox import Inbox
from shopmesh_platform.events.producer import EventProducer
from shopmesh_platform.events.topics import TopicCatalog
from shopmesh_platform.events.tracing import consuming_span
from shopmesh_platform.kafka import KafkaConfig

logger = logging.getLogger("shopmesh.consumer")
tracer = trace.get_tracer("shopmesh.events")

Transaction = TypeVar("Transaction")
EventT = TypeVar("EventT", bound=Message)

# Not the message's fault: restart the consumer and let the message come again. Every way of
# not reaching a database counts (PyMongo's too: a MongoDB consumer's inbox and effects live there),
# else a short outage would use up a message's attempts and dead-letter it.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError, asyncpg.InterfaceError, *UNREACHABLE)


@dataclass(frozen=True)
class EventContext(Generic[Transaction]):
    """What a handler knows besides the event: the inbox's transaction and where the event came from."""

    transaction: Transaction
    event_id: str
    event_type: str
    topic: str
    partition: int
    offset: int
    key: str | None


Handler = Callable[[Any, EventContext[Transaction]], Awaitable[None]]


class PoisonEvent(Exception):
    """Raised by a handler for an event that can never be applied (retrying cannot help)."""


class Handlers(Generic[Transaction]):
    """Handlers by event message type."""

    def __init__(self) -> None:
        self._by_type: dict[str, tuple[type[Message], Handler[Transaction]]] = {}

    def register(
        self, event_type: type[EventT], handler: Callable[[EventT, EventContext[Transaction]], Awaitable[None]]
    ) -> None:
        name = event_type.DESCRIPTOR.full_name
        if name in self._by_type:
            raise ValueError(f"a handler for {name} is already registered")
        self._by_type[name] = (event_type, handler)

    def lookup(self, event_type: str) -> tuple[type[Message], Handler[Transaction]] | None:
        return self._by_type.get(event_type)


@dataclass(frozen=True)
class ConsumerSettings:
    """One consumer: its group, its topics, and how it retries."""

    group: str
    topics: tuple[str, ...]
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=5, initial_delay=0.2, max_delay=10.0))
    restart: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=1, initial_delay=0.5, max_delay=10.0))
    poll_timeout_ms: int = 200
    max_batch: int = 100


class ConsumerMetrics:
    """The consumers' metrics of one registry, shared by every consumer of a service."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("group", "topic")
        self.events = Counter(
            "consumer_events_total",
            "Consumed events by outcome (applied, duplicate, unknown_type, dead_lettered, skipped).",
            (*labels, "outcome"),
            registry=registry,
        )
        self.failures = Counter(
            "consumer_handler_failures_total", "Failed handler attempts.", labels, registry=registry
        )
        self.lag = Gauge("kafka_consumer_lag", "Messages not yet consumed.", (*labels, "partition"), registry=registry)


class _Stopping(Exception):
    """stop() was called while waiting to retry: leave the message uncommitted."""


@dataclass(frozen=True)
class Decoded:
    """A record's envelope, its event (decoded with the registered type) and that type's handler."""

    headers: EventHeaders
    event: Message
    handler: Handler[Any]
    key: str | None


class ConsumerLoop(Generic[Transaction]):
    """What both delivery modes share: run until stop(), restarts, decoding, dispatch, lag.

    Subclasses implement `_consume()` (one connection's life: poll and deliver
    until stopping or an error).
    """

    # A group consumer's topics carry what it handles; a broadcast one skips most types by design.
    unknown_type_log_level = logging.INFO

    def __init__(
        self,
        kafka: KafkaConfig,
        *,
        name: str,
        topics: Sequence[str],
        handlers: Handlers[Transaction],
        retry: RetryPolicy,
        restart: RetryPolicy,
        catalog: TopicCatalog,
        metrics: ConsumerMetrics,
    ) -> None:
        for topic in topics:
            catalog.require(topic)
        self._kafka = kafka
        self._name = name
        self._topics = tuple(topics)
        self._handlers = handlers
        self._retry = retry
        self._restart = restart
        self._metrics = metrics
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()
        self._running = False
        self._caught_up = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def caught_up(self) -> bool:
        """Whether, at its last poll, this consumer had read every partition it holds to its end.

        False while it is not connected (Kafka down, restarting): a worker that must not act
        on what the topic has not told it yet (inventory's orphan reaper) waits for this.
        """
        return self._caught_up

    async def run(self) -> None:
        """Consume until stop(); restarts with backoff after infrastructure failures."""
        self._running = True
        self._finished.clear()
        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    await self._consume()
                    failures = 0
                except Exception as exc:
                    self._caught_up = False
                    failures += 1
                    delay = self._restart.delay(failures)
                    logger.warning(
                        "consumer interrupted; restarting",
                        extra={"group": self._name, "error": f"{type(exc).__name__}: {exc}", "retry_in_s": delay},
                    )
                    await self._wait_unless_stopped(delay)
        finally:
            self._running = False
            self._caught_up = False
            self._finished.set()

    async def stop(self) -> None:
        """Stop fetching, finish the effect in flight (and commit it); return once run() has."""
        self._stopping.set()
        if self._running:
            await self._finished.wait()

    async def _consume(self) -> None:
        raise NotImplementedError

    async def _wait_unless_stopped(self, seconds: float) -> bool:
        """Sleep `seconds`; True when stop() was called meanwhile."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    def _decode(self, record: ConsumerRecord) -> Decoded | None:
        """The record's event and handler; None (counted) for a type without a handler.

        Raises MalformedEnvelope or DecodeError for a record that can never be handled.
        """
        headers = EventHeaders.decode(record.headers)
        found = self._handlers.lookup(headers.event_type)
        if found is None:
            self._metrics.events.labels(self._name, record.topic, "unknown_type").inc()
            logger.log(
                self.unknown_type_log_level,
                "event type without a handler skipped",
                extra={"event_type": headers.event_type, "topic": record.topic},
            )
            return None
        event_class, handler = found
        event = event_class.FromString(record.value or b"")
        key = record.key.decode(errors="replace") if record.key is not None else None
        return Decoded(headers, event, handler, key)

    async def _dispatch(self, record: ConsumerRecord, decoded: Decoded, inbox: Inbox[Transaction]) -> bool:
        """Run the handler once through `inbox` in a consumer span; False when the inbox had it already."""
        headers = decoded.headers

        async def effect(transaction: Transaction) -> None:
            context = EventContext(
                transaction,
                headers.event_id,
                headers.event_type,
                record.topic,
                record.partition,
                record.offset,
                decoded.key,
            )
            await decoded.handler(decoded.event, context)

        with consuming_span(
            tracer,
            topic=record.topic,
            group=self._name,
            event_id=headers.event_id,
            event_type=headers.event_type,
            traceparent=headers.traceparent,
        ):
            return await inbox.apply(self._name, headers.event_id, effect)

    async def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        assignment = consumer.assignment()
        caught_up = bool(assignment)
        for partition in assignment:
            highwater = consumer.highwater(partition)
            if highwater is None:
                caught_up = False
                continue
            position = await consumer.position(partition)
            self._metrics.lag.labels(self._name, partition.topic, str(partition.partition)).set(
                max(highwater - position, 0)
            )
            caught_up = caught_up and position >= highwater
        self._caught_up = caught_up


class EventConsumer(ConsumerLoop[Transaction]):
    """Consumes `settings.topics` in `settings.group`; `run()` until `stop()`."""

    def __init__(
        self,
        kafka: KafkaConfig,
        *,
        settings: ConsumerSettings,
        handlers: Handlers[Transaction],
        inbox: Inbox[Transaction],
        catalog: TopicCatalog,
        registry: CollectorRegistry | None = None,
        metrics: ConsumerMetrics | None = None,
    ) -> None:
        if metrics is None:
            if registry is None:
                raise ValueError("an EventConsumer needs a registry or the service's ConsumerMetrics")
            metrics = ConsumerMetrics(registry)
        super().__init__(
            kafka,
            name=settings.group,
            topics=settings.topics,
            handlers=handlers,
            retry=settings.retry,
            restart=settings.restart,
            catalog=catalog,
            metrics=metrics,
        )
        self._settings = settings
        self._inbox = inbox

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            *self._settings.topics,
            bootstrap_servers=self._kafka.bootstrap_servers,
            group_id=self._settings.group,
            client_id=self._settings.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=self._kafka.request_timeout_ms,
            **self._kafka.client_options(),
        )
        producer = EventProducer(self._kafka, client_id=f"{self._settings.group}-dlq")
        try:
            await consumer.start()
            await producer.start()
            while not self._stopping.is_set():
                batches = await consumer.getmany(
                    timeout_ms=self._settings.poll_timeout_ms, max_records=self._settings.max_batch
                )
                for partition, records in batches.items():
                    await self._consume_partition_batch(consumer, producer, partition, records)
                    if self._stopping.is_set():
                        break
                await self._update_lag(consumer)
        finally:
            await producer.stop()
            await consumer.stop()

    async def _consume_partition_batch(
        self,
        consumer: AIOKafkaConsumer,
        producer: EventProducer,
        partition: TopicPartition,
        records: Sequence[ConsumerRecord],
    ) -> None:
        next_offset: int | None = None
        try:
            for record in records:
                if self._stopping.is_set():
                    break
                await self._process(producer, record)
                next_offset = record.offset + 1
        except _Stopping:
            pass
        finally:
            # Everything before next_offset has a durable effect (or a dead letter): commit it.
            if next_offset is not None:
                try:
                    await consumer.commit({partition: next_offset})
                except CommitFailedError as exc:
                    # The partition moved to another member; it redelivers, the inbox skips.
                    logger.warning("offset commit refused", extra={"group": self._settings.group, "error": str(exc)})

    async def _process(self, producer: EventProducer, record: ConsumerRecord) -> None:
        topic = record.topic
        try:
            decoded = self._decode(record)
        except (MalformedEnvelope, DecodeError) as exc:
            await self._dead_letter(producer, record, exc, attempts=1)
            return
        if decoded is None:
            return
        attempts = 0
        while True:
            attempts += 1
            try:
                applied = await self._dispatch(record, decoded, self._inbox)
            except INFRASTRUCTURE_ERRORS:
                raise
            except PoisonEvent as exc:
                self._metrics.failures.labels(self._settings.group, topic).inc()
                await self._dead_letter(producer, record, exc, attempts=attempts)
                return
            except Exception as exc:
                if is_outage(exc):
                    raise  # the database failed under the handler (e.g. FerretDB's InternalError)
                self._metrics.failures.labels(self._settings.group, topic).inc()
                if self._retry.exhausted(attempts):
                    await self._dead_letter(producer, record, exc, attempts=attempts)
                    return
                logger.warning(
                    "event handler failed; will retry",
                    extra={
                        "event_id": decoded.headers.event_id,
                        "attempt": attempts,
                        "error": f"{type(exc).__name__}: {exc}",
                    },
                )
                if await self._wait_unless_stopped(self._retry.delay(attempts)):
                    raise _Stopping() from exc
                continue
            self._metrics.events.labels(self._settings.group, topic, "applied" if applied else "duplicate").inc()
            return

    async def _dead_letter(
        self, producer: EventProducer, record: ConsumerRecord, error: BaseException, *, attempts: int
    ) -> None:
        await producer.send(
            dead_letter(
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=record.key,
                value=record.value or b"",
                headers=record.headers or (),
                error=error,
                group=self._settings.group,
                attempts=attempts,
            )
        )
        self._metrics.events.labels(self._settings.group, record.topic, "dead_lettered").inc()
        logger.error(
            "event dead-lettered",
            extra={"topic": record.topic, "offset": record.offset, "attempts": attempts, "error": type(error).__name__},
        )


def consumer_group(service: str, name: str) -> str:
    """The group of one consumer of one service: `<service>.<name>`."""
    return f"{service}.{name}"
