"""Broadcast consumers: every instance reads every partition (e.g. a deny-list).

Some state must be complete in every replica, not shared out between them: a
broadcast consumer joins no group and commits nothing. Each time it
(re)connects it

1. asks its `ReplayStart` how far back from now events can still matter
   (None: from the beginning of the topics),
2. notes the end offset of every partition,
3. seeks each partition to the first record of that window,
4. reads on, and tells its listener it has `caught_up()` once its position has
   reached the end offsets it noted (once per connection).

Decoding and dispatch are the group consumer's (`events.consumer`): handlers
registered by message type, unknown types counted and skipped. Effects run
without an inbox (handlers get `None` as their transaction): a broadcast effect
is in-memory and idempotent. A record that cannot be decoded, or whose handler
raises PoisonEvent, is skipped, counted (`consumer_events_total{outcome=
"skipped"}`), reported to the listener and logged by its position (never its
content); a handler that keeps failing for another reason is retried with
backoff, then skipped the same way. Nothing is dead-lettered: every replica
would write the same dead letter. `stop()` returns once the event in flight is
applied.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from google.protobuf.message import DecodeError

from shopmesh_platform.events.attempts import RetryPolicy
from shopmesh_platform.events.consumer import (
    INFRASTRUCTURE_ERRORS,
    ConsumerLoop,
    ConsumerMetrics,
    Handlers,
    PoisonEvent,
)
from shopmesh_platform.events.envelope import MalformedEnvelope
from shopmesh_platform.events.topics import TopicCatalog
from shopmesh_platform.kafka import KafkaConfig

logger = logging.getLogger("shopmesh.consumer")


class ReplayStart(Protocol):
    """How far back from now a broadcast consumer starts reading, asked at every (re)connect."""

    async def seconds_back(self) -> float | None:
        """Seconds back from now; None to read the topics from their beginning."""
        ...


class BroadcastListener(Protocol):
    """Told what a broadcast consumer skipped, and when it has caught up."""

    def skipped(self, record: ConsumerRecord, problem: str) -> None: ...

    def caught_up(self) -> None: ...


@dataclass(frozen=True)
class BroadcastSettings:
    """One broadcast consumer: its name (metrics, logs, client id) and topics."""

    name: str
    topics: tuple[str, ...]
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=3, initial_delay=0.1, max_delay=1.0))
    restart: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=1, initial_delay=0.5, max_delay=5.0))
    poll_timeout_ms: int = 1000


class _NoInbox:
    """Broadcast effects are idempotent and in memory: run each as it comes."""

    async def apply(self, consumer: str, event_id: str, effect: Callable[[None], Awaitable[None]]) -> bool:
        await effect(None)
        return True


class BroadcastConsumer(ConsumerLoop[None]):
    """Reads every partition of `settings.topics`; `run()` until `stop()`."""

    unknown_type_log_level = logging.DEBUG

    def __init__(
        self,
        kafka: KafkaConfig,
        *,
        settings: BroadcastSettings,
        handlers: Handlers[None],
        start: ReplayStart,
        listener: BroadcastListener,
        catalog: TopicCatalog,
        metrics: ConsumerMetrics,
    ) -> None:
        super().__init__(
            kafka,
            name=settings.name,
            topics=settings.topics,
            handlers=handlers,
            retry=settings.retry,
            restart=settings.restart,
            catalog=catalog,
            metrics=metrics,
        )
        self._settings = settings
        self._start = start
        self._listener = listener
        self._inbox = _NoInbox()

    async def deliver(self, record: ConsumerRecord) -> None:
        """Decode one record and apply it; one that can never apply is skipped and reported."""
        try:
            decoded = self._decode(record)
        except (MalformedEnvelope, DecodeError) as exc:
            self._skip(record, f"{type(exc).__name__}: {exc}")
            return
        if decoded is None:
            return
        attempts = 0
        while True:
            attempts += 1
            try:
                await self._dispatch(record, decoded, self._inbox)
            except INFRASTRUCTURE_ERRORS:
                raise
            except PoisonEvent as exc:
                self._skip(record, str(exc))
                return
            except Exception as exc:
                self._metrics.failures.labels(self._name, record.topic).inc()
                if self._retry.exhausted(attempts) or await self._wait_unless_stopped(self._retry.delay(attempts)):
                    self._skip(record, f"{type(exc).__name__}: {exc}")
                    return
                continue
            self._metrics.events.labels(self._name, record.topic, "applied").inc()
            return

    def _skip(self, record: ConsumerRecord, problem: str) -> None:
        self._metrics.events.labels(self._name, record.topic, "skipped").inc()
        logger.warning(
            "record skipped",
            extra={
                "consumer": self._name,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "problem": problem,
            },
        )
        self._listener.skipped(record, problem)

    async def _consume(self) -> None:
        window = await self._start.seconds_back()
        consumer = AIOKafkaConsumer(
            *self._settings.topics,
            bootstrap_servers=self._kafka.bootstrap_servers,
            client_id=self._name,
            group_id=None,  # no group: every partition, nothing committed
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a replay start already deleted by retention: the oldest left
            request_timeout_ms=self._kafka.request_timeout_ms,
            **self._kafka.client_options(),
        )
        try:
            await consumer.start()
            partitions = sorted(consumer.assignment())
            if not partitions:
                raise RuntimeError(f"topics {', '.join(self._settings.topics)} have no partitions")
            end_offsets: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
            await _seek_to_window(consumer, partitions, window, end_offsets)
            logger.info(
                "broadcast consumer replaying",
                extra={
                    "consumer": self._name,
                    "window_s": window,
                    "end_offsets": {f"{tp.topic}:{tp.partition}": end for tp, end in end_offsets.items()},
                },
            )
            caught_up = False
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=self._settings.poll_timeout_ms)
                for records in batches.values():
                    for record in records:
                        if self._stopping.is_set():
                            return
                        await self.deliver(record)
                if not caught_up and await _reached(consumer, end_offsets):
                    caught_up = True
                    self._listener.caught_up()
                await self._update_lag(consumer)
        finally:
            await consumer.stop()


async def _seek_to_window(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    window: float | None,
    end_offsets: dict[TopicPartition, int],
) -> None:
    if window is None:
        starts: dict[TopicPartition, int] = await consumer.beginning_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, starts[tp])
        return
    since_ms = max(0, int((time.time() - window) * 1000))
    found = await consumer.offsets_for_times({tp: since_ms for tp in partitions})
    for tp in partitions:
        first = found.get(tp)
        # No record that recent: nothing in this partition matters; read what comes next.
        consumer.seek(tp, first.offset if first is not None else end_offsets[tp])


async def _reached(consumer: AIOKafkaConsumer, end_offsets: dict[TopicPartition, int]) -> bool:
    for tp, end in end_offsets.items():
        if await consumer.position(tp) < end:
            return False
    return True
