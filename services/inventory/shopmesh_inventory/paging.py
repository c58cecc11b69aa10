"""ListProducts' page cursor: the last product id of the previous page and its category filter.

The token codec, page-size rule and refusals are the platform's (shopmesh_platform.paging).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shopmesh_platform.paging import PageTokens, page_size, require_keys, require_type

__all__ = ["Cursor", "decode", "encode", "page_size"]


@dataclass(frozen=True)
class Cursor:
    """The last product id of the previous page and the category filter it was listed with."""

    after: str
    category: str


def _from_document(document: Mapping[str, Any]) -> Cursor:
    require_keys(document, "after", "category")
    return Cursor(
        after=require_type(document["after"], str, non_empty=True),
        category=require_type(document["category"], str),
    )


_TOKENS = PageTokens[Cursor](
    domain="inventory",
    filter_name="category",
    to_document=lambda cursor: {"after": cursor.after, "category": cursor.category},
    from_document=_from_document,
    filter_of=lambda cursor: cursor.category,
)
encode = _TOKENS.encode
decode = _TOKENS.decode
