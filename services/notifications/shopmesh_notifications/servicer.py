"""gRPC servicer of shopmesh.notification.v1.NotificationService: converts between protos and the domain."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from google.protobuf import timestamp_pb2

from shopmesh.notification.v1 import notification_service_pb2 as pb
from shopmesh.notification.v1 import notification_service_pb2_grpc
from shopmesh_notifications.config import StreamConfig
from shopmesh_notifications.feed import Feed
from shopmesh_notifications.hub import NotificationHub
from shopmesh_notifications.records import NotificationRecord
from shopmesh_platform.context import Caller, current_caller
from shopmesh_platform.errors import PermissionDenied, Unauthenticated
from shopmesh_platform.server import ServiceBinding

DOMAIN = "notifications"


class TokenRevocations(Protocol):
    """Whether a token id was revoked since it was verified (the platform's JwtVerifier)."""

    async def is_revoked(self, token_id: str) -> bool: ...


def _timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def to_proto(record: NotificationRecord) -> pb.Notification:
    message = pb.Notification(
        id=record.id,
        user_id=record.user_id,
        kind=f"NOTIFICATION_KIND_{record.kind.upper()}",
        title=record.title,
        body=record.body,
        order_id=record.order_id,
        created_at=_timestamp(record.created_at),
        reason=record.reason,
    )
    if record.read_at is not None:
        message.read_at.CopyFrom(_timestamp(record.read_at))
    return message


def _token_ended(reason: str, message: str) -> Unauthenticated:
    return Unauthenticated(message, reason=reason, domain="auth")


class NotificationServicer(notification_service_pb2_grpc.NotificationServiceServicer):
    """The notifications service's API."""

    def __init__(self, feed: Feed, hub: NotificationHub, revocations: TokenRevocations, stream: StreamConfig) -> None:
        self._feed = feed
        self._hub = hub
        self._revocations = revocations
        self._stream = stream

    async def ListNotifications(
        self, request: pb.ListNotificationsRequest, context: Any
    ) -> pb.ListNotificationsResponse:
        page = await self._feed.list(
            current_caller(),
            unread_only=request.unread_only,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListNotificationsResponse(
            notifications=[to_proto(record) for record in page.notifications], next_page_token=page.next_page_token
        )

    async def MarkNotificationRead(self, request: pb.MarkNotificationReadRequest, context: Any) -> pb.Notification:
        return to_proto(await self._feed.mark_read(current_caller(), request.id))

    async def WatchNotifications(
        self, request: pb.WatchNotificationsRequest, context: Any
    ) -> AsyncIterator[pb.Notification]:
        caller = current_caller()
        if caller.user_id is None or caller.token_id is None or caller.token_expires_at is None:
            raise Unauthenticated("a user token is required", reason="TOKEN_MISSING", domain=DOMAIN)
        if request.user_id and request.user_id != caller.user_id:
            raise PermissionDenied(
                "a stream is only for the caller's own notifications", reason="NOT_OWN_STREAM", domain=DOMAIN
            )
        subscription = self._hub.subscribe(caller.user_id)
        try:
            while True:
                wait = await self._check_token(caller)
                record = await subscription.next(wait)
                if record is not None:
                    yield to_proto(record)
        finally:
            self._hub.unsubscribe(subscription)

    async def _check_token(self, caller: Caller) -> float:
        """Raise once the caller's token has expired or been revoked; else how long to wait before asking again."""
        assert caller.token_id is not None and caller.token_expires_at is not None
        remaining = caller.token_expires_at - time.time()
        if remaining <= 0:
            raise _token_ended("TOKEN_EXPIRED", "token expired")
        if await self._revocations.is_revoked(caller.token_id):
            raise _token_ended("TOKEN_REVOKED", "token revoked")
        return min(self._stream.token_check_seconds, remaining)


def binding(servicer: NotificationServicer) -> ServiceBinding:
    return ServiceBinding.of(servicer, pb, notification_service_pb2_grpc, "NotificationService")
