"""Opaque page tokens for ListNotifications: where the previous page ended, and with which filter.

A token is base64url of a small JSON document, opaque to clients but not
secret (it only repeats what the client could list). One that does not decode,
or one used with another `unread_only` than the listing it came from, is
INVALID_ARGUMENT (AIP-158).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from dataclasses import dataclass

from shopmesh_platform.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class Cursor:
    """The last (created_at, id) of the previous page, newest first."""

    created_at: dt.datetime
    id: str
    unread_only: bool


def page_size(requested: int) -> int:
    return DEFAULT_PAGE_SIZE if requested <= 0 else min(requested, MAX_PAGE_SIZE)


def encode(cursor: Cursor) -> str:
    document = {"at": cursor.created_at.isoformat(), "id": cursor.id, "unread": cursor.unread_only}
    return base64.urlsafe_b64encode(json.dumps(document, separators=(",", ":")).encode()).decode().rstrip("=")


def decode(token: str, unread_only: bool) -> Cursor | None:
    """The cursor of `token` (None for the first page); raises InvalidArgument if it is not ours."""
    if not token:
        return None
    try:
        document = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(document, dict) or set(document) != {"at", "id", "unread"}:
            raise ValueError
        created_at = dt.datetime.fromisoformat(document["at"])
        last_id = str(uuid.UUID(document["id"]))
        unread = document["unread"]
        if not isinstance(unread, bool) or created_at.tzinfo is None:
            raise ValueError
    except (binascii.Error, ValueError, TypeError):
        raise _invalid("is not a page token this service issued") from None
    if unread != unread_only:
        raise _invalid("belongs to a listing with another unread_only")
    return Cursor(created_at, last_id, unread)


def _invalid(description: str) -> InvalidArgument:
    return InvalidArgument(
        f"page_token {description}",
        reason="INVALID_PAGE_TOKEN",
        domain="notifications",
        field_violations=[FieldViolation("page_token", description, "page_token.valid")],
    )
