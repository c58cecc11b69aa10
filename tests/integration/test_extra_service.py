"""A service that only a test's declaration names is started, served and wired by it alone.

The test copies mesh/mesh.yaml and kafka/topics.yaml, adds a topic of its own
and a `reviews` service (a PostgreSQL database of its own, publishing and
consuming that topic), and starts the service with the stack's own machinery
(`Stack` on settings naming those files, sharing the session's PostgreSQL and
Kafka): provisioning creates its database and its topic, `Service` runs
`python -m shopmesh_reviews` (tests/extra_service) with the ports, database and
certificate the declaration gives it. Then it serves health and reflection to
the developer identity, and an event appended to its outbox is relayed to
Kafka by its relay and applied once by its consumer.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path

import asyncpg
import grpc
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from shopmesh_platform.events.consumer import consumer_group
from shopmesh_platform.events.envelope import EventHeaders
from shopmesh_platform.events.outbox import append_event
from shopmesh_platform.events.topics import DEFAULT_TOPICS_FILE
from shopmesh_platform.kafka import KafkaConfig
from shopmesh_platform.mesh import DEFAULT_MESH_FILE
from shopmesh_stack.channels import channel, health_status
from shopmesh_stack.settings import Ports, StackSettings
from shopmesh_stack.stack import Stack
from tests.integration.events_support import EventsEnv, fetch_rows, read_topic, sample_event
from tests.polling import eventually

EXTRA = "reviews"
# Where `shopmesh_reviews` lives: on the service's path, as an installed service's package would be.
EXTRA_SOURCES = Path(__file__).resolve().parents[1] / "extra_service"
# The consumer the service runs (`runtime.consumer("reviewed", ...)`).
EXTRA_CONSUMER = "reviewed"


def declaration_with_extra_service(directory: Path, topic: str, database: str) -> tuple[Path, Path]:
    """The real declarations, plus `topic` and a `reviews` service publishing and consuming it."""
    topics = yaml.safe_load(DEFAULT_TOPICS_FILE.read_text())
    topics["topics"][topic] = {"partitions": 2, "retention_days": 1, "key": "review subject"}
    mesh = yaml.safe_load(DEFAULT_MESH_FILE.read_text())
    mesh["services"][EXTRA] = {
        "package": "shopmesh.review.v1",
        "service": "ReviewService",
        "grpc_port": 50099,
        "metrics_port": 51099,
        "storage": {"kind": "postgres", "database": database},
        "publishes": [topic],
        # Every service consumes the revocation topic (its token deny-list); its consumer reads only `topic`.
        "consumes": [topic, mesh["auth"]["revocation_topic"]],
        # The declaration requires methods; the service implements none (health and reflection only).
        "methods": {"ListReviews": {"access": "public", "idempotent": True}},
    }
    topics_file, mesh_file = directory / "topics.yaml", directory / "mesh.yaml"
    topics_file.write_text(yaml.safe_dump(topics, sort_keys=False))
    mesh_file.write_text(yaml.safe_dump(mesh, sort_keys=False))
    return mesh_file, topics_file


def instance_sharing_the_sessions_stores(stack: Stack, data_dir: Path, mesh_file: Path, topics_file: Path) -> Stack:
    """A stack instance of the test declaration on the session's PostgreSQL and Kafka (its own CA and ports)."""
    shared = stack.settings.ports
    settings = replace(
        stack.settings,
        data_dir=data_dir,
        mesh_file=mesh_file,
        topics_file=topics_file,
        service_env={**stack.settings.service_env, "PYTHONPATH": str(EXTRA_SOURCES)},
    )
    ports = replace(Ports.free(settings.mesh), postgres=shared.postgres, kafka=shared.kafka)
    return Stack(replace(settings, ports=ports), stack.installed)


def reflected_services(settings: StackSettings) -> list[str]:
    with channel(settings, EXTRA) as chan:
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = reflection_pb2_grpc.ServerReflectionStub(chan).ServerReflectionInfo(iter([request]), timeout=10)
        return [s.name for reply in replies for s in reply.list_services_response.service]


async def append_to_outbox(dsn: str, topic: str, subject: str) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            return await append_event(connection, topic, subject, sample_event(subject, 1))
    finally:
        await connection.close()


async def committed_offset(bootstrap: str, group: str, partition: TopicPartition) -> int | None:
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        offset: int | None = await reader.committed(partition)
        return offset
    finally:
        await reader.stop()


async def drop_database(admin_dsn: str, database: str) -> None:
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.mark.timeout(180)
def test_a_service_declared_only_in_a_test_declaration_starts_serves_and_relays_and_consumes_its_events(
    stack: Stack,
) -> None:
    suffix = uuid.uuid4().hex[:10]
    topic, database = f"test-reviews-{suffix}", f"reviews_{suffix}"
    data_dir = Path(tempfile.mkdtemp(prefix="shopmesh-extra-service-"))
    mesh_file, topics_file = declaration_with_extra_service(data_dir, topic, database)
    instance = instance_sharing_the_sessions_stores(stack, data_dir, mesh_file, topics_file)
    settings = instance.settings
    service = instance.services[EXTRA]
    dsn = instance.postgres.dsn(database)
    try:
        for directory in (settings.log_dir, settings.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        assert EXTRA in instance.issue_certificates()
        # The stack's provisioning, from the test declaration: its database (migrated), its topic.
        instance.postgres.provision()
        instance.kafka.provision()
        # The declaration alone gives the service its ports, its database and its declaration files.
        env = service.env()
        assert env["SHOPMESH_DATABASE_URL"] == dsn
        assert env["SHOPMESH_GRPC_PORT"] == str(settings.ports.grpc(EXTRA))
        assert (env["SHOPMESH_MESH_FILE"], env["SHOPMESH_TOPICS_FILE"]) == (str(mesh_file), str(topics_file))
        instance.start(service)  # waits for health SERVING on its declared port

        assert health_status(settings, EXTRA) == health_pb2.HealthCheckResponse.SERVING
        assert "grpc.health.v1.Health" in reflected_services(settings)
        # Only the front door's identities reach the platform services; the service checks it.
        with channel(settings, EXTRA, identity="orders") as chan, pytest.raises(grpc.RpcError) as refused:
            health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

        subject = f"subject-{suffix}"
        event_id = asyncio.run(append_to_outbox(dsn, topic, subject))
        env_of_topic = EventsEnv(dsn, KafkaConfig(instance.kafka.bootstrap, 10_000), topic, EXTRA)
        [record] = asyncio.run(read_topic(env_of_topic, topic, until=1))  # relayed by its own relay
        assert EventHeaders.decode(record.headers).event_id == event_id
        assert record.key == subject.encode()

        group = consumer_group(EXTRA, EXTRA_CONSUMER)
        partition = TopicPartition(topic, record.partition)

        async def consumed() -> int | None:
            return await committed_offset(instance.kafka.bootstrap, group, partition)

        asyncio.run(eventually(consumed, lambda offset: offset == record.offset + 1, timeout=60, interval=0.2))
        rows = asyncio.run(fetch_rows(dsn, "SELECT event_id, subject FROM reviewed_events"))
        assert [(str(row["event_id"]), row["subject"]) for row in rows] == [(event_id, subject)]
    finally:
        instance.stop(service)
        asyncio.run(drop_database(stack.postgres.dsn("postgres"), database))
        shutil.rmtree(data_dir, ignore_errors=True)
