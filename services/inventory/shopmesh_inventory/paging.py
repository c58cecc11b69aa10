"""Opaque page tokens for ListProducts: where the previous page ended, and for which filter.

A token is base64url of a small JSON document. It is opaque to clients (its
form may change), but not secret: it only repeats what the client could list.
A token that does not decode, or one used with another category than the
request it came from, is INVALID_ARGUMENT (AIP-158).
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
    """The last product id of the previous page and the category filter it was listed with."""

    after: str
    category: str


def page_size(requested: int) -> int:
    """The contract's default for 0, capped at the maximum."""
    return DEFAULT_PAGE_SIZE if requested <= 0 else min(requested, MAX_PAGE_SIZE)


def encode(cursor: Cursor) -> str:
    document = json.dumps({"after": cursor.after, "category": cursor.category}, separators=(",", ":"))
    return base64.urlsafe_b64encode(document.encode()).decode().rstrip("=")


def decode(token: str, category: str) -> Cursor | None:
    """The cursor of `token` (None for the first page); raises InvalidArgument if it is not ours."""
    if not token:
        return None
    try:
        document = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        raise _invalid("is not a page token this service issued") from None
    if (
        not isinstance(document, dict)
        or set(document) != {"after", "category"}
        or not isinstance(document["after"], str)
        or not isinstance(document["category"], str)
        or not document["after"]
    ):
        raise _invalid("is not a page token this service issued")
    if document["category"] != category:
        raise _invalid("belongs to a listing with another category")
    return Cursor(after=document["after"], category=category)


def _invalid(description: str) -> InvalidArgument:
    return InvalidArgument(
        f"page_token {description}",
        reason="INVALID_PAGE_TOKEN",
        domain="inventory",
        field_violations=[FieldViolation("page_token", description, "page_token.valid")],
    )
