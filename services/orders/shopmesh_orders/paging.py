"""ListOrders' page cursor: the last order of the previous page (newest first) and its filter.

The token holds the last order's creation time (milliseconds) and id, and the
filter it was listed with. The codec, page-size rule and refusals are the
platform's (shopmesh_platform.paging).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shopmesh_platform.paging import PageTokens, page_size, require_keys, require_type

__all__ = ["Cursor", "decode", "encode", "page_size"]


@dataclass(frozen=True)
class Cursor:
    """The last order of the previous page (creation time in ms, id) and the listing's filter."""

    created_ms: int
    order_id: str
    filter: str


def _from_document(document: Mapping[str, Any]) -> Cursor:
    require_keys(document, "t", "id", "f")
    return Cursor(
        created_ms=require_type(document["t"], int),
        order_id=require_type(document["id"], str, non_empty=True),
        filter=require_type(document["f"], str),
    )


_TOKENS = PageTokens[Cursor](
    domain="orders",
    filter_name="filter",
    to_document=lambda cursor: {"t": cursor.created_ms, "id": cursor.order_id, "f": cursor.filter},
    from_document=_from_document,
    filter_of=lambda cursor: cursor.filter,
)
encode = _TOKENS.encode
decode = _TOKENS.decode
