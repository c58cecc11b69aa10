"""SQL of the notifications service, one function per query, on a connection it is given."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from shopmesh_notifications.drafts import Draft
from shopmesh_notifications.records import Contact, NotificationRecord, PendingMail

# LISTEN/NOTIFY channel of stored notifications; the payload is "<user id> <notification id>".
NOTIFY_CHANNEL = "shopmesh_notifications"

_COLUMNS = "id, user_id, kind, title, body, order_id, reason, created_at, read_at"


def _record(row: asyncpg.Record) -> NotificationRecord:
    return NotificationRecord(
        id=str(row["id"]),
        user_id=str(row["user_id"]),
        kind=row["kind"],
        title=row["title"],
        body=row["body"],
        order_id=row["order_id"],
        reason=row["reason"],
        created_at=row["created_at"],
        read_at=row["read_at"],
    )


async def insert_notification(
    connection: asyncpg.Connection,
    *,
    notification_id: str,
    event_id: str,
    draft: Draft,
    created_at: dt.datetime | None,
) -> bool:
    """Store it and announce it on commit (NOTIFY is transactional); False if the event already had one."""
    inserted = await connection.fetchval(
        """INSERT INTO notifications (id, source_event_id, user_id, kind, title, body, order_id, reason, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, coalesce($9, now()))
            ON CONFLICT DO NOTHING RETURNING true""",
        uuid.UUID(notification_id),
        uuid.UUID(event_id),
        uuid.UUID(draft.user_id),
        draft.kind,
        draft.title,
        draft.body,
        draft.order_id,
        draft.reason,
        created_at,
    )
    if not inserted:
        return False
    await connection.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, f"{draft.user_id} {notification_id}")
    return True


async def find_notification(connection: asyncpg.Connection, notification_id: str) -> NotificationRecord | None:
    row = await connection.fetchrow(f"SELECT {_COLUMNS} FROM notifications WHERE id = $1", uuid.UUID(notification_id))
    return _record(row) if row else None


async def list_notifications(
    connection: asyncpg.Connection,
    user_id: str,
    *,
    unread_only: bool,
    before: tuple[dt.datetime, str] | None,
    limit: int,
) -> list[NotificationRecord]:
    """Newest first, strictly after `before` (the previous page's last row) in that order."""
    rows = await connection.fetch(
        f"""SELECT {_COLUMNS} FROM notifications
            WHERE user_id = $1
              AND (NOT $2 OR read_at IS NULL)
              AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
            ORDER BY created_at DESC, id DESC
            LIMIT $5""",
        uuid.UUID(user_id),
        unread_only,
        before[0] if before else None,
        uuid.UUID(before[1]) if before else None,
        limit,
    )
    return [_record(row) for row in rows]


async def mark_read(connection: asyncpg.Connection, user_id: str, notification_id: str) -> NotificationRecord | None:
    """Mark it read (once: a second call keeps the first time); None unless it is this user's."""
    row = await connection.fetchrow(
        f"""UPDATE notifications SET read_at = coalesce(read_at, now())
            WHERE id = $1 AND user_id = $2 RETURNING {_COLUMNS}""",
        uuid.UUID(notification_id),
        uuid.UUID(user_id),
    )
    return _record(row) if row else None


async def save_contact(
    connection: asyncpg.Connection, user_id: str, email: str, first_name: str, as_of: dt.datetime
) -> None:
    """Remember where to write; an older event never replaces a newer address."""
    await connection.execute(
        """INSERT INTO user_contacts (user_id, email, first_name, as_of) VALUES ($1, $2, $3, $4)
           ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, first_name = excluded.first_name,
                                               as_of = excluded.as_of
           WHERE user_contacts.as_of <= excluded.as_of""",
        uuid.UUID(user_id),
        email,
        first_name,
        as_of,
    )


async def find_contact(connection: asyncpg.Connection, user_id: str) -> Contact | None:
    row = await connection.fetchrow(
        "SELECT email, first_name FROM user_contacts WHERE user_id = $1", uuid.UUID(user_id)
    )
    return Contact(row["email"], row["first_name"]) if row else None


async def insert_mail(
    connection: asyncpg.Connection,
    *,
    message_id: str,
    event_id: str,
    user_id: str,
    kind: str,
    subject: str,
    body: str,
    recipient: str | None,
) -> None:
    await connection.execute(
        """INSERT INTO outgoing_mails (message_id, source_event_id, user_id, kind, subject, body, recipient)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
        message_id,
        uuid.UUID(event_id),
        uuid.UUID(user_id),
        kind,
        subject,
        body,
        recipient,
    )


async def claim_due_mail(connection: asyncpg.Connection) -> PendingMail | None:
    """The next due, unsent mail, locked until the transaction ends (other replicas skip it)."""
    row = await connection.fetchrow(
        """SELECT message_id, user_id, subject, body, recipient, created_at, attempts FROM outgoing_mails
           WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
           ORDER BY next_attempt_at, created_at LIMIT 1 FOR UPDATE SKIP LOCKED"""
    )
    if row is None:
        return None
    return PendingMail(
        message_id=row["message_id"],
        user_id=str(row["user_id"]),
        subject=row["subject"],
        body=row["body"],
        recipient=row["recipient"],
        created_at=row["created_at"],
        attempts=row["attempts"],
    )


async def mark_sent(connection: asyncpg.Connection, message_id: str, recipient: str) -> None:
    await connection.execute(
        """UPDATE outgoing_mails SET sent_at = now(), recipient = $2, attempts = attempts + 1, last_error = NULL
           WHERE message_id = $1""",
        message_id,
        recipient,
    )


async def mark_retry(connection: asyncpg.Connection, message_id: str, error: str, delay_seconds: float) -> None:
    await connection.execute(
        """UPDATE outgoing_mails SET attempts = attempts + 1, last_error = $2,
                  next_attempt_at = now() + make_interval(secs => $3)
           WHERE message_id = $1""",
        message_id,
        error,
        delay_seconds,
    )


async def mark_failed(connection: asyncpg.Connection, message_id: str, error: str) -> None:
    await connection.execute(
        "UPDATE outgoing_mails SET attempts = attempts + 1, last_error = $2, failed_at = now() WHERE message_id = $1",
        message_id,
        error,
    )


async def mail_backlog(connection: asyncpg.Connection) -> int:
    return int(
        await connection.fetchval("SELECT count(*) FROM outgoing_mails WHERE sent_at IS NULL AND failed_at IS NULL")
    )
