"""The notifications service's records (frozen dataclasses, no behaviour)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class NotificationRecord:
    id: str
    user_id: str
    kind: str
    title: str
    body: str
    order_id: str
    reason: str
    created_at: dt.datetime
    read_at: dt.datetime | None


@dataclass(frozen=True)
class PendingMail:
    """A mail the worker has claimed: sent, then recorded, in the claiming transaction."""

    message_id: str
    user_id: str
    subject: str
    body: str
    recipient: str | None
    created_at: dt.datetime
    attempts: int


@dataclass(frozen=True)
class Contact:
    email: str
    first_name: str
