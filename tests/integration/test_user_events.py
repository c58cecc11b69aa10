"""User events leave through the outbox: on the real topic with key and payload,
after a Kafka outage, and after the service was killed before publishing.
Logout reaches every service's deny-list through Kafka."""

from __future__ import annotations

import asyncio
import signal

import grpc
import pytest
from aiokafka import AIOKafkaConsumer

from shopmesh.notification.v1 import notification_service_pb2 as notification_pb
from shopmesh.notification.v1 import notification_service_pb2_grpc as notification_grpc
from shopmesh.user.v1 import events_pb2 as user_events
from shopmesh_stack.channels import channel
from shopmesh_stack.stack import Stack
from tests.integration.users_client import Account, call, grpc_get_me, register
from tests.polling import wait_for

USER_REGISTERED = "shopmesh.user.v1.UserRegistered"


async def find_event(stack: Stack, key: str, event_type: str, timeout: float = 30) -> tuple[bytes, dict[str, str]]:
    """The first event of `event_type` keyed `key` on user-events (read from the beginning)."""
    consumer = AIOKafkaConsumer(
        "user-events",
        bootstrap_servers=stack.kafka.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(timeout):
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        headers = {k: v.decode() for k, v in record.headers}
                        if record.key == key.encode() and headers.get("event-type") == event_type:
                            return record.value, headers
    finally:
        await consumer.stop()


def test_user_registered_is_published_with_key_and_payload(stack: Stack) -> None:
    account = register(stack)
    value, headers = asyncio.run(find_event(stack, account.id, USER_REGISTERED))
    event = user_events.UserRegistered.FromString(value)
    assert (event.user_id, event.email, event.first_name) == (account.id, account.email, "Ada")
    assert headers["event-id"] == event.event_id
    assert headers["content-type"] == "application/x-protobuf"
    assert event.occurred_at.seconds > 0


@pytest.mark.stops_components
def test_registration_succeeds_with_kafka_down_and_the_event_follows(stack: Stack) -> None:
    stack.stop(stack.kafka)
    try:
        account = register(stack)  # the outbox absorbs the outage
    finally:
        stack.start(stack.kafka)
    value, _ = asyncio.run(find_event(stack, account.id, USER_REGISTERED, timeout=60))
    assert user_events.UserRegistered.FromString(value).email == account.email


@pytest.mark.stops_components
def test_killing_the_service_between_commit_and_publish_loses_nothing(stack: Stack) -> None:
    users = stack.services["users"]
    stack.stop(stack.kafka)
    try:
        account = register(stack)  # committed with its event in the outbox; Kafka is down, so not published
        users.process.stop(sig=signal.SIGKILL)
        assert not users.process.running()
    finally:
        stack.start(stack.kafka)
        stack.start(users)
    value, _ = asyncio.run(find_event(stack, account.id, USER_REGISTERED, timeout=60))
    assert user_events.UserRegistered.FromString(value).user_id == account.id


def list_notifications_status(stack: Stack, account: Account) -> grpc.StatusCode:
    """Another service's verdict on the token (its auth interceptor runs before the handler)."""
    with channel(stack.settings, "notifications") as chan:
        try:
            notification_grpc.NotificationServiceStub(chan).ListNotifications(
                notification_pb.ListNotificationsRequest(),
                metadata=(("authorization", f"Bearer {account.token}"),),
                timeout=10,
            )
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def test_logout_revokes_the_token_everywhere(stack: Stack) -> None:
    account = register(stack)
    # Accepted by another service's interceptor (and served).
    assert list_notifications_status(stack, account) == grpc.StatusCode.OK
    assert call(stack, "POST", "/api/v1/users/logout", account, {}).status == 200
    assert grpc_get_me(stack, account.token) == grpc.StatusCode.UNAUTHENTICATED
    wait_for(
        lambda: list_notifications_status(stack, account) == grpc.StatusCode.UNAUTHENTICATED,
        30,
        "notifications refusing the revoked token",
    )
    # A fresh login works again.
    assert grpc_get_me(stack, register(stack).token) == grpc.StatusCode.OK
