"""A database outage inside a consumer's handler is the infrastructure's fault, not the message's.

Found while tracing the chaos test's (tests/integration/test_chaos.py) FerretDB fault:
the orders consumer's handler meets PyMongo's AutoReconnect, which counted as a failed
attempt, so five quick attempts later the PaymentSucceeded it was applying went to the
dead-letter topic and the paid order expired and was refunded (likewise PostgreSQL's
admin/crash shutdown errors). Such errors now restart the
consumer (the message comes again, its attempts not counted), as PostgreSQL's did.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry
from pymongo.errors import AutoReconnect, OperationFailure, ServerSelectionTimeoutError

from shopmesh.payment.v1 import events_pb2 as payment_events
from shopmesh_platform.events.attempts import RetryPolicy
from shopmesh_platform.events.consumer import ConsumerSettings, EventConsumer, EventContext, Handlers
from shopmesh_platform.events.envelope import envelope
from shopmesh_platform.events.topics import TopicCatalog
from shopmesh_platform.kafka import KafkaConfig

TOPIC = "payment-events"


class EveryDelivery:
    """An inbox that applies every delivery (the handler's failure is what is tested)."""

    async def apply(self, consumer: str, event_id: str, effect: Any) -> bool:
        await effect(None)
        return True


class DeadLetters:
    """The consumer's producer: records what would be dead-lettered."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send(self, message: Any) -> None:
        self.sent.append(message)


def record_of(event: payment_events.PaymentSucceeded) -> ConsumerRecord:
    wire = envelope(TOPIC, event.order_id, event.event_id, event)
    return ConsumerRecord(
        topic=TOPIC,
        partition=0,
        offset=7,
        timestamp=0,
        timestamp_type=0,
        key=wire.key,
        value=wire.value,
        checksum=None,
        serialized_key_size=len(wire.key),
        serialized_value_size=len(wire.value),
        headers=list(wire.headers),
    )


def consumer_failing_with(error: Exception) -> EventConsumer[None]:
    handlers: Handlers[None] = Handlers()

    async def succeeded(event: payment_events.PaymentSucceeded, context: EventContext[None]) -> None:
        raise error

    handlers.register(payment_events.PaymentSucceeded, succeeded)
    return EventConsumer(
        KafkaConfig.from_env({"SHOPMESH_KAFKA_BOOTSTRAP": "127.0.0.1:9"}),
        settings=ConsumerSettings(group="tests.outage", topics=(TOPIC,)),
        handlers=handlers,
        inbox=EveryDelivery(),
        catalog=TopicCatalog.from_names([TOPIC]),
        registry=CollectorRegistry(),
    )


@pytest.mark.parametrize(
    "outage",
    [
        AutoReconnect("connection closed"),
        ServerSelectionTimeoutError("No servers found yet"),
        asyncpg.PostgresError.new({"C": "57P01", "M": "terminating connection due to administrator command"}),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        ConnectionRefusedError(111, "Connect call failed"),
        OperationFailure("code=1", code=1),  # FerretDB while its PostgreSQL restarts
    ],
)
async def test_a_database_outage_restarts_the_consumer_and_dead_letters_nothing(outage: Exception) -> None:
    event = payment_events.PaymentSucceeded(event_id=str(uuid.uuid4()), order_id=str(uuid.uuid4()))
    dead_letters = DeadLetters()
    with pytest.raises(type(outage)):
        await consumer_failing_with(outage)._process(dead_letters, record_of(event))  # type: ignore[arg-type]
    assert dead_letters.sent == []


async def test_a_handler_bug_is_still_dead_lettered_after_its_attempts() -> None:
    event = payment_events.PaymentSucceeded(event_id=str(uuid.uuid4()), order_id=str(uuid.uuid4()))
    dead_letters = DeadLetters()
    consumer = consumer_failing_with(ValueError("a bug"))
    consumer._retry = RetryPolicy(max_attempts=2, initial_delay=0.0, max_delay=0.0)
    await consumer._process(dead_letters, record_of(event))  # type: ignore[arg-type]
    assert len(dead_letters.sent) == 1
