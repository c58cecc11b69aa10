"""Helpers for the notifications tests: events on the real topics, streams, Mailpit, a second replica."""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import asyncpg
import grpc
from google.protobuf.message import Message
from grpc import aio

from shopmesh.notification.v1 import notification_service_pb2 as pb
from shopmesh.notification.v1 import notification_service_pb2_grpc
from shopmesh_platform.events.envelope import envelope
from shopmesh_platform.events.producer import EventProducer
from shopmesh_platform.kafka import KafkaConfig
from shopmesh_stack.components import Service
from shopmesh_stack.procs import ManagedProcess
from shopmesh_stack.settings import ServicePorts
from shopmesh_stack.stack import Stack
from tests.polling import wait_for

WATCH = "WatchNotifications"


def notifications_dsn(stack: Stack) -> str:
    return stack.postgres.dsn("notifications")


async def publish(stack: Stack, topic: str, key: str, event: Message, *, event_id: str, times: int = 1) -> None:
    """Produce `event` with the platform's envelope on the real topic, `times` times (same event id)."""
    producer = EventProducer(KafkaConfig.from_env({"SHOPMESH_KAFKA_BOOTSTRAP": stack.kafka.bootstrap}), "tests")
    await producer.start()
    try:
        for _ in range(times):
            await producer.send(envelope(topic, key, event_id, event))
    finally:
        await producer.stop()


async def fetch(stack: Stack, query: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(notifications_dsn(stack))
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


def aio_channel(stack: Stack, port: int | None = None) -> aio.Channel:
    """An async channel straight to notifications (developer identity), or to another port of it."""
    address = f"127.0.0.1:{port or stack.settings.ports.grpc('notifications')}"
    files = stack.settings.tls_files("developer")
    if files is None:
        return aio.insecure_channel(address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=files.ca.read_bytes(),
        private_key=files.key.read_bytes(),
        certificate_chain=files.cert.read_bytes(),
    )
    return aio.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", "notifications")])


def edge_grpc_channel(stack: Stack) -> aio.Channel:
    """Through the edge's gRPC listener (plaintext h2c), as a client would."""
    return aio.insecure_channel(f"127.0.0.1:{stack.settings.ports.edge}")


def watch(
    channel: aio.Channel, token: str | None, user_id: str = ""
) -> aio.UnaryStreamCall[pb.WatchNotificationsRequest, pb.Notification]:
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    stub = notification_service_pb2_grpc.NotificationServiceStub(channel)
    call: aio.UnaryStreamCall[pb.WatchNotificationsRequest, pb.Notification] = stub.WatchNotifications(
        pb.WatchNotificationsRequest(user_id=user_id), metadata=metadata
    )
    return call


def metric(metrics_port: int, name: str) -> float | None:
    """The value of an unlabelled metric of one replica, None if it has none."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
    return None


def open_streams(metrics_port: int) -> float:
    """`notification_streams_open` of one replica (a stream counts once its subscription is in place)."""
    return metric(metrics_port, "notification_streams_open") or 0.0


# --- Mailpit -------------------------------------------------------------------------------


def mailpit_messages(stack: Stack) -> list[dict[str, Any]]:
    """Every message Mailpit holds (its HTTP API), newest first."""
    url = f"{stack.mailpit.ui_url}/api/v1/messages?limit=5000"
    with urllib.request.urlopen(url, timeout=5) as response:
        messages: list[dict[str, Any]] = json.load(response)["messages"]
    return messages


def mails_to(stack: Stack, address: str) -> list[dict[str, Any]]:
    return [m for m in mailpit_messages(stack) if any(to["Address"] == address for to in m["To"])]


def message_id(event_id: str) -> str:
    """The Message-ID notifications derives from an event id, as Mailpit reports it (no angle brackets)."""
    return f"{uuid.UUID(event_id)}@notifications.shopmesh"


# --- a second notifications replica -------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica(Service):
    """Another notifications process of the session's stack: its own ports, log and pid file."""

    def __init__(self, stack: Stack, suffix: str) -> None:
        base = stack.services["notifications"]
        services = {**stack.settings.ports.services, "notifications": ServicePorts(_free_port(), _free_port())}
        ports = replace(stack.settings.ports, services=services)
        super().__init__(replace(stack.settings, ports=ports), stack.installed, "notifications", base._stack_env)
        self._suffix = suffix

    @property
    def process(self) -> ManagedProcess:
        spec = super().process.spec
        label = f"notifications-{self._suffix}"
        return ManagedProcess(
            replace(
                spec,
                name=label,
                log_file=spec.log_file.with_name(f"{label}.log"),
                pid_file=spec.pid_file.with_name(f"{label}.pid"),
            )
        )


@contextlib.contextmanager
def second_replica(stack: Stack, suffix: str = "2") -> Iterator[Replica]:
    replica = Replica(stack, suffix)
    try:
        stack.start(replica)
        # Serving health is not enough for user calls: they fail closed until its deny-list has replayed.
        port = replica.settings.ports.metrics("notifications")
        wait_for(lambda: metric(port, "revocations_loaded") == 1.0, 60, "the replica's revocations loaded")
        yield replica
    finally:
        stack.stop(replica)


@contextlib.asynccontextmanager
async def channel_to(stack: Stack, port: int | None = None) -> AsyncIterator[aio.Channel]:
    channel = aio_channel(stack, port)
    try:
        yield channel
    finally:
        await channel.close()
