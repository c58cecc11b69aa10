"""ListNotifications' page cursor: the last (created_at, id) of the previous page and its unread_only.

The codec, page-size rule and refusals are the platform's (shopmesh_platform.paging).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shopmesh_platform.paging import MalformedCursor, PageTokens, page_size, require_keys, require_type

__all__ = ["Cursor", "decode", "encode", "page_size"]


@dataclass(frozen=True)
class Cursor:
    """The last (created_at, id) of the previous page, newest first."""

    created_at: dt.datetime
    id: str
    unread_only: bool


def _from_document(document: Mapping[str, Any]) -> Cursor:
    require_keys(document, "at", "id", "unread")
    created_at = dt.datetime.fromisoformat(require_type(document["at"], str))
    if created_at.tzinfo is None:
        raise MalformedCursor
    return Cursor(
        created_at=created_at,
        id=str(uuid.UUID(require_type(document["id"], str))),
        unread_only=require_type(document["unread"], bool),
    )


_TOKENS = PageTokens[Cursor](
    domain="notifications",
    filter_name="unread_only",
    to_document=lambda cursor: {"at": cursor.created_at.isoformat(), "id": cursor.id, "unread": cursor.unread_only},
    from_document=_from_document,
    filter_of=lambda cursor: cursor.unread_only,
)
encode = _TOKENS.encode
decode = _TOKENS.decode
