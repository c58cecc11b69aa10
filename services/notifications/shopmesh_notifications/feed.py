"""The per-user feed: recording what an event tells a customer, listing it, marking it read. No grpc.

`record` runs in the consumer's inbox transaction: the notification, its mail
(if the event warrants one) and the NotificationCreated event commit together
with the inbox row, so each event yields them exactly once; the commit also
announces the notification to every replica (LISTEN/NOTIFY, see hub.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg
from google.protobuf import timestamp_pb2

from shopmesh.notification.v1 import events_pb2 as events
from shopmesh_notifications import paging, store
from shopmesh_notifications.drafts import Draft, message_id, notification_id
from shopmesh_notifications.records import NotificationRecord
from shopmesh_platform.context import Caller
from shopmesh_platform.errors import NotFound, Unauthenticated
from shopmesh_platform.events.outbox import append_event
from shopmesh_platform.events.topics import NOTIFICATION_EVENTS

DOMAIN = "notifications"


def occurred_at(stamp: timestamp_pb2.Timestamp, present: bool) -> dt.datetime | None:
    """An event's `occurred_at` as an aware datetime, or None when the event has none."""
    return stamp.ToDatetime(tzinfo=dt.UTC) if present else None


@dataclass(frozen=True)
class Page:
    notifications: list[NotificationRecord]
    next_page_token: str


def _user(caller: Caller) -> str:
    if caller.user_id is None:
        raise Unauthenticated("a user token is required", reason="TOKEN_MISSING", domain=DOMAIN)
    return caller.user_id


class Feed:
    """The notifications of every user, in the service's database."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, connection: asyncpg.Connection, event_id: str, draft: Draft, at: dt.datetime | None) -> None:
        """Store `draft` for the event (in the caller's transaction), and its mail if it has one."""
        created = await store.insert_notification(
            connection, notification_id=notification_id(event_id), event_id=event_id, draft=draft, created_at=at
        )
        if not created:
            return
        if draft.mail is not None:
            contact = await store.find_contact(connection, draft.user_id)
            await store.insert_mail(
                connection,
                message_id=message_id(event_id),
                event_id=event_id,
                user_id=draft.user_id,
                kind=draft.kind,
                subject=draft.mail.subject,
                body=draft.mail.body,
                recipient=contact.email if contact else None,
            )
        await append_event(
            connection,
            NOTIFICATION_EVENTS,
            draft.user_id,
            events.NotificationCreated(
                notification_id=notification_id(event_id), user_id=draft.user_id, kind=draft.kind
            ),
        )

    async def get(self, notification_id: str) -> NotificationRecord | None:
        async with self._pool.acquire() as connection:
            return await store.find_notification(connection, notification_id)

    async def list(self, caller: Caller, *, unread_only: bool, page_size: int, page_token: str) -> Page:
        user_id = _user(caller)
        cursor = paging.decode(page_token, unread_only)
        size = paging.page_size(page_size)
        async with self._pool.acquire() as connection:
            rows = await store.list_notifications(
                connection,
                user_id,
                unread_only=unread_only,
                before=(cursor.created_at, cursor.id) if cursor else None,
                limit=size + 1,
            )
        page, more = rows[:size], len(rows) > size
        token = paging.encode(paging.Cursor(page[-1].created_at, page[-1].id, unread_only)) if more else ""
        return Page(page, token)

    async def mark_read(self, caller: Caller, notification_id: str) -> NotificationRecord:
        """The caller's own only: anyone else's is NOT_FOUND, like one that does not exist."""
        user_id = _user(caller)
        async with self._pool.acquire() as connection:
            found = await store.mark_read(connection, user_id, notification_id)
        if found is None:
            raise NotFound(f"notification {notification_id} not found", reason="NOTIFICATION_NOT_FOUND", domain=DOMAIN)
        return found
