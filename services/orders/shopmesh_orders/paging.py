"""Opaque page tokens for ListOrders: where the previous page ended (newest first), and its filter.

A token is base64url of a small JSON document: the last order's creation time
(milliseconds) and id, and the filter it was listed with. Opaque to clients but
not secret; one that does not decode, or one used with another filter, is
INVALID_ARGUMENT (AIP-158).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from shopmesh_platform.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class Cursor:
    """The last order of the previous page (creation time in ms, id) and the listing's filter."""

    created_ms: int
    order_id: str
    filter: str


def page_size(requested: int) -> int:
    return DEFAULT_PAGE_SIZE if requested <= 0 else min(requested, MAX_PAGE_SIZE)


def encode(cursor: Cursor) -> str:
    document = json.dumps({"t": cursor.created_ms, "id": cursor.order_id, "f": cursor.filter}, separators=(",", ":"))
    return base64.urlsafe_b64encode(document.encode()).decode().rstrip("=")


def decode(token: str, listing_filter: str) -> Cursor | None:
    """The cursor of `token` (None for the first page); InvalidArgument if it is not ours or not for this filter."""
    if not token:
        return None
    try:
        document = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        raise _invalid("is not a page token this service issued") from None
    if (
        not isinstance(document, dict)
        or set(document) != {"t", "id", "f"}
        or not isinstance(document["t"], int)
        or not isinstance(document["id"], str)
        or not isinstance(document["f"], str)
        or not document["id"]
    ):
        raise _invalid("is not a page token this service issued")
    if document["f"] != listing_filter:
        raise _invalid("belongs to a listing with another filter")
    return Cursor(created_ms=document["t"], order_id=document["id"], filter=listing_filter)


def _invalid(description: str) -> InvalidArgument:
    return InvalidArgument(
        f"page_token {description}",
        reason="INVALID_PAGE_TOKEN",
        domain="orders",
        field_violations=[FieldViolation("page_token", description, "page_token.valid")],
    )
