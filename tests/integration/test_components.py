"""The real components behind the services: Kafka topics and events, FerretDB
through PyMongo's async API, localstripe through the stripe library, and health
that follows the database (not Kafka)."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from pathlib import Path

import asyncpg
import pytest
import stripe
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from grpc_health.v1 import health_pb2
from pymongo import AsyncMongoClient

from shopmesh.user.v1 import events_pb2 as user_events
from shopmesh_platform.events.envelope import envelope, header
from shopmesh_platform.events.producer import EventProducer
from shopmesh_platform.events.topics import load_topic_specs
from shopmesh_platform.kafka import KafkaConfig
from shopmesh_stack.stack import Stack
from tests.declared import POSTGRES_SERVICES, SERVICES
from tests.integration.helpers import health_status
from tests.polling import wait_for

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_every_declared_topic_exists_with_its_partitions(stack: Stack) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka.bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([spec.name for spec in load_topic_specs()])
    finally:
        await admin.close()
    partitions = {topic["topic"]: len(topic["partitions"]) for topic in described}
    expected = {spec.name: spec.partitions for spec in load_topic_specs()}
    assert partitions == expected
    assert partitions["order-events"] == 6
    assert partitions["user-events.dlq"] == 3


async def test_event_from_the_platform_producer_is_consumed_with_headers(stack: Stack) -> None:
    user_id = str(uuid.uuid4())
    event_id = str(uuid.uuid4())
    event = user_events.UserRegistered(event_id=event_id, user_id=user_id, email="kafka@example.com")
    producer = EventProducer(KafkaConfig(stack.kafka.bootstrap, 10_000), client_id="integration-test")
    await producer.start()
    try:
        await producer.send(envelope("user-events", user_id, event_id, event))
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.kafka.bootstrap,
        group_id=f"test-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.subscribe(["user-events"])
        found = None
        async with asyncio.timeout(30):
            while found is None:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        if record.key == user_id.encode():
                            found = record
    finally:
        await consumer.stop()
    assert header(found.headers, "event-id") == event_id
    assert header(found.headers, "event-type") == "shopmesh.user.v1.UserRegistered"
    assert header(found.headers, "content-type") == "application/x-protobuf"
    assert user_events.UserRegistered.FromString(found.value).email == "kafka@example.com"


async def test_ferretdb_accepts_writes_and_reads_through_async_pymongo(stack: Stack) -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(stack.ferretdb.url, serverSelectionTimeoutMS=5000)
    try:
        collection = client["integration"]["documents"]
        document_id = str(uuid.uuid4())
        await collection.insert_one({"_id": document_id, "status": "PENDING", "total_minor": 2999})
        updated = await collection.find_one_and_update(
            {"_id": document_id, "status": "PENDING"}, {"$set": {"status": "CONFIRMED"}}, return_document=True
        )
        assert updated is not None and updated["status"] == "CONFIRMED"
        assert await collection.find_one({"_id": document_id}) == {
            "_id": document_id,
            "status": "CONFIRMED",
            "total_minor": 2999,
        }
    finally:
        await client.close()


def test_localstripe_answers_payment_intents(stack: Stack) -> None:
    client = stripe.StripeClient(stack.localstripe.api_key, base_addresses={"api": stack.localstripe.api_base})
    intent = client.v1.payment_intents.create(
        params={"amount": 2999, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    )
    assert intent.status == "succeeded"
    assert client.v1.payment_intents.retrieve(intent.id).amount == 2999
    with pytest.raises(stripe.CardError) as declined:
        client.v1.payment_intents.create(
            params={"amount": 500, "currency": "usd", "payment_method": "pm_card_chargeCustomerFail", "confirm": True}
        )
    assert declined.value.code == "card_declined"


# Long enough for many readiness probes (every 0.2 s in tests) and for the outbox
# relays and consumers to have met the outage.
KAFKA_OUTAGE_SECONDS = 6


def health_of_every_service(stack: Stack) -> dict[str, int | None]:
    return {service: health_status(stack.settings, service) for service in SERVICES}


@pytest.mark.stops_components
def test_health_follows_postgres_but_not_kafka(stack: Stack) -> None:
    every_serving = dict.fromkeys(SERVICES, SERVING)
    assert health_of_every_service(stack) == every_serving

    stack.stop(stack.kafka)
    try:
        assert not stack.kafka.process.running()
        # Kafka down is not a reason to stop serving: every service stays SERVING, polled throughout.
        deadline = time.monotonic() + KAFKA_OUTAGE_SECONDS
        polls = 0
        while time.monotonic() < deadline:
            assert health_of_every_service(stack) == every_serving
            polls += 1
        assert polls >= 3
    finally:
        stack.start(stack.kafka)

    stack.stop(stack.postgres)
    try:
        took = wait_for(
            lambda: all(health_status(stack.settings, s) == NOT_SERVING for s in POSTGRES_SERVICES),
            15,
            "every PostgreSQL service NOT_SERVING",
        )
        assert took < 10
    finally:
        stack.start(stack.postgres)
    wait_for(lambda: health_of_every_service(stack) == every_serving, 30, "every service SERVING again")


async def test_migrations_are_recorded_once_per_source_and_append_only(stack: Stack, tmp_path: Path) -> None:
    from shopmesh_platform.migrations import MIGRATIONS_ROOT, MigrationError, migrate

    dsn = stack.postgres.dsn("users")
    connection = await asyncpg.connect(dsn)
    try:
        recorded = {
            (r["source"], r["name"]) for r in await connection.fetch("SELECT source, name FROM schema_migrations")
        }
    finally:
        await connection.close()
    assert {("platform", "0001_outbox_inbox.sql"), ("users", "0001_users.sql")} <= recorded
    assert await migrate(dsn, "users") == []  # a second run applies nothing

    edited = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_ROOT, edited)
    users_sql = edited / "users" / "0001_users.sql"
    users_sql.write_text(users_sql.read_text() + "\n-- edited after the fact\n")
    with pytest.raises(MigrationError, match="users/0001_users.sql changed after it was applied"):
        await migrate(dsn, "users", root=edited)
